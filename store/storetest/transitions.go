package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Transitions checks the atomic instance write: its audit numbering,
// step revisions, due time, lease release and the rows it carries.
func Transitions(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("WritesInstanceStepsAndAudit", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		root := e.step(inst.ID, rootID)

		tr := e.transition(inst)
		tr.Instance.Data = []byte(`{"n": 2.50}`)
		tr.Instance.NextPointer = 3
		root.Work = false
		root.State = []byte(`{"pos":1}`)
		tr.Steps = []store.Step{root, {ID: 2, StepID: "a", ParentID: rootID, Status: store.StepPending}}
		tr.Audit = []store.AuditEvent{{Type: "a"}, {Type: "b", PointerID: 2, Data: []byte(`{"k":1}`)}}
		ok(t, e.apply(tr))
		equal(t, "audit seqs set", []int64{tr.Audit[0].Seq, tr.Audit[1].Seq}, []int64{2, 3})

		got := e.instance(inst.ID)
		equal(t, "data", string(got.Data), `{"n": 2.50}`)
		equal(t, "next pointer", got.NextPointer, int64(3))
		equal(t, "last seq", got.LastSeq, int64(3))
		equal(t, "lease released", got.LeaseOwner, "")
		sameTime(t, "updated at", got.UpdatedAt, e.now)

		st := e.step(inst.ID, rootID)
		equal(t, "root rev", st.Rev, int64(2))
		equal(t, "root work", st.Work, false)
		equal(t, "root state", string(st.State), `{"pos":1}`)
		equal(t, "new step rev", e.step(inst.ID, 2).Rev, int64(1))

		audit, err := e.s.AuditList(e.ctx, inst.ID, 1, 0)
		ok(t, err)
		equal(t, "audit", len(audit), 2)
		equal(t, "audit data", string(audit[1].Data), `{"k":1}`)
	})

	t.Run("StaleRevIsConflictAndChangesNothing", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		root := e.step(inst.ID, rootID)

		tr := e.transition(inst)
		tr.KeepLease = true
		tr.Steps = []store.Step{root}
		ok(t, e.apply(tr))

		tr = e.transition(inst)
		tr.Instance.Data = []byte(`{"changed":true}`)
		tr.Steps = []store.Step{root}
		tr.Audit = []store.AuditEvent{{Type: "x"}}
		tr.TimersAdd = []store.Timer{{PointerID: rootID, Kind: store.TimerDelay, FireAt: e.now}}
		isErr(t, e.apply(tr), store.ErrConflict)

		got := e.instance(inst.ID)
		equal(t, "data", string(got.Data), `{"n": 1}`)
		equal(t, "last seq", got.LastSeq, int64(1))
		equal(t, "lease kept", got.LeaseOwner, nodeA)
		timers, err := e.s.TimerList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "timers", len(timers), 0)
	})

	t.Run("InsertOfTakenPointerIsConflict", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		tr.Steps = []store.Step{{ID: rootID, StepID: "again", Status: store.StepPending}}
		isErr(t, e.apply(tr), store.ErrConflict)
	})

	t.Run("OneFailureLeavesTheOthers", func(t *testing.T) {
		e := newEnv(t, open)
		a := e.lease(e.create().ID)
		b := e.lease(e.create().ID)
		c := e.lease(e.create().ID)
		stale := e.transition(b)
		stale.Epoch--

		trs := []*store.Transition{e.transition(a), stale, e.transition(c)}
		for _, tr := range trs {
			tr.Audit = []store.AuditEvent{{Type: "x"}}
		}

		errs := e.s.TransitionApply(e.ctx, trs)
		ok(t, errs[0])
		isErr(t, errs[1], store.ErrLeaseLost)
		ok(t, errs[2])
		equal(t, "a seq", e.instance(a.ID).LastSeq, int64(2))
		equal(t, "b seq", e.instance(b.ID).LastSeq, int64(1))
		equal(t, "c seq", e.instance(c.ID).LastSeq, int64(2))
	})

	t.Run("SeqIsGapFree", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		_, err := e.s.StepReport(e.ctx, store.StepReportParams{
			InstanceID: inst.ID, PointerID: taskID, Attempt: 9, Kind: store.ReportCompleted, Now: e.now,
		})
		ok(t, err)

		for i := range 3 {
			tr := e.transition(e.lease(inst.ID))
			tr.Audit = make([]store.AuditEvent, i+1)
			for j := range tr.Audit {
				tr.Audit[j].Type = "x"
			}

			ok(t, e.apply(tr))
		}

		audit, err := e.s.AuditList(e.ctx, inst.ID, 0, 0)
		ok(t, err)
		for i, a := range audit {
			equal(t, "seq", a.Seq, int64(i+1))
		}

		equal(t, "rows", len(audit), 1+1+1+6)
		equal(t, "last seq", e.instance(inst.ID).LastSeq, int64(len(audit)))
	})

	t.Run("DueTime", func(t *testing.T) { dueTime(t, open) })

	t.Run("TimersTasksAndSubscriptions", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		tr := e.transition(e.lease(inst.ID))
		tr.TimersAdd = []store.Timer{
			{PointerID: taskID, Kind: store.TimerRetry, FireAt: e.at(time.Minute)},
			{PointerID: taskID, Kind: store.TimerDelay, FireAt: e.at(time.Minute)},
			{PointerID: rootID, Kind: store.TimerDelay, FireAt: e.at(time.Minute)},
		}
		tr.TasksDelete = []int64{taskID}
		tr.SubscriptionsAdd = []store.Subscription{{PointerID: rootID, Name: "n", Key: "k"}}
		ok(t, e.apply(tr))

		tasks, err := e.s.TaskList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "tasks", len(tasks), 0)
		subs, err := e.s.SubscriptionList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "subscriptions", len(subs), 1)

		tr = e.transition(e.lease(inst.ID))
		tr.TimersDelete = []store.TimerKey{{PointerID: taskID, Kind: store.TimerRetry},
			{PointerID: rootID}}
		tr.SubscriptionsDelete = []int64{rootID}
		ok(t, e.apply(tr))

		timers, err := e.s.TimerList(e.ctx, inst.ID)
		ok(t, err)
		var kinds []store.TimerKind
		for _, tm := range timers {
			kinds = append(kinds, tm.Kind)
		}

		equal(t, "timers left", kinds, []store.TimerKind{store.TimerDelay, store.TimerScheduleToStart})
		subs, err = e.s.SubscriptionList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "subscriptions", len(subs), 0)
	})
}

