// Package push hands the tasks of push-mode services to those services:
// for every service the registry lists with mode push, a Dispatcher
// claims its dispatch rows within the service's concurrency and rate
// limits, calls the service's StepWorkerService.ExecuteTask with the
// attempt, and records the answer. A service that is down costs no
// retry budget: the call is sent again after a backoff, behind a circuit
// breaker per service, until the service's dispatch limit is spent and
// the attempt counts as failed.
//
//	d := push.New(eng, push.Options{NodeID: "node-1"})
//	go d.Run(ctx)
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// Log keys.
const (
	keyErr      = "err"
	keyService  = "service"
	keyInstance = "instance_id"
	keyStep     = "step_id"
	keyAttempt  = "attempt"
	keyFrom     = "from"
	keyTo       = "to"
	keyCode     = "code"
	keyBackoff  = "backoff"
)

// Options configure a Dispatcher. Zero fields take the documented
// defaults.
type Options struct {
	// NodeID names this node in task claims; it must be the engine's
	// NodeID, so that a restarted node's claims read as its own.
	NodeID string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ClaimTTL is how long a claim holds while the call is in flight;
	// default 30s, and always 5s past the service's dispatch timeout.
	ClaimTTL time.Duration
	// AcceptedTTL is how long a claim holds after a service answered
	// accepted, for an attempt without a start-to-close cap (one with a
	// cap is held past the cap, for its timeout to end it); default 1m.
	// When it runs out the attempt is sent again with the same
	// idempotency key: a service still running it answers accepted
	// again, one that lost it (it crashed) runs it. The claim counts
	// against the service's concurrency while it holds.
	AcceptedTTL time.Duration
	// PollInterval bounds the wait of an idle service loop; default 1s.
	PollInterval time.Duration
	// RefreshInterval is how often the registry is read again; default
	// 5s.
	RefreshInterval time.Duration
	// MaxInFlight caps the calls in flight to one service from this
	// node when the service has no concurrency limit; default 64.
	MaxInFlight int
	// BackoffBase and BackoffMax shape the wait before an attempt is
	// sent again after the service was unreachable: BackoffBase doubled
	// per try, at most BackoffMax, with jitter. Defaults 500ms and 3s:
	// no longer than the breaker stays open, so that its probe finds an
	// attempt to send as soon as it may; the default dispatch limit of 40
	// tries then spans about two minutes of outage.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// BreakerFailures is how many unreachable calls in a row open a
	// service's circuit breaker; default 5. BreakerOpen is how long it
	// stays open before one probe call may go; default 3s.
	BreakerFailures int
	BreakerOpen     time.Duration
	// Dial returns the connection options for a service; default
	// DialOptions, from the service's TLS settings.
	Dial func(store.Service) ([]grpc.DialOption, error)
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	setDefault(&o.ClaimTTL, 30*time.Second)
	setDefault(&o.AcceptedTTL, time.Minute)
	setDefault(&o.PollInterval, time.Second)
	setDefault(&o.RefreshInterval, 5*time.Second)
	setDefault(&o.MaxInFlight, 64)
	setDefault(&o.BackoffBase, 500*time.Millisecond)
	setDefault(&o.BackoffMax, 3*time.Second)
	setDefault(&o.BreakerFailures, 5)
	setDefault(&o.BreakerOpen, 3*time.Second)
	if o.Dial == nil {
		o.Dial = DialOptions
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Dispatcher sends the tasks of push-mode services to them.
type Dispatcher struct {
	eng  *engine.Engine
	st   store.Store
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	targets map[string]*target
	// closed is set when Run ends: no target or cancel call starts after.
	closed bool
	// tasks signals claimable tasks or free slots; Run passes each signal
	// on to every target.
	tasks <-chan struct{}
	// sends counts the calls and their outcomes, for tests and metrics.
	counters Counters
	wg       sync.WaitGroup
}

// Counters are a Dispatcher's running totals, for tests and metrics.
type Counters struct {
	// Sent counts ExecuteTask calls.
	Sent atomic.Int64
	// Unreachable counts calls that found the service down, past their
	// deadline, or behind an open breaker.
	Unreachable atomic.Int64
	// Accepted and Results count the calls answered accepted and with
	// an outcome.
	Accepted atomic.Int64
	Results  atomic.Int64
	// Exhausted counts attempts failed because their dispatch limit was
	// spent.
	Exhausted atomic.Int64
	// Busy counts calls the service answered RESOURCE_EXHAUSTED.
	Busy atomic.Int64
	// Cancels counts the CancelTask calls made.
	Cancels atomic.Int64
}

// New returns a Dispatcher for the engine's store. It tells push
// services about withdrawn attempts through an instance hook it adds to
// eng.
func New(eng *engine.Engine, opts Options) *Dispatcher {
	opts.fill()

	d := &Dispatcher{
		eng: eng, st: eng.Store(), opts: opts, log: opts.Logger,
		targets: map[string]*target{}, tasks: eng.WatchTasks(),
	}
	eng.UseInstance(engine.InstanceHook{Stopping: d.stopping})

	return d
}

// Counters returns the dispatcher's counters.
func (d *Dispatcher) Counters() *Counters { return &d.counters }

// Run dispatches until ctx ends, then waits for the calls in flight.
// It reads the registry again when this node changes it and every
// RefreshInterval, so services registered, changed or removed while it
// runs, here or on another node, are picked up.
func (d *Dispatcher) Run(ctx context.Context) error {
	tick := time.NewTicker(d.opts.RefreshInterval)
	defer tick.Stop()
	changed := d.eng.WatchServices()

	for {
		if err := d.refresh(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("reading service registry failed", keyErr, err)
		}

	wait:
		select {
		case <-ctx.Done():
			d.stopAll()
			d.wg.Wait()
			return nil
		case <-d.tasks:
			d.wakeAll()
			goto wait
		case <-tick.C:
		case <-changed:
		}
	}
}

// wakeAll tells every target that tasks may be claimable.
func (d *Dispatcher) wakeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()

	for _, t := range d.targets {
		signal(t.wake)
	}
}

// Refresh reads the registry now; Run does it on its own.
func (d *Dispatcher) Refresh(ctx context.Context) error { return d.refresh(ctx) }

func (d *Dispatcher) refresh(ctx context.Context) error {
	services, err := d.st.ServiceList(ctx)
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()

	if d.closed {
		return nil
	}
	seen := map[string]bool{}
	for _, svc := range services {
		if svc.Mode != store.ServicePush {
			continue
		}
		seen[svc.Name] = true

		old := d.targets[svc.Name]
		if old != nil && old.same(svc) {
			old.update(svc)
			continue
		}
		if old != nil {
			old.stop()
		}

		t, err := d.newTarget(svc)
		if err != nil {
			d.log.Error("cannot dispatch to service", keyService, svc.Name, keyErr, err)
			delete(d.targets, svc.Name)
			continue
		}
		d.targets[svc.Name] = t
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			t.run(ctx)
		}()
	}

	for name, t := range d.targets {
		if !seen[name] {
			t.stop()
			delete(d.targets, name)
		}
	}

	return nil
}

func (d *Dispatcher) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()

	d.closed = true
	for name, t := range d.targets {
		t.stop()
		delete(d.targets, name)
	}
}

// stopping tells the push services holding withdrawn attempts that weft
// no longer needs them. It is advisory and runs in the background.
func (d *Dispatcher) stopping(_ context.Context, inst store.Instance, attempts []engine.Attempt) {
	reason := inst.Reason
	if reason == "" {
		reason = string(inst.Status)
	}

	d.mu.Lock()
	defer d.mu.Unlock()

	for _, a := range attempts {
		t := d.targets[a.Service]
		if t == nil || d.closed {
			continue
		}

		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			t.cancel(a, reason)
		}()
	}
}

// errStopped is the cause of a target's context when it is replaced or
// removed.
var errStopped = errors.New("service left the registry or changed")
