package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// Bounds of the retries on UNAVAILABLE.
const (
	// maxBackoff caps the wait between two calls.
	maxBackoff = 5 * time.Second
	// reportTimeout bounds the retries of one report.
	reportTimeout = 2 * time.Minute
)

// Run polls tasks and runs them until ctx ends; then it stops polling,
// waits up to Options.Grace for the running handlers and reports their
// outcomes, cancels the handlers still running, and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	work, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)

	var running sync.WaitGroup
	w.poll(ctx, work, &running)

	w.log.Info("worker stopping", keyGrace, w.opts.Grace)
	w.drain(&running, stop)
	w.log.Info("worker stopped")

	return nil
}

// drain waits up to Options.Grace for the running handlers (and their
// reports), then ends their contexts with ErrShutdown and waits for the
// rest.
func (w *Worker) drain(running *sync.WaitGroup, stop context.CancelCauseFunc) {
	done := make(chan struct{})
	go func() { running.Wait(); close(done) }()

	t := time.NewTimer(w.opts.Grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		stop(ErrShutdown)
		<-done
	}
}

// poll takes tasks while ctx lasts, each once a slot is free, and starts
// them under work.
func (w *Worker) poll(ctx, work context.Context, running *sync.WaitGroup) {
	backoff := time.Duration(0)
	for {
		free, ok := w.acquire(ctx)
		if !ok {
			return
		}

		resp, err := w.client.PollTasks(ctx, &weftv1.PollTasksRequest{
			Service: w.opts.Service, Worker: w.opts.Name, MaxTasks: int32(free),
			Wait: durationpb.New(w.opts.PollWait),
		})
		w.release(free - len(resp.GetTasks()))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = w.next(backoff)
			w.log.Warn("polling tasks failed", keyErr, err)
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0

		claim := time.Until(resp.GetClaimExpires().AsTime())
		for _, t := range resp.GetTasks() {
			running.Add(1)
			go func() {
				defer running.Done()
				defer w.release(1)
				w.run(work, t, claim)
			}()
		}
	}
}

// acquire waits for at least one free slot and takes every free one.
func (w *Worker) acquire(ctx context.Context) (int, bool) {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}

	n := 1
	for n < cap(w.slots) {
		select {
		case w.slots <- struct{}{}:
			n++
		default:
			return n, true
		}
	}

	return n, true
}

func (w *Worker) release(n int) {
	for range n {
		<-w.slots
	}
}

func (w *Worker) next(d time.Duration) time.Duration {
	if d == 0 {
		return w.opts.RetryBackoff
	}

	return min(2*d, maxBackoff)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// run runs one polled task's handler with heartbeats and reports its
// outcome.
func (w *Worker) run(work context.Context, msg *weftv1.Task, claim time.Duration) {
	a := w.begin(work, msg)
	beat := &weftv1.HeartbeatTaskRequest{Task: a.ref, TaskId: msg.GetTaskId(), Worker: w.opts.Name}
	res := w.execute(a, beat, w.interval(a.task, claim))
	w.settle(work, a, res)
}

// attempt is one delivery of a task to its handler, in pull or push
// mode.
type attempt struct {
	task Task
	ref  *weftv1.TaskRef
	log  *slog.Logger
	// ctx is the handler's context; cancel ends it with a cause, and
	// release frees its deadline.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	release context.CancelFunc
}

// outcome is what a handler's run came to.
type outcome struct {
	out []byte
	err error
	// cause is why the handler's context ended, nil if it had not.
	cause error
}

// begin prepares msg's attempt under work, with the task's deadline.
func (w *Worker) begin(work context.Context, msg *weftv1.Task) *attempt {
	t := taskOf(msg)
	a := &attempt{
		task:    t,
		ref:     taskRefOf(msg),
		log:     w.log.With(keyStep, t.StepID, keyAttempt, t.Attempt, keyAction, t.Action),
		release: func() {},
	}

	a.ctx, a.cancel = context.WithCancelCause(work)
	if !t.Deadline.IsZero() {
		a.ctx, a.release = context.WithDeadline(a.ctx, t.Deadline)
	}

	return a
}

// execute runs the attempt's handler, heartbeating with beat every d.
func (w *Worker) execute(a *attempt, beat *weftv1.HeartbeatTaskRequest, d time.Duration) outcome {
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		w.heartbeat(a, beat, d)
	}()

	out, err := w.call(a.ctx, a.task)
	cause := context.Cause(a.ctx)
	a.cancel(nil)
	a.release()
	<-beats

	return outcome{out: out, err: err, cause: cause}
}

// settle reports the outcome of an attempt, unless it was lost.
func (w *Worker) settle(work context.Context, a *attempt, res outcome) {
	if errors.Is(res.cause, ErrLost) {
		a.log.Warn("task lost before it ended", keyErr, res.cause)
		return
	}

	rctx, stop := context.WithTimeout(context.WithoutCancel(work), reportTimeout)
	defer stop()
	dup, err := w.report(rctx, a.ref, res.out, res.err)
	if status.Code(err) == codes.FailedPrecondition {
		a.log.Warn("task report came too late; weft had settled the attempt", keyErr, err)
		return
	}
	if err != nil {
		a.log.Error("reporting the task failed", keyErr, err)
		return
	}
	if dup {
		a.log.Info("task was already reported; weft kept the first report")
		return
	}
	a.log.Debug("task reported")
}

