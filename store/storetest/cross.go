package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// CrossInstance checks what a transition does to other instances: the
// instances it starts and the reports it sends, in the same commit; and
// the cancel report, which any non-final step takes.
func CrossInstance(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("CreatesChildAndReportsToParent", func(t *testing.T) {
		e := newEnv(t, open)
		parent := e.dispatch(e.create(), taskOptions{})

		child := e.createParams()
		child.Instance.State = []byte(`{"parent":"` + parent.ID + `"}`)
		tr := e.transition(e.lease(parent.ID))
		tr.Creates = []store.InstanceCreateParams{child}
		ok(t, e.apply(tr))

		got := e.instance(child.Instance.ID)
		equal(t, "child status", got.Status, store.InstanceRunning)
		equal(t, "child state", string(got.State), string(child.Instance.State))
		equal(t, "child root", e.step(got.ID, rootID).StepID, "$root")
		sameTime(t, "child due", got.DueAt, e.now)

		done := e.transition(e.lease(got.ID))
		done.Instance.Status = store.InstanceCompleted
		done.Instance.EndedAt = e.at(time.Second)
		done.Reports = []store.StepReportParams{{
			InstanceID: parent.ID, PointerID: taskID, Attempt: 1, Token: token,
			Kind: store.ReportCompleted, Output: []byte(`{"child":1}`), Now: e.at(time.Second),
		}}
		ok(t, e.apply(done))

		st := e.step(parent.ID, taskID)
		equal(t, "parent step work", st.Work, true)
		equal(t, "parent report", string(st.Report.Output), `{"child":1}`)
		equal(t, "parent woken", e.instance(parent.ID).Wake, parent.Wake+1)
	})

	t.Run("LateOrMissingReportDoesNotFailTransition", func(t *testing.T) {
		e := newEnv(t, open)
		parent := e.dispatch(e.create(), taskOptions{})
		other := e.create()

		tr := e.transition(e.lease(other.ID))
		tr.Reports = []store.StepReportParams{{
			InstanceID: parent.ID, PointerID: taskID, Attempt: 7, Kind: store.ReportCompleted,
			Now: e.now,
		}, {
			InstanceID: "no-such-instance", PointerID: rootID, Kind: store.ReportCancel, Now: e.now,
		}}
		ok(t, e.apply(tr))
		equal(t, "parent step work", e.step(parent.ID, taskID).Work, false)
	})

	t.Run("CancelReport", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create(func(p *store.InstanceCreateParams) {
			p.Steps[0].Status, p.Steps[0].Attempt = store.StepPending, 0
		})

		res, err := e.s.StepReport(e.ctx, store.StepReportParams{
			InstanceID: inst.ID, PointerID: rootID, Attempt: 5, Kind: store.ReportCancel,
			Now: e.at(time.Second),
		})
		ok(t, err)
		equal(t, "outcome", res.Outcome, store.ReportAccepted)
		st := e.step(inst.ID, rootID)
		equal(t, "report kind", st.Report.Kind, store.ReportCancel)
		equal(t, "work", st.Work, true)

		finish(e, inst)
		res, err = e.s.StepReport(e.ctx, store.StepReportParams{
			InstanceID: inst.ID, PointerID: rootID, Kind: store.ReportCancel, Now: e.at(time.Second),
		})
		ok(t, err)
		equal(t, "outcome when finished", res.Outcome, store.ReportLate)
	})
}
