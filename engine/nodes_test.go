package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres/pgtest"
)

// cluster is several engines, each with its own store handle and node
// id, on one fresh PostgreSQL schema.
type cluster struct {
	t       *testing.T
	url     string
	schema  string
	engines []*engine.Engine
	stores  []store.Store
}

// newCluster opens n engines on a fresh schema; wrap, when set, wraps
// each node's store. The engines are stopped when the test ends.
func newCluster(t *testing.T, n int, opts engine.Options) *cluster {
	t.Helper()

	url, schema := pgtest.Schema(t)
	c := &cluster{t: t, url: url, schema: schema}
	for range n {
		c.add(opts, nil)
	}

	return c
}

// add opens one more node; wrap, when set, wraps its store.
func (c *cluster) add(opts engine.Options, wrap func(store.Store) store.Store) *engine.Engine {
	c.t.Helper()

	var st store.Store = pgtest.OpenSchema(c.t, c.url, c.schema)
	if wrap != nil {
		st = wrap(st)
	}

	opts.NodeID = fmt.Sprintf("node-%d", len(c.engines)+1)
	e := engine.New(st, opts)
	registerServices(c.t, c.t.Context(), e)
	c.t.Cleanup(e.Stop)
	c.engines = append(c.engines, e)
	c.stores = append(c.stores, st)

	return e
}

// start runs every engine's loops at once.
func (c *cluster) start() {
	c.t.Helper()

	for _, e := range c.engines {
		if err := e.Start(context.Background()); err != nil {
			c.t.Fatalf("starting engine: %v", err)
		}
	}
}

// register registers a definition through the first engine.
func (c *cluster) register(src string) {
	c.t.Helper()

	if _, err := c.engines[0].RegisterDefinition(context.Background(), []byte(src)); err != nil {
		c.t.Fatalf("registering definition: %v", err)
	}
}

// executions counts handler calls by key, across nodes.
type executions struct {
	mu     sync.Mutex
	byKey  map[string]int
	byNode map[string]int
}

func newExecutions() *executions {
	return &executions{byKey: map[string]int{}, byNode: map[string]int{}}
}

func (x *executions) add(key, node string) {
	x.mu.Lock()
	defer x.mu.Unlock()

	x.byKey[key]++
	x.byNode[node]++
}

// startAll starts n instances of def, spread over the engines.
func (c *cluster) startAll(def string, n int) []string {
	c.t.Helper()

	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			e := c.engines[i%len(c.engines)]
			inst, _, err := e.StartInstance(context.Background(), engine.StartParams{Definition: def})
			ids[i], errs[i] = inst.ID, err
		})
	}

	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatalf("starting instances: %v", err)
	}

	return ids
}

// waitAll waits until every instance completed and checks that each
// instance's audit seq runs from 1 without gaps.
func (c *cluster) waitAll(ids []string) {
	c.t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	for _, id := range ids {
		inst, err := c.engines[0].Wait(ctx, id)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", id, err)
		}

		if inst.Status != store.InstanceCompleted {
			c.t.Fatalf("instance %s is %s (%s)", id, inst.Status, inst.Reason)
		}

		audit, err := c.stores[0].AuditList(ctx, id, 0, 10000)
		if err != nil {
			c.t.Fatalf("listing audit of %s: %v", id, err)
		}

		for i, ev := range audit {
			if ev.Seq != int64(i+1) {
				c.t.Fatalf("instance %s: audit row %d has seq %d", id, i, ev.Seq)
			}
		}
	}
}

// clusterOptions are fastOptions with the default task claim (30s): under
// the load of a thousand instances a commit may queue for longer than
// fastOptions' 2s claim, and a claim that runs out hands the task out
// again, which these tests count as a second execution.
func clusterOptions() engine.Options {
	opts := fastOptions()
	opts.TaskLeaseTTL = 30 * time.Second

	return opts
}

const oneStep = `
name: one
version: 1
steps:
  - {id: work, type: task, service: nodes, action: work}
`

