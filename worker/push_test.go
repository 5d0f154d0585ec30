package worker_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/worker"
)

// pushed is a worker serving push mode on a loopback port, with the
// client weft's dispatcher would call it through.
type pushed struct {
	client weftv1.StepWorkerServiceClient
	stop   func() error
}

// servePush serves w in push mode until the test ends or stop is called;
// stop returns ServePush's error.
func servePush(t *testing.T, w *worker.Worker) *pushed {
	t.Helper()
	return servePushOn(t, w, "127.0.0.1:0")
}

// servePushOn is servePush on a given address.
func servePushOn(t *testing.T, w *worker.Worker, addr string) *pushed {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.ServePush(ctx, lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}

	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-errc
			w.Close()
		})
		return serveErr
	}
	t.Cleanup(func() {
		_ = stop()
		conn.Close()
	})

	return &pushed{client: weftv1.NewStepWorkerServiceClient(conn), stop: stop}
}

// execute calls ExecuteTask with a deadline, as weft's dispatcher does.
func (p *pushed) execute(task *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	return p.client.ExecuteTask(ctx, &weftv1.ExecuteTaskRequest{Task: task})
}

// claim takes the next task of service svc from weft's store, as the
// push dispatcher does, and returns it as ExecuteTask carries it.
func (x *weft) claim(t *testing.T) *weftv1.Task {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := x.eng.Store().TaskClaim(context.Background(), store.TaskClaimParams{
			Worker: "push-dispatcher", Services: []string{"svc"}, Limit: 1,
			LeaseTTL: time.Minute, Now: time.Now(),
		})
		if err != nil {
			t.Fatalf("claiming a task: %v", err)
		}
		if len(tasks) == 1 {
			return taskMsg(tasks[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no task to claim after 30s")

	return nil
}

func taskMsg(s store.Task) *weftv1.Task {
	m := &weftv1.Task{
		TaskId: s.ID, InstanceId: s.InstanceID, StepId: s.StepID, PointerId: s.PointerID,
		Attempt: int32(s.Attempt), Service: s.Service, Action: s.Action, Input: string(s.Input),
		IdempotencyKey: s.IdempotencyKey, TaskToken: s.Token,
	}
	if !s.Deadline.IsZero() {
		m.Deadline = timestamppb.New(s.Deadline)
	}
	if s.Heartbeat > 0 {
		m.HeartbeatTimeout = durationpb.New(s.Heartbeat)
	}

	return m
}

// apply records an answer with a result as the dispatcher will; an
// accepted answer records nothing.
func (x *weft) apply(t *testing.T, task *weftv1.Task, resp *weftv1.ExecuteTaskResponse) {
	t.Helper()
	p := engine.ReportParams{
		InstanceID: task.GetInstanceId(), PointerID: task.GetPointerId(),
		Attempt: int(task.GetAttempt()), Token: task.GetTaskToken(),
	}
	switch r := resp.GetResult().(type) {
	case *weftv1.ExecuteTaskResponse_Accepted:
		return
	case *weftv1.ExecuteTaskResponse_Output:
		p.Output = []byte(r.Output)
	case *weftv1.ExecuteTaskResponse_Error:
		p.Err = &engine.Error{Code: r.Error.GetCode(), Message: r.Error.GetMessage(),
			Retryable: r.Error.GetRetryable()}
	}
	if _, err := x.eng.Report(context.Background(), p); err != nil {
		t.Fatalf("applying the answer: %v", err)
	}
}

// waitLog waits up to 30s for a line containing s in l.
func waitLog(l *logs, s string) bool {
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}

	return true
}

func TestPushInlineResult(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{InlineWait: 2 * time.Second})
	var seen worker.Task
	var calls atomic.Int32
	w.Handle("do", func(_ context.Context, task worker.Task) (any, error) {
		calls.Add(1)
		seen = task
		return map[string]string{"got": string(task.Input)}, nil
	})
	p := servePush(t, w)

	id := x.start(t, oneTask, `{"n": 21}`)
	task := x.claim(t)
	resp, err := p.execute(task)
	if err != nil {
		t.Fatalf("ExecuteTask: %v", err)
	}

	if got := resp.GetOutput(); got != `{"got":"{\"n\":21}"}` {
		t.Fatalf("answer %v, want the output at once", resp)
	}
	if seen.InstanceID != id || seen.IdempotencyKey != task.GetIdempotencyKey() || seen.Attempt != 1 {
		t.Fatalf("handler saw %+v, want the task of %s with key %s", seen, id, task.GetIdempotencyKey())
	}
	again, err := p.execute(task)
	if err != nil || again.GetOutput() != resp.GetOutput() || calls.Load() != 1 {
		t.Fatalf("the same task again: %v, %v after %d runs; want the same output after 1",
			again, err, calls.Load())
	}
	x.apply(t, task, resp)
	if inst := x.wait(t, id); inst.Status != store.InstanceCompleted {
		t.Fatalf("instance %s (error %s), want completed", inst.Status, inst.Error)
	}
}

func TestPushUnknownAction(t *testing.T) {
	x := serveWeft(t, 0)
	p := servePush(t, newWorker(t, x, worker.Options{}))

	id := x.start(t, oneTask, `{"n": 1}`)
	task := x.claim(t)
	resp, err := p.execute(task)
	if err != nil {
		t.Fatalf("ExecuteTask: %v", err)
	}

	if e := resp.GetError(); e.GetCode() != "unknown_action" || e.GetRetryable() {
		t.Fatalf("answer %v, want a non-retryable unknown_action", resp)
	}
	x.apply(t, task, resp)
	if inst := x.wait(t, id); inst.Status != store.InstanceFailed {
		t.Fatalf("instance %s, want failed", inst.Status)
	}
}

// TestPushAcceptedThenReported runs a handler past the inline wait: the
// answer is accepted, and the later CompleteTask completes the instance.
// Repeated calls with the same idempotency key run nothing again: while
// the handler runs they answer accepted, after it they answer its result.
func TestPushAcceptedThenReported(t *testing.T) {
	x := serveWeft(t, 0)
	l := &logs{t: t}
	w := newWorker(t, x, worker.Options{InlineWait: 50 * time.Millisecond, Logger: newLogger(l)})
	var calls atomic.Int32
	release := make(chan struct{})
	w.Handle("do", func(context.Context, worker.Task) (any, error) {
		calls.Add(1)
		<-release
		return "later", nil
	})
	p := servePush(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	task := x.claim(t)
	for i := range 3 {
		resp, err := p.execute(task)
		if err != nil || !resp.GetAccepted() {
			t.Fatalf("call %d: answer %v, %v; want accepted", i, resp, err)
		}
	}
	forged := proto.CloneOf(task)
	forged.TaskToken = "another"
	_, err := p.execute(forged)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument ||
		!strings.HasPrefix(st.Message(), "task.idempotency_key:") {
		t.Fatalf("same key with another token: %v, want INVALID_ARGUMENT naming the key", err)
	}
	close(release)

	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"later"` {
		t.Fatalf("instance %s with %s (error %s), want completed with \"later\"",
			inst.Status, inst.Output, inst.Error)
	}
	if !waitLog(l, "task reported") {
		t.Fatalf("worker log has no report:\n%s", l)
	}
	resp, err := p.execute(task)
	if err != nil || resp.GetOutput() != `"later"` {
		t.Fatalf("call after the end: answer %v, %v; want the same output", resp, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d handler runs, want 1", calls.Load())
	}
}

// TestPushForgetsPastTheBound keeps one finished task only: a repeat of
// an older one runs its handler again.
func TestPushForgetsPastTheBound(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{RememberFinished: 1, InlineWait: 2 * time.Second})
	var calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) { return calls.Add(1), nil })
	p := servePush(t, w)

	x.start(t, manyTasks, `{"items": [1, 2]}`)
	first, second := x.claim(t), x.claim(t)
	var answers []string
	for _, task := range []*weftv1.Task{first, second, second, first} {
		resp, err := p.execute(task)
		if err != nil {
			t.Fatalf("ExecuteTask: %v", err)
		}
		answers = append(answers, resp.GetOutput())
	}

	if want := []string{"1", "2", "2", "3"}; strings.Join(answers, " ") != strings.Join(want, " ") {
		t.Fatalf("answers %v, want %v: the last finished task kept, the first run again", answers, want)
	}
}

// TestPushCancel cancels an instance while its step runs in push mode:
// CancelTask, as weft sends it, reaches the handler, whose failure report
// lets the instance end cancelled.
func TestPushCancel(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{InlineWait: 10 * time.Millisecond, HeartbeatEvery: time.Hour})
	cause := make(chan error, 1)
	w.Handle("do", untilDone(cause))
	p := servePush(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	task := x.claim(t)
	if resp, err := p.execute(task); err != nil || !resp.GetAccepted() {
		t.Fatalf("ExecuteTask: %v, %v; want accepted", resp, err)
	}
	if err := x.eng.Cancel(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	ref := &weftv1.TaskRef{
		InstanceId: id, PointerId: task.GetPointerId(), Attempt: task.GetAttempt(),
		TaskToken: task.GetTaskToken(),
	}
	other := &weftv1.TaskRef{InstanceId: id, PointerId: 99, Attempt: 1, TaskToken: "x"}
	for _, r := range []*weftv1.TaskRef{other, ref} {
		req := &weftv1.CancelTaskRequest{Task: r, Reason: "test"}
		if _, err := p.client.CancelTask(context.Background(), req); err != nil {
			t.Fatalf("CancelTask(%v): %v", r, err)
		}
	}

	if err := <-cause; !errors.Is(err, worker.ErrCancelRequested) {
		t.Fatalf("handler's context ended with %v, want ErrCancelRequested", err)
	}
	if inst := x.wait(t, id); inst.Status != store.InstanceCancelled {
		t.Fatalf("instance %s, want cancelled", inst.Status)
	}
}

// TestPushConcurrencyLimit holds the only slot: another task is refused
// RESOURCE_EXHAUSTED with a retry hint, and taken once the slot is free.
func TestPushConcurrencyLimit(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{Concurrency: 1, InlineWait: 10 * time.Millisecond})
	release := make(chan struct{})
	var calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return "ok", nil
	})
	p := servePush(t, w)

	id := x.start(t, manyTasks, `{"items": [1, 2]}`)
	first, second := x.claim(t), x.claim(t)
	if resp, err := p.execute(first); err != nil || !resp.GetAccepted() {
		t.Fatalf("first task: %v, %v; want accepted", resp, err)
	}
	_, err := p.execute(second)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || len(st.Details()) != 1 {
		t.Fatalf("second task: %v, want RESOURCE_EXHAUSTED with a retry hint", err)
	}
	if _, ok := st.Details()[0].(*errdetails.RetryInfo); !ok {
		t.Fatalf("second task refused with details %v, want RetryInfo", st.Details())
	}
	close(release)

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.execute(second)
		if err == nil {
			x.apply(t, second, resp)
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("second task again: %v, want it taken once the slot is free", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if inst := x.wait(t, id); inst.Status != store.InstanceCompleted || calls.Load() != 2 {
		t.Fatalf("instance %s (error %s) after %d runs, want completed after 2",
			inst.Status, inst.Error, calls.Load())
	}
}

// TestPushHeartbeatsKeepLongStep runs an accepted step three times longer
// than its heartbeat timeout, with one attempt only: it completes because
// the worker heartbeats.
func TestPushHeartbeatsKeepLongStep(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	w.Handle("do", func(ctx context.Context, task worker.Task) (any, error) {
		calls.Add(1)
		select {
		case <-time.After(3 * time.Second):
			return "done", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})
	p := servePush(t, w)

	src := strings.Replace(oneTask, "retry: {max_attempts: 3, initial_interval: 10ms}",
		"retry: {max_attempts: 1}\n    timeouts: {heartbeat: 1s}", 1)
	id := x.start(t, src, `{"n": 1}`)
	task := x.claim(t)
	if task.GetHeartbeatTimeout().AsDuration() != time.Second {
		t.Fatalf("task has heartbeat timeout %v, want 1s", task.GetHeartbeatTimeout())
	}
	if resp, err := p.execute(task); err != nil || !resp.GetAccepted() {
		t.Fatalf("ExecuteTask: %v, %v; want accepted", resp, err)
	}

	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"done"` || calls.Load() != 1 {
		t.Fatalf("instance %s with %s (error %s) after %d runs, want completed after 1",
			inst.Status, inst.Output, inst.Error, calls.Load())
	}
}

// TestPushShutdown stops a push worker while an accepted handler runs:
// new tasks are refused UNAVAILABLE, the handler ends within the grace
// period and its report is in before ServePush returns.
func TestPushShutdown(t *testing.T) {
	x := serveWeft(t, 0)
	l := &logs{t: t}
	w := newWorker(t, x, worker.Options{InlineWait: 10 * time.Millisecond, Logger: newLogger(l)})
	release := make(chan struct{})
	w.Handle("do", func(ctx context.Context, _ worker.Task) (any, error) {
		<-release
		return "finished", ctx.Err()
	})
	p := servePush(t, w)

	id := x.start(t, oneTask, `{"n": 1}`)
	first := x.claim(t)
	if resp, err := p.execute(first); err != nil || !resp.GetAccepted() {
		t.Fatalf("ExecuteTask: %v, %v; want accepted", resp, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	if !waitLog(l, "push worker stopping") {
		t.Fatalf("worker log has no stop:\n%s", l)
	}

	other := &weftv1.Task{
		InstanceId: "other", PointerId: 1, Attempt: 1, Action: "do", IdempotencyKey: "other",
		TaskToken: "t",
	}
	if _, err := p.execute(other); status.Code(err) != codes.Unavailable {
		t.Fatalf("new task while stopping: %v, want UNAVAILABLE", err)
	}
	if resp, err := p.execute(first); err != nil || !resp.GetAccepted() {
		t.Fatalf("running task again while stopping: %v, %v; want accepted", resp, err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("ServePush returned %v before its handler ended", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("ServePush: %v", err)
	}

	if !strings.Contains(l.String(), "task reported") {
		t.Fatalf("ServePush returned before the report; worker log:\n%s", l)
	}
	inst := x.wait(t, id)
	if inst.Status != store.InstanceCompleted || string(inst.Output) != `"finished"` {
		t.Fatalf("instance %s with %s (error %s), want completed", inst.Status, inst.Output, inst.Error)
	}
}

// TestPushShutdownGraceEnds ends a push worker's grace period while a
// handler runs: its context ends with ErrShutdown.
func TestPushShutdownGraceEnds(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{
		InlineWait: 10 * time.Millisecond, Grace: 100 * time.Millisecond,
	})
	cause := make(chan error, 1)
	w.Handle("do", untilDone(cause))
	p := servePush(t, w)

	x.start(t, oneTask, `{"n": 1}`)
	if resp, err := p.execute(x.claim(t)); err != nil || !resp.GetAccepted() {
		t.Fatalf("ExecuteTask: %v, %v; want accepted", resp, err)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("ServePush: %v", err)
	}

	if err := <-cause; !errors.Is(err, worker.ErrShutdown) {
		t.Fatalf("handler's context ended with %v, want ErrShutdown", err)
	}
}

func TestPushRefusesBadRequests(t *testing.T) {
	x := serveWeft(t, 0)
	w := newWorker(t, x, worker.Options{})
	var calls atomic.Int32
	w.Handle("do", func(context.Context, worker.Task) (any, error) { calls.Add(1); return nil, nil })
	p := servePush(t, w)

	good := func() *weftv1.Task {
		return &weftv1.Task{
			InstanceId: "i", PointerId: 1, Attempt: 1, Service: "svc", Action: "do",
			Input: `{}`, IdempotencyKey: "k", TaskToken: "t",
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*weftv1.Task) *weftv1.Task
	}{
		{"task", func(*weftv1.Task) *weftv1.Task { return nil }},
		{"task.instance_id", func(m *weftv1.Task) *weftv1.Task { m.InstanceId = ""; return m }},
		{"task.pointer_id", func(m *weftv1.Task) *weftv1.Task { m.PointerId = 0; return m }},
		{"task.attempt", func(m *weftv1.Task) *weftv1.Task { m.Attempt = -1; return m }},
		{"task.task_token", func(m *weftv1.Task) *weftv1.Task { m.TaskToken = ""; return m }},
		{"task.idempotency_key", func(m *weftv1.Task) *weftv1.Task { m.IdempotencyKey = ""; return m }},
		{"task.action", func(m *weftv1.Task) *weftv1.Task { m.Action = ""; return m }},
		{"task.service", func(m *weftv1.Task) *weftv1.Task { m.Service = "other"; return m }},
		{"task.input", func(m *weftv1.Task) *weftv1.Task { m.Input = "{"; return m }},
		{"task.task_id", func(m *weftv1.Task) *weftv1.Task { m.TaskId = -1; return m }},
		{"task.heartbeat_timeout", func(m *weftv1.Task) *weftv1.Task {
			m.HeartbeatTimeout = durationpb.New(-time.Second)
			return m
		}},
	} {
		_, err := p.execute(tc.edit(good()))
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+":") {
			t.Errorf("ExecuteTask with a bad %s: %v, want INVALID_ARGUMENT naming it", tc.field, err)
		}
	}

	for _, ref := range []*weftv1.TaskRef{
		nil, {PointerId: 1, Attempt: 1, TaskToken: "t"}, {InstanceId: "i", Attempt: 1, TaskToken: "t"},
		{InstanceId: "i", PointerId: 1, TaskToken: "t"}, {InstanceId: "i", PointerId: 1, Attempt: 1},
	} {
		_, err := p.client.CancelTask(context.Background(), &weftv1.CancelTaskRequest{Task: ref})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "task") {
			t.Errorf("CancelTask(%v): %v, want INVALID_ARGUMENT naming the field", ref, err)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("%d handler runs after bad requests, want 0", calls.Load())
	}
}
