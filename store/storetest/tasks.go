package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// claimTasks claims tasks of the suite's service at the suite clock
// moved by d.
func (e *env) claimTasks(worker string, limit int, d time.Duration) []store.Task {
	e.t.Helper()

	tasks, err := e.s.TaskClaim(e.ctx, store.TaskClaimParams{
		Worker: worker, Services: []string{service}, Limit: limit, LeaseTTL: time.Minute,
		Now: e.at(d),
	})
	ok(e.t, err)

	return tasks
}

// timerAt returns the FireAt of the instance's timer of pointer and kind,
// zero when there is none.
func (e *env) timerAt(id string, pointer int64, kind store.TimerKind) time.Time {
	e.t.Helper()

	timers, err := e.s.TimerList(e.ctx, id)
	ok(e.t, err)
	for _, tm := range timers {
		if tm.PointerID == pointer && tm.Kind == kind {
			return tm.FireAt
		}
	}

	return time.Time{}
}

// Tasks checks TaskClaim, TaskStart, TaskExtend and TaskRelease.
func Tasks(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("NoStartClaimWaitsForTaskStart", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{
			startToClose: time.Minute, heartbeat: 10 * time.Second,
		})

		tasks, err := e.s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: "w1", Services: []string{service}, Limit: 1, LeaseTTL: time.Minute,
			Now: e.at(time.Second), NoStart: true,
		})
		ok(t, err)
		equal(t, "claimed", len(tasks), 1)
		equal(t, "no deadline yet", tasks[0].Deadline.IsZero(), true)
		equal(t, "still dispatched", e.step(inst.ID, taskID).Status, store.StepDispatched)
		equal(t, "no start-to-close timer",
			e.timerAt(inst.ID, taskID, store.TimerStartToClose).IsZero(), true)

		_, err = e.s.TaskStart(e.ctx, store.TaskStartParams{Worker: "w2", ID: tasks[0].ID, Now: e.at(5 * time.Second)})
		isErr(t, err, store.ErrNotFound)

		started, err := e.s.TaskStart(e.ctx, store.TaskStartParams{
			Worker: "w1", ID: tasks[0].ID, Now: e.at(5 * time.Second),
		})
		ok(t, err)
		sameTime(t, "deadline from the start", started.Deadline, e.at(5*time.Second+time.Minute))
		st := e.step(inst.ID, taskID)
		equal(t, "running", st.Status, store.StepRunning)
		sameTime(t, "started at", st.StartedAt, e.at(5*time.Second))
		sameTime(t, "heartbeat timer", e.timerAt(inst.ID, taskID, store.TimerHeartbeat),
			e.at(15*time.Second))

		again, err := e.s.TaskStart(e.ctx, store.TaskStartParams{
			Worker: "w1", ID: tasks[0].ID, Now: e.at(9 * time.Second),
		})
		ok(t, err)
		sameTime(t, "a second start changes nothing", again.Deadline, started.Deadline)
		audit, err := e.s.AuditList(e.ctx, inst.ID, inst.LastSeq, 0)
		ok(t, err)
		equal(t, "one step_started", len(audit), 1)
	})

	t.Run("FirstClaimStartsStep", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{
			startToClose: time.Minute, heartbeat: 10 * time.Second,
		})
		before := e.step(inst.ID, taskID)

		tasks := e.claimTasks("w1", 10, time.Second)
		equal(t, "claimed", len(tasks), 1)
		task := tasks[0]
		equal(t, "claimed by", task.ClaimedBy, "w1")
		equal(t, "claims", task.Claims, 1)
		equal(t, "token", task.Token, token)
		equal(t, "input", string(task.Input), `{"x":1}`)
		sameTime(t, "claim expires", task.ClaimExpires, e.at(time.Second+time.Minute))
		sameTime(t, "deadline", task.Deadline, e.at(time.Second+time.Minute))

		st := e.step(inst.ID, taskID)
		equal(t, "status", st.Status, store.StepRunning)
		equal(t, "rev", st.Rev, before.Rev+1)
		sameTime(t, "started at", st.StartedAt, e.at(time.Second))

		sameTime(t, "start-to-close timer", e.timerAt(inst.ID, taskID, store.TimerStartToClose),
			e.at(time.Second+time.Minute))
		sameTime(t, "heartbeat timer", e.timerAt(inst.ID, taskID, store.TimerHeartbeat),
			e.at(11*time.Second))
		equal(t, "schedule-to-start gone",
			e.timerAt(inst.ID, taskID, store.TimerScheduleToStart).IsZero(), true)
		sameTime(t, "due lowered", e.instance(inst.ID).DueAt, e.at(11*time.Second))

		audit, err := e.s.AuditList(e.ctx, inst.ID, inst.LastSeq, 0)
		ok(t, err)
		equal(t, "audit rows", len(audit), 1)
		equal(t, "audit", []any{audit[0].Type, audit[0].PointerID, audit[0].Attempt},
			[]any{"step_started", taskID, 1})
	})

	t.Run("ReclaimAfterExpiryChangesOnlyTheClaim", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{startToClose: time.Hour})
		first := e.claimTasks("w1", 1, 0)[0]
		equal(t, "not visible while claimed", len(e.claimTasks("w2", 1, time.Second)), 0)
		stepAfterFirst := e.step(inst.ID, taskID)
		seq := e.instance(inst.ID).LastSeq

		again := e.claimTasks("w2", 1, 2*time.Minute)
		equal(t, "reclaimed", len(again), 1)
		equal(t, "same task", again[0].ID, first.ID)
		equal(t, "claimed by", again[0].ClaimedBy, "w2")
		equal(t, "claims", again[0].Claims, 2)
		sameTime(t, "deadline kept", again[0].Deadline, first.Deadline)
		equal(t, "step unchanged", e.step(inst.ID, taskID), stepAfterFirst)
		equal(t, "no audit", e.instance(inst.ID).LastSeq, seq)
	})

	t.Run("ServicesAndVisibility", func(t *testing.T) {
		e := newEnv(t, open)
		e.dispatch(e.create(), taskOptions{service: "other"})
		later := e.dispatch(e.create(), taskOptions{visibleAt: e.at(time.Hour)})
		equal(t, "other service", len(e.claimTasks("w1", 10, time.Minute)), 0)

		got := e.claimTasks("w1", 10, 2*time.Hour)
		equal(t, "visible later", len(got), 1)
		equal(t, "instance", got[0].InstanceID, later.ID)

		both, err := e.s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: "w2", Services: []string{"other", service}, Limit: 10,
			LeaseTTL: time.Minute, Now: e.at(2 * time.Hour),
		})
		ok(t, err)
		equal(t, "other claimed", len(both), 1)
		equal(t, "service", both[0].Service, "other")
	})

	t.Run("OrderedByVisibility", func(t *testing.T) {
		e := newEnv(t, open)
		b := e.dispatch(e.create(), taskOptions{visibleAt: e.at(2 * time.Second)})
		a := e.dispatch(e.create(), taskOptions{visibleAt: e.at(time.Second)})
		got := e.claimTasks("w1", 10, time.Minute)
		equal(t, "order", []string{got[0].InstanceID, got[1].InstanceID}, []string{a.ID, b.ID})
	})

	t.Run("ConcurrentClaimersNeverShare", func(t *testing.T) {
		e := newEnv(t, open)
		const n = 20
		for range n {
			e.dispatch(e.create(), taskOptions{})
		}

		var mu sync.Mutex
		var ids []int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for {
					tasks, err := e.s.TaskClaim(e.ctx, store.TaskClaimParams{
						Worker: string(rune('a' + w)), Services: []string{service}, Limit: 2,
						LeaseTTL: time.Minute, Now: e.now,
					})
					if err != nil || len(tasks) == 0 {
						return
					}

					mu.Lock()
					for _, task := range tasks {
						ids = append(ids, task.ID)
					}
					mu.Unlock()
				}
			})
		}

		wg.Wait()
		slices.Sort(ids)
		equal(t, "claimed", len(ids), n)
		equal(t, "distinct", len(slices.Compact(ids)), n)
	})

	t.Run("ExtendAndRelease", func(t *testing.T) {
		e := newEnv(t, open)
		e.dispatch(e.create(), taskOptions{})
		task := e.claimTasks("w1", 1, 0)[0]

		ok(t, e.s.TaskExtend(e.ctx, "w1", []int64{task.ID}, e.at(time.Hour)))
		equal(t, "still held", len(e.claimTasks("w2", 1, 30*time.Minute)), 0)
		isErr(t, e.s.TaskExtend(e.ctx, "w2", []int64{task.ID}, e.at(time.Hour)), store.ErrNotFound)

		release := func(worker string, at time.Time, unsent bool) error {
			return e.s.TaskRelease(e.ctx, store.TaskReleaseParams{
				Worker: worker, ID: task.ID, VisibleAt: at, Unsent: unsent,
			})
		}
		isErr(t, release("w2", e.now, false), store.ErrNotFound)
		ok(t, release("w1", e.at(time.Minute), false))
		equal(t, "not yet visible", len(e.claimTasks("w2", 1, 0)), 0)
		got := e.claimTasks("w2", 1, time.Minute)
		equal(t, "visible again", len(got), 1)
		equal(t, "claims", got[0].Claims, 2)

		ok(t, e.s.TaskRelease(e.ctx, store.TaskReleaseParams{
			Worker: "w2", ID: task.ID, VisibleAt: e.at(time.Minute), Unsent: true,
		}))
		got = e.claimTasks("w1", 1, time.Minute)
		equal(t, "an unsent claim does not count", got[0].Claims, 2)
	})
}

