package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/worker"
)

// This file runs several `weft serve` processes on one PostgreSQL schema
// and checks what design.md promises across them: every completion
// applied once, audit rows gap-free, and a node whose lease expired
// writing nothing.

// nodeLeaseTTL is the instance lease of the node tests: short, so that a
// killed or stopped node's instances move on within the test.
const nodeLeaseTTL = "1s"

// cluster is a PostgreSQL schema and the serve nodes on it; with a
// proxy the nodes reach the database through it.
type cluster struct {
	url, schema string
	proxy       *pgtest.Proxy
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	url, schema := pgtest.Schema(t)

	return &cluster{url: url, schema: schema}
}

// database is the --database URL of the cluster's schema.
func (c *cluster) database(t *testing.T) string {
	url := c.url
	if c.proxy != nil {
		url = c.proxy.Via(t, url)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}

	return url + sep + "search_path=" + c.schema
}

// node starts a serve node with extra flags; listen "" takes a free
// port.
func (c *cluster) node(t *testing.T, id, listen string, extra ...string) *serveProc {
	t.Helper()
	args := []string{"--database", c.database(t), "--node-id", id,
		"--lease-ttl", nodeLeaseTTL, "--task-claim-ttl", "5s"}
	if listen != "" {
		args = append(args, "--listen", listen)
	}

	return startServe(t, append(args, extra...)...)
}

// freeAddr is a loopback address with a port nothing listens on, for a
// node that restarts on the same address.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()

	return lis.Addr().String()
}

// kill ends the process with SIGKILL and reaps it.
func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	p.conn.Close()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing weft serve: %v", err)
	}
	<-p.done
	_ = p.cmd.Wait()
}

// signal sends sig to the process.
func (p *serveProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
}

// runs counts handler runs per instance, step and attempt.
type runs struct {
	mu sync.Mutex
	n  map[string]int
}

func runKey(inst, step string, attempt int) string {
	return fmt.Sprintf("%s/%s/%d", inst, step, attempt)
}

func (r *runs) add(task worker.Task) {
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[runKey(task.InstanceID, task.StepID, task.Attempt)]++
}

func (r *runs) count(inst, step string, attempt int) int {
	r.mu.Lock()
	defer r.mu.Unlock()

	return r.n[runKey(inst, step, attempt)]
}

// total returns the number of runs and of distinct attempts run.
func (r *runs) total() (runs, attempts int) {
	r.mu.Lock()
	defer r.mu.Unlock()

	for _, n := range r.n {
		runs += n
	}

	return runs, len(r.n)
}

// startWorker runs a worker of service "work" against addr until the
// test ends.
func startWorker(t *testing.T, addr, name string, handlers map[string]worker.HandlerFunc) {
	t.Helper()
	w, err := worker.New(worker.Options{
		Address: addr, Service: "work", Name: name, Insecure: true, Concurrency: 16,
		PollWait: time.Second, Grace: 10 * time.Second, RetryBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("making worker %s: %v", name, err)
	}
	for action, h := range handlers {
		w.Handle(action, h)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker %s: %v", name, err)
		}
		w.Close()
	})
}

// startMany starts n instances of def, spread over the nodes, a few at
// a time, and returns their ids.
func startMany(t *testing.T, n int, def string, nodes ...*serveProc) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	const starters = 4
	for g := range starters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += starters {
				p := nodes[i%len(nodes)]
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				resp, err := p.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{
					Definition: def, Input: fmt.Sprintf(`{"i":%d}`, i),
				})
				cancel()
				if err != nil {
					t.Errorf("starting instance %d: %v", i, err)
					return
				}
				ids[i] = resp.GetInstance().GetId()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	return ids
}

// countStatus counts the instances in status.
func countStatus(t *testing.T, p *serveProc, status weftv1.InstanceStatus) int {
	t.Helper()
	n, token := 0, ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := p.state.ListInstances(ctx, &weftv1.ListInstancesRequest{
			Statuses: []weftv1.InstanceStatus{status}, PageSize: 1000, PageToken: token,
		})
		cancel()
		if err != nil {
			t.Fatalf("listing instances: %v", err)
		}
		n += len(resp.GetInstances())
		if token = resp.GetNextPageToken(); token == "" {
			return n
		}
	}
}

// waitCompleted waits until at least n instances completed; an instance
// that failed ends the test.
func waitCompleted(t *testing.T, p *serveProc, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if failed := countStatus(t, p, weftv1.InstanceStatus_INSTANCE_STATUS_FAILED); failed > 0 {
			t.Fatalf("%d instances failed", failed)
		}
		done := countStatus(t, p, weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED)
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d instances completed in 5 minutes", done, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// audit lists an instance's audit rows and checks that their seqs run
// from 1 without gaps.
func audit(t *testing.T, p *serveProc, id string) []*weftv1.AuditEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.state.ListAuditEvents(ctx, &weftv1.ListAuditEventsRequest{
		InstanceId: id, Limit: 10000,
	})
	if err != nil {
		t.Fatalf("listing audit of %s: %v", id, err)
	}

	evs := resp.GetEvents()
	for i, ev := range evs {
		if ev.GetSeq() != int64(i+1) {
			t.Fatalf("instance %s: audit row %d has seq %d: gap or disorder", id, i+1, ev.GetSeq())
		}
	}

	return evs
}

// completedOnce checks that step has exactly one step_completed row and
// no step_dispatched row after it, and returns the completing attempt.
func completedOnce(t *testing.T, id, step string, evs []*weftv1.AuditEvent) int {
	t.Helper()
	var done []*weftv1.AuditEvent
	for _, ev := range evs {
		if ev.GetStepId() != step {
			continue
		}
		switch ev.GetType() {
		case "step_completed":
			done = append(done, ev)
		case "step_dispatched":
			if len(done) > 0 {
				t.Fatalf("instance %s: %s dispatched again (seq %d) after its completion (seq %d)",
					id, step, ev.GetSeq(), done[0].GetSeq())
			}
		}
	}
	if len(done) != 1 {
		t.Fatalf("instance %s: %s has %d step_completed rows, want 1", id, step, len(done))
	}

	return int(done[0].GetAttempt())
}

// rowCounts returns the number of audit rows of each instance.
func rowCounts(t *testing.T, p *serveProc, ids []string) map[string]int {
	t.Helper()
	counts := make(map[string]int, len(ids))
	for _, id := range ids {
		counts[id] = len(audit(t, p, id))
	}

	return counts
}

// TestServeRefusesBadLeaseTTL checks that a lease TTL that is not
// positive stops serve at start with an error naming the flag.
func TestServeRefusesBadLeaseTTL(t *testing.T) {
	for _, ttl := range []string{"0s", "-1s"} {
		out, err := execServe(t, "--insecure", "--lease-ttl", ttl)
		if err == nil || !strings.Contains(out, "--lease-ttl") {
			t.Fatalf("serve --lease-ttl %s: err %v, output %q; want a refusal naming --lease-ttl",
				ttl, err, out)
		}
	}
}
