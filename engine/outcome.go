package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// handleReport applies an accepted report to its pointer.
func (r *run) handleReport(p *ptr) {
	rep := p.row.Report
	p.row.Work = false
	r.touch(p)
	if rep.Kind == store.ReportCancel {
		r.childCancelled(p)
		return
	}
	if rep.Attempt != p.row.Attempt {
		return
	}

	switch rep.Kind {
	case store.ReportEvent:
		if p.row.Status != store.StepWaiting {
			return
		}
		r.clearTimers(p.row.ID)
		out, err := decodeJSON(rep.Output)
		if err != nil {
			r.fail(fmt.Errorf("decoding event data: %w", err))
			return
		}
		r.audit(auditEventReceived, p, map[string]any{"event_id": rep.EventID})
		r.complete(p, out, true)
	case store.ReportChoice:
		r.userTaskChosen(p, rep)
	case store.ReportCompleted:
		if !p.inFlight() {
			return
		}
		r.taskCompleted(p, rep)
	case store.ReportFailed:
		if !p.inFlight() {
			return
		}
		serr := rep.Error
		if serr == nil {
			serr = &store.StepError{Code: "error", Message: "failed", Retryable: true}
		}
		r.attemptFailed(p, serr, auditStepFailed)
	}
}

func (r *run) taskCompleted(p *ptr, rep *store.Report) {
	if len(rep.Output) > r.e.opts.MaxPayloadBytes {
		size := len(rep.Output)
		rep.Output = nil
		r.attemptFailed(p, outputTooLarge(size, r.e.opts.MaxPayloadBytes), auditStepFailed)
		return
	}

	out, err := decodeJSON(rep.Output)
	if err != nil {
		r.attemptFailed(p, &store.StepError{Code: "bad_output", Message: err.Error()}, auditStepFailed)
		return
	}

	r.dropTask(p.row.ID)
	if r.inst.Status == store.InstanceCancelling && !r.inCleanup(p) {
		r.complete(p, out, true)
		r.drained(p)
		return
	}
	r.complete(p, out, true)
}

// attemptFailed records a failed attempt and retries it, or applies the
// step's failure action once its attempts are spent.
func (r *run) attemptFailed(p *ptr, serr *store.StepError, auditType string) {
	p.row.Error = mustJSON(serr)
	p.row.Work = false
	r.touch(p)
	r.dropTask(p.row.ID)
	r.clearTimers(p.row.ID)
	r.audit(auditType, p, serr)

	if r.inst.Status == store.InstanceCancelling && !r.inCleanup(p) {
		p.row.Status = store.StepFailed
		p.row.EndedAt = r.now
		r.drained(p)
		return
	}

	used := p.row.Attempt - p.st.BudgetBase
	if r.retryable(p.node, serr) && used < p.node.Retry.MaxAttempts {
		delay := r.backoff(p.node.Retry, used)
		p.row.Status = store.StepSleeping
		r.setTimer(p, store.TimerRetry, r.now.Add(delay), false)
		r.audit(auditRetryScheduled, p, map[string]any{"delay_ms": delay.Milliseconds()})
		return
	}

	p.row.Status = store.StepFailed
	p.row.EndedAt = r.now
	r.giveUp(p, serr)
}

func (r *run) retryable(n *definition.Node, serr *store.StepError) bool {
	return serr.Retryable && !slices.Contains(n.Retry.NonRetryable, serr.Code)
}

// backoff is the wait after attempt n (from 1) of a retry budget.
func (r *run) backoff(p definition.Retry, n int) time.Duration {
	d := float64(p.InitialInterval) * pow(p.BackoffCoefficient, n-1)
	if p.MaxInterval > 0 && d > float64(p.MaxInterval) {
		d = float64(p.MaxInterval)
	}

	if p.Jitter > 0 {
		f := rand.Float64
		if r.e.opts.Jitter != nil {
			f = r.e.opts.Jitter
		}
		d += d * p.Jitter * f()
	}

	return time.Duration(d)
}

