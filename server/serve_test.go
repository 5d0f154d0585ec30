package server_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// TestServeGrpcurl lists the services through server reflection with
// grpcurl and starts a run with it, as docs/api.md shows.
func TestServeGrpcurl(t *testing.T) {
	p := startServe(t)

	out := grpcurl(t, "-plaintext", p.addr, "list")
	want := []string{
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
		"weft.v1.StepExecutionService", "weft.v1.WorkflowDefinitionService",
		"weft.v1.WorkflowExecutionService", "weft.v1.WorkflowStateService",
		"weft.v1.UserTaskService",
	}
	for _, name := range want {
		if !slices.Contains(strings.Fields(out), name) {
			t.Fatalf("grpcurl list = %q, want %s in it", out, name)
		}
	}

	src, _ := json.Marshal(map[string]string{
		"source": "name: hello\nversion: 1\nsteps:\n  - {id: greet, type: task, service: greeter, action: greet}\n",
	})
	grpcurl(t, "-plaintext", "-d", string(src), p.addr, "weft.v1.WorkflowDefinitionService/RegisterDefinition")
	out = grpcurl(t, "-plaintext", "-d", `{"definition": "hello", "input": "{\"who\": \"world\"}"}`,
		p.addr, "weft.v1.WorkflowExecutionService/StartInstance")

	var resp struct {
		Instance struct{ ID, Status string }
		Created  bool
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("reading grpcurl output %q: %v", out, err)
	}
	if resp.Instance.ID == "" || resp.Instance.Status != "INSTANCE_STATUS_RUNNING" || !resp.Created {
		t.Fatalf("StartInstance through grpcurl = %s, want a created, running instance", out)
	}
}

func grpcurl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "grpcurl"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
	}

	return string(out)
}

// TestServeHealth checks the standard health service answers SERVING for
// the server and each weft service.
func TestServeHealth(t *testing.T) {
	p := startServe(t)
	hc := healthpb.NewHealthClient(p.conn)
	for _, name := range []string{"", "weft.v1.WorkflowExecutionService", "weft.v1.StepExecutionService"} {
		resp, err := hc.Check(p.ctx(t), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q = %v, %v; want SERVING", name, resp, err)
		}
	}
}

// TestServeRefusals checks that serve refuses to start without
// --insecure, and on a database another serve holds.
func TestServeRefusals(t *testing.T) {
	out, err := exec.Command(weftBinary, "serve", "--listen", "127.0.0.1:0",
		"--database", filepath.Join(t.TempDir(), "x.db")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("serve without --insecure: %v, %s; want a refusal naming --insecure", err, out)
	}

	p := startServe(t)
	out, err = exec.Command(weftBinary, "serve", "--insecure", "--listen", "127.0.0.1:0",
		"--database", p.db).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("second serve on one database: %v, %s; want a lock refusal", err, out)
	}
}

// TestServeConfigSources checks that the environment and the config file
// reach serve, and that the flag wins over both.
func TestServeConfigSources(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "weft.yaml")
	if err := os.WriteFile(config, []byte("log-format: json\nlisten: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(weftBinary, "serve", "--insecure", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "WEFT_CONFIG="+config, "WEFT_DATABASE="+filepath.Join(dir, "env.db"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go p.readLogs(stderr, addrc)
	defer p.stop(t)

	select {
	case addr := <-addrc:
		if strings.HasSuffix(addr, ":1") {
			t.Fatalf("serving on %s: the config file beat the flag", addr)
		}
	case <-p.done:
		t.Fatalf("serve exited: %s", p.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("no JSON serving line: the config file's log-format was not used:\n%s", p.logText())
	}
	if _, err := os.Stat(filepath.Join(dir, "env.db")); err != nil {
		t.Fatalf("WEFT_DATABASE was not used: %v", err)
	}
}

// TestServeLifecycleFeed follows the lifecycle feed of every instance and
// resumes it from a position, on SQLite and on PostgreSQL.
func TestServeLifecycleFeed(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { checkLifecycleFeed(t, startServe(t)) })
	t.Run("postgres", func(t *testing.T) { checkLifecycleFeed(t, newCluster(t).node(t, "node-1", "")) })
}

func checkLifecycleFeed(t *testing.T, p *serveProc) {
	p.register(t, "name: idle\nversion: 1\nsteps:\n  - {id: a, type: task, service: nobody, action: x}\n")
	first, second := p.start(t, "idle", `{}`), p.start(t, "idle", `{}`)

	ctx, cancel := context.WithCancel(p.ctx(t))
	defer cancel()
	stream, err := p.state.WatchLifecycle(ctx, &weftv1.WatchLifecycleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*weftv1.WatchLifecycleResponse
	for len(got) < 4 {
		resp, err := stream.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("feed ended after %d rows: %v", len(got), err)
		}
		got = append(got, resp)
	}
	if got[0].GetEvent().GetInstanceId() != first || got[0].GetEvent().GetType() != "instance_started" {
		t.Fatalf("first feed row = %v, want %s started", got[0], first)
	}
	var seen []string
	for i, r := range got {
		if i > 0 && r.GetPosition() <= got[i-1].GetPosition() {
			t.Fatalf("positions do not grow: %d after %d", r.GetPosition(), got[i-1].GetPosition())
		}
		seen = append(seen, r.GetEvent().GetInstanceId())
	}
	if !slices.Contains(seen, second) {
		t.Fatalf("feed rows %v lack the second instance %s", seen, second)
	}

	resumed, err := p.state.WatchLifecycle(ctx, &weftv1.WatchLifecycleRequest{AfterPosition: got[1].GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	next, err := resumed.Recv()
	if err != nil || next.GetPosition() != got[2].GetPosition() {
		t.Fatalf("resumed feed starts at %v, %v; want position %d", next, err, got[2].GetPosition())
	}
}
