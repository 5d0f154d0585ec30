package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/weftworks/weft/store"
)

// Task is one attempt of a task step as a Go handler sees it.
type Task struct {
	InstanceID string
	StepID     string
	PointerID  int64
	Attempt    int
	Service    string
	Action     string
	Input      json.RawMessage
	// IdempotencyKey is the same for every delivery of this attempt.
	IdempotencyKey string
	// Deadline is when the attempt's start-to-close cap ends (zero: no
	// cap); the handler's context ends then too.
	Deadline time.Time
}

// HandlerFunc does the work of a task step. Its result is stored as the
// step's output (encoded as JSON, a json.RawMessage as it is); an error
// fails the attempt (see Error for retry control).
type HandlerFunc func(ctx context.Context, t Task) (any, error)

type handlerKey struct{ service, action string }

// handlers holds the Go handlers and the contexts of running ones.
type handlers struct {
	mu      sync.RWMutex
	funcs   map[handlerKey]HandlerFunc
	running map[string]map[int64]context.CancelFunc
}

func newHandlers() *handlers {
	return &handlers{
		funcs:   map[handlerKey]HandlerFunc{},
		running: map[string]map[int64]context.CancelFunc{},
	}
}

// Handle registers a Go handler for a service's action. Task steps that
// name them go through dispatch rows like any other task: the engine's
// dispatcher claims them and calls h.
func (e *Engine) Handle(service, action string, h HandlerFunc) {
	e.handlers.mu.Lock()
	e.handlers.funcs[handlerKey{service, action}] = h
	e.handlers.mu.Unlock()
	e.tasksReady()
}

func (h *handlers) services() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()

	var out []string
	for k := range h.funcs {
		if !slices.Contains(out, k.service) {
			out = append(out, k.service)
		}
	}
	slices.Sort(out)

	return out
}

func (h *handlers) get(service, action string) (HandlerFunc, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()

	f, ok := h.funcs[handlerKey{service, action}]
	return f, ok
}

func (h *handlers) track(t store.Task, cancel context.CancelFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()

	m := h.running[t.InstanceID]
	if m == nil {
		m = map[int64]context.CancelFunc{}
		h.running[t.InstanceID] = m
	}
	m[t.PointerID] = cancel
}

func (h *handlers) untrack(t store.Task) {
	h.mu.Lock()
	defer h.mu.Unlock()

	delete(h.running[t.InstanceID], t.PointerID)
	if len(h.running[t.InstanceID]) == 0 {
		delete(h.running, t.InstanceID)
	}
}

// cancelInstance tells the running handlers of an instance to stop; it
// is advisory, and a handler may still report.
func (h *handlers) cancelInstance(id string) {
	h.mu.RLock()
	defer h.mu.RUnlock()

	for _, cancel := range h.running[id] {
		cancel()
	}
}

// dispatchLoop claims the tasks of the services with Go handlers and
// runs them, at most HandlerConcurrency at once.
func (e *Engine) dispatchLoop(ctx context.Context) {
	slots := make(chan struct{}, e.opts.HandlerConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()

	var backoff time.Duration
	for ctx.Err() == nil {
		services := e.handlers.services()
		free := cap(slots) - len(slots)
		if len(services) == 0 || free == 0 {
			e.idle(ctx, e.wakeTasks, e.opts.PollInterval)
			continue
		}

		tasks, err := e.store.TaskClaim(ctx, store.TaskClaimParams{
			Worker: e.opts.NodeID, Services: services, Limit: free,
			LeaseTTL: e.opts.TaskLeaseTTL, Now: e.clock.Now(),
		})
		if err != nil && ctx.Err() == nil {
			backoff = e.failureBackoff(backoff)
			e.log.Warn("claiming tasks failed", keyErr, err, keyBackoff, backoff)
			_ = sleep(ctx, backoff)
			continue
		}
		backoff = 0

		for _, t := range tasks {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				e.runTask(ctx, t)
			}()
		}
		if len(tasks) == 0 {
			e.idle(ctx, e.wakeTasks, e.opts.PollInterval)
		}
	}
}

// runTask calls the handler of one claimed task and reports its outcome.
func (e *Engine) runTask(loopCtx context.Context, t store.Task) {
	ctx, cancel := context.WithCancel(loopCtx)
	defer cancel()
	if !t.Deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, t.Deadline)
		defer cancel()
	}
	ctx = context.WithValue(ctx, heartbeatKey{}, &heartbeater{e: e, t: t})

	e.handlers.track(t, cancel)
	defer e.handlers.untrack(t)
	stopRenew := e.renewClaim(loopCtx, t)
	defer stopRenew()

	out, err := e.callHandler(ctx, t)
	if loopCtx.Err() != nil {
		e.giveBack(t)
		return
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The attempt passed its start-to-close cap: its timer fails it
		// as timed out, and a report now would only race that timer.
		return
	}

	e.reportTask(t, out, err)
}