func taskRefOf(m *weftv1.Task) *weftv1.TaskRef {
	return &weftv1.TaskRef{
		InstanceId: m.GetInstanceId(), PointerId: m.GetPointerId(),
		Attempt: m.GetAttempt(), TaskToken: m.GetTaskToken(),
	}
}

func taskOf(m *weftv1.Task) Task {
	t := Task{
		InstanceID: m.GetInstanceId(), StepID: m.GetStepId(), PointerID: m.GetPointerId(),
		Attempt: int(m.GetAttempt()), Action: m.GetAction(), Input: json.RawMessage(m.GetInput()),
		IdempotencyKey: m.GetIdempotencyKey(), HeartbeatTimeout: m.GetHeartbeatTimeout().AsDuration(),
	}
	if m.GetDeadline() != nil {
		t.Deadline = m.GetDeadline().AsTime()
	}

	return t
}

// interval is how often to heartbeat: a third of the shorter of the
// heartbeat timeout and the claim, unless the options fix it.
func (w *Worker) interval(t Task, claim time.Duration) time.Duration {
	if w.opts.HeartbeatEvery > 0 {
		return w.opts.HeartbeatEvery
	}

	d := claim
	if t.HeartbeatTimeout > 0 && (d <= 0 || t.HeartbeatTimeout < d) {
		d = t.HeartbeatTimeout
	}
	if d <= 0 {
		d = 30 * time.Second
	}

	return max(d/3, 10*time.Millisecond)
}

// call runs the task's handler, turning a panic into a failure.
func (w *Worker) call(ctx context.Context, t Task) (out []byte, err error) {
	h, ok := w.handler(t.Action)
	if !ok {
		return nil, w.unknownAction(t.Action)
	}

	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("handler panicked: %v", p)
		}
	}()
	res, err := h(ctx, t)
	if err != nil {
		return nil, err
	}

	out, err = json.Marshal(res)
	if err != nil {
		return nil, engine.NonRetryable("bad_output", fmt.Sprintf("marshalling the result: %v", err))
	}

	return out, nil
}

// unknownAction is the failure of a task whose action has no handler.
func (w *Worker) unknownAction(action string) error {
	return engine.NonRetryable("unknown_action",
		fmt.Sprintf("service %s has no action %q", w.opts.Service, action))
}

// heartbeat sends req every d until the attempt's context ends, and
// cancels the handler when weft asks to cancel or refuses the attempt.
func (w *Worker) heartbeat(a *attempt, req *weftv1.HeartbeatTaskRequest, d time.Duration) {
	for sleep(a.ctx, d) {
		resp, err := w.client.HeartbeatTask(a.ctx, req)
		switch {
		case a.ctx.Err() != nil:
			return
		case retryable(err):
			a.log.Warn("heartbeat failed", keyErr, err)
		case err != nil:
			a.cancel(fmt.Errorf("%w: %v", ErrLost, err))
			return
		case resp.GetCancelRequested():
			a.cancel(ErrCancelRequested)
			return
		}
	}
}

// report sends the outcome, retrying while weft is unavailable, until
// ctx ends. It says whether weft had a report of the attempt already.
func (w *Worker) report(ctx context.Context, ref *weftv1.TaskRef, out []byte, herr error) (bool, error) {
	send := func() (weftv1.ReportOutcome, error) {
		resp, err := w.client.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: string(out)})
		return resp.GetOutcome(), err
	}
	if herr != nil {
		msg := stepError(herr)
		send = func() (weftv1.ReportOutcome, error) {
			resp, err := w.client.FailTask(ctx, &weftv1.FailTaskRequest{Task: ref, Error: msg})
			return resp.GetOutcome(), err
		}
	}

	for backoff := time.Duration(0); ; {
		outcome, err := send()
		if !retryable(err) {
			return outcome == weftv1.ReportOutcome_REPORT_OUTCOME_ALREADY_APPLIED, err
		}
		backoff = w.next(backoff)
		w.log.Warn("reporting the task failed; retrying", keyErr, err, keyBackoff, backoff)
		if !sleep(ctx, backoff) {
			return false, fmt.Errorf("reporting the task: %w", err)
		}
	}
}

// stepError is the failure a handler's error reports: an *engine.Error
// as it is, any other retryable with its text.
func stepError(err error) *weftv1.StepError {
	var e *engine.Error
	if errors.As(err, &e) {
		msg := e.Message
		if msg == "" {
			msg = e.Error()
		}
		return &weftv1.StepError{Code: e.Code, Message: msg, Retryable: e.Retryable}
	}
	code := "error"
	if errors.Is(err, context.DeadlineExceeded) {
		code = "deadline_exceeded"
	} else if errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelRequested) ||
		errors.Is(err, ErrShutdown) || errors.Is(err, ErrLost) {
		// A handler that returns its context's cause says it was stopped.
		code = "canceled"
	}

	return &weftv1.StepError{Code: code, Message: err.Error(), Retryable: true}
}

// retryable says whether a call's error is worth the same call again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	default:
		return false
	}
}
