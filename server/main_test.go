package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// weftBinary is the weft command built once for every test of the
// package; each test runs its own `weft serve` process from it.
var weftBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making a temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	weftBinary = filepath.Join(dir, "weft")
	build := exec.Command("go", "build", "-o", weftBinary, "../cmd/weft")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building weft:", err)
		return 1
	}

	return m.Run()
}

// serveProc is a `weft serve` process on a loopback port.
type serveProc struct {
	cmd  *exec.Cmd
	addr string
	db   string
	conn *grpc.ClientConn

	defs  weftv1.WorkflowDefinitionServiceClient
	exec  weftv1.WorkflowExecutionServiceClient
	state weftv1.WorkflowStateServiceClient
	steps weftv1.StepExecutionServiceClient
	// registry is the ServiceRegistryService client.
	registry weftv1.ServiceRegistryServiceClient

	mu   sync.Mutex
	logs []string
	done chan struct{}
}

// startServe runs `weft serve --insecure` on a fresh database with a free
// port, waits until it serves, and stops it with SIGTERM when the test
// ends.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	return startServeArgs(t, append([]string{"--insecure"}, args...)...)
}

// startServeArgs is startServe without the implied --insecure; the
// clients it dials are plaintext.
func startServeArgs(t *testing.T, args ...string) *serveProc {
	t.Helper()
	db := filepath.Join(t.TempDir(), "weft.db")
	base := []string{"serve", "--listen", "127.0.0.1:0", "--database", db,
		"--log-format", "json", "--poll-interval", "50ms", "--cancel-grace", "10s",
		"--config", servicesConfig(t)}
	p := &serveProc{db: db, done: make(chan struct{})}
	p.cmd = exec.Command(weftBinary, append(base, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting weft serve: %v", err)
	}

	addrc := make(chan string, 1)
	go p.readLogs(stderr, addrc)
	t.Cleanup(func() { p.stop(t) })

	select {
	case p.addr = <-addrc:
	case <-p.done:
		t.Fatalf("weft serve exited before serving:\n%s", p.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("weft serve did not start serving:\n%s", p.logText())
	}

	p.conn, err = grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialling %s: %v", p.addr, err)
	}
	p.defs = weftv1.NewWorkflowDefinitionServiceClient(p.conn)
	p.exec = weftv1.NewWorkflowExecutionServiceClient(p.conn)
	p.state = weftv1.NewWorkflowStateServiceClient(p.conn)
	p.steps = weftv1.NewStepExecutionServiceClient(p.conn)
	p.registry = weftv1.NewServiceRegistryServiceClient(p.conn)

	return p
}

// testServices are the services this package's definitions name; every
// weft serve of a test registers them (pull mode) from its config file,
// since a definition may name only known services.
var testServices = []string{"greeter", "idle", "math", "nobody", "resize", "s", "svc", "work"}

// servicesConfig writes a config file that registers testServices.
func servicesConfig(t *testing.T) string {
	t.Helper()

	var b strings.Builder
	b.WriteString("services:\n")
	for _, name := range testServices {
		fmt.Fprintf(&b, "  - {name: %s, mode: pull}\n", name)
	}

	path := filepath.Join(t.TempDir(), "weft.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

// readLogs keeps the process's log lines and reports the address of its
// "serving" line.
func (p *serveProc) readLogs(r io.Reader, addrc chan<- string) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs = append(p.logs, line)
		p.mu.Unlock()

		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			addrc <- rec.Addr
		}
	}
}

func (p *serveProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()

	return strings.Join(p.logs, "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProc) stop(t *testing.T) {
	if p.conn != nil {
		p.conn.Close()
	}
	if p.cmd.ProcessState != nil {
		return
	}

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("weft serve did not stop on SIGTERM:\n%s", p.logText())
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("weft serve exited with %v:\n%s", err, p.logText())
	}
}

func (p *serveProc) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	return ctx
}

func (p *serveProc) register(t *testing.T, src string) {
	t.Helper()
	_, err := p.defs.RegisterDefinition(p.ctx(t), &weftv1.RegisterDefinitionRequest{Source: src})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
}

func (p *serveProc) start(t *testing.T, def, input string) string {
	t.Helper()
	resp, err := p.exec.StartInstance(p.ctx(t), &weftv1.StartInstanceRequest{Definition: def, Input: input})
	if err != nil {
		t.Fatalf("starting %s: %v", def, err)
	}

	return resp.GetInstance().GetId()
}

// wait follows the instance's watch stream until it ends, and returns the
// instance and its audit rows.
func (p *serveProc) wait(t *testing.T, id string) (*weftv1.GetInstanceResponse, []*weftv1.AuditEvent) {
	t.Helper()
	ctx := p.ctx(t)
	stream, err := p.state.WatchInstance(ctx, &weftv1.WatchInstanceRequest{InstanceId: id})
	if err != nil {
		t.Fatalf("watching %s: %v", id, err)
	}

	var evs []*weftv1.AuditEvent
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("watching %s: %v", id, err)
		}
		evs = append(evs, resp.GetEvent())
	}

	got, err := p.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
	if err != nil {
		t.Fatalf("getting %s: %v", id, err)
	}

	return got, evs
}
