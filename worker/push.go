package worker

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// Bounds of push mode.
const (
	// inlineMargin is kept free before an ExecuteTask call's deadline, so
	// that the answer reaches weft in time.
	inlineMargin = 50 * time.Millisecond
	// retryHint is the wait weft is told to keep before it sends a task
	// refused for lack of a free slot again.
	retryHint = time.Second
)

// PushService is the worker's StepWorkerService: weft calls it with the
// attempts of the worker's service (push mode), and the worker runs them
// with the handlers set by Handle. Worker.ServePush serves it on a
// listener; PushService and Register put it on a grpc.Server of the
// program's own.
type PushService struct {
	weftv1.UnimplementedStepWorkerServiceServer

	w       *Worker
	work    context.Context
	stop    context.CancelCauseFunc
	slots   chan struct{}
	running sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	byKey    map[string]*pushTask
	byRef    map[refKey]*pushTask
	finished *list.List // of *pushTask, the latest to finish first
}

// refKey names an attempt as CancelTask does.
type refKey struct {
	instance string
	pointer  int64
	attempt  int32
}

func refKeyOf(ref *weftv1.TaskRef) refKey {
	return refKey{
		instance: ref.GetInstanceId(), pointer: ref.GetPointerId(), attempt: ref.GetAttempt(),
	}
}

// pushTask is an attempt taken in push mode, running or finished.
type pushTask struct {
	a   *attempt
	key string
	// ended is closed when the handler has returned.
	ended chan struct{}

	// The fields below are guarded by PushService.mu.

	// accepted is set once an answer said accepted: the outcome then
	// goes to weft as a report.
	accepted bool
	res      outcome
	doneAt   time.Time
}

// PushService returns the worker's push-mode service; every call returns
// the same one.
func (w *Worker) PushService() *PushService {
	w.pushOnce.Do(func() {
		work, stop := context.WithCancelCause(context.Background())
		w.push = &PushService{
			w: w, work: work, stop: stop, slots: make(chan struct{}, w.opts.Concurrency),
			byKey: map[string]*pushTask{}, byRef: map[refKey]*pushTask{}, finished: list.New(),
		}
	})

	return w.push
}

// Register registers the service on g.
func (p *PushService) Register(g grpc.ServiceRegistrar) {
	weftv1.RegisterStepWorkerServiceServer(g, p)
}

// ServePush serves push mode on lis until ctx ends: StepWorkerService
// for weft, with the standard health service and server reflection.
// Then it refuses new tasks with UNAVAILABLE, drains as Shutdown does,
// stops the server and returns nil. opts configure the grpc.Server, for
// example grpc.Creds for TLS. Reports and heartbeats of accepted tasks
// go to weft at Options.Address. A Worker drains its push service once:
// after ServePush returns, it takes no new task.
func (w *Worker) ServePush(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	p := w.PushService()
	g := grpc.NewServer(opts...)
	p.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	w.log.Info("push worker serving", keyAddr, lis.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serving push mode: %w", err)
	}

	hs.Shutdown()
	p.Shutdown()
	g.GracefulStop()
	if err == nil {
		err = <-errc
	}

	return err
}

// Shutdown stops taking tasks (ExecuteTask answers UNAVAILABLE, so weft
// sends them again later or elsewhere), waits up to Options.Grace for
// the running handlers and the reports of accepted tasks, then ends the
// handlers still running with ErrShutdown and waits for their reports.
func (p *PushService) Shutdown() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()

	p.w.log.Info("push worker stopping", keyGrace, p.w.opts.Grace)
	p.w.drain(&p.running, p.stop)
	p.w.log.Info("push worker stopped")
}

