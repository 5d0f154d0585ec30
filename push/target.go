package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/internal/servicetls"
	"github.com/weftworks/weft/internal/wire"
	"github.com/weftworks/weft/store"
)

// cancelTimeout bounds one CancelTask call, and the store writes made
// around a call.
const cancelTimeout = 5 * time.Second

// claimMargin is how much longer a claim holds than its call's deadline.
const claimMargin = 5 * time.Second

// maxAnswerBytes bounds a service's answer; a larger one fails the
// attempt with payload_too_large, as does one over the engine's payload
// limit.
const maxAnswerBytes = 16 << 20

// target is one push service: its connection, its breaker and the loop
// that claims and sends its tasks.
type target struct {
	d      *Dispatcher
	conn   *grpc.ClientConn
	client weftv1.StepWorkerServiceClient
	cb     *gobreaker.CircuitBreaker[*weftv1.ExecuteTaskResponse]
	wake   chan struct{}
	// kick cuts the loop's waits short when the entry's limits change.
	kick      chan struct{}
	freed     chan struct{}
	cancelRun context.CancelCauseFunc

	mu  sync.Mutex
	svc store.Service
	// inFlight counts the calls this node has open to the service.
	inFlight int
}

// DialOptions returns the transport options of a service's TLS settings:
// plaintext unless TLS is enabled, then the CA file (or the system's
// roots), the client certificate for mTLS and the server name to check.
func DialOptions(svc store.Service) ([]grpc.DialOption, error) {
	cfg, err := servicetls.Config(svc)
	if err != nil {
		return nil, fmt.Errorf("dialling service %s: %w", svc.Name, err)
	}
	if cfg == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}

	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

// newTarget connects to a service's addresses, spreading calls over
// them round robin. The connection opens on the first call.
func (d *Dispatcher) newTarget(svc store.Service) (*target, error) {
	if len(svc.Addresses) == 0 {
		return nil, fmt.Errorf("push service %s has no address", svc.Name)
	}
	opts, err := d.opts.Dial(svc)
	if err != nil {
		return nil, err
	}

	r := manual.NewBuilderWithScheme("weft-push")
	addrs := make([]resolver.Address, len(svc.Addresses))
	for i, a := range svc.Addresses {
		addrs[i] = resolver.Address{Addr: a}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	// The name checked in the service's certificate is its ServerName,
	// or the host of its first address.
	authority := svc.TLS.ServerName
	if authority == "" {
		authority = svc.Addresses[0]
		if host, _, err := net.SplitHostPort(authority); err == nil {
			authority = host
		}
	}
	// The breaker and the dispatch backoff pace the calls to a service
	// that is down; the connection itself retries quickly, so a service
	// that comes back is reached within a few seconds, not gRPC's
	// default of up to two minutes.
	opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second,
		},
		MinConnectTimeout: 5 * time.Second,
	}))
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAnswerBytes)))
	opts = append(opts, grpc.WithResolvers(r), grpc.WithAuthority(authority),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	conn, err := grpc.NewClient(r.Scheme()+":///"+svc.Name, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to service %s: %w", svc.Name, err)
	}

	t := &target{
		d: d, conn: conn, client: weftv1.NewStepWorkerServiceClient(conn),
		wake: make(chan struct{}, 1), freed: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		svc: svc,
	}
	t.cb = gobreaker.NewCircuitBreaker[*weftv1.ExecuteTaskResponse](gobreaker.Settings{
		Name:        svc.Name,
		MaxRequests: 1,
		Timeout:     d.opts.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(d.opts.BreakerFailures)
		},
		IsSuccessful: func(err error) bool { return !unreachable(err) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			d.log.Warn("service breaker changed", keyService, name, keyFrom, from.String(),
				keyTo, to.String())
		},
	})

	return t, nil
}

// same reports whether svc can keep this target's connection: the same
// addresses and transport security.
func (t *target) same(svc store.Service) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	return slices.Equal(t.svc.Addresses, svc.Addresses) && t.svc.TLS == svc.TLS
}

// update takes a service's new limits and dispatch settings; a loop
// waiting out the old rate or concurrency looks again at once.
func (t *target) update(svc store.Service) {
	t.mu.Lock()
	changed := t.svc.Rate != svc.Rate || t.svc.Burst != svc.Burst ||
		t.svc.Concurrency != svc.Concurrency
	t.svc = svc
	t.mu.Unlock()

	if changed {
		signal(t.kick)
	}
}

func (t *target) service() store.Service {
	t.mu.Lock()
	defer t.mu.Unlock()

	return t.svc
}