func (e *Engine) callHandler(ctx context.Context, t store.Task) (out any, err error) {
	h, ok := e.handlers.get(t.Service, t.Action)
	if !ok {
		return nil, NonRetryable("unknown_action", fmt.Sprintf("no handler for %s.%s", t.Service, t.Action))
	}

	defer func() {
		if p := recover(); p != nil {
			err = Retryable("handler_panic", fmt.Sprint(p))
		}
	}()

	return e.hooks.wrap(h)(ctx, Task{
		InstanceID: t.InstanceID, StepID: t.StepID, PointerID: t.PointerID,
		Attempt: t.Attempt, Service: t.Service, Action: t.Action, Input: t.Input,
		IdempotencyKey: t.IdempotencyKey, Deadline: t.Deadline,
	})
}

// reportTask sends a handler's outcome through the same report path a
// remote service uses.
func (e *Engine) reportTask(t store.Task, out any, herr error) {
	p := ReportParams{
		InstanceID: t.InstanceID, PointerID: t.PointerID, Attempt: t.Attempt, Token: t.Token,
	}
	if herr != nil {
		serr := stepError(herr)
		p.Err = &Error{Code: serr.Code, Message: serr.Message, Retryable: serr.Retryable}
	} else {
		raw, err := encodeOutput(out)
		if err != nil {
			p.Err = NonRetryable("bad_output", err.Error())
		}
		p.Output = raw
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := e.Report(ctx, p)
	if err != nil && !errors.Is(err, ErrLate) {
		e.log.Warn("reporting task failed", keyInstance, t.InstanceID, keyStep, t.StepID,
			keyAttempt, t.Attempt, keyErr, err)
	}
}

func encodeOutput(out any) (json.RawMessage, error) {
	if raw, ok := out.(json.RawMessage); ok {
		if len(raw) == 0 {
			return json.RawMessage("null"), nil
		}
		if !json.Valid(raw) {
			return nil, errors.New("handler returned malformed JSON")
		}
		return raw, nil
	}

	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding handler output: %w", err)
	}

	return raw, nil
}

// giveBack releases a task this node will not finish (it is stopping),
// so another node can take it at once.
func (e *Engine) giveBack(t store.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err := e.store.TaskRelease(ctx, store.TaskReleaseParams{
		Worker: e.opts.NodeID, ID: t.ID, VisibleAt: e.clock.Now(),
	})
	if err != nil {
		e.log.Warn("releasing task failed", keyInstance, t.InstanceID, keyErr, err)
	}
}

// renewClaim keeps the task's claim alive while its handler runs.
func (e *Engine) renewClaim(ctx context.Context, t store.Task) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(e.opts.TaskLeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				until := e.clock.Now().Add(e.opts.TaskLeaseTTL)
				if err := e.store.TaskExtend(ctx, e.opts.NodeID, []int64{t.ID}, until); err != nil {
					e.log.Debug("extending task claim failed", keyInstance, t.InstanceID, keyErr, err)
				}
			}
		}
	}()

	return func() { cancel(); <-done }
}

type heartbeatKey struct{}

type heartbeater struct {
	e *Engine
	t store.Task
}

// Heartbeat tells the engine that the handler running in ctx is alive;
// it keeps an attempt with a heartbeat timeout going (never past its
// start-to-close cap). It returns ErrLate when the attempt is over.
func Heartbeat(ctx context.Context) error {
	hb, ok := ctx.Value(heartbeatKey{}).(*heartbeater)
	if !ok {
		return errors.New("heartbeat: context is not a handler's")
	}

	res, err := hb.e.store.StepHeartbeat(ctx, store.StepHeartbeatParams{
		InstanceID: hb.t.InstanceID, PointerID: hb.t.PointerID, Attempt: hb.t.Attempt,
		Token: hb.t.Token, Now: hb.e.clock.Now(),
	})
	if err != nil {
		return fmt.Errorf("sending heartbeat: %w", err)
	}
	if res.Outcome == store.ReportLate {
		return fmt.Errorf("heartbeat: %s: %w", res.Reason, ErrLate)
	}

	return nil
}
