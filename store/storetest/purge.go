package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Purge checks InstancePurge: finished instances that ended before the
// cutoff go in batches, with every row of theirs; the others stay.
func Purge(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("DeletesOldFinishedInBatches", func(t *testing.T) {
		e := newEnv(t, open)
		old := e.finished(store.InstanceCompleted, e.at(-48*time.Hour), "key-1")
		failed := e.finished(store.InstanceFailed, e.at(-47*time.Hour), "")
		recent := e.finished(store.InstanceCompleted, e.at(-time.Hour), "")
		running := e.dispatch(e.create(), taskOptions{})

		cutoff := e.at(-24 * time.Hour)
		for _, want := range []int{1, 1, 0} {
			n, err := e.s.InstancePurge(e.ctx, store.InstancePurgeParams{Before: cutoff, Limit: 1})
			ok(t, err)
			equal(t, "purged", n, want)
		}

		for _, id := range []string{old, failed} {
			e.gone(id)
		}

		for _, id := range []string{recent, running.ID} {
			_, err := e.s.InstanceGet(e.ctx, id)
			ok(t, err)
			steps, err := e.s.StepList(e.ctx, id)
			ok(t, err)
			equal(t, "steps kept", len(steps) > 0, true)
		}

		tasks, err := e.s.TaskList(e.ctx, "")
		ok(t, err)
		equal(t, "tasks left", len(tasks), 2)

		p := e.createParams()
		p.StartKey, p.InputHash = "key-1", "other-input"
		_, created, err := e.s.InstanceCreate(e.ctx, p)
		ok(t, err)
		equal(t, "start key free again", created, true)
	})

	t.Run("DefaultLimitAndNothingToDo", func(t *testing.T) {
		e := newEnv(t, open)
		e.create()
		n, err := e.s.InstancePurge(e.ctx, store.InstancePurgeParams{Before: e.at(time.Hour)})
		ok(t, err)
		equal(t, "purged", n, 0)
	})
}

// finished makes an instance with a task row, a timer, a delivered
// event and a live subscription, then finishes it with status at ended.
func (e *env) finished(status store.InstanceStatus, ended time.Time, startKey string) string {
	e.t.Helper()

	inst := e.create(func(p *store.InstanceCreateParams) {
		p.StartKey, p.InputHash = startKey, "input"
	})
	inst = e.dispatch(inst, taskOptions{})
	e.publish(`1`, 0, 0, inst.ID)

	tr := e.transition(e.lease(inst.ID))
	tr.Instance.Status, tr.Instance.EndedAt = status, ended
	tr.TimersAdd = []store.Timer{{PointerID: rootID, Kind: store.TimerDelay, FireAt: e.at(time.Hour)}}
	tr.SubscriptionsAdd = []store.Subscription{
		{PointerID: rootID, Name: eventName, Key: eventKey},
		{PointerID: taskID, Name: "never", Key: "k"},
	}
	tr.Audit = []store.AuditEvent{{Type: "instance_" + string(status)}}
	ok(e.t, e.apply(tr))

	return inst.ID
}

// gone fails the test unless nothing of the instance is left.
func (e *env) gone(id string) {
	e.t.Helper()

	_, err := e.s.InstanceGet(e.ctx, id)
	isErr(e.t, err, store.ErrNotFound)

	steps, err := e.s.StepList(e.ctx, id)
	ok(e.t, err)
	audit, err := e.s.AuditList(e.ctx, id, 0, 0)
	ok(e.t, err)
	timers, err := e.s.TimerList(e.ctx, id)
	ok(e.t, err)
	tasks, err := e.s.TaskList(e.ctx, id)
	ok(e.t, err)
	subs, err := e.s.SubscriptionList(e.ctx, id)
	ok(e.t, err)
	equal(e.t, "rows left of "+id, []int{len(steps), len(audit), len(timers), len(tasks), len(subs)},
		[]int{0, 0, 0, 0, 0})
}