// TestNodesShareInstances is case 13 on PostgreSQL: 1000 instances of a
// one-step workflow on three engines started at once, each engine with
// its own store handle and node id, run every step exactly once.
func TestNodesShareInstances(t *testing.T) {
	c := newCluster(t, 3, clusterOptions())
	runs := newExecutions()
	for i, e := range c.engines {
		node := fmt.Sprintf("node-%d", i+1)
		e.Handle("nodes", "work", func(_ context.Context, task engine.Task) (any, error) {
			runs.add(task.InstanceID, node)

			return 1, nil
		})
	}

	c.register(oneStep)
	c.start()
	ids := c.startAll("one", 1000)
	c.waitAll(ids)

	total := 0
	for _, id := range ids {
		if n := runs.byKey[id]; n != 1 {
			t.Errorf("instance %s: step executed %d times, want 1", id, n)
		}

		total += runs.byKey[id]
	}

	if total != 1000 {
		t.Fatalf("executions = %d, want 1000", total)
	}

	t.Logf("executions by node: %v", runs.byNode)
}

// stallingStore is a node's real store whose first transition waits
// until the test lets it go, as if the node were stopped mid-write.
type stallingStore struct {
	store.Store
	once    sync.Once
	stalled chan struct{}
	resume  chan struct{}
	result  chan error
}

func (s *stallingStore) TransitionApply(ctx context.Context, ts []*store.Transition) []error {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.Store.TransitionApply(ctx, ts)
	}

	close(s.stalled)
	<-s.resume
	errs := s.Store.TransitionApply(ctx, ts)
	s.result <- errs[0]

	return errs
}