func (t *target) stop() {
	t.mu.Lock()
	cancel := t.cancelRun
	t.mu.Unlock()

	if cancel != nil {
		cancel(errStopped)
	}
}

// run claims the service's tasks and sends them until ctx ends or the
// target is stopped; it then waits for its calls and closes the
// connection.
func (t *target) run(parent context.Context) {
	// Stopping the target (the service changed or left the registry)
	// ends its claims; the calls in flight run on, under parent, so that
	// no attempt is cut off and sent again while its service works on it.
	ctx, cancel := context.WithCancelCause(parent)
	t.mu.Lock()
	t.cancelRun = cancel
	t.mu.Unlock()

	var calls sync.WaitGroup
	defer func() {
		calls.Wait()
		_ = t.conn.Close()
	}()

	var failing time.Duration
	for ctx.Err() == nil {
		svc := t.service()
		limit := t.room(svc)
		if limit == 0 {
			t.waitFreed(ctx)
			continue
		}

		switch t.cb.State() {
		case gobreaker.StateOpen:
			// No claim while the service is down: its backlog waits in
			// the store without spending dispatch tries.
			t.pause(ctx, t.d.opts.BreakerOpen/4)
			continue
		case gobreaker.StateHalfOpen:
			limit = 1
		}

		claimed := time.Now()
		tasks, err := t.d.st.TaskClaim(ctx, store.TaskClaimParams{
			Worker: t.d.opts.NodeID, Services: []string{svc.Name}, Limit: limit,
			LeaseTTL: t.claimTTL(svc), Now: claimed, NoStart: true,
		})
		if err != nil {
			if ctx.Err() == nil {
				// The database is away: wait longer each time, up to the
				// engine's own longest wait, so an outage is not a flood.
				failing = engine.FailureBackoff(failing, t.d.opts.PollInterval)
				t.d.log.Warn("claiming push tasks failed", keyService, svc.Name, keyErr, err,
					keyBackoff, failing)
				t.pause(ctx, failing)
			}
			continue
		}
		failing = 0

		for _, task := range tasks {
			t.acquire()
			calls.Add(1)
			go func() {
				defer calls.Done()
				defer t.release()
				t.send(parent, svc, task)
			}()
		}

		switch {
		case len(tasks) == 0:
			t.idle(ctx)
		case svc.Rate > 0:
			// The store's token bucket holds the rate cluster-wide; this
			// wait, counted from the claim, makes the next claim come when
			// the bucket has a token again.
			next := claimed.Add(time.Duration(float64(time.Second) / svc.Rate))
			t.pause(ctx, time.Until(next))
		}
	}
}

// claimTTL is how long a claim holds while its call is open: never less
// than the call's own deadline, so that no other claim sends the attempt
// again while the service may still be on it.
func (t *target) claimTTL(svc store.Service) time.Duration {
	return max(t.d.opts.ClaimTTL, svc.Timeout()+claimMargin)
}

// room is how many more calls this node may open to the service.
func (t *target) room(svc store.Service) int {
	limit := t.d.opts.MaxInFlight
	if svc.Concurrency > 0 {
		limit = svc.Concurrency
	}

	t.mu.Lock()
	defer t.mu.Unlock()

	return max(0, limit-t.inFlight)
}

func (t *target) acquire() {
	t.mu.Lock()
	t.inFlight++
	t.mu.Unlock()
}

func (t *target) release() {
	t.mu.Lock()
	t.inFlight--
	t.mu.Unlock()

	signal(t.freed)
}

func (t *target) waitFreed(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-t.freed:
	case <-t.kick:
	case <-time.After(t.d.opts.PollInterval):
	}
}

func (t *target) idle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-t.wake:
	case <-t.freed:
	case <-t.kick:
	case <-time.After(t.d.opts.PollInterval):
	}
}

// signal wakes whoever waits on ch, without blocking; a signal already
// there stands for this one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pause waits d, less when the entry's limits change.
func (t *target) pause(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()

	select {
	case <-ctx.Done():
	case <-tm.C:
	case <-t.kick:
	}
}

