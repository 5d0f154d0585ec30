package push_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftworks/weft/internal/testca"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/store"
)

// TestMutualTLS dials a service that asks for a client certificate with
// the CA, certificate and key of its registry entry.
func TestMutualTLS(t *testing.T) {
	ca := testca.New(t, "services CA")
	serverCert, serverKey := ca.Issue(t, "faces", true)
	clientCert, clientKey := ca.Issue(t, "weft", false)
	dir := t.TempDir()

	cert, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})

	h := newHarness(t, push.Options{})
	svc := newService(t)
	svc.up(t, grpc.Creds(creds))
	h.service(store.Service{Name: "secure", Addresses: []string{svc.addr}, TLS: store.ServiceTLS{
		Enabled: true, CAFile: writeFile(t, dir, "ca.pem", ca.PEM),
		CertFile: writeFile(t, dir, "cert.pem", clientCert), KeyFile: writeFile(t, dir, "key.pem", clientKey),
	}})
	h.register(oneStep("secure", "secure", ""))

	if inst := h.wait(h.start("secure", `{}`)); inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed over mTLS", inst.Status, inst.Error)
	}
}

func TestDialOptionsRefuseBadFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		tls  store.ServiceTLS
		want string
	}{
		{"missing CA", store.ServiceTLS{Enabled: true, CAFile: filepath.Join(dir, "none.pem")}, "tls.ca_file: reading it"},
		{"CA without certificate", store.ServiceTLS{Enabled: true, CAFile: writeFile(t, dir, "empty.pem", nil)},
			"holds no PEM certificate"},
		{"missing client key", store.ServiceTLS{Enabled: true, CertFile: filepath.Join(dir, "c.pem"),
			KeyFile: filepath.Join(dir, "k.pem")}, "tls.cert_file: loading it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := push.DialOptions(store.Service{Name: "faces", TLS: tt.tls})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()

	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}
