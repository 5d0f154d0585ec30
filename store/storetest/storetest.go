// Package storetest is the conformance suite every store.Store
// implementation passes. A store's test file calls Run with a function
// that opens a fresh, empty store for one subtest.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Run runs the whole suite. open must return an empty store and arrange
// for it to be closed when the subtest ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(*testing.T, func(*testing.T) store.Store)
	}{
		{"Definitions", Definitions},
		{"Instances", Instances},
		{"List", List},
		{"Leases", Leases},
		{"Transitions", Transitions},
		{"CrossInstance", CrossInstance},
		{"Load", Load},
		{"Reports", Reports},
		{"Heartbeats", Heartbeats},
		{"Tasks", Tasks},
		{"Timers", Timers},
		{"Events", Events},
		{"Audit", Audit},
		{"GroupCommit", GroupCommit},
		{"Stats", Stats},
		{"Purge", Purge},
		{"UserTasks", UserTasks},
		{"Services", Services},
		{"Feed", Feed},
	}
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			s.run(t, open)
		})
	}
}

// Names the suite uses.
const (
	defName  = "order"
	nodeA    = "node-a"
	nodeB    = "node-b"
	service  = "resize"
	token    = "token-1"
	rootID   = int64(1)
	taskID   = int64(2)
	leaseTTL = time.Minute
)

// env is one subtest's store and clock.
type env struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
	now time.Time
	seq int
}

// newEnv opens a fresh store for a parallel subtest.
func newEnv(t *testing.T, open func(*testing.T) store.Store) *env {
	t.Helper()
	t.Parallel()

	return &env{
		t:   t,
		s:   open(t),
		ctx: t.Context(),
		now: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// at returns the suite clock moved by d.
func (e *env) at(d time.Duration) time.Time {
	return e.now.Add(d)
}

// createParams describes a new instance with a root pointer and one
// audit row.
func (e *env) createParams() store.InstanceCreateParams {
	e.seq++

	return store.InstanceCreateParams{
		Instance: store.Instance{
			ID:                fmt.Sprintf("inst-%03d", e.seq),
			DefinitionName:    defName,
			DefinitionVersion: 1,
			Status:            store.InstanceRunning,
			Input:             []byte(`{"n": 1}`),
			Data:              []byte(`{"n": 1}`),
			NextPointer:       2,
			CreatedAt:         e.at(time.Duration(e.seq) * time.Millisecond),
		},
		Steps: []store.Step{{
			ID: rootID, StepID: "$root", Status: store.StepRunning, Attempt: 1, Work: true,
		}},
		Audit: []store.AuditEvent{{Type: "instance_started"}},
		Now:   e.now,
	}
}

// create stores a new instance, changed by mods first.
func (e *env) create(mods ...func(*store.InstanceCreateParams)) store.Instance {
	e.t.Helper()

	p := e.createParams()
	for _, m := range mods {
		m(&p)
	}

	inst, created, err := e.s.InstanceCreate(e.ctx, p)
	ok(e.t, err)
	equal(e.t, "created", created, true)

	return inst
}

// lease takes the instance's lease for nodeA.
func (e *env) lease(id string) store.Instance {
	e.t.Helper()

	inst, err := e.s.InstanceLease(e.ctx, id, nodeA, leaseTTL)
	ok(e.t, err)

	return inst
}

// transition starts a transition that keeps the leased instance as it is.
func (e *env) transition(inst store.Instance) *store.Transition {
	return &store.Transition{
		InstanceID: inst.ID,
		Owner:      inst.LeaseOwner,
		Epoch:      inst.LeaseEpoch,
		Wake:       inst.Wake,
		Instance: store.InstanceUpdate{
			Status:      inst.Status,
			Reason:      inst.Reason,
			Data:        inst.Data,
			Output:      inst.Output,
			Error:       inst.Error,
			State:       inst.State,
			NextPointer: inst.NextPointer,
			EndedAt:     inst.EndedAt,
		},
		Now: e.now,
	}
}

// apply applies one transition and returns its error.
func (e *env) apply(tr *store.Transition) error {
	e.t.Helper()

	errs := e.s.TransitionApply(e.ctx, []*store.Transition{tr})
	equal(e.t, "results", len(errs), 1)

	return errs[0]
}

// instance reads an instance.
func (e *env) instance(id string) store.Instance {
	e.t.Helper()

	inst, err := e.s.InstanceGet(e.ctx, id)
	ok(e.t, err)

	return inst
}

// step reads one pointer of an instance.
func (e *env) step(id string, pointer int64) store.Step {
	e.t.Helper()

	steps, err := e.s.StepList(e.ctx, id)
	ok(e.t, err)
	for _, st := range steps {
		if st.ID == pointer {
			return st
		}
	}

	e.t.Fatalf("instance %s has no step %d", id, pointer)

	return store.Step{}
}

// taskOptions shape the task step that dispatch adds.
type taskOptions struct {
	startToClose time.Duration
	heartbeat    time.Duration
	visibleAt    time.Time
	service      string
}

// dispatch adds a dispatched task pointer taskID (attempt 1, token) under
// the root, with its task row and a schedule-to-start timer, and frees
// the lease. It returns the instance as stored afterwards.
func (e *env) dispatch(inst store.Instance, o taskOptions) store.Instance {
	e.t.Helper()

	if o.service == "" {
		o.service = service
	}

	tr := e.transition(e.lease(inst.ID))
	tr.Instance.NextPointer = taskID + 1
	tr.Steps = []store.Step{{
		ID: taskID, StepID: "work", ParentID: rootID, Status: store.StepDispatched,
		Attempt: 1, Service: o.service, Action: "run", Token: token, Input: []byte(`{"x":1}`),
	}}
	tr.TasksAdd = []store.Task{{
		PointerID: taskID, StepID: "work", Attempt: 1, Service: o.service, Action: "run",
		Input: []byte(`{"x":1}`), IdempotencyKey: inst.ID + "/2/1", Token: token,
		VisibleAt: o.visibleAt, StartToClose: o.startToClose, Heartbeat: o.heartbeat,
	}}
	tr.TimersAdd = []store.Timer{{
		PointerID: taskID, Kind: store.TimerScheduleToStart, Attempt: 1, FireAt: e.at(time.Hour),
	}}
	tr.Audit = []store.AuditEvent{{Type: "step_dispatched", StepID: "work", PointerID: taskID}}
	ok(e.t, e.apply(tr))

	return e.instance(inst.ID)
}

// ok fails the test at once on an error.
func ok(t *testing.T, err error) {
	t.Helper()

	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// isErr fails the test unless err wraps target.
func isErr(t *testing.T, err, target error) {
	t.Helper()

	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// equal fails the test unless got equals want.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()

	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// sameTime fails the test unless got is the instant want.
func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()

	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