// Heartbeats checks StepHeartbeat.
func Heartbeats(t *testing.T, open func(*testing.T) store.Store) {
	beat := func(e *env, id string, attempt int, d time.Duration) store.ReportResult {
		e.t.Helper()

		res, err := e.s.StepHeartbeat(e.ctx, store.StepHeartbeatParams{
			InstanceID: id, PointerID: taskID, Attempt: attempt, Token: token, Now: e.at(d),
		})
		ok(e.t, err)

		return res
	}

	t.Run("MovesTimerUpToDeadline", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{startToClose: time.Minute, heartbeat: 20 * time.Second})
		e.claimTasks("w1", 1, 0)
		seq := e.instance(inst.ID).LastSeq

		equal(t, "outcome", beat(e, inst.ID, 1, 10*time.Second).Outcome, store.ReportAccepted)
		sameTime(t, "moved", e.timerAt(inst.ID, taskID, store.TimerHeartbeat), e.at(30*time.Second))

		beat(e, inst.ID, 1, 50*time.Second)
		sameTime(t, "capped", e.timerAt(inst.ID, taskID, store.TimerHeartbeat), e.at(time.Minute))
		equal(t, "no audit", e.instance(inst.ID).LastSeq, seq)
	})

	t.Run("WithoutLimitIsNoOp", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{})
		e.claimTasks("w1", 1, 0)
		equal(t, "outcome", beat(e, inst.ID, 1, time.Second).Outcome, store.ReportAccepted)
		equal(t, "no timer", e.timerAt(inst.ID, taskID, store.TimerHeartbeat).IsZero(), true)
	})

	t.Run("Late", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.dispatch(e.create(), taskOptions{heartbeat: time.Minute})
		res := beat(e, inst.ID, 1, time.Second)
		equal(t, "before start", res, store.ReportResult{Outcome: store.ReportLate, Reason: "step not running"})

		e.claimTasks("w1", 1, 0)
		res = beat(e, inst.ID, 2, time.Second)
		equal(t, "other attempt", res.Reason, "attempt superseded")

		res, err := e.s.StepHeartbeat(e.ctx, store.StepHeartbeatParams{
			InstanceID: inst.ID, PointerID: taskID, Attempt: 1, Token: "bad", Now: e.now,
		})
		ok(t, err)
		equal(t, "token", res.Reason, "token does not match")
	})
}

