package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/internal/testca"
)

// TestServeServiceRegistry registers, reads, replaces and deletes a
// service through the API.
func TestServeServiceRegistry(t *testing.T) {
	p := startServe(t)
	ctx := p.ctx(t)
	dir := t.TempDir()
	ca := testca.New(t, "services CA")
	certPEM, keyPEM := ca.Issue(t, "weft", false)
	push := &weftv1.Service{
		Name: "exif", Mode: weftv1.ServiceMode_SERVICE_MODE_PUSH,
		Addresses: []string{"127.0.0.1:7001", "127.0.0.1:7002"},
		Tls: &weftv1.ServiceTLS{
			Enabled: true, CaFile: write(t, dir, "ca.pem", ca.PEM),
			CertFile: write(t, dir, "c.pem", certPEM), KeyFile: write(t, dir, "k.pem", keyPEM),
			ServerName: "exif",
		},
		Concurrency: 8, Rate: 2.5, Burst: 4, DispatchTimeout: durationpb.New(3 * time.Second),
		DispatchLimit: 7,
	}
	reg, err := p.registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: push})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	created := reg.GetService().GetCreatedAt()

	got, err := p.registry.GetService(ctx, &weftv1.GetServiceRequest{Name: "exif"})
	if err != nil {
		t.Fatalf("getting: %v", err)
	}
	want := proto.Clone(push).(*weftv1.Service)
	want.CreatedAt, want.UpdatedAt = created, reg.GetService().GetUpdatedAt()
	if !proto.Equal(got.GetService(), want) {
		t.Fatalf("got %v, want %v", got.GetService(), want)
	}

	push.Concurrency = 0
	push.Tls = nil
	reg, err = p.registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: push})
	if err != nil || reg.GetService().GetConcurrency() != 0 || reg.GetService().GetTls() != nil ||
		!proto.Equal(reg.GetService().GetCreatedAt(), created) {
		t.Fatalf("replacing = %v, %v; want no cap, no TLS, the first created_at", reg, err)
	}

	list, err := p.registry.ListServices(ctx, &weftv1.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.GetServices() {
		names = append(names, s.GetName())
	}
	if want := "exif greeter idle math nobody resize s svc work"; strings.Join(names, " ") != want {
		t.Fatalf("listed %v, want %s", names, want)
	}

	if _, err := p.registry.DeleteService(ctx, &weftv1.DeleteServiceRequest{Name: "exif"}); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	_, err = p.registry.GetService(ctx, &weftv1.GetServiceRequest{Name: "exif"})
	wantCode(t, "getting a deleted service", err, codes.NotFound)
}

// TestServeRefusesBadServicesConfig: a services entry at fault stops
// serve from starting, with the entry and the field in the message.
func TestServeRefusesBadServicesConfig(t *testing.T) {
	tests := []struct{ config, want string }{
		{"services:\n  - {name: a, mode: pull}\n  - {name: b, mode: push}\n",
			"services[1] (b): addresses: a push service needs at least one"},
		{"services:\n  - {name: a, mode: push, addresses: [\"h\"]}\n",
			`services[0] (a): addresses[0]: "h" is not host:port`},
		{"services:\n  - {name: a, mode: pull, colour: red}\n",
			"services[0] (a): colour: line 2: unknown field"},
		{"services:\n  - {name: a, mode: push, addresses: [\"h:1\"], tls: {cert_file: c}}\n",
			"services[0] (a): tls.enabled: must be set with the other tls fields"},
		{"services:\n  - {name: a, mode: pull, dispatch_timeout: soon}\n",
			`services[0] (a): dispatch_timeout: line 2: "soon" is not a duration`},
		{"services:\n  - {name: a, mode: pull}\n  - {name: a, mode: pull}\n",
			`services[1] (a): name: "a" is listed already, as services[0]`},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "weft.yaml")
		if err := os.WriteFile(path, []byte(tt.config), 0o600); err != nil {
			t.Fatal(err)
		}

		out, err := execServe(t, "--insecure", "--config", path)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("serve with %q = %v: %s; want a refusal naming %q", tt.config, err, out, tt.want)
		}
	}
}
