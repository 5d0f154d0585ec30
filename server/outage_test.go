package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/worker"
)

// outageCut is how long the outage test keeps the database away.
const outageCut = 10 * time.Second

// maxOutageLines bounds the log lines a node may write while the
// database is away. A loop that backs off writes about eight in ten
// seconds, and each instance in flight when the cut came one or two;
// a loop retrying at the poll interval (50ms here) writes 200 alone.
const maxOutageLines = 100

// TestDatabaseOutage runs the parallel workflow with a retried step on
// two serve nodes that reach PostgreSQL through a proxy, and cuts the
// proxy for ten seconds mid-run. While it is cut, calls that need the
// database are answered UNAVAILABLE before their deadline, and each node
// logs the failure at warn or error level without spinning. Once it is
// restored every instance completes, each step once, with gap-free audit
// trails.
func TestDatabaseOutage(t *testing.T) {
	n := 300
	if raceEnabled {
		n = 120
	}
	c := newCluster(t)
	c.proxy = pgtest.NewProxy(t)
	a := c.node(t, "node-a", "")
	b := c.node(t, "node-b", "")
	a.register(t, fanoutDef)

	// The join of the first few instances waits for the cut, so that the
	// cut finds work in flight however fast the rest goes.
	var r runs
	g := newGate(10)
	handlers := fanoutHandlers(&r)
	ok := handlers["ok"]
	handlers["ok"] = func(ctx context.Context, task worker.Task) (any, error) {
		if task.StepID == "join" {
			g.hold(ctx, task.InstanceID)
		}
		return ok(ctx, task)
	}
	startWorker(t, a.addr, "worker-a", handlers)
	startWorker(t, b.addr, "worker-b", handlers)

	ids := startMany(t, n, "nodes", a, b)
	waitCompleted(t, b, n/3)

	done := countStatus(t, b, weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED)
	linesA, linesB := a.logLines(), b.logLines()
	c.proxy.Cut()
	g.open()
	t.Logf("cut with about %d of %d instances completed", done, n)
	probeOutage(t, ids[0], a, b)
	c.proxy.Restore()

	for _, p := range []struct {
		name string
		proc *serveProc
		from int
	}{{"a", a, linesA}, {"b", b, linesB}} {
		lines := p.proc.logsSince(p.from)
		t.Logf("node %s wrote %d log lines during the cut: %v", p.name, len(lines), byMessage(lines))
		if len(lines) > maxOutageLines {
			t.Errorf("node %s wrote %d log lines during the %v cut, want at most %d:\n%s",
				p.name, len(lines), outageCut, maxOutageLines, joinLines(lines))
		}
		for _, line := range lines {
			if !json.Valid([]byte(line)) {
				t.Errorf("node %s logged a line that is not JSON: %s", p.name, line)
			}
			if strings.Contains(line, `"msg":"instance cannot advance"`) {
				t.Errorf("node %s took the outage for a broken instance: %s", p.name, line)
			}
			if strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("node %s logged the outage as an error, not as unavailability: %s",
					p.name, line)
			}
		}
		if !hasFailureLine(lines) {
			t.Errorf("node %s logged no warn or error line during the cut:\n%s",
				p.name, joinLines(lines))
		}
	}

	restored := time.Now()
	waitCompleted(t, b, n)
	t.Logf("every instance completed %v after the restore", time.Since(restored).Round(time.Millisecond))
	rows := 0
	for _, id := range ids {
		evs := audit(t, a, id)
		rows += len(evs)
		for _, step := range []string{"left", "right", "join"} {
			at := completedOnce(t, id, step, evs)
			if r.count(id, step, at+1) != 0 {
				t.Fatalf("instance %s: %s ran again after its completed attempt %d", id, step, at)
			}
		}
	}
	followFeed(t, a, ids, rows)
}