// Timers checks the timer rows transitions write.
func Timers(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("UpsertByPointerAndKind", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		for _, at := range []time.Duration{time.Hour, time.Minute} {
			tr := e.transition(e.lease(inst.ID))
			tr.TimersAdd = []store.Timer{{
				PointerID: rootID, Kind: store.TimerRetry, Attempt: 2, FireAt: e.at(at), WhilePaused: true,
			}}
			ok(t, e.apply(tr))
		}

		timers, err := e.s.TimerList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "timers", len(timers), 1)
		want := store.Timer{InstanceID: inst.ID, PointerID: rootID, Kind: store.TimerRetry,
			Attempt: 2, FireAt: e.at(time.Minute), WhilePaused: true}
		sameTime(t, "fire at", timers[0].FireAt, want.FireAt)
		timers[0].FireAt = want.FireAt
		equal(t, "timer", timers[0], want)
	})

	t.Run("ListedByFireTime", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create(func(p *store.InstanceCreateParams) {
			p.Timers = []store.Timer{
				{PointerID: rootID, Kind: store.TimerDelay, FireAt: e.at(time.Hour)},
				{PointerID: 0, Kind: store.TimerDeadline, FireAt: e.at(time.Minute)},
			}
		})
		timers, err := e.s.TimerList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "first", timers[0].Kind, store.TimerDeadline)
		equal(t, "second", timers[1].Kind, store.TimerDelay)
	})
}