// TestFencedNodeCannotCommit: a node stalls between claiming an
// instance and committing; its lease expires, another node takes the
// instance over and finishes it; the stalled node's commit is refused
// with ErrLeaseLost and it writes nothing.
func TestFencedNodeCannotCommit(t *testing.T) {
	url, schema := pgtest.Schema(t)
	c := &cluster{t: t, url: url, schema: schema}
	stall := &stallingStore{
		stalled: make(chan struct{}), resume: make(chan struct{}), result: make(chan error, 1),
	}
	fencedOpts := fastOptions()
	fencedOpts.LeaseTTL = 300 * time.Millisecond
	fenced := c.add(fencedOpts, func(s store.Store) store.Store { stall.Store = s; return stall })
	c.register(oneStep)
	if err := fenced.Start(context.Background()); err != nil {
		t.Fatalf("starting engine: %v", err)
	}

	ids := c.startAll("one", 1)
	<-stall.stalled
	time.Sleep(2 * fencedOpts.LeaseTTL)

	var runs atomic.Int32
	other := c.add(clusterOptions(), nil)
	other.Handle("nodes", "work", func(context.Context, engine.Task) (any, error) {
		runs.Add(1)

		return 1, nil
	})
	if err := other.Start(context.Background()); err != nil {
		t.Fatalf("starting engine: %v", err)
	}

	c.engines = []*engine.Engine{other}
	c.stores = []store.Store{c.stores[1]}
	c.waitAll(ids)
	before, err := c.stores[0].AuditList(context.Background(), ids[0], 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	close(stall.resume)
	if err := <-stall.result; !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stalled commit: error = %v, want ErrLeaseLost", err)
	}

	after, err := c.stores[0].AuditList(context.Background(), ids[0], 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	if len(after) != len(before) || runs.Load() != 1 {
		t.Fatalf("after the stalled commit: %d audit rows (was %d), %d runs; want no change and 1",
			len(after), len(before), runs.Load())
	}

	if fenced.Counters().LeaseLost.Load() < 1 || fenced.Counters().Transitions.Load() != 0 {
		t.Fatalf("fenced node: %d leases lost, %d transitions; want at least 1 and 0",
			fenced.Counters().LeaseLost.Load(), fenced.Counters().Transitions.Load())
	}
}

const retryThenDelay = `
name: timers
version: 1
steps:
  - id: flaky
    type: task
    service: nodes
    action: flaky
    retry: {max_attempts: 3, initial_interval: 50ms, backoff_coefficient: 2}
  - {id: pause, type: delay, duration: 100ms}
  - {id: last, type: task, service: nodes, action: last}
`

// TestNodesFireTimersOnce: retries and delays on two engines fire once
// cluster-wide: every attempt of every step runs exactly once.
func TestNodesFireTimersOnce(t *testing.T) {
	c := newCluster(t, 2, clusterOptions())
	runs := newExecutions()
	for i, e := range c.engines {
		node := fmt.Sprintf("node-%d", i+1)
		e.Handle("nodes", "flaky", func(_ context.Context, task engine.Task) (any, error) {
			runs.add(fmt.Sprintf("%s/flaky/%d", task.InstanceID, task.Attempt), node)
			if task.Attempt < 3 {
				return nil, engine.Retryable("flaky", "not yet")
			}

			return 1, nil
		})
		e.Handle("nodes", "last", func(_ context.Context, task engine.Task) (any, error) {
			runs.add(task.InstanceID+"/last", node)

			return 1, nil
		})
	}

	c.register(retryThenDelay)
	c.start()
	ids := c.startAll("timers", 100)
	c.waitAll(ids)

	for _, id := range ids {
		for _, key := range []string{"/flaky/1", "/flaky/2", "/flaky/3", "/last"} {
			if n := runs.byKey[id+key]; n != 1 {
				t.Errorf("%s%s ran %d times, want 1", id, key, n)
			}
		}
	}

	if len(runs.byKey) != 4*len(ids) {
		t.Fatalf("%d distinct executions, want %d", len(runs.byKey), 4*len(ids))
	}

	t.Logf("executions by node: %v", runs.byNode)
}

const twoSteps = `
name: relay
version: 1
steps:
  - {id: outside, type: task, service: outside, action: work}
  - {id: inside, type: task, service: nodes, action: inside}
`

// TestNodesWakeEachOther: a completion reported to node A is acted on by
// node B, whose poll interval is 5s, so only a notice through the
// database can make it fast. The test logs the latency from the report
// to B's next dispatch; it asserts only that B acted on notices.
func TestNodesWakeEachOther(t *testing.T) {
	url, schema := pgtest.Schema(t)
	c := &cluster{t: t, url: url, schema: schema}
	accept := c.add(engine.Options{DisableLoops: true}, nil)
	slow := clusterOptions()
	slow.PollInterval = 5 * time.Second
	worker := c.add(slow, nil)
	dispatched := make(chan time.Time, 1)
	worker.Handle("nodes", "inside", func(ctx context.Context, _ engine.Task) (any, error) {
		select {
		case dispatched <- time.Now():
		case <-ctx.Done():
		}

		return 1, nil
	})
	c.register(twoSteps)
	c.start()

	const samples = 40
	latencies := make([]time.Duration, 0, samples)
	for range samples {
		id := c.startAll("relay", 1)[0]
		task := claimRelay(t, c.stores[0])
		began := time.Now()
		_, err := accept.Report(context.Background(), engine.ReportParams{
			InstanceID: id, PointerID: task.PointerID, Attempt: task.Attempt, Token: task.Token,
			Output: []byte(`1`),
		})
		if err != nil {
			t.Fatalf("reporting: %v", err)
		}

		latencies = append(latencies, (<-dispatched).Sub(began))
		c.waitAll([]string{id})
	}

	if worker.Counters().Notices.Load() == 0 {
		t.Fatal("node B received no notices")
	}

	slices.Sort(latencies)
	t.Logf("cross-node wake-up over %d samples: p50 %v, p99 %v, max %v", samples,
		latencies[samples/2], latencies[samples*99/100], latencies[samples-1])
}

// claimRelay waits for the "outside" task and claims it as an outside
// worker would.
func claimRelay(t *testing.T, st store.Store) store.Task {
	t.Helper()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := st.TaskClaim(context.Background(), store.TaskClaimParams{
			Worker: "outside", Services: []string{"outside"}, Limit: 1,
			LeaseTTL: time.Minute, Now: time.Now(),
		})
		if err != nil {
			t.Fatalf("claiming: %v", err)
		}

		if len(tasks) == 1 {
			return tasks[0]
		}

		time.Sleep(2 * time.Millisecond)
	}

	t.Fatal("no outside task showed up")

	return store.Task{}
}
