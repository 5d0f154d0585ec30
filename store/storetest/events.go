package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Event names the suite publishes.
const (
	eventName = "paid"
	eventKey  = "order-1"
)

// wait makes the instance's root pointer wait for (eventName, eventKey)
// from asOf on, as a transition at the suite clock moved by d.
func (e *env) wait(id string, asOf time.Time, d time.Duration) {
	e.t.Helper()

	tr := e.transition(e.lease(id))
	tr.Now = e.at(d)
	root := e.step(id, rootID)
	root.Status, root.Work, root.Report = store.StepWaiting, false, nil
	tr.Steps = []store.Step{root}
	tr.SubscriptionsAdd = []store.Subscription{{
		PointerID: rootID, Name: eventName, Key: eventKey, AsOf: asOf,
	}}
	ok(e.t, e.apply(tr))
}

// publish publishes an event at the suite clock moved by d, visible at
// the clock moved by visible.
func (e *env) publish(data string, d, visible time.Duration, instanceID string) store.Event {
	e.t.Helper()

	ev, err := e.s.EventPublish(e.ctx, store.Event{
		Name: eventName, Key: eventKey, Data: []byte(data), Time: e.at(visible),
		InstanceID: instanceID, PublishedAt: e.at(d),
	})
	ok(e.t, err)

	return ev
}

// delivered returns the event id the root pointer holds, 0 for none.
func (e *env) delivered(id string) int64 {
	e.t.Helper()

	st := e.step(id, rootID)
	if st.Report == nil {
		return 0
	}

	equal(e.t, "report kind", st.Report.Kind, store.ReportEvent)

	return st.Report.EventID
}

