package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Reports checks StepReport: accepted, duplicate and each late reason.
func Reports(t *testing.T, open func(*testing.T) store.Store) {
	report := func(e *env, id string, mod func(*store.StepReportParams)) store.ReportResult {
		e.t.Helper()

		p := store.StepReportParams{
			InstanceID: id, PointerID: taskID, Attempt: 1, Token: token,
			Kind: store.ReportCompleted, Output: []byte(`{"out": 1.0}`), Now: e.at(time.Second),
		}
		if mod != nil {
			mod(&p)
		}

		res, err := e.s.StepReport(e.ctx, p)
		ok(e.t, err)

		return res
	}

	t.Run("AcceptedStoresAndWakes", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		before := e.step(inst.ID, taskID)

		res := report(e, inst.ID, nil)
		equal(t, "outcome", res.Outcome, store.ReportAccepted)

		st := e.step(inst.ID, taskID)
		equal(t, "work", st.Work, true)
		equal(t, "rev", st.Rev, before.Rev+1)
		equal(t, "report kind", st.Report.Kind, store.ReportCompleted)
		equal(t, "report attempt", st.Report.Attempt, 1)
		equal(t, "report output", string(st.Report.Output), `{"out": 1.0}`)
		sameTime(t, "report at", st.Report.At, e.at(time.Second))

		got := e.instance(inst.ID)
		equal(t, "wake", got.Wake, inst.Wake+1)
		sameTime(t, "due at", got.DueAt, e.at(time.Second))
		tasks, err := e.s.TaskList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "tasks", len(tasks), 0)
	})

	t.Run("FailedKeepsError", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		stepErr := &store.StepError{Code: "E1", Message: "boom", Retryable: true}
		report(e, inst.ID, func(p *store.StepReportParams) {
			p.Kind, p.Output, p.Error = store.ReportFailed, nil, stepErr
		})
		equal(t, "error", e.step(inst.ID, taskID).Report.Error, stepErr)
	})

	t.Run("DuplicateAnswersStored", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		report(e, inst.ID, nil)

		res := report(e, inst.ID, func(p *store.StepReportParams) { p.Output = []byte(`2`) })
		equal(t, "outcome", res.Outcome, store.ReportDuplicate)
		equal(t, "stored output", string(res.Stored.Output), `{"out": 1.0}`)

		tr := e.transition(e.lease(inst.ID))
		st := e.step(inst.ID, taskID)
		st.Status, st.Work = store.StepCompleted, false
		tr.Steps = []store.Step{st}
		ok(t, e.apply(tr))

		seq := e.instance(inst.ID).LastSeq
		res = report(e, inst.ID, nil)
		equal(t, "outcome after apply", res.Outcome, store.ReportDuplicate)
		equal(t, "seq unchanged", e.instance(inst.ID).LastSeq, seq)
	})

	t.Run("Late", func(t *testing.T) { lateReports(t, open, report) })

	t.Run("ContainerTakesNoReport", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		tr := e.transition(e.lease(inst.ID))
		root := e.step(inst.ID, rootID)
		root.Status = store.StepRunning
		tr.Steps = []store.Step{root}
		ok(t, e.apply(tr))
		inst = e.instance(inst.ID)
		root = e.step(inst.ID, rootID)

		for _, tok := range []string{"", token} {
			res := report(e, inst.ID, func(p *store.StepReportParams) {
				p.PointerID, p.Attempt, p.Token = rootID, root.Attempt, tok
			})
			equal(t, "outcome", res.Outcome, store.ReportLate)
			equal(t, "root step", e.step(inst.ID, rootID), root)
		}
		equal(t, "wake", e.instance(inst.ID).Wake, inst.Wake)
	})

	t.Run("HeartbeatNeedsToken", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		for _, p := range []store.StepHeartbeatParams{
			{InstanceID: inst.ID, PointerID: taskID, Attempt: 1, Now: e.now},
			{InstanceID: inst.ID, PointerID: rootID, Attempt: 1, Now: e.now},
		} {
			res, err := e.s.StepHeartbeat(e.ctx, p)
			ok(t, err)
			equal(t, "outcome", res.Outcome, store.ReportLate)
		}
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		for _, p := range []store.StepReportParams{
			{InstanceID: "nope", PointerID: rootID, Attempt: 1},
			{InstanceID: inst.ID, PointerID: 99, Attempt: 1},
		} {
			_, err := e.s.StepReport(e.ctx, p)
			isErr(t, err, store.ErrNotFound)
		}
	})
}

// lateReports checks each reason a report is late, and its audit row.
func lateReports(
	t *testing.T, open func(*testing.T) store.Store,
	report func(*env, string, func(*store.StepReportParams)) store.ReportResult,
) {
	cases := []struct {
		name   string
		setup  func(*env, store.Instance)
		mod    func(*store.StepReportParams)
		reason string
	}{
		{"instance finished", finish, nil, "instance finished"},
		{"token", nil, func(p *store.StepReportParams) { p.Token = "other" }, "token does not match"},
		{"no token", nil, func(p *store.StepReportParams) { p.Token = "" }, "token does not match"},
		{"superseded", nil, func(p *store.StepReportParams) { p.Attempt = 2 }, "attempt superseded"},
		{"guessed attempt", nil, func(p *store.StepReportParams) { p.Attempt, p.Token = 2, "guess" },
			"token does not match"},
		{"not running", setStatus(store.StepPending), nil, "step not running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, open)
			inst := e.dispatch(e.create(), taskOptions{})
			if tc.setup != nil {
				tc.setup(e, inst)
			}

			before := e.instance(inst.ID)
			stepBefore := e.step(inst.ID, taskID)
			res := report(e, inst.ID, tc.mod)
			equal(t, "outcome", res.Outcome, store.ReportLate)
			equal(t, "reason", res.Reason, tc.reason)

			after := e.instance(inst.ID)
			equal(t, "last seq", after.LastSeq, before.LastSeq+1)
			equal(t, "wake", after.Wake, before.Wake)
			equal(t, "step", e.step(inst.ID, taskID), stepBefore)

			audit, err := e.s.AuditList(e.ctx, inst.ID, before.LastSeq, 0)
			ok(t, err)
			equal(t, "audit type", audit[0].Type, "report_late")
			var data struct {
				Reason  string `json:"reason"`
				Attempt int    `json:"attempt"`
			}
			ok(t, json.Unmarshal(audit[0].Data, &data))
			equal(t, "audit reason", data.Reason, tc.reason)
			equal(t, "audit pointer", audit[0].PointerID, taskID)
		})
	}
}

// finish completes the instance.
func finish(e *env, inst store.Instance) {
	tr := e.transition(e.lease(inst.ID))
	tr.Instance.Status = store.InstanceCompleted
	tr.Instance.EndedAt = e.now
	ok(e.t, e.apply(tr))
}

// setStatus returns a setup that moves the task step to status.
func setStatus(status store.StepStatus) func(*env, store.Instance) {
	return func(e *env, inst store.Instance) {
		tr := e.transition(e.lease(inst.ID))
		st := e.step(inst.ID, taskID)
		st.Status = status
		tr.Steps = []store.Step{st}
		ok(e.t, e.apply(tr))
	}
}
