package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/server"
	"github.com/weftworks/weft/store/sqlite"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testServer runs the engine and the gRPC API in this process on a
// loopback port, with Go handlers for the CLI tests' tasks.
func testServer(t *testing.T, handlers map[string]engine.HandlerFunc) string {
	t.Helper()
	return testServerAuth(t, handlers, nil)
}

// testServerAuth is testServer with authentication by auth.
func testServerAuth(t *testing.T, handlers map[string]engine.HandlerFunc, auth *server.Auth) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(st, engine.Options{
		PollInterval: 50 * time.Millisecond, CancelGrace: 10 * time.Second, Logger: quiet,
	})
	for action, h := range handlers {
		eng.Handle("svc", action, h)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}

	api := server.New(eng, server.Options{PollInterval: 50 * time.Millisecond, Logger: quiet, Auth: auth})
	g := grpc.NewServer(api.ServerOptions()...)
	api.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() {
		api.Stop()
		g.Stop()
		eng.Stop()
		cancel()
		st.Close()
	})

	return lis.Addr().String()
}

// weft runs the command in process and returns its output and exit code.
func weft(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"--address", addr}, args...), &stdout, &stderr)

	return stdout.String(), stderr.String(), code
}

// mustWeft runs the command and fails the test unless it exits 0.
func mustWeft(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, errOut, code := weft(t, addr, args...)
	if code != 0 {
		t.Fatalf("weft %v exited %d: %s%s", args, code, errOut, out)
	}

	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

func addHandler(_ context.Context, task engine.Task) (any, error) {
	var in struct{ Value, Add int }
	if err := json.Unmarshal(task.Input, &in); err != nil {
		return nil, err
	}

	return in.Value + in.Add, nil
}

// TestCLIBasicRun is seed scenario 1 through the CLI: register, start
// --wait, then read the instance, its events and the lists as tables and
// as JSON.
func TestCLIBasicRun(t *testing.T) {
	addr := testServer(t, map[string]engine.HandlerFunc{"add": addHandler})
	def := writeFile(t, "basic.yaml", `
name: basic
version: 1
description: three additions
steps:
  - {id: a, type: task, service: svc, action: add, input: {value: "data.start", add: 1}, output: a}
  - {id: b, type: task, service: svc, action: add, input: {value: "data.a", add: 10}, output: b}
  - {id: c, type: task, service: svc, action: add, input: {value: "steps.b.output", add: 100}, output: c}
`)

	out := mustWeft(t, addr, "definition", "register", def)
	if !strings.Contains(out, "basic") || !strings.Contains(out, "active") {
		t.Fatalf("register printed %q, want a row for basic v1, active", out)
	}
	out = mustWeft(t, addr, "definition", "validate", def)
	if !strings.Contains(out, "valid, basic v1") {
		t.Fatalf("validate printed %q", out)
	}

	out = mustWeft(t, addr, "start", "basic", "--input", `{"start": 5}`, "--wait", "-o", "json")
	var got struct {
		Instance struct{ ID, Status, Output string }
		Steps    []struct {
			StepID string `json:"step_id"`
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("start --wait -o json printed %q: %v", out, err)
	}
	if got.Instance.Status != "INSTANCE_STATUS_COMPLETED" ||
		!strings.Contains(got.Instance.Output, `"c":116`) || len(got.Steps) != 4 {
		t.Fatalf("start --wait = %+v, want completed with c=116 and four steps", got)
	}

	id := got.Instance.ID
	out = mustWeft(t, addr, "instance", "get", id)
	for _, want := range []string{id, "completed", "svc.add", "116"} {
		if !strings.Contains(out, want) {
			t.Fatalf("instance get printed\n%s\nwithout %q", out, want)
		}
	}
	out = mustWeft(t, addr, "instance", "list", "--status", "completed", "--definition", "basic")
	if !strings.Contains(out, id) {
		t.Fatalf("instance list printed\n%s\nwithout %s", out, id)
	}
	out = mustWeft(t, addr, "events", "list", id)
	if !strings.Contains(out, "instance_completed") || strings.Count(out, "step_completed") != 3 {
		t.Fatalf("events list printed\n%s", out)
	}
	out = mustWeft(t, addr, "events", "follow", id)
	if lines := strings.Count(out, "\n"); lines < 10 || !strings.Contains(out, "instance_completed") {
		t.Fatalf("events follow printed\n%s", out)
	}

	mustWeft(t, addr, "definition", "deprecate", "basic", "1")
	_, errOut, code := weft(t, addr, "start", "basic")
	if code == 0 || !strings.Contains(errOut, "FailedPrecondition") || !strings.Contains(errOut, "deprecated") {
		t.Fatalf("start of a deprecated version: exit %d, %q", code, errOut)
	}
	_, errOut, code = weft(t, addr, "definition", "delete", "basic", "1")
	if code == 0 || !strings.Contains(errOut, "in use") {
		t.Fatalf("delete of a version with a stored instance: exit %d, %q", code, errOut)
	}
	unused := filepath.Join(t.TempDir(), "unused.yaml")
	src := "name: unused\nversion: 1\nsteps:\n  - {id: a, type: task, service: svc, action: add}\n"
	if err := os.WriteFile(unused, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	mustWeft(t, addr, "definition", "register", unused)
	mustWeft(t, addr, "definition", "delete", "unused", "1")
	out = mustWeft(t, addr, "definition", "list")
	if strings.Contains(out, "unused") || !strings.Contains(out, "basic") {
		t.Fatalf("definition list after delete printed\n%s", out)
	}
}

// TestCLIRetry is seed scenario 3 through the CLI: start --wait on an
// always-failing step exits non-zero after exactly four attempts.
func TestCLIRetry(t *testing.T) {
	var calls atomic.Int32
	addr := testServer(t, map[string]engine.HandlerFunc{
		"fail": func(context.Context, engine.Task) (any, error) {
			n := calls.Add(1)
			return nil, engine.Retryable("broken", fmt.Sprintf("failure %d", n))
		},
	})
	def := writeFile(t, "flaky.yaml", `
name: flaky
version: 1
steps:
  - {id: boom, type: task, service: svc, action: fail, retry: {max_attempts: 4, initial_interval: 10ms}}
`)
	mustWeft(t, addr, "definition", "register", def)

	out, errOut, code := weft(t, addr, "start", "flaky", "--wait")
	if code == 0 || !strings.Contains(errOut, "ended failed") || !strings.Contains(errOut, "failure 4") {
		t.Fatalf("start --wait of a failing run: exit %d, %q", code, errOut)
	}
	if calls.Load() != 4 || !strings.Contains(out, "failed") {
		t.Fatalf("the step ran %d times, want 4; printed\n%s", calls.Load(), out)
	}
}

// TestCLICancel is seed scenario 4 through the CLI: cancel while a step
// runs; it finishes and is recorded, the cleanup runs, nothing else.
func TestCLICancel(t *testing.T) {
	started := make(chan struct{})
	var nextRan atomic.Bool
	addr := testServer(t, map[string]engine.HandlerFunc{
		"slow": func(ctx context.Context, _ engine.Task) (any, error) {
			close(started)
			<-ctx.Done()
			return "finished anyway", nil
		},
		"next":    func(context.Context, engine.Task) (any, error) { nextRan.Store(true); return nil, nil },
		"cleanup": func(context.Context, engine.Task) (any, error) { return true, nil },
	})
	def := writeFile(t, "cancellable.yaml", `
name: cancellable
version: 1
steps:
  - {id: slow, type: task, service: svc, action: slow, output: slow}
  - {id: next, type: task, service: svc, action: next}
on_cancel:
  - {id: cleanup, type: task, service: svc, action: cleanup, output: cleaned}
`)
	mustWeft(t, addr, "definition", "register", def)

	var inst struct{ Instance struct{ ID string } }
	if err := json.Unmarshal([]byte(mustWeft(t, addr, "start", "cancellable", "-o", "json")), &inst); err != nil {
		t.Fatal(err)
	}
	id := inst.Instance.ID
	<-started
	mustWeft(t, addr, "instance", "cancel", id, "--reason", "user asked")
	mustWeft(t, addr, "events", "follow", id)

	out := mustWeft(t, addr, "instance", "get", id)
	for _, want := range []string{"cancelled", `"finished anyway"`, `"cleaned":true`} {
		if !strings.Contains(out, want) {
			t.Fatalf("instance get after cancel printed\n%s\nwithout %q", out, want)
		}
	}
	if nextRan.Load() || strings.Contains(out, " next ") {
		t.Fatalf("a step started after the cancel:\n%s", out)
	}
}

// TestCLIErrors checks that each kind of mistake exits non-zero with a
// message that says what is wrong.
func TestCLIErrors(t *testing.T) {
	addr := testServer(t, nil)
	bad := writeFile(t, "bad.yaml", "name: bad\nversion: 1\nsteps:\n  - {id: a, type: teleport}\n")

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"instance", "get", "nope"}, "NotFound: instance_id"},
		{[]string{"start", "nope"}, "NotFound: definition"},
		{[]string{"start", "x", "--input", "{"}, "--input: malformed JSON"},
		{[]string{"definition", "register", bad}, "InvalidArgument"},
		{[]string{"definition", "validate", bad}, "1 faults"},
		{[]string{"definition", "delete", "x", "one"}, "VERSION"},
		{[]string{"instance", "list", "--status", "sleepy"}, "--status"},
		{[]string{"instance", "pause", "nope"}, "NotFound: instance_id"},
		{[]string{"publish", "e", "--data", "{"}, "--data: malformed JSON"},
		{[]string{"definition", "list", "-o", "yaml"}, "--output"},
		{[]string{"definition", "register", filepath.Join(t.TempDir(), "missing.yaml")}, "reading definition"},
		{[]string{"token", "create", "x", "--role", "bogus"}, `unknown role "bogus"`},
	}
	for _, c := range cases {
		_, errOut, code := weft(t, addr, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) || !strings.HasPrefix(errOut, "weft: ") {
			t.Errorf("weft %v: exit %d, %q; want non-zero and a message with %q", c.args, code, errOut, c.want)
		}
	}

	_, errOut, code := weft(t, "127.0.0.1:1", "definition", "list", "--timeout", "2s")
	if code == 0 || !strings.Contains(errOut, "Unavailable") {
		t.Errorf("weft against no server: exit %d, %q", code, errOut)
	}
	out := mustWeft(t, addr, "publish", "paid", "--key", "order-1", "--data", `{"amount": 3}`)
	if !strings.HasPrefix(out, "published event ") {
		t.Errorf("publish printed %q", out)
	}
}