// Events checks publishing, subscribing, delivery and the sweep.
func Events(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("PublishAfterWaitDelivers", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		e.wait(inst.ID, e.now, 0)
		woken := e.instance(inst.ID)

		ev := e.publish(`{"amount": 10.00}`, time.Second, time.Second, "")
		equal(t, "delivered", e.delivered(inst.ID), ev.ID)

		st := e.step(inst.ID, rootID)
		equal(t, "output", string(st.Report.Output), `{"amount": 10.00}`)
		equal(t, "work", st.Work, true)
		got := e.instance(inst.ID)
		equal(t, "wake", got.Wake, woken.Wake+1)
		sameTime(t, "due", got.DueAt, e.at(time.Second))
		subs, err := e.s.SubscriptionList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "subscription removed", len(subs), 0)
	})

	t.Run("PublishBeforeWaitDelivers", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		ev := e.publish(`1`, time.Second, time.Second, "")
		e.wait(inst.ID, e.now, 2*time.Second)
		equal(t, "delivered", e.delivered(inst.ID), ev.ID)
		sameTime(t, "due", e.instance(inst.ID).DueAt, e.at(2*time.Second))
	})

	t.Run("AsOfHidesOlderEvents", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		e.publish(`1`, time.Second, time.Second, "")
		e.wait(inst.ID, e.at(2*time.Second), 3*time.Second)
		equal(t, "delivered", e.delivered(inst.ID), int64(0))

		earlier := e.create()
		e.wait(earlier.ID, e.now, 3*time.Second)
		equal(t, "explicit earlier as-of takes it", e.delivered(earlier.ID) != 0, true)
	})

	t.Run("FutureEventWaitsForSweep", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		e.wait(inst.ID, e.now, 0)
		ev := e.publish(`1`, time.Second, time.Minute, "")
		equal(t, "hidden", e.delivered(inst.ID), int64(0))

		n, err := e.s.EventSweep(e.ctx, e.at(30*time.Second))
		ok(t, err)
		equal(t, "early sweep", n, 0)

		n, err = e.s.EventSweep(e.ctx, e.at(time.Minute))
		ok(t, err)
		equal(t, "sweep", n, 1)
		equal(t, "delivered", e.delivered(inst.ID), ev.ID)

		n, err = e.s.EventSweep(e.ctx, e.at(2*time.Minute))
		ok(t, err)
		equal(t, "swept once", n, 0)
	})

	t.Run("FutureEventHiddenFromNewWait", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		e.publish(`1`, 0, time.Minute, "")
		e.wait(inst.ID, e.now, time.Second)
		equal(t, "hidden", e.delivered(inst.ID), int64(0))
	})

	t.Run("EachInstanceGetsItOnce", func(t *testing.T) {
		e := newEnv(t, open)
		a, b := e.create(), e.create()
		e.wait(a.ID, e.now, 0)
		e.wait(b.ID, e.now, 0)
		ev := e.publish(`1`, time.Second, time.Second, "")
		equal(t, "a", e.delivered(a.ID), ev.ID)
		equal(t, "b", e.delivered(b.ID), ev.ID)

		e.wait(a.ID, e.now, 2*time.Second)
		equal(t, "not again", e.delivered(a.ID), int64(0))
	})

	t.Run("SecondWaitTakesNextEvent", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		first := e.publish(`1`, time.Second, time.Second, "")
		second := e.publish(`2`, 2*time.Second, 2*time.Second, "")

		e.wait(inst.ID, e.now, 3*time.Second)
		equal(t, "first", e.delivered(inst.ID), first.ID)
		e.wait(inst.ID, e.now, 4*time.Second)
		equal(t, "second", e.delivered(inst.ID), second.ID)
		e.wait(inst.ID, e.now, 5*time.Second)
		equal(t, "none left", e.delivered(inst.ID), int64(0))
	})

	t.Run("InstanceFilter", func(t *testing.T) {
		e := newEnv(t, open)
		a, b := e.create(), e.create()
		e.wait(a.ID, e.now, 0)
		e.wait(b.ID, e.now, 0)
		ev := e.publish(`1`, time.Second, time.Second, b.ID)
		equal(t, "a", e.delivered(a.ID), int64(0))
		equal(t, "b", e.delivered(b.ID), ev.ID)

		other := e.create()
		e.wait(other.ID, e.now, 2*time.Second)
		equal(t, "other later", e.delivered(other.ID), int64(0))

		_, err := e.s.EventPublish(e.ctx, store.Event{Name: eventName, Key: eventKey, InstanceID: "nope"})
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("OldestSubscriptionFirst", func(t *testing.T) {
		e := newEnv(t, open)
		var ids []string
		for i := range 3 {
			inst := e.create()
			e.wait(inst.ID, e.now, time.Duration(3-i)*time.Second)
			ids = append(ids, inst.ID)
		}

		ev := e.publish(`1`, 5*time.Second, 5*time.Second, "")
		for _, id := range ids {
			equal(t, fmt.Sprintf("%s delivered", id), e.delivered(id), ev.ID)
		}
	})
}

// Audit checks AuditList paging and AuditAppend.
func Audit(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("AppendWithoutLease", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()

		ok(t, e.s.AuditAppend(e.ctx, inst.ID, e.at(time.Second), store.AuditEvent{Type: "refused"}))
		after := e.instance(inst.ID)
		equal(t, "last seq", after.LastSeq, inst.LastSeq+1)
		equal(t, "status", after.Status, inst.Status)
		got, err := e.s.AuditList(e.ctx, inst.ID, inst.LastSeq, 10)
		ok(t, err)
		equal(t, "appended", []any{len(got), got[0].Type, got[0].Seq}, []any{1, "refused", inst.LastSeq + 1})

		// A transition after it numbers its rows after the appended one.
		tr := e.transition(e.lease(inst.ID))
		tr.Audit = []store.AuditEvent{{Type: "next"}}
		ok(t, e.apply(tr))
		got, err = e.s.AuditList(e.ctx, inst.ID, inst.LastSeq+1, 10)
		ok(t, err)
		equal(t, "after", []any{len(got), got[0].Type, got[0].Seq}, []any{1, "next", inst.LastSeq + 2})

		isErr(t, e.s.AuditAppend(e.ctx, "missing", e.now, store.AuditEvent{Type: "x"}), store.ErrNotFound)
	})

	t.Run("AfterSeqAndLimit", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		for i := range 5 {
			tr.Audit = append(tr.Audit, store.AuditEvent{
				Type: "x", StepID: "s", PointerID: int64(i), Attempt: i, At: e.at(time.Duration(i)),
			})
		}

		ok(t, e.apply(tr))
		got, err := e.s.AuditList(e.ctx, inst.ID, 2, 3)
		ok(t, err)
		equal(t, "rows", len(got), 3)
		equal(t, "first seq", got[0].Seq, int64(3))
		equal(t, "row", []any{got[0].InstanceID, got[0].Type, got[0].StepID, got[0].PointerID,
			got[0].Attempt}, []any{inst.ID, "x", "s", int64(1), 1})

		got, err = e.s.AuditList(e.ctx, inst.ID, 6, 10)
		ok(t, err)
		equal(t, "after end", len(got), 0)
	})
}
