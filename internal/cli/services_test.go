package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/testca"
)

// TestCLIServices registers a push service with every flag, reads it as
// a table and as JSON, replaces it, refuses bad entries with the field
// named, and deletes it; a definition naming an unregistered service is
// refused with the step and the service.
func TestCLIServices(t *testing.T) {
	addr := testServer(t, nil)
	ca := testca.New(t, "services CA")
	certPEM, keyPEM := ca.Issue(t, "weft", false)
	caFile, certFile, keyFile := writeFile(t, "ca.pem", string(ca.PEM)),
		writeFile(t, "c.pem", string(certPEM)), writeFile(t, "k.pem", string(keyPEM))
	out := mustWeft(t, addr, "service", "register", "exif", "--mode", "push",
		"--target", "127.0.0.1:7001", "--target", "127.0.0.1:7002", "--concurrency", "8",
		"--rate", "2.5", "--burst", "4", "--tls", "--ca", caFile, "--cert", certFile,
		"--key", keyFile, "--server-name", "exif.local", "--dispatch-timeout", "3s",
		"--dispatch-limit", "7")
	for _, want := range []string{"exif", "push", "127.0.0.1:7001,127.0.0.1:7002", "mtls", "8",
		"2.5/s burst 4", "3s x7"} {
		if !strings.Contains(out, want) {
			t.Errorf("register printed\n%s\nwithout %q", out, want)
		}
	}

	var got struct {
		Service struct {
			Mode string
			TLS  struct {
				ServerName string `json:"server_name"`
			} `json:"tls"`
			DispatchTimeout string `json:"dispatch_timeout"`
		}
	}
	raw := mustWeft(t, addr, "service", "get", "exif", "-o", "json")
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("get -o json printed %s: %v", raw, err)
	}
	if got.Service.Mode != "SERVICE_MODE_PUSH" || got.Service.TLS.ServerName != "exif.local" ||
		got.Service.DispatchTimeout != "3s" {
		t.Errorf("get -o json = %+v", got.Service)
	}

	mustWeft(t, addr, "service", "register", "thumbs")
	list := mustWeft(t, addr, "service", "list")
	if e, th := strings.Index(list, "exif"), strings.Index(list, "thumbs"); e < 0 || th < e ||
		!strings.Contains(list, "pull") {
		t.Errorf("list printed\n%s\nwant exif then thumbs, pull", list)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"exif", "--mode", "push"}, "service.addresses"},
		{[]string{"exif", "--mode", "push", "--target", "nohost"}, "service.addresses[0]"},
		{[]string{"exif", "--target", "h:1"}, "service.addresses"},
		{[]string{"exif", "--mode", "sideways"}, "--mode"},
		{[]string{"exif", "--rate", "-1"}, "service.rate"},
		{[]string{"a b"}, "service.name"},
		{[]string{"exif", "--mode", "push", "--target", "h:1", "--cert", "c.pem"},
			"service.tls.enabled"},
		{[]string{"exif", "--mode", "push", "--target", "h:1", "--tls", "--ca", "/nope/ca.pem"},
			"service.tls.ca_file"},
		{[]string{"exif", "--dispatch-limit", "3"}, "service.dispatch_limit"},
		{[]string{"exif", "--mode", "push", "--target", "h:1", "--burst", "3"}, "service.burst"},
	} {
		_, errOut, code := weft(t, addr, append([]string{"service", "register"}, bad.args...)...)
		if code == 0 || !strings.Contains(errOut, bad.want) {
			t.Errorf("register %v: exit %d, stderr %q; want non-zero naming %s", bad.args, code,
				errOut, bad.want)
		}
	}
	if after := mustWeft(t, addr, "service", "get", "exif"); !strings.Contains(after, "mtls") {
		t.Errorf("a refused register changed the entry:\n%s", after)
	}

	def := writeFile(t, "orphan.yaml", "name: orphan\nversion: 1\nsteps:\n"+
		"  - {id: look, type: task, service: nowhere, action: x}\n")
	_, errOut, code := weft(t, addr, "definition", "register", def)
	if code == 0 || !strings.Contains(errOut, `step "look" names unknown service "nowhere"`) {
		t.Errorf("register naming an unknown service: exit %d, stderr %q", code, errOut)
	}

	named := writeFile(t, "named.yaml", "name: named\nversion: 1\nsteps:\n"+
		"  - {id: shrink, type: task, service: thumbs, action: x}\n")
	mustWeft(t, addr, "definition", "register", named)
	_, errOut, code = weft(t, addr, "service", "delete", "thumbs")
	if code == 0 || !strings.Contains(errOut, "named v1") || !strings.Contains(errOut, "deprecate") {
		t.Errorf("delete of a service an active definition names: exit %d, stderr %q", code, errOut)
	}
	mustWeft(t, addr, "definition", "deprecate", "named", "1")
	mustWeft(t, addr, "service", "delete", "thumbs")

	if out := mustWeft(t, addr, "service", "delete", "exif"); out != "deleted service exif\n" {
		t.Errorf("delete printed %q", out)
	}
	_, errOut, code = weft(t, addr, "service", "get", "exif")
	if code == 0 || !strings.Contains(errOut, "NotFound") {
		t.Errorf("get after delete: exit %d, stderr %q; want NotFound", code, errOut)
	}
}