// TestCLIToken checks that --token and WEFT_TOKEN reach the server, and
// that refusals exit non-zero with their code.
func TestCLIToken(t *testing.T) {
	auth, err := server.NewAuth([]server.Identity{
		{Name: "bob", Roles: []server.Role{server.RoleReader}, TokenSHA256: server.HashToken("bob-token")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := testServerAuth(t, nil, auth)
	def := writeFile(t, "d.yaml", "name: d\nversion: 1\nsteps:\n  - {id: a, type: task, service: s, action: x}\n")

	mustWeft(t, addr, "definition", "list", "--token", "bob-token")
	t.Setenv("WEFT_TOKEN", "bob-token")
	mustWeft(t, addr, "definition", "list")
	_, errOut, code := weft(t, addr, "definition", "register", def)
	if code == 0 || !strings.Contains(errOut, "PermissionDenied") {
		t.Fatalf("a reader registering: exit %d, %q", code, errOut)
	}
	t.Setenv("WEFT_TOKEN", "")
	_, errOut, code = weft(t, addr, "definition", "list")
	if code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("no token: exit %d, %q", code, errOut)
	}
}

// TestCLIParallelJoin is seed scenario 2 through the CLI: both branches
// run at once, and the join runs once, after both.
func TestCLIParallelJoin(t *testing.T) {
	leftIn, rightIn := make(chan struct{}), make(chan struct{})
	var joins atomic.Int32
	addr := testServer(t, map[string]engine.HandlerFunc{
		"left": func(context.Context, engine.Task) (any, error) {
			close(leftIn)
			<-rightIn
			return "L", nil
		},
		"right": func(context.Context, engine.Task) (any, error) {
			close(rightIn)
			<-leftIn
			return "R", nil
		},
		"join": func(_ context.Context, task engine.Task) (any, error) {
			joins.Add(1)
			var in map[string]string
			_ = json.Unmarshal(task.Input, &in)
			return in["l"] + in["r"], nil
		},
	})
	def := writeFile(t, "fanout.yaml", `
name: fanout
version: 1
steps:
  - id: split
    type: parallel
    branches:
      - steps:
          - {id: left, type: task, service: svc, action: left, output: left}
      - steps:
          - {id: right, type: task, service: svc, action: right, output: right}
  - {id: join, type: task, service: svc, action: join, input: {l: "data.left", r: "data.right"}, output: joined}
`)
	mustWeft(t, addr, "definition", "register", def)

	out := mustWeft(t, addr, "start", "fanout", "--wait")
	if !strings.Contains(out, `"joined":"LR"`) || joins.Load() != 1 {
		t.Fatalf("start --wait printed\n%s\nwith %d joins; want joined LR, one join", out, joins.Load())
	}
}
