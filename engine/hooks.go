package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/weftworks/weft/store"
)

// StepHook wraps the Go handler of every task step, like HTTP
// middleware: it gets the next handler and returns one that calls it,
// doing what it likes before and after. An error it returns fails the
// attempt as a handler error would (see Error), and goes through the
// step's retry policy.
type StepHook func(next HandlerFunc) HandlerFunc

// InstanceHook observes the lifecycle of every instance. Either field
// may be nil.
type InstanceHook struct {
	// Starting runs before a new instance is created, with the instance
	// about to be stored. An error refuses the start: StartInstance
	// returns it (wrapped in ErrHook) and nothing is stored.
	Starting func(ctx context.Context, inst store.Instance) error
	// Ended runs after the transition that gave an instance a final
	// status was committed, with the instance as committed, on the node
	// that committed it. It runs once per commit, not again after a
	// crash. An error is logged and counted in Counters.HookErrors.
	Ended func(ctx context.Context, inst store.Instance) error
	// Stopping runs after a committed transition withdrew attempts that
	// workers hold (a cancel, a terminate, a failure that unwinds a
	// saga), with those attempts, on the node that committed it, so
	// that their services can be told. It must not block for long.
	Stopping func(ctx context.Context, inst store.Instance, attempts []Attempt)
}

// Attempt names one attempt of a task step.
type Attempt struct {
	InstanceID string
	StepID     string
	PointerID  int64
	Attempt    int
	Service    string
	// Token is the attempt's task token.
	Token string
}

// ErrHook wraps an error an instance hook returned.
var ErrHook = errors.New("hook failed")

// hooks holds the registered hooks in registration order.
type hooks struct {
	mu       sync.RWMutex
	step     []StepHook
	instance []InstanceHook
}

// UseStep adds a step hook. Hooks run in registration order around the
// handler: the first one added is the outermost.
func (e *Engine) UseStep(h StepHook) {
	e.hooks.mu.Lock()
	e.hooks.step = append(e.hooks.step, h)
	e.hooks.mu.Unlock()
}

// UseInstance adds an instance hook. Hooks run in registration order.
func (e *Engine) UseInstance(h InstanceHook) {
	e.hooks.mu.Lock()
	e.hooks.instance = append(e.hooks.instance, h)
	e.hooks.mu.Unlock()
}

// wrap returns h inside every step hook.
func (hs *hooks) wrap(h HandlerFunc) HandlerFunc {
	hs.mu.RLock()
	defer hs.mu.RUnlock()

	for i := len(hs.step) - 1; i >= 0; i-- {
		h = hs.step[i](h)
	}

	return h
}

func (hs *hooks) instances() []InstanceHook {
	hs.mu.RLock()
	defer hs.mu.RUnlock()

	return hs.instance
}

// starting runs the Starting hooks; the first error refuses the start.
func (e *Engine) starting(ctx context.Context, inst store.Instance) error {
	for i, h := range e.hooks.instances() {
		if h.Starting == nil {
			continue
		}
		if err := h.Starting(ctx, inst); err != nil {
			return fmt.Errorf("instance hook %d: %w: %w", i, ErrHook, err)
		}
	}

	return nil
}

// stopping runs the Stopping hooks of a committed transition.
func (e *Engine) stopping(ctx context.Context, inst store.Instance, attempts []Attempt) {
	if len(attempts) == 0 {
		return
	}

	for _, h := range e.hooks.instances() {
		if h.Stopping != nil {
			h.Stopping(ctx, inst, attempts)
		}
	}
}

// ended runs the Ended hooks of a committed final transition; their
// errors are logged and counted, the instance has ended all the same.
func (e *Engine) ended(ctx context.Context, inst store.Instance) {
	for i, h := range e.hooks.instances() {
		if h.Ended == nil {
			continue
		}
		if err := h.Ended(ctx, inst); err != nil {
			e.counters.HookErrors.Add(1)
			e.log.Error("instance hook failed", keyInstance, inst.ID, keyHook, i, keyErr, err)
		}
	}
}
