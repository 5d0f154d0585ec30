// Package weftest is a test kit for workflow definitions: it runs a real
// engine on a real SQLite file in a test's temporary folder, with stub
// handlers that record their calls and a clock the test moves forward,
// so that a definition with hour-long delays, schedules and retry
// intervals is tested in milliseconds.
//
//	kit := weftest.New(t)
//	kit.Register(src)
//	kit.Stub("mail", "send", "sent")
//	id := kit.Start("reminder", `{}`)
//	kit.Advance(time.Hour)
//	inst := kit.Wait(id)
package weftest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// Clock is an engine clock that moves only when the test moves it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// taskLeaseTTL is the kit's default claim on a task: long enough that no
// Advance expires it.
const taskLeaseTTL = 365 * 24 * time.Hour

// Kit is an engine under test with its clock, store and stubs.
type Kit struct {
	t     testing.TB
	ctx   context.Context
	clock *Clock
	st    store.Store
	e     *engine.Engine

	mu    sync.Mutex
	calls map[string][]engine.Task
	close func()
}

// Options adjust a kit; zero fields take the defaults.
type Options struct {
	// Engine options; Clock is always the kit's, PollInterval defaults
	// to 5ms so that a moved clock is seen at once, and TaskLeaseTTL to
	// a year, so that moving the clock does not expire a handler's claim
	// and hand its task out again.
	Engine engine.Options
	// Start is where the clock starts; default now.
	Start time.Time
}

// New starts a kit with the default options.
func New(t testing.TB) *Kit {
	t.Helper()

	return NewWith(t, Options{})
}

// NewWith starts a kit: a fresh SQLite file, an engine on the kit's
// clock with its loops running. Everything stops when the test ends.
func NewWith(t testing.TB, o Options) *Kit {
	t.Helper()

	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	clock := NewClock(o.Start)
	opts := o.Engine
	opts.Clock = clock
	if opts.PollInterval == 0 {
		opts.PollInterval = 5 * time.Millisecond
	}
	if opts.TaskLeaseTTL == 0 {
		opts.TaskLeaseTTL = taskLeaseTTL
	}

	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"))
	if err != nil {
		cancel()
		t.Fatalf("opening store: %v", err)
	}
	e := engine.New(st, opts)
	if err := e.Start(ctx); err != nil {
		cancel()
		t.Fatalf("starting engine: %v", err)
	}

	k := &Kit{t: t, ctx: ctx, clock: clock, st: st, e: e, calls: map[string][]engine.Task{}}
	k.close = sync.OnceFunc(func() {
		e.Stop()
		_ = st.Close()
		cancel()
	})
	t.Cleanup(k.close)

	return k
}

// Close stops the engine and closes the store; the test's end does it
// too.
func (k *Kit) Close() { k.close() }

// Engine returns the kit's engine.
func (k *Kit) Engine() *engine.Engine { return k.e }

// Clock returns the kit's clock.
func (k *Kit) Clock() *Clock { return k.clock }

// Context returns a context that ends with the kit.
func (k *Kit) Context() context.Context { return k.ctx }

// Register registers a definition written in YAML or JSON.
func (k *Kit) Register(src []byte) {
	k.t.Helper()
	if _, err := k.e.RegisterDefinition(k.ctx, src); err != nil {
		k.t.Fatalf("registering definition: %v", err)
	}
}

// Services registers pull services of these names in the registry, so
// that definitions may name them. A Go handler (Handle, Stub) makes its
// service known without it.
func (k *Kit) Services(names ...string) {
	k.t.Helper()
	RegisterServices(k.t, k.ctx, k.e, names...)
}

// RegisterServices registers pull services of these names in e's
// registry, failing the test on an error. Tests that register
// definitions naming services call it first.
func RegisterServices(t testing.TB, ctx context.Context, e *engine.Engine, names ...string) {
	t.Helper()

	for _, name := range names {
		_, err := e.RegisterService(ctx, store.Service{Name: name, Mode: store.ServicePull})
		if err != nil {
			t.Fatalf("registering service %s: %v", name, err)
		}
	}
}

// Advance moves the clock forward by d: timers due by then fire soon
// after. A step sets its timer from the clock's time when it starts, so
// move the clock once the instance waits (see WaitStep with sleeping or
// waiting), not before.
func (k *Kit) Advance(d time.Duration) {
	k.clock.Advance(d)
}

// Handle registers a handler for a service's action that also records
// its calls.
func (k *Kit) Handle(service, action string, h engine.HandlerFunc) {
	key := service + "." + action
	k.e.Handle(service, action, func(ctx context.Context, t engine.Task) (any, error) {
		k.mu.Lock()
		k.calls[key] = append(k.calls[key], t)
		k.mu.Unlock()

		return h(ctx, t)
	})
}

// Stub makes a service's action return output (encoded as JSON, a
// json.RawMessage as it is) on every call.
func (k *Kit) Stub(service, action string, output any) {
	k.Handle(service, action, func(context.Context, engine.Task) (any, error) {
		return output, nil
	})
}

// StubError makes a service's action fail on every call with err.
func (k *Kit) StubError(service, action string, err *engine.Error) {
	k.Handle(service, action, func(context.Context, engine.Task) (any, error) {
		return nil, err
	})
}

// Calls returns the tasks a stubbed action was called with, in order.
func (k *Kit) Calls(service, action string) []engine.Task {
	k.mu.Lock()
	defer k.mu.Unlock()

	return slices.Clone(k.calls[service+"."+action])
}

// Start starts an instance of the newest version of a definition with
// a JSON input and returns its id.
func (k *Kit) Start(definition, input string) string {
	k.t.Helper()
	inst, _, err := k.e.StartInstance(k.ctx, engine.StartParams{
		Definition: definition, Input: json.RawMessage(input),
	})
	if err != nil {
		k.t.Fatalf("starting %s: %v", definition, err)
	}

	return inst.ID
}

// Wait blocks until the instance is final (at most a minute of real
// time) and returns it.
func (k *Kit) Wait(id string) store.Instance {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.ctx, time.Minute)
	defer cancel()

	inst, err := k.e.Wait(ctx, id)
	if err != nil {
		k.t.Fatalf("waiting for %s: %v (status %s)", id, err, inst.Status)
	}

	return inst
}

// WaitFor polls until cond holds (at most a minute of real time).
func (k *Kit) WaitFor(what string, cond func() bool) {
	k.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			k.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// WaitStep polls until a step of the instance has the status: any of
// its pointers, when the step ran several times.
func (k *Kit) WaitStep(id, stepID string, status store.StepStatus) {
	k.t.Helper()
	k.WaitFor("step "+stepID+" to be "+string(status), func() bool {
		steps, err := k.e.Steps(k.ctx, id)
		if err != nil {
			k.t.Fatalf("listing steps: %v", err)
		}
		return slices.ContainsFunc(steps, func(s store.Step) bool {
			return s.StepID == stepID && s.Status == status
		})
	})
}

// Data decodes an instance's data.
func (k *Kit) Data(inst store.Instance) map[string]any {
	k.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(inst.Data, &m); err != nil {
		k.t.Fatalf("decoding data of %s: %v", inst.ID, err)
	}

	return m
}