// followFeed follows node p's lifecycle feed from the start until it
// has had the want audit rows of the instances ids, checking that no
// row comes twice and that positions grow.
func followFeed(t *testing.T, p *serveProc, ids []string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := p.state.WatchLifecycle(ctx, &weftv1.WatchLifecycleRequest{})
	if err != nil {
		t.Fatalf("watching the lifecycle feed: %v", err)
	}

	ours := map[string]bool{}
	for _, id := range ids {
		ours[id] = true
	}
	seen := map[string]bool{}
	var last int64
	for len(seen) < want {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("lifecycle feed ended after %d of %d rows: %v", len(seen), want, err)
		}
		if resp.GetPosition() <= last {
			t.Fatalf("feed position %d after %d", resp.GetPosition(), last)
		}
		last = resp.GetPosition()
		ev := resp.GetEvent()
		key := fmt.Sprintf("%s/%d", ev.GetInstanceId(), ev.GetSeq())
		if !ours[ev.GetInstanceId()] {
			continue
		}
		if seen[key] {
			t.Fatalf("feed row %s came twice", key)
		}
		seen[key] = true
	}
}

// probeOutage calls both nodes once a second while the database is cut,
// with a call that reads (GetInstance) and one that writes
// (StartInstance): each must be answered UNAVAILABLE within its deadline.
func probeOutage(t *testing.T, id string, nodes ...*serveProc) {
	t.Helper()
	end := time.Now().Add(outageCut)
	time.Sleep(time.Second)
	probes, slowest := 0, time.Duration(0)
	for time.Now().Before(end) {
		for _, p := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			began := time.Now()
			_, getErr := p.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
			_, startErr := p.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{
				Definition: "nodes", Input: `{"i":-1}`,
			})
			slowest = max(slowest, time.Since(began))
			cancel()
			for call, err := range map[string]error{"GetInstance": getErr, "StartInstance": startErr} {
				if code := status.Code(err); code != codes.Unavailable {
					t.Errorf("%s during the cut: %v (%s), want UNAVAILABLE", call, err, code)
				}
			}
			probes++
		}
		time.Sleep(time.Second)
	}
	if probes < 4 {
		t.Fatalf("only %d probes during the cut", probes)
	}
	t.Logf("%d probes during the cut, each UNAVAILABLE; the slowest pair took %v", probes,
		slowest.Round(time.Millisecond))
}

// gate holds the first n instances that reach it until it opens.
type gate struct {
	mu     sync.Mutex
	left   int
	held   map[string]bool
	opened chan struct{}
	once   sync.Once
}

func newGate(n int) *gate {
	return &gate{left: n, held: map[string]bool{}, opened: make(chan struct{})}
}

// hold waits for the gate to open if id is one of the first n instances
// it saw.
func (g *gate) hold(ctx context.Context, id string) {
	g.mu.Lock()
	if !g.held[id] && g.left > 0 {
		g.held[id] = true
		g.left--
	}
	wait := g.held[id]
	g.mu.Unlock()

	if wait {
		select {
		case <-g.opened:
		case <-ctx.Done():
		}
	}
}

func (g *gate) open() {
	g.once.Do(func() { close(g.opened) })
}

// logLines is how many lines the process has logged.
func (p *serveProc) logLines() int {
	p.mu.Lock()
	defer p.mu.Unlock()

	return len(p.logs)
}

// logsSince returns the lines logged after the first from.
func (p *serveProc) logsSince(from int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()

	return append([]string(nil), p.logs[from:]...)
}

// hasFailureLine says whether one of the JSON log lines is at warn or
// error level.
func hasFailureLine(lines []string) bool {
	for _, line := range lines {
		var rec struct {
			Level string `json:"level"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && (rec.Level == "WARN" || rec.Level == "ERROR") {
			return true
		}
	}

	return false
}

// byMessage counts JSON log lines by level and message.
func byMessage(lines []string) map[string]int {
	counts := map[string]int{}
	for _, line := range lines {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			counts[rec.Level+" "+rec.Msg]++
		}
	}

	return counts
}

func joinLines(lines []string) string {
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}

	return out
}