// send makes one ExecuteTask call and records what came of it.
func (t *target) send(ctx context.Context, svc store.Service, task store.Task) {
	if !task.Deadline.IsZero() && !time.Now().Before(task.Deadline) {
		// Past its start-to-close cap the attempt is the timeout's to
		// end; sending it now would race that.
		t.giveBack(task, task.Deadline.Add(t.d.opts.ClaimTTL), false)
		return
	}

	callCtx, cancel := context.WithTimeout(ctx, svc.Timeout())
	defer cancel()

	// The attempt's step starts when the service answers (its audit row
	// then comes in order); the request carries the cap counted from the
	// call, a little before the one weft then keeps.
	sent := time.Now()
	msg := wire.TaskMsg(task)
	if task.Deadline.IsZero() && task.StartToClose > 0 {
		msg.Deadline = timestamppb.New(sent.Add(task.StartToClose))
	}
	t.d.counters.Sent.Add(1)
	resp, err := t.cb.Execute(func() (*weftv1.ExecuteTaskResponse, error) {
		return t.client.ExecuteTask(callCtx, &weftv1.ExecuteTaskRequest{Task: msg})
	})

	switch {
	case err == nil:
		task = t.start(task, time.Now())
		t.settle(task, resp)
	case tooLarge(err):
		t.start(task, time.Now())
		t.report(task, engine.ReportParams{Err: &engine.Error{
			Code: "payload_too_large", Message: fmt.Sprintf("service %s answered: %v", svc.Name, err),
			Retryable: true,
		}})
	case ctx.Err() != nil:
		// This node is stopping or the service changed: another claim
		// sends the attempt again at once.
		t.giveBack(task, time.Now(), false)
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		// The breaker opened while the task was claimed: nothing was
		// sent; the task waits out the breaker.
		t.d.counters.Unreachable.Add(1)
		t.giveBack(task, time.Now().Add(t.d.opts.BreakerOpen), true)
	case busy(err):
		// The service is up and says it is full: send again after the
		// wait it asks for; this spends no dispatch try.
		t.d.counters.Busy.Add(1)
		t.giveBack(task, time.Now().Add(retryDelay(err, t.backoff(1))), true)
	case unreachable(err):
		t.d.counters.Unreachable.Add(1)
		t.unreachable(svc, task, err)
	default:
		// The service answered, but refused the call itself (bad
		// request, unauthenticated, unimplemented): the attempt fails
		// and the step's retry policy decides.
		t.report(task, engine.ReportParams{Err: &engine.Error{
			Code:      "dispatch_refused",
			Message:   fmt.Sprintf("service %s refused the task: %v", svc.Name, err),
			Retryable: true,
		}})
	}
}

// start starts the step of an attempt its service answered, at now, and
// returns the task with its deadline.
func (t *target) start(task store.Task, now time.Time) store.Task {
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()

	started, err := t.d.st.TaskStart(ctx, store.TaskStartParams{
		Worker: t.d.opts.NodeID, ID: task.ID, Now: now,
	})
	if err != nil {
		// Reported, withdrawn or claimed again meanwhile: the report
		// that follows is judged as any other.
		if !errors.Is(err, store.ErrNotFound) {
			t.d.log.Warn("starting push task failed", keyService, task.Service,
				keyInstance, task.InstanceID, keyStep, task.StepID, keyErr, err)
		}
		return task
	}

	return started
}

// tooLarge is true when the service's answer was over the size the
// connection takes: the service answered, its output is too large.
func tooLarge(err error) bool {
	return status.Code(err) == codes.ResourceExhausted &&
		strings.Contains(status.Convert(err).Message(), "larger than max")
}

// unreachable is true for the errors that leave the outcome unknown:
// the service is down, did not answer in time, is overloaded, or its
// breaker is open.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}

	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}

	return false
}

// busy is true when the service answered that it is full.
func busy(err error) bool {
	return status.Code(err) == codes.ResourceExhausted && !tooLarge(err)
}

// retryDelay is the wait a status's RetryInfo asks for, or def.
func retryDelay(err error, def time.Duration) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return min(ri.GetRetryDelay().AsDuration(), time.Minute)
		}
	}

	return def
}

// unreachable sends the attempt again after a backoff, or fails it when
// its dispatch limit is spent.
func (t *target) unreachable(svc store.Service, task store.Task, err error) {
	if task.Claims >= svc.Limit() {
		t.d.counters.Exhausted.Add(1)
		t.d.log.Warn("dispatch limit spent", keyService, svc.Name, keyInstance, task.InstanceID,
			keyStep, task.StepID, keyAttempt, task.Attempt, keyErr, err)
		t.report(task, engine.ReportParams{Err: &engine.Error{
			Code: "dispatch_failed",
			Message: fmt.Sprintf("service %s unreachable after %d dispatch tries: %v",
				svc.Name, task.Claims, err),
			Retryable: true,
		}})
		return
	}

	t.d.log.Debug("service unreachable", keyService, svc.Name, keyInstance, task.InstanceID,
		keyStep, task.StepID, keyErr, err)
	t.giveBack(task, time.Now().Add(t.backoff(task.Claims)), false)
}

