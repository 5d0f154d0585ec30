package server_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/worker"
)

const fanoutDef = `
name: nodes
version: 1
steps:
  - id: split
    type: parallel
    branches:
      - steps:
          - {id: left, type: task, service: work, action: ok}
      - steps:
          - id: right
            type: task
            service: work
            action: flaky
            retry: {max_attempts: 3, initial_interval: 10ms}
  - {id: join, type: task, service: work, action: ok}
`

// fanoutHandlers count every run; flaky fails its first attempt
// retryably.
func fanoutHandlers(r *runs) map[string]worker.HandlerFunc {
	return map[string]worker.HandlerFunc{
		"ok": func(_ context.Context, task worker.Task) (any, error) {
			r.add(task)
			return task.StepID, nil
		},
		"flaky": func(_ context.Context, task worker.Task) (any, error) {
			r.add(task)
			if task.Attempt == 1 {
				return nil, &engine.Error{Code: "flaky", Message: "first attempt", Retryable: true}
			}
			return task.StepID, nil
		},
	}
}

// TestThreeNodes runs a parallel workflow with a retried step over three
// serve nodes on one schema: instances start through node 1, workers
// report through nodes 2 and 3, node 1 is killed (SIGKILL) and node 2
// restarted midway. Every instance completes; each step completes once;
// nothing is dispatched after its completion; each audit trail is
// gap-free.
func TestThreeNodes(t *testing.T) {
	n := 500
	if raceEnabled {
		n = 150
	}
	c := newCluster(t)
	addr2, addr3 := freeAddr(t), freeAddr(t)
	n1 := c.node(t, "node-1", "")
	n2 := c.node(t, "node-2", addr2)
	n3 := c.node(t, "node-3", addr3)
	n1.register(t, fanoutDef)

	var r runs
	startWorker(t, addr2, "worker-2", fanoutHandlers(&r))
	startWorker(t, addr3, "worker-3", fanoutHandlers(&r))

	began := time.Now()
	ids := startMany(t, n, "nodes", n1)
	waitCompleted(t, n3, n/3)
	n1.kill(t)
	t.Logf("node 1 killed at %d/%d completed", countStatus(t, n3,
		weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED), n)

	waitCompleted(t, n3, 2*n/3)
	n2.stop(t)
	n2 = c.node(t, "node-2", addr2)
	t.Log("node 2 restarted")

	waitCompleted(t, n3, n)
	took := time.Since(began)
	t.Logf("%d instances (%d steps) in %v: %.0f instances/s", n, 4*n, took.Round(time.Millisecond),
		float64(n)/took.Seconds())

	for _, id := range ids {
		evs := audit(t, n2, id)
		for _, step := range []string{"left", "right", "join"} {
			// The same attempt may be handed out again, with the same
			// idempotency key, when the node that gave it out is lost;
			// its completion is applied once all the same.
			at := completedOnce(t, id, step, evs)
			if got := r.count(id, step, at); got < 1 {
				t.Fatalf("instance %s: %s attempt %d ran %d times, want at least 1", id, step, at, got)
			}
			if r.count(id, step, at+1) != 0 {
				t.Fatalf("instance %s: %s ran again after its completed attempt %d", id, step, at)
			}
		}
		if at := completedOnce(t, id, "right", evs); at != 2 || r.count(id, "right", 1) != 1 {
			t.Fatalf("instance %s: right completed at attempt %d after %d first runs, want 2 after 1",
				id, at, r.count(id, "right", 1))
		}
	}
	if runs, attempts := r.total(); runs < 4*n || attempts != 4*n {
		t.Fatalf("%d handler runs of %d attempts, want at least %d of %d", runs, attempts, 4*n, 4*n)
	} else if runs > attempts {
		t.Logf("%d attempts were handed out again after a node was lost", runs-attempts)
	}
}

const chainDef = `
name: chain
version: 1
steps:
  - {id: s1, type: task, service: work, action: ok}
  - {id: s2, type: task, service: work, action: ok}
  - {id: s3, type: task, service: work, action: ok}
  - {id: s4, type: task, service: work, action: ok}
`

