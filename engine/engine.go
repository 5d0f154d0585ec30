// Package engine runs workflow instances: it applies every input (a
// command, a step report, a timer, an event) to one instance as one
// atomic transition in the store, hands task steps out through dispatch
// rows, and keeps nothing in memory that the database does not also
// hold. Programs embed it to run definitions with Go handlers.
package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Clock tells the engine the time; tests move a fake one forward.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configure an Engine. Zero fields take the documented defaults.
type Options struct {
	// NodeID names this node in leases and task claims; default a random
	// id.
	NodeID string
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Workers is how many instances advance at once; default 32.
	Workers int
	// ClaimBatch is how many instances one claim takes; default 64.
	ClaimBatch int
	// LeaseTTL is how long an instance lease lasts; default 30s.
	LeaseTTL time.Duration
	// PollInterval bounds the sleep of an idle loop; default 1s.
	PollInterval time.Duration
	// TaskLeaseTTL is how long a handler's claim on a task lasts before
	// another node may take it again; default 30s, renewed while the
	// handler runs.
	TaskLeaseTTL time.Duration
	// HandlerConcurrency caps Go handlers running at once; default 64.
	HandlerConcurrency int
	// CancelGrace is how long a cancel waits for in-flight attempts;
	// default 30s.
	CancelGrace time.Duration
	// MaxPayloadBytes limits inputs, outputs and event data; default
	// 1 MiB.
	MaxPayloadBytes int
	// MaxDataBytes limits an instance's data, the JSON object that step
	// outputs and events are written into; default 4 MiB. An output
	// that takes it over fails the instance with reason data_too_large.
	MaxDataBytes int
	// MaxWorkflowDepth bounds how deep sub-workflows nest; default 16. A
	// workflow step whose child would be deeper fails, not retried,
	// with code workflow_too_deep.
	MaxWorkflowDepth int
	// StartKeyTTL is how long start keys are remembered; default 24h.
	StartKeyTTL time.Duration
	// Retention is how long finished instances (completed, failed,
	// cancelled, terminated) are kept after they end before the purge
	// deletes them with everything of theirs; default 7 days (168h). A
	// negative value keeps them forever.
	Retention time.Duration
	// PurgeInterval is how often the purge looks for instances past
	// their retention; default 1h.
	PurgeInterval time.Duration
	// PurgeBatch is how many instances one purge write deletes; default
	// 100. Batches follow each other with a short pause, so a purge never
	// holds a long transaction nor the writer for long.
	PurgeBatch int
	// Jitter, when set, replaces the random source of retry jitter
	// (tests use it); it returns a value in [0, 1).
	Jitter func() float64
	// DisableLoops keeps Start from running the background loops, for
	// tests that drive the engine step by step.
	DisableLoops bool
}