func pow(b float64, n int) float64 {
	out := 1.0
	for range n {
		out *= b
	}

	return out
}

// giveUp applies the failure action of a step that spent its attempts.
func (r *run) giveUp(p *ptr, serr *store.StepError) {
	if r.inCleanup(p) {
		r.failInstance("cleanup_failed", errorJSON(p, serr))
		return
	}
	if r.inCompensation(p) {
		r.failInstance("compensation_failed", errorJSON(p, serr))
		return
	}

	switch p.node.OnFailure {
	case definition.Compensate:
		r.compensate(p, serr)
	case definition.SuspendInstance:
		p.st.Suspended = true
		r.ist.Suspended = append(r.ist.Suspended,
			suspendedStep{ID: p.row.ID, Parent: p.row.ParentID})
		r.inst.Status = store.InstancePaused
		r.inst.Reason = "step_failed: " + p.node.ID
		r.audit(auditInstancePaused, nil, map[string]any{"reason": r.inst.Reason})
	case definition.TerminateInstance:
		r.finalize(store.InstanceTerminated, "step_failed: "+p.node.ID, errorJSON(p, serr))
	default:
		r.failStep(p, "step_failed: "+p.node.ID, errorJSON(p, serr))
	}
}

// handleTimer applies one due timer.
func (r *run) handleTimer(t store.Timer) {
	r.clearTimer(t.PointerID, t.Kind)
	if t.PointerID == 0 {
		r.instanceTimer(t)
		return
	}

	p, ok := r.ptrs[t.PointerID]
	if !ok || p.row.Status.Final() {
		return
	}

	switch t.Kind {
	case store.TimerDelay:
		switch {
		case p.st.Frame == frameBeside:
			if p.row.Status == store.StepSleeping || p.row.Status == store.StepWaiting {
				r.besideTimer(p)
			}
		case p.row.Status == store.StepSleeping:
			r.complete(p, nil, false)
		}
	case store.TimerRetry:
		switch {
		case p.row.Status != store.StepSleeping:
		case p.isTask():
			r.dispatch(p)
		case p.st.Frame == "" && p.node.Kind == definition.KindWorkflow:
			r.startChild(p)
		case p.st.Frame == "" && p.node.Kind == definition.KindSaga:
			r.startSaga(p)
		}
	case store.TimerStartToClose, store.TimerHeartbeat, store.TimerScheduleToStart:
		if t.Attempt == p.row.Attempt && p.inFlight() {
			kind := t.Kind
			if kind == store.TimerHeartbeat && r.capReached(t) {
				kind = store.TimerStartToClose
			}
			r.attemptFailed(p, &store.StepError{
				Code:      string(kind) + "_timeout",
				Message:   fmt.Sprintf("attempt %d passed its %s timeout", t.Attempt, kind),
				Retryable: true,
			}, auditStepTimedOut)
		}
	case store.TimerWaitTimeout:
		if p.isUserTask() {
			r.userTaskTimedOut(p)
			return
		}
		if p.row.Status == store.StepWaiting {
			r.dropSubscription(p.row.ID)
			p.st.TimedOut = true
			p.row.Status = store.StepRunning
			r.audit(auditWaitTimedOut, p, nil)
			r.startBlock(p, definition.BlockOnTimeout)
		}
	}
}

func (r *run) instanceTimer(t store.Timer) {
	switch t.Kind {
	case store.TimerDeadline:
		if r.inst.Status == store.InstanceRunning || r.inst.Status == store.InstancePaused {
			r.failInstance("deadline_exceeded", mustJSON(&store.StepError{
				Code: "deadline_exceeded", Message: "the instance passed its deadline",
			}))
		}
	case store.TimerCancelGrace:
		if r.inst.Status == store.InstanceCancelling && !r.ist.Cleanup {
			r.loadAll()
			for _, id := range r.ist.Draining {
				if p, ok := r.ptrs[id]; ok && !p.row.Status.Final() {
					r.cancelPtr(p)
				}
			}
			r.ist.Draining = nil
			r.startCleanup()
		}
	}
}