// ExecuteTask runs one attempt: it answers with the result when the
// handler ends within Options.InlineWait, else accepted, and the outcome
// goes to weft as a report later. A repeated call for an attempt the
// worker has (same idempotency key) runs nothing again.
func (p *PushService) ExecuteTask(
	ctx context.Context, req *weftv1.ExecuteTaskRequest,
) (*weftv1.ExecuteTaskResponse, error) {
	msg := req.GetTask()
	if err := p.check(msg); err != nil {
		return nil, err
	}
	if _, ok := p.w.handler(msg.GetAction()); !ok {
		return answer(outcome{err: p.w.unknownAction(msg.GetAction())}), nil
	}

	t, fresh, err := p.take(msg)
	if err != nil {
		return nil, err
	}
	if fresh {
		go p.run(t)
	}

	return p.await(ctx, t), nil
}

// check refuses a task with a missing or malformed field.
func (p *PushService) check(msg *weftv1.Task) error {
	if msg == nil {
		return invalidField("task", "required")
	}

	err := first(
		checkRef(taskRefOf(msg)),
		required("task.idempotency_key", msg.GetIdempotencyKey()),
		required("task.action", msg.GetAction()),
	)
	if err != nil {
		return err
	}

	switch {
	case msg.GetTaskId() < 0:
		return invalidField("task.task_id", "must not be negative, got %d", msg.GetTaskId())
	case msg.GetService() != "" && msg.GetService() != p.w.opts.Service:
		return invalidField("task.service", "this worker serves %q, not %q",
			p.w.opts.Service, msg.GetService())
	case msg.GetInput() != "" && !json.Valid([]byte(msg.GetInput())):
		return invalidField("task.input", "not valid JSON")
	case msg.Deadline != nil && msg.GetDeadline().CheckValid() != nil:
		return invalidField("task.deadline", "%v", msg.GetDeadline().CheckValid())
	case msg.HeartbeatTimeout != nil && msg.GetHeartbeatTimeout().CheckValid() != nil:
		return invalidField("task.heartbeat_timeout", "%v", msg.GetHeartbeatTimeout().CheckValid())
	case msg.GetHeartbeatTimeout().AsDuration() < 0:
		return invalidField("task.heartbeat_timeout", "must not be negative")
	}

	return nil
}

// take finds the task of msg's idempotency key, or makes a new one in a
// free slot; fresh says which.
func (p *PushService) take(msg *weftv1.Task) (t *pushTask, fresh bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.forget(time.Now())
	if t, ok := p.byKey[msg.GetIdempotencyKey()]; ok {
		if refKeyOf(t.a.ref) != refKeyOf(taskRefOf(msg)) || t.a.ref.GetTaskToken() != msg.GetTaskToken() {
			return nil, false, invalidField("task.idempotency_key", "held by another attempt")
		}
		return t, false, nil
	}
	if p.closed {
		return nil, false, status.Error(codes.Unavailable,
			"the worker is shutting down; send the task again later")
	}

	select {
	case p.slots <- struct{}{}:
	default:
		return nil, false, exhausted(cap(p.slots))
	}

	t = &pushTask{a: p.w.begin(p.work, msg), key: msg.GetIdempotencyKey(), ended: make(chan struct{})}
	p.byKey[t.key] = t
	p.byRef[refKeyOf(t.a.ref)] = t
	p.running.Add(1)

	return t, true, nil
}

// forget drops the finished tasks past Options.RememberFor or past
// Options.RememberFinished.
func (p *PushService) forget(now time.Time) {
	for e := p.finished.Back(); e != nil; e = p.finished.Back() {
		t := e.Value.(*pushTask)
		if p.finished.Len() <= p.w.opts.RememberFinished && now.Sub(t.doneAt) < p.w.opts.RememberFor {
			return
		}
		p.finished.Remove(e)
		delete(p.byKey, t.key)
	}
}

