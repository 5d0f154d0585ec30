package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Load checks that InstanceLoad returns the active part of an instance:
// steps with work, with a due timer or waiting, their ancestors, and the
// due timers.
func Load(t *testing.T, open func(*testing.T) store.Store) {
	// tree builds root(1) > seq(2) > {a(3) done, b(4) with work, c(5)
	// with a timer, d(6) waiting}, and root > e(7) pending, plus done
	// steps 8..20 without work, all under root.
	tree := func(e *env) store.Instance {
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		root := e.step(inst.ID, rootID)
		root.Work = false
		tr.Steps = []store.Step{root,
			{ID: 2, StepID: "seq", ParentID: 1, Status: store.StepRunning},
			{ID: 3, StepID: "a", ParentID: 2, Status: store.StepCompleted, Work: true},
			{ID: 4, StepID: "b", ParentID: 2, Status: store.StepPending, Work: true},
			{ID: 5, StepID: "c", ParentID: 2, Status: store.StepSleeping},
			{ID: 6, StepID: "d", ParentID: 2, Status: store.StepWaiting},
			{ID: 7, StepID: "e", ParentID: 1, Status: store.StepPending},
		}
		for id := int64(8); id <= 20; id++ {
			tr.Steps = append(tr.Steps,
				store.Step{ID: id, StepID: "old", ParentID: 1, Status: store.StepCompleted})
		}

		tr.TimersAdd = []store.Timer{
			{PointerID: 5, Kind: store.TimerDelay, FireAt: e.at(time.Second)},
			{PointerID: 7, Kind: store.TimerDelay, FireAt: e.at(time.Hour)},
			{PointerID: 0, Kind: store.TimerDeadline, FireAt: e.at(2 * time.Second), WhilePaused: true},
		}
		tr.Instance.NextPointer = 21
		ok(e.t, e.apply(tr))

		return inst
	}
	ids := func(steps []store.Step) []int64 {
		var out []int64
		for _, st := range steps {
			out = append(out, st.ID)
		}

		return out
	}

	t.Run("ActiveStepsWithAncestors", func(t *testing.T) {
		e := newEnv(t, open)
		inst := tree(e)

		got, err := e.s.InstanceLoad(e.ctx, store.InstanceLoadParams{InstanceID: inst.ID, Now: e.now})
		ok(t, err)
		equal(t, "instance", got.Instance.ID, inst.ID)
		equal(t, "steps now", ids(got.Steps), []int64{1, 2, 4, 6})
		equal(t, "timers now", len(got.Timers), 0)

		got, err = e.s.InstanceLoad(e.ctx,
			store.InstanceLoadParams{InstanceID: inst.ID, Now: e.at(time.Minute)})
		ok(t, err)
		equal(t, "steps later", ids(got.Steps), []int64{1, 2, 4, 5, 6})
		equal(t, "timers later", len(got.Timers), 2)
		equal(t, "first timer", got.Timers[0].PointerID, int64(5))
		equal(t, "instance timer", got.Timers[1].PointerID, int64(0))
	})

	t.Run("PausedSeesWhilePausedTimersOnly", func(t *testing.T) {
		e := newEnv(t, open)
		inst := tree(e)
		tr := e.transition(e.lease(inst.ID))
		tr.Instance.Status = store.InstancePaused
		ok(t, e.apply(tr))

		got, err := e.s.InstanceLoad(e.ctx,
			store.InstanceLoadParams{InstanceID: inst.ID, Now: e.at(time.Minute)})
		ok(t, err)
		equal(t, "steps", ids(got.Steps), []int64{1, 2, 4, 6})
		equal(t, "timers", len(got.Timers), 1)
		equal(t, "timer", got.Timers[0].Kind, store.TimerDeadline)
	})

	t.Run("AllReturnsEveryNonFinalStep", func(t *testing.T) {
		e := newEnv(t, open)
		inst := tree(e)
		got, err := e.s.InstanceLoad(e.ctx,
			store.InstanceLoadParams{InstanceID: inst.ID, Now: e.now, All: true})
		ok(t, err)
		equal(t, "steps", ids(got.Steps), []int64{1, 2, 4, 5, 6, 7})
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		e := newEnv(t, open)
		_, err := e.s.InstanceLoad(e.ctx, store.InstanceLoadParams{InstanceID: "nope", Now: e.now})
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("StepChildrenAreFinishedBySlot", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		tr.Steps = []store.Step{
			{ID: 2, StepID: "x", ParentID: 1, Slot: 2, Status: store.StepCompleted},
			{ID: 3, StepID: "x", ParentID: 1, Slot: 0, Status: store.StepFailed},
			{ID: 4, StepID: "x", ParentID: 1, Slot: 1, Status: store.StepRunning},
		}
		ok(t, e.apply(tr))

		got, err := e.s.StepChildren(e.ctx, inst.ID, rootID)
		ok(t, err)
		equal(t, "children", ids(got), []int64{3, 2})
	})
}