// capReached reports whether the attempt of heartbeat timer t reached
// its start-to-close cap too. Heartbeats never move the heartbeat timer
// past the cap, so both fall due together, and the cap is what ended the
// attempt.
func (r *run) capReached(t store.Timer) bool {
	return slices.ContainsFunc(r.timers, func(c store.Timer) bool {
		return c.PointerID == t.PointerID && c.Kind == store.TimerStartToClose &&
			c.Attempt == t.Attempt && !c.FireAt.After(t.FireAt)
	})
}

// checkWaits abandons waits whose cancel condition now holds, and stops
// recurrences whose stop condition does.
func (r *run) checkWaits() {
	if r.inst.Status != store.InstanceRunning {
		return
	}
	r.checkRecurs()

	for _, p := range r.sorted() {
		if r.final || r.err != nil {
			return
		}
		if p.row.Status != store.StepWaiting || p.node.CancelIf == nil {
			continue
		}
		ok, err := p.node.CancelIf.EvalBool(r.env(p))
		if err != nil {
			r.exprFailed(p, err)
			return
		}
		if !ok {
			continue
		}

		r.dropSubscription(p.row.ID)
		r.audit(auditWaitAbandoned, p, nil)
		if !p.node.CancelContinue {
			r.failInstance("wait_abandoned: "+p.node.ID, errorJSON(p, &store.StepError{
				Code: "wait_abandoned", Message: "the wait's cancel condition held",
			}))
			return
		}
		r.complete(p, nil, false)
	}
}

// cancelPtr stops a pointer and removes what it holds in the store.
func (r *run) cancelPtr(p *ptr) {
	if p.row.Status.Final() {
		return
	}

	wasTask := p.isTask() && p.row.Status != store.StepPending
	r.cancelChild(p)
	p.row.Status = store.StepCancelled
	p.row.Work = false
	p.row.EndedAt = r.now
	r.touch(p)
	r.clearTimers(p.row.ID)
	r.dropTask(p.row.ID)
	if p.node.Kind == definition.KindWait && p.st.Frame == "" {
		r.dropSubscription(p.row.ID)
	}
	if wasTask {
		r.audit(auditStepCancelled, p, nil)
	}
}

// dropSubscription removes a wait's subscription. One added by this
// same transition is taken out of it: the store deletes before it adds,
// so a delete alone would leave the new subscription behind.
func (r *run) dropSubscription(id int64) {
	r.tr.SubscriptionsAdd = slices.DeleteFunc(r.tr.SubscriptionsAdd,
		func(s store.Subscription) bool { return s.PointerID == id })
	r.tr.SubscriptionsDelete = append(r.tr.SubscriptionsDelete, id)
}

// drained notes that an attempt in flight at cancel time has ended.
func (r *run) drained(p *ptr) {
	r.ist.Draining = slices.DeleteFunc(r.ist.Draining, func(id int64) bool { return id == p.row.ID })
	if len(r.ist.Draining) == 0 && !r.ist.Cleanup {
		r.startCleanup()
	}
}

// dropTask removes a pointer's dispatch rows, those this transition
// adds included (the store deletes before it adds).
func (r *run) dropTask(id int64) {
	r.tr.TasksAdd = slices.DeleteFunc(r.tr.TasksAdd, func(t store.Task) bool { return t.PointerID == id })
	r.tr.TasksDelete = append(r.tr.TasksDelete, id)
}

// outputTooLarge is the error of an attempt whose output is over the
// payload limit. It is retryable: the step's retry policy decides.
func outputTooLarge(size, limit int) *store.StepError {
	return &store.StepError{
		Code:      "payload_too_large",
		Message:   fmt.Sprintf("payload too large: output of %d bytes is over the %d byte limit", size, limit),
		Retryable: true,
	}
}
