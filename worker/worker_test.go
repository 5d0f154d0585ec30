package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/worker"
)

const oneTask = `name: one
version: 1
steps:
  - id: work
    type: task
    service: svc
    action: do
    input: {n: "input.n"}
    retry: {max_attempts: 3, initial_interval: 10ms}
    output: got
output: data.got
`

func TestCompletion(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var seen worker.Task
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		seen = task
		var in struct{ N int }
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, err
		}
		return map[string]int{"double": 2 * in.N}, nil
	})
	runWorker(t, w)

	id := x.start(t, oneTask, `{"n": 21}`)
	inst := x.wait(t, id)

	if inst.Status != store.InstanceCompleted || string(inst.Output) != `{"double":42}` {
		t.Fatalf("instance %s with %s (error %s), want completed with {\"double\":42}",
			inst.Status, inst.Output, inst.Error)
	}
	if seen.InstanceID != id || seen.StepID != "work" || seen.Attempt != 1 ||
		seen.IdempotencyKey == "" || seen.Action != "do" {
		t.Fatalf("handler saw %+v", seen)
	}
}

func TestFailureRetried(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var mu sync.Mutex
	var attempts []int
	keys := map[string]bool{}
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, task.Attempt)
		keys[task.IdempotencyKey] = true
		if task.Attempt < 3 {
			return nil, errors.New("flaky")
		}
		return "ok", nil
	})
	runWorker(t, w)

	inst := x.wait(t, x.start(t, oneTask, `{"n": 1}`))

	mu.Lock()
	defer mu.Unlock()
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"ok"` {
		t.Fatalf("instance %s with %s (error %s), want completed", inst.Status, inst.Output, inst.Error)
	}
	if len(attempts) != 3 || attempts[0] != 1 || attempts[2] != 3 || len(keys) != 3 {
		t.Fatalf("attempts %v with %d idempotency keys, want 1 2 3 with 3 keys", attempts, len(keys))
	}
}

func TestFailureNotRetryable(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) {
		calls.Add(1)
		return nil, engine.NonRetryable("bad_input", "no such photo")
	})
	runWorker(t, w)

	inst := x.wait(t, x.start(t, oneTask, `{"n": 1}`))

	if inst.Status != store.InstanceFailed || !strings.Contains(string(inst.Error), "bad_input") {
		t.Fatalf("instance %s with error %s, want failed with bad_input", inst.Status, inst.Error)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d calls, want 1: the failure was not retryable", calls.Load())
	}
}

func TestUnknownActionFails(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	runWorker(t, w)

	inst := x.wait(t, x.start(t, oneTask, `{"n": 1}`))

	if inst.Status != store.InstanceFailed || !strings.Contains(string(inst.Error), "unknown_action") {
		t.Fatalf("instance %s with error %s, want failed with unknown_action", inst.Status, inst.Error)
	}
}

// TestHeartbeatsKeepLongStep runs a step three times longer than its
// heartbeat timeout, with one attempt only: it completes because the
// worker heartbeats.
func TestHeartbeatsKeepLongStep(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	w.Handle("do", func(ctx context.Context, task worker.Task) (any, error) {
		calls.Add(1)
		if task.HeartbeatTimeout != time.Second {
			return nil, engine.NonRetryable("test", "heartbeat timeout "+task.HeartbeatTimeout.String())
		}
		select {
		case <-time.After(3 * time.Second):
			return "done", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})
	runWorker(t, w)

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 1}\n    timeouts: {heartbeat: 1s}", 1)
	inst := x.wait(t, x.start(t, src, `{"n": 1}`))

	if inst.Status != store.InstanceCompleted || calls.Load() != 1 {
		t.Fatalf("instance %s (error %s) after %d calls, want completed after 1",
			inst.Status, inst.Error, calls.Load())
	}
}

func TestCancelReachesHandler(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{HeartbeatEvery: 50 * time.Millisecond})
	started := make(chan struct{})
	cause := make(chan error, 1)
	w.Handle("do", func(ctx context.Context, _ worker.Task) (any, error) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	})
	runWorker(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	<-started
	if err := x.eng.Cancel(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}

	if err := <-cause; !errors.Is(err, worker.ErrCancelRequested) {
		t.Fatalf("handler's context ended with %v, want ErrCancelRequested", err)
	}
	if inst := x.wait(t, id); inst.Status != store.InstanceCancelled {
		t.Fatalf("instance %s, want cancelled", inst.Status)
	}
	steps, err := x.eng.Steps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.StepID == "work" && (s.Error == nil || !strings.Contains(string(s.Error), `"code":"canceled"`)) {
			t.Fatalf("step recorded %s, want the handler's stop as code canceled", s.Error)
		}
	}
}

const manyTasks = `name: many
version: 1
steps:
  - id: each
    type: foreach
    items: input.items
    parallel: true
    steps:
      - {id: work, type: task, service: svc, action: do, input: {n: "item"}}