// run runs a new task's handler, and reports its outcome when an answer
// said accepted.
func (p *PushService) run(t *pushTask) {
	defer p.running.Done()
	defer func() { <-p.slots }()

	beat := &weftv1.HeartbeatTaskRequest{Task: t.a.ref}
	res := p.w.execute(t.a, beat, p.w.interval(t.a.task, 0))

	p.mu.Lock()
	t.res, t.doneAt = res, time.Now()
	close(t.ended)
	report := t.accepted
	delete(p.byRef, refKeyOf(t.a.ref))
	p.finished.PushFront(t)
	p.forget(t.doneAt)
	p.mu.Unlock()

	if report {
		p.w.settle(p.work, t.a, res)
	}
}

// await waits for the task's handler up to Options.InlineWait, never past
// the call's deadline, and answers with the result or accepted.
func (p *PushService) await(ctx context.Context, t *pushTask) *weftv1.ExecuteTaskResponse {
	wait := p.w.opts.InlineWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline)-inlineMargin)
	}
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-t.ended:
		case <-timer.C:
		case <-ctx.Done():
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()

	select {
	case <-t.ended:
		return answer(t.res)
	default:
		t.accepted = true
		accepted := &weftv1.ExecuteTaskResponse_Accepted{Accepted: true}
		return &weftv1.ExecuteTaskResponse{Result: accepted}
	}
}

// answer is the response that carries a finished handler's result.
func answer(res outcome) *weftv1.ExecuteTaskResponse {
	if res.err != nil {
		e := &weftv1.ExecuteTaskResponse_Error{Error: stepError(res.err)}
		return &weftv1.ExecuteTaskResponse{Result: e}
	}

	out := &weftv1.ExecuteTaskResponse_Output{Output: string(res.out)}
	return &weftv1.ExecuteTaskResponse{Result: out}
}

// CancelTask ends the context of the named attempt's handler with cause
// ErrCancelRequested. An attempt the worker is not running is no error.
func (p *PushService) CancelTask(
	_ context.Context, req *weftv1.CancelTaskRequest,
) (*weftv1.CancelTaskResponse, error) {
	ref := req.GetTask()
	if ref == nil {
		return nil, invalidField("task", "required")
	}
	if err := checkRef(ref); err != nil {
		return nil, err
	}

	p.mu.Lock()
	t, ok := p.byRef[refKeyOf(ref)]
	p.mu.Unlock()
	if !ok || t.a.ref.GetTaskToken() != ref.GetTaskToken() {
		p.w.log.Debug("cancel for a task not running here", keyInstance, ref.GetInstanceId(),
			keyAttempt, ref.GetAttempt())
		return &weftv1.CancelTaskResponse{}, nil
	}

	t.a.log.Info("task cancel requested", keyReason, req.GetReason())
	t.a.cancel(ErrCancelRequested)

	return &weftv1.CancelTaskResponse{}, nil
}

// checkRef refuses an attempt's reference with a missing field.
func checkRef(ref *weftv1.TaskRef) error {
	return first(
		required("task.instance_id", ref.GetInstanceId()),
		positive("task.pointer_id", ref.GetPointerId()),
		positive("task.attempt", int64(ref.GetAttempt())),
		required("task.task_token", ref.GetTaskToken()),
	)
}

// invalidField is the INVALID_ARGUMENT status that names the field at
// fault.
func invalidField(field, format string, args ...any) error {
	msg := field + ": " + fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, msg)
	if with, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	}); err == nil {
		st = with
	}

	return st.Err()
}

// exhausted refuses a task when every slot is taken, with a retry hint.
func exhausted(slots int) error {
	st := status.Newf(codes.ResourceExhausted,
		"all %d handler slots are busy; send the task again later", slots)
	hint := &errdetails.RetryInfo{RetryDelay: durationpb.New(retryHint)}
	if with, err := st.WithDetails(hint); err == nil {
		st = with
	}

	return st.Err()
}

func required(field, v string) error {
	if v == "" {
		return invalidField(field, "required")
	}

	return nil
}

func positive(field string, v int64) error {
	if v < 1 {
		return invalidField(field, "must be at least 1, got %d", v)
	}

	return nil
}

func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}

	return nil
}