// dueTime checks how a transition sets the instance's due time.
func dueTime(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	timers := []store.Timer{
		{PointerID: rootID, Kind: store.TimerDelay, FireAt: e.at(time.Minute)},
		{PointerID: rootID, Kind: store.TimerDeadline, FireAt: e.at(time.Hour), WhilePaused: true},
	}
	cases := []struct {
		name   string
		status store.InstanceStatus
		timers []store.Timer
		woken  bool
		want   time.Time
	}{
		{"no timers", store.InstanceRunning, nil, false, time.Time{}},
		{"earliest timer", store.InstanceRunning, timers, false, e.at(time.Minute)},
		{"paused takes while-paused timers", store.InstancePaused, timers, false, e.at(time.Hour)},
		{"paused without them", store.InstancePaused, timers[:1], false, time.Time{}},
		{"final", store.InstanceCompleted, timers, false, time.Time{}},
		{"woken", store.InstanceRunning, timers, true, e.now},
		{"woken and final", store.InstanceCompleted, nil, true, e.now},
	}
	for _, tc := range cases {
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		tr.Instance.Status = tc.status
		tr.TimersAdd = tc.timers
		if tc.woken {
			tr.Wake--
		}

		ok(t, e.apply(tr))
		got := e.instance(inst.ID)
		if !got.DueAt.Equal(tc.want) {
			t.Fatalf("%s: due at = %v, want %v", tc.name, got.DueAt, tc.want)
		}
	}
}