func (o *Options) fill() {
	if o.NodeID == "" {
		host, _ := os.Hostname()
		o.NodeID = fmt.Sprintf("%s-%s", host, uuid.NewString()[:8])
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	setDefault(&o.Workers, 32)
	setDefault(&o.ClaimBatch, 64)
	setDefault(&o.LeaseTTL, 30*time.Second)
	setDefault(&o.PollInterval, time.Second)
	setDefault(&o.TaskLeaseTTL, 30*time.Second)
	setDefault(&o.HandlerConcurrency, 64)
	setDefault(&o.CancelGrace, 30*time.Second)
	setDefault(&o.MaxPayloadBytes, 1<<20)
	setDefault(&o.MaxDataBytes, 4<<20)
	setDefault(&o.MaxWorkflowDepth, 16)
	setDefault(&o.StartKeyTTL, 24*time.Hour)
	setDefault(&o.Retention, 7*24*time.Hour)
	setDefault(&o.PurgeInterval, time.Hour)
	setDefault(&o.PurgeBatch, 100)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Engine runs workflow instances on a store.
type Engine struct {
	store store.Store
	opts  Options
	log   *slog.Logger
	clock Clock

	defs     *definitions
	handlers *handlers
	hooks    hooks
	locks    instanceLocks

	wakeSched    chan struct{}
	wakeTasks    chan struct{}
	taskWatch    signal
	serviceWatch signal

	counters Counters

	mu      sync.Mutex
	started bool
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// Counters are the engine's running totals, for tests and metrics.
type Counters struct {
	Transitions atomic.Int64
	Conflicts   atomic.Int64
	LeaseLost   atomic.Int64
	// LeaseExtends counts leases moved on while a transition ran long.
	LeaseExtends atomic.Int64
	IdlePolls    atomic.Int64
	// Purged counts the finished instances the purge deleted.
	Purged atomic.Int64
	// Notices counts the wake-ups other nodes sent through the store.
	Notices    atomic.Int64
	Claims     atomic.Int64
	Dispatched atomic.Int64
	// HookErrors counts errors returned by InstanceHook.Ended.
	HookErrors atomic.Int64
}

// New returns an engine on st. Call Start to run its loops.
func New(st store.Store, opts Options) *Engine {
	opts.fill()

	e := &Engine{
		store:     st,
		opts:      opts,
		log:       opts.Logger,
		clock:     opts.Clock,
		wakeSched: make(chan struct{}, 1),
		wakeTasks: make(chan struct{}, 1),
	}
	e.defs = newDefinitions(st)
	e.handlers = newHandlers()

	return e
}

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.store }

// NodeID returns the name of this node in leases and task claims.
func (e *Engine) NodeID() string { return e.opts.NodeID }

// Counters returns the engine's counters.
func (e *Engine) Counters() *Counters { return &e.counters }

// Start runs the engine's loops until Stop or ctx ends.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()

	if e.started {
		return errors.New("engine already started")
	}
	e.started = true

	if e.opts.DisableLoops {
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	e.stop = cancel

	e.runLoop(ctx, e.scheduleLoop)
	e.runLoop(ctx, e.dispatchLoop)
	e.runLoop(ctx, e.sweepLoop)
	if e.opts.Retention > 0 {
		e.runLoop(ctx, e.purgeLoop)
	}
	if n, ok := e.store.(store.Notifier); ok {
		notices := n.Notifications(ctx)
		e.runLoop(ctx, func(context.Context) { e.noticeLoop(notices) })
	}
	e.log.Info("engine started", keyNode, e.opts.NodeID)

	return nil
}

func (e *Engine) runLoop(ctx context.Context, f func(context.Context)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f(ctx)
	}()
}

// Stop ends the loops and waits for in-flight transitions and handlers
// to finish; handlers see their context cancelled.
func (e *Engine) Stop() {
	e.mu.Lock()
	stop := e.stop
	e.mu.Unlock()

	if stop != nil {
		stop()
	}
	e.wg.Wait()
}

// WatchTasks returns a channel that is signalled, without blocking the
// engine, whenever dispatch tasks may have become claimable or a
// service may have a slot free: an attempt dispatched or reported on
// this node, or a notice from another node. Signals coalesce; a
// dispatcher outside the engine (push mode) waits on it between
// claims, and polls too, since a signal can be missed.
func (e *Engine) WatchTasks() <-chan struct{} { return e.taskWatch.watch() }

// WatchServices returns a channel that is signalled when this node
// registers, replaces or deletes a service. Other nodes' changes are
// not signalled: readers of the registry read it again now and then.
func (e *Engine) WatchServices() <-chan struct{} { return e.serviceWatch.watch() }

// tasksReady wakes the dispatch loop and every WatchTasks channel.
func (e *Engine) tasksReady() {
	e.wake(e.wakeTasks)
	e.taskWatch.notify()
}

// signal is a set of coalescing wake-up channels.
type signal struct {
	mu    sync.Mutex
	chans []chan struct{}
}

func (s *signal) watch() <-chan struct{} {
	ch := make(chan struct{}, 1)

	s.mu.Lock()
	s.chans = append(s.chans, ch)
	s.mu.Unlock()

	return ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()

	for _, ch := range s.chans {
		wakeChan(ch)
	}
}

func (e *Engine) wake(ch chan struct{}) { wakeChan(ch) }

// wakeChan signals ch without blocking; a signal already there stands
// for this one.
func wakeChan(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// instanceLocks serializes work on one instance within this process,
// with a fixed set of striped mutexes so nothing grows per instance.
type instanceLocks struct {
	stripes [1024]sync.Mutex
}

func (l *instanceLocks) lock(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	mu := &l.stripes[h.Sum32()%uint32(len(l.stripes))]
	mu.Lock()

	return mu.Unlock
}