`

func TestConcurrencyLimit(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{Concurrency: 2})
	var now, peak, calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) {
		calls.Add(1)
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		return nil, nil
	})
	runWorker(t, w)

	inst := x.wait(t, x.start(t, manyTasks, `{"items": [1, 2, 3, 4, 5, 6, 7, 8]}`))

	if inst.Status != store.InstanceCompleted || calls.Load() != 8 {
		t.Fatalf("instance %s (error %s) after %d calls, want completed after 8",
			inst.Status, inst.Error, calls.Load())
	}
	if peak.Load() > 2 || peak.Load() < 1 {
		t.Fatalf("%d handlers ran at once, want at most 2", peak.Load())
	}
}

// TestDuplicateCompletion lets a task's claim run out while its handler
// runs, so that weft hands the same attempt out again: both deliveries
// carry the same idempotency key, the first report to arrive wins and
// the other is answered already applied.
func TestDuplicateCompletion(t *testing.T) {
	x := serveWeft(t, 200*time.Millisecond)
	l := &logs{t: t}
	w := newWorker(t, x, worker.Options{
		Concurrency: 2, HeartbeatEvery: time.Hour, PollWait: 100 * time.Millisecond,
		Logger: newLogger(l),
	})
	var mu sync.Mutex
	var keys []string
	second := make(chan struct{})
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		mu.Lock()
		keys = append(keys, task.IdempotencyKey)
		n := len(keys)
		mu.Unlock()
		if n == 1 {
			select {
			case <-second:
			case <-time.After(30 * time.Second):
			}
		} else {
			close(second)
		}
		return n, nil
	})

	w.Handle("hold", func(context.Context, worker.Task) (any, error) {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(l.String(), "already reported") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return nil, nil
	})
	runWorker(t, w)

	src := strings.Replace(oneTask, "output: data.got\n",
		"  - {id: hold, type: task, service: svc, action: hold}\noutput: data.got\n", 1)
	inst := x.wait(t, x.start(t, src, `{"n": 1}`))

	mu.Lock()
	defer mu.Unlock()
	// Both deliveries end at once; whichever reports first is kept.
	if got := string(inst.Output); inst.Status != store.InstanceCompleted || (got != "1" && got != "2") {
		t.Fatalf("instance %s with %s, want completed with one delivery's 1 or 2", inst.Status, inst.Output)
	}
	if len(keys) != 2 || keys[0] != keys[1] {
		t.Fatalf("idempotency keys %v, want the same key twice", keys)
	}
	if !strings.Contains(l.String(), "already reported") || strings.Contains(l.String(), "level=ERROR") {
		t.Fatalf("worker log has no already-reported line or has an error:\n%s", l)
	}
}

func TestGracefulShutdown(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	started := make(chan struct{})
	var cause atomic.Value
	w.Handle("do", func(ctx context.Context, _ worker.Task) (any, error) {
		close(started)
		time.Sleep(500 * time.Millisecond)
		cause.Store(ctx.Err() == nil)
		return "finished", nil
	})
	stop := runWorker(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	<-started
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if time.Since(began) < 400*time.Millisecond || cause.Load() != true {
		t.Fatalf("Run returned after %s with the handler's context alive %v; want after the handler",
			time.Since(began), cause.Load())
	}
	if inst := x.wait(t, id); inst.Status != store.InstanceCompleted {
		t.Fatalf("instance %s (error %s), want completed", inst.Status, inst.Error)
	}
}

func TestShutdownGraceEnds(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{Grace: 100 * time.Millisecond})
	started := make(chan struct{})
	cause := make(chan error, 1)
	w.Handle("do", func(ctx context.Context, _ worker.Task) (any, error) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	})
	stop := runWorker(t, w)

	x.start(t, oneTask, `{"n": 1}`)
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	if err := <-cause; !errors.Is(err, worker.ErrShutdown) {
		t.Fatalf("handler's context ended with %v, want ErrShutdown", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  worker.Options
		field string
	}{
		{worker.Options{Service: "svc", Insecure: true}, "address"},
		{worker.Options{Address: "127.0.0.1:1", Insecure: true}, "service"},
		{worker.Options{Address: "127.0.0.1:1", Service: "svc"}, "tls"},
		{worker.Options{Address: "127.0.0.1:1", Service: "svc", Insecure: true, Concurrency: -1}, "concurrency"},
		{worker.Options{Address: "127.0.0.1:1", Service: "svc", Insecure: true, RememberFinished: -1},
			"remember_finished"},
	} {
		_, err := worker.New(tc.opts)
		if !errors.Is(err, worker.ErrOptions) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("New(%+v) = %v, want an ErrOptions naming %s", tc.opts, err, tc.field)
		}
	}
}

// TestPollsUntilWeftComes starts the worker before weft listens: its
// polls fail UNAVAILABLE and back off until weft serves.
func TestPollsUntilWeftComes(t *testing.T) {
	x := startEngine(t, 0)
	x.addr = freeAddr(t)
	l := &logs{t: t}
	w := newWorker(t, x, worker.Options{Logger: newLogger(l)})
	w.Handle("do", func(context.Context, worker.Task) (any, error) { return "ok", nil })
	runWorker(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), "polling tasks failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	x.listen(t, x.addr)

	if inst := x.wait(t, id); inst.Status != store.InstanceCompleted {
		t.Fatalf("instance %s (error %s), want completed", inst.Status, inst.Error)
	}
	if !strings.Contains(l.String(), "Unavailable") {
		t.Fatalf("worker log has no failed poll:\n%s", l)
	}
}

// TestReportRetriedWhileWeftDown stops weft's port while a handler runs:
// the report fails UNAVAILABLE and is sent again once weft is back, so
// the only attempt completes.
func TestReportRetriedWhileWeftDown(t *testing.T) {
	x := serveWeft(t, 0)
	l := &logs{t: t}
	w := newWorker(t, x, worker.Options{Logger: newLogger(l)})
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) {
		calls.Add(1)
		close(started)
		<-release
		return "reported late", nil
	})
	runWorker(t, w)

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 1}", 1)
	id := x.start(t, src, `{"n": 1}`)
	<-started
	x.stopServing()
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), "reporting the task failed; retrying") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	x.listen(t, x.addr)

	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"reported late"` || calls.Load() != 1 {
		t.Fatalf("instance %s with %s (error %s) after %d calls, want completed after 1",
			inst.Status, inst.Output, inst.Error, calls.Load())
	}
	if !strings.Contains(l.String(), "reporting the task failed; retrying") {
		t.Fatalf("worker log has no retried report:\n%s", l)
	}
}
