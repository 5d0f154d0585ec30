package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/internal/testca"
	"github.com/weftworks/weft/server"
)

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

// secureClient dials addr over TLS trusting ca, with an optional client
// certificate and bearer token.
type secureClient struct {
	conn  *grpc.ClientConn
	defs  weftv1.WorkflowDefinitionServiceClient
	exec  weftv1.WorkflowExecutionServiceClient
	state weftv1.WorkflowStateServiceClient
	steps weftv1.StepExecutionServiceClient
	// registry is the ServiceRegistryService client.
	registry weftv1.ServiceRegistryServiceClient
}

type tokenCreds string

func (tc tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(tc)}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return true }

func dialSecure(t *testing.T, addr string, ca *testca.CA, certPEM, keyPEM []byte, token string) *secureClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds(token)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	return &secureClient{
		conn: conn, defs: weftv1.NewWorkflowDefinitionServiceClient(conn),
		exec: weftv1.NewWorkflowExecutionServiceClient(conn), state: weftv1.NewWorkflowStateServiceClient(conn),
		steps:    weftv1.NewStepExecutionServiceClient(conn),
		registry: weftv1.NewServiceRegistryServiceClient(conn),
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

// TestServeSecurity runs weft serve with TLS, client certificates and
// bearer tokens, and checks each refusal of the issue: no credentials, a
// wrong certificate, an expired or unknown token, a reader cancelling,
// one service reporting another's step, and a token of another attempt;
// each refused and nothing changed. The right callers then get through.
func TestServeSecurity(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := testca.New(t, "weft test CA"), testca.New(t, "rogue CA")
	serverCert, serverKey := ca.Issue(t, "weft", true)
	resizeCert, resizeKey := ca.Issue(t, "resize-svc", false)
	rogueCert, rogueKey := rogue.Issue(t, "resize-svc", false)

	identities := "identities:\n" +
		"  - {name: resize-svc, roles: [worker], services: [resize]}\n" +
		"  - {name: thumb-svc, roles: [worker], services: [thumb], token_sha256: " + server.HashToken("thumb-token") + "}\n" +
		"  - {name: admin, roles: [admin, operator, reader], token_sha256: " + server.HashToken("admin-token") + "}\n" +
		"  - {name: bob, roles: [reader], token_sha256: " + server.HashToken("reader-token") + "}\n" +
		"  - {name: old, roles: [admin], token_sha256: " + server.HashToken("old-token") +
		", expires: 2020-01-01T00:00:00Z}\n"
	p := startServeArgs(t,
		"--tls-cert", write(t, dir, "server.pem", serverCert), "--tls-key", write(t, dir, "server.key", serverKey),
		"--client-ca", write(t, dir, "ca.pem", ca.PEM), "--identities", write(t, dir, "ids.yaml", []byte(identities)))
	ctx := p.ctx(t)

	admin := dialSecure(t, p.addr, ca, nil, nil, "admin-token")
	_, err := admin.defs.RegisterDefinition(ctx, &weftv1.RegisterDefinitionRequest{
		Source: "name: img\nversion: 1\nsteps:\n  - {id: resize, type: task, service: resize, action: run}\n",
	})
	if err != nil {
		t.Fatalf("admin registering: %v", err)
	}
	started, err := admin.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{Definition: "img"})
	if err != nil {
		t.Fatalf("admin starting: %v", err)
	}
	id := started.GetInstance().GetId()
	get := &weftv1.GetInstanceRequest{InstanceId: id}

	anonymous := dialSecure(t, p.addr, ca, nil, nil, "")
	_, err = anonymous.state.GetInstance(ctx, get)
	wantCode(t, "no credentials", err, codes.Unauthenticated)
	if _, err := healthpb.NewHealthClient(anonymous.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health without credentials: %v", err)
	}
	_, err = dialSecure(t, p.addr, ca, rogueCert, rogueKey, "").state.GetInstance(ctx, get)
	wantCode(t, "a certificate of another CA", err, codes.Unauthenticated)
	_, err = dialSecure(t, p.addr, ca, nil, nil, "old-token").state.GetInstance(ctx, get)
	wantCode(t, "an expired token", err, codes.Unauthenticated)
	_, err = dialSecure(t, p.addr, ca, nil, nil, "made-up").state.GetInstance(ctx, get)
	wantCode(t, "an unknown token", err, codes.Unauthenticated)

	reader := dialSecure(t, p.addr, ca, nil, nil, "reader-token")
	_, err = reader.exec.CancelInstance(ctx, &weftv1.CancelInstanceRequest{InstanceId: id})
	wantCode(t, "a reader cancelling", err, codes.PermissionDenied)
	for range 5 {
		// The same refusal again within a minute is logged, not audited.
		_, err = reader.exec.CancelInstance(ctx, &weftv1.CancelInstanceRequest{InstanceId: id})
		wantCode(t, "a reader cancelling again", err, codes.PermissionDenied)
	}

	// Only an admin changes the registry; a reader reads it.
	pull := &weftv1.Service{Name: "extra", Mode: weftv1.ServiceMode_SERVICE_MODE_PULL}
	_, err = reader.registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: pull})
	wantCode(t, "a reader registering a service", err, codes.PermissionDenied)
	_, err = admin.registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: pull})
	if err != nil {
		t.Fatalf("admin registering a service: %v", err)
	}
	_, err = reader.registry.DeleteService(ctx, &weftv1.DeleteServiceRequest{Name: "extra"})
	wantCode(t, "a reader deleting a service", err, codes.PermissionDenied)
	if _, err := reader.registry.GetService(ctx, &weftv1.GetServiceRequest{Name: "extra"}); err != nil {
		t.Fatalf("reader getting a service: %v", err)
	}

	resize := dialSecure(t, p.addr, ca, resizeCert, resizeKey, "")
	_, err = resize.registry.ListServices(ctx, &weftv1.ListServicesRequest{})
	wantCode(t, "a worker listing services", err, codes.PermissionDenied)
	polled, err := resize.steps.PollTasks(ctx, &weftv1.PollTasksRequest{
		Service: "resize", Worker: "w1", Wait: durationpb.New(10 * time.Second),
	})
	if err != nil || len(polled.GetTasks()) != 1 {
		t.Fatalf("resize-svc polling its service: %v, %v", polled, err)
	}
	task := polled.GetTasks()[0]
	ref := &weftv1.TaskRef{InstanceId: id, PointerId: task.GetPointerId(), Attempt: task.GetAttempt(),
		TaskToken: task.GetTaskToken()}

	thumb := dialSecure(t, p.addr, ca, nil, nil, "thumb-token")
	_, err = thumb.steps.PollTasks(ctx, &weftv1.PollTasksRequest{Service: "resize", Worker: "w2"})
	wantCode(t, "thumb-svc polling resize", err, codes.PermissionDenied)
	_, err = thumb.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: "1"})
	wantCode(t, "thumb-svc completing resize's step", err, codes.PermissionDenied)
	wrongToken := &weftv1.TaskRef{InstanceId: id, PointerId: ref.GetPointerId(), Attempt: ref.GetAttempt(),
		TaskToken: "token-of-another-attempt"}
	_, err = resize.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: wrongToken, Output: "1"})
	wantCode(t, "resize-svc with another attempt's token", err, codes.PermissionDenied)
	_, err = admin.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: "1"})
	wantCode(t, "an admin completing a step", err, codes.PermissionDenied)

	got, err := reader.state.GetInstance(ctx, get)
	if err != nil {
		t.Fatalf("reader reading: %v", err)
	}
	step, _ := stepOf(got, "resize")
	if got.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING ||
		step.GetStatus() != weftv1.StepStatus_STEP_STATUS_RUNNING || step.GetOutput() != "" {
		t.Fatalf("after the refusals: instance %v, step %v; want both running, no output",
			got.GetInstance().GetStatus(), step)
	}

	audit, err := reader.state.ListAuditEvents(ctx, &weftv1.ListAuditEventsRequest{InstanceId: id})
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, ev := range audit.GetEvents() {
		if ev.GetType() == "request_refused" {
			refused = append(refused, decodeString(t, ev.GetData())["identity"])
		}
	}
	if want := []string{"bob", "thumb-svc", "resize-svc", "admin"}; !slices.Equal(refused, want) {
		t.Fatalf("refusals audited for %v, want %v", refused, want)
	}

	if _, err := resize.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: `"done"`}); err != nil {
		t.Fatalf("resize-svc completing its step: %v", err)
	}
	waitFor(t, "the instance to complete", func() bool {
		got, err := reader.state.GetInstance(ctx, get)
		return err == nil && got.GetInstance().GetStatus() == weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED
	})
}

// TestServeSecurityRefusesInsecureSetups checks that serve does not start
// with TLS but nobody to authenticate, or with half a key pair.
func TestServeSecurityRefusesInsecureSetups(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, "weft test CA")
	cert, key := ca.Issue(t, "weft", true)
	certPath, keyPath := write(t, dir, "s.pem", cert), write(t, dir, "s.key", key)
	for _, args := range [][]string{
		{"--tls-cert", certPath, "--tls-key", keyPath},
		{"--tls-cert", certPath},
		{"--client-ca", certPath, "--insecure"},
	} {
		out, err := execServe(t, args...)
		if err == nil {
			t.Fatalf("serve %v started; want a refusal: %s", args, out)
		}
	}
}

func execServe(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"serve", "--listen", "127.0.0.1:0", "--database",
		filepath.Join(t.TempDir(), "x.db")}, args...)
	out, err := exec.Command(weftBinary, full...).CombinedOutput()

	return string(out), err
}

func decodeString(t *testing.T, raw string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("decoding %q: %v", raw, err)
	}

	return m
}