// backoff is the wait before the try after the n-th: BackoffBase
// doubled per try, capped, with up to a fifth of jitter either way.
func (t *target) backoff(n int) time.Duration {
	d := t.d.opts.BackoffBase
	for i := 1; i < n && d < t.d.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, t.d.opts.BackoffMax)

	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// settle records the service's answer: an outcome is reported, an
// accepted attempt keeps its claim until its cap or AcceptedTTL while
// the service works on it.
func (t *target) settle(task store.Task, resp *weftv1.ExecuteTaskResponse) {
	switch r := resp.GetResult().(type) {
	case *weftv1.ExecuteTaskResponse_Output:
		t.d.counters.Results.Add(1)
		out := []byte(r.Output)
		if len(out) == 0 {
			out = []byte("null")
		}
		if !json.Valid(out) {
			t.report(task, engine.ReportParams{Err: engine.NonRetryable("bad_output",
				fmt.Sprintf("service %s answered an output that is not JSON", task.Service))})
			return
		}
		t.report(task, engine.ReportParams{Output: out})
	case *weftv1.ExecuteTaskResponse_Error:
		t.d.counters.Results.Add(1)
		code, message := r.Error.GetCode(), r.Error.GetMessage()
		if code == "" {
			code = "error"
		}
		if message == "" {
			message = fmt.Sprintf("service %s failed the attempt without a message", task.Service)
		}
		t.report(task, engine.ReportParams{Err: &engine.Error{
			Code: code, Message: message, Retryable: r.Error.GetRetryable(),
		}})
	default:
		// Accepted, or an answer without a result, which weft reads as
		// accepted: the service reports through StepExecutionService.
		t.d.counters.Accepted.Add(1)
		// An attempt with a cap is held past it: its timeout fails it
		// and removes the task, which is never sent again after its cap.
		until := time.Now().Add(t.d.opts.AcceptedTTL)
		if !task.Deadline.IsZero() {
			until = task.Deadline.Add(t.d.opts.ClaimTTL)
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		defer cancel()
		if err := t.d.st.TaskExtend(ctx, t.d.opts.NodeID, []int64{task.ID}, until); err != nil &&
			!errors.Is(err, store.ErrNotFound) {
			t.d.log.Warn("holding accepted task failed", keyService, task.Service,
				keyInstance, task.InstanceID, keyStep, task.StepID, keyErr, err)
		}
	}
}

// report records an attempt's outcome through the engine, as a remote
// report would be.
func (t *target) report(task store.Task, p engine.ReportParams) {
	p.InstanceID, p.PointerID, p.Attempt, p.Token = task.InstanceID, task.PointerID, task.Attempt, task.Token

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := t.d.eng.Report(ctx, p); err != nil && !errors.Is(err, engine.ErrLate) {
		// The claim runs out and the attempt is sent again; the service
		// answers it by its idempotency key.
		t.d.log.Warn("recording push result failed", keyService, task.Service,
			keyInstance, task.InstanceID, keyStep, task.StepID, keyErr, err)
	}
}

// giveBack releases a claimed task, to be claimed again at visibleAt;
// an unsent one spends no dispatch try.
func (t *target) giveBack(task store.Task, visibleAt time.Time, unsent bool) {
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()

	err := t.d.st.TaskRelease(ctx, store.TaskReleaseParams{
		Worker: t.d.opts.NodeID, ID: task.ID, VisibleAt: visibleAt, Unsent: unsent,
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.d.log.Warn("releasing push task failed", keyService, task.Service,
			keyInstance, task.InstanceID, keyErr, err)
	}
}

// cancel tells the service that weft no longer needs an attempt.
func (t *target) cancel(a engine.Attempt, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()

	t.d.counters.Cancels.Add(1)
	_, err := t.client.CancelTask(ctx, &weftv1.CancelTaskRequest{
		Task: &weftv1.TaskRef{
			InstanceId: a.InstanceID, PointerId: a.PointerID, Attempt: int32(a.Attempt),
			TaskToken: a.Token,
		},
		Reason: reason,
	})
	if err != nil {
		t.d.log.Info("cancelling push task failed", keyService, a.Service, keyInstance, a.InstanceID,
			keyStep, a.StepID, keyCode, status.Code(err).String(), keyErr, err)
	}
}