// TestFencedNode stops a node with SIGSTOP while it advances instances,
// until its leases expire and the other node takes them over, then lets
// it go on (SIGCONT): its late commits are refused ("lease lost" in its
// log), and it adds no audit row: the trails stay gap-free, with one
// completion per step, and unchanged once every instance is done. Each
// round starts a fresh batch through node A and stops A at once, until
// A has logged a refused commit.
func TestFencedNode(t *testing.T) {
	batch := 50
	if raceEnabled {
		batch = 30
	}
	c := newCluster(t)
	a := c.node(t, "node-a", "")
	b := c.node(t, "node-b", "", "--workers", "2")
	a.register(t, chainDef)

	var r runs
	slow := func(_ context.Context, task worker.Task) (any, error) {
		r.add(task)
		time.Sleep(2 * time.Millisecond)
		return task.StepID, nil
	}
	startWorker(t, b.addr, "worker-b", map[string]worker.HandlerFunc{"ok": slow})

	var ids []string
	fenced := false
	for round := 1; round <= 10 && !fenced; round++ {
		ids = append(ids, startMany(t, batch, "chain", a)...)
		a.signal(t, syscall.SIGSTOP)
		time.Sleep(3 * time.Second) // three lease TTLs
		a.signal(t, syscall.SIGCONT)
		time.Sleep(time.Second)
		fenced = strings.Contains(a.logText(), `"msg":"lease lost"`)
		t.Logf("round %d: %d of %d completed, lease lost logged: %v", round,
			countStatus(t, b, weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED), len(ids), fenced)
	}
	if !fenced {
		t.Fatalf("node a never logged lease lost in ten rounds:\n%s", a.logText())
	}

	waitCompleted(t, b, len(ids))
	checkFenced(t, b, ids, &r)
}

// checkFenced checks the trails once every instance completed: they do
// not change any more, run without gaps and complete each step once.
func checkFenced(t *testing.T, p *serveProc, ids []string, r *runs) {
	t.Helper()
	before := rowCounts(t, p, ids)
	time.Sleep(3 * time.Second)
	after := rowCounts(t, p, ids)
	for _, id := range ids {
		if before[id] != after[id] {
			t.Fatalf("instance %s: %d audit rows became %d after it completed", id, before[id], after[id])
		}
		evs := audit(t, p, id)
		for _, step := range []string{"s1", "s2", "s3", "s4"} {
			if at := completedOnce(t, id, step, evs); r.count(id, step, at) < 1 {
				t.Fatalf("instance %s: %s attempt %d ran %d times, want at least 1",
					id, step, at, r.count(id, step, at))
			}
		}
	}
}

// TestNodesAtOnce is case 13 over processes: N instances of a one-step
// workflow on two, then four serve nodes started together on one schema,
// with a worker on each: exactly N step executions, one per instance.
func TestNodesAtOnce(t *testing.T) {
	n := 1000
	if raceEnabled {
		n = 300
	}
	for _, nodes := range []int{2, 4} {
		t.Run(fmt.Sprintf("%d_nodes", nodes), func(t *testing.T) {
			runNodesAtOnce(t, nodes, n)
		})
	}
}

func runNodesAtOnce(t *testing.T, nodes, n int) {
	c := newCluster(t)
	var r runs
	procs := make([]*serveProc, nodes)
	for i := range procs {
		procs[i] = c.node(t, fmt.Sprintf("node-%d", i+1), "")
	}
	procs[0].register(t, `
name: one
version: 1
steps:
  - {id: only, type: task, service: work, action: ok}
`)
	for i, p := range procs {
		startWorker(t, p.addr, fmt.Sprintf("worker-%d", i+1), map[string]worker.HandlerFunc{
			"ok": func(_ context.Context, task worker.Task) (any, error) {
				r.add(task)
				return nil, nil
			},
		})
	}

	began := time.Now()
	ids := startMany(t, n, "one", procs...)
	waitCompleted(t, procs[0], n)
	took := time.Since(began)
	t.Logf("%d nodes: %d instances in %v: %.0f instances/s", nodes, n, took.Round(time.Millisecond),
		float64(n)/took.Seconds())

	for _, id := range ids {
		at := completedOnce(t, id, "only", audit(t, procs[0], id))
		if at != 1 || r.count(id, "only", 1) != 1 {
			t.Fatalf("instance %s: completed at attempt %d, run %d times; want 1 and 1",
				id, at, r.count(id, "only", 1))
		}
	}
	if runs, _ := r.total(); runs != n {
		t.Fatalf("%d step executions, want exactly %d", runs, n)
	}
}
