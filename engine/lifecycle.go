package engine

import (
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// failInstance ends the instance as failed.
func (r *run) failInstance(reason string, errJSON json.RawMessage) {
	r.finalize(store.InstanceFailed, reason, errJSON)
}

// failStep ends the instance as failed because step p failed, keeping
// what a retry from p needs: the containers above the active steps stay
// as they are, and the active steps are recorded before they stop.
func (r *run) failStep(p *ptr, reason string, errJSON json.RawMessage) {
	if r.final {
		return
	}
	r.loadAll()
	if r.err != nil {
		return
	}
	if r.inCleanup(p) || r.inst.Status == store.InstanceCancelling {
		r.failInstance(reason, errJSON)
		return
	}

	r.ist.Failed = &suspendedStep{ID: p.row.ID, Parent: p.row.ParentID}
	r.ist.Halted = nil
	for _, q := range r.sorted() {
		if q == p || q.row.Status.Final() || r.holdsBlock(q) {
			continue
		}
		st, err := q.encode()
		if err != nil {
			r.fail(err)
			return
		}
		if q.st.Frame == frameBeside && q.row.Status != store.StepPending {
			r.ist.Pending--
		}
		r.ist.Halted = append(r.ist.Halted, haltedStep{
			Parent: q.row.ParentID, Step: q.row.StepID, Slot: q.row.Slot,
			Attempt: q.row.Attempt, State: st.State,
		})
	}
	r.keepBlocks = true
	r.failInstance(reason, errJSON)
}

// holdsBlock reports whether p is a container running a block: a failed
// instance keeps such pointers as they are, for a retry. A workflow step
// waiting for its child is not one: it stops, and so does its child.
func (r *run) holdsBlock(p *ptr) bool {
	leaf := p.isTask() || (p.st.Frame == "" && p.node.Kind == definition.KindWorkflow)
	return p.row.Status == store.StepRunning && !leaf
}

// finalize gives the instance a final status and removes everything it
// still holds: steps, timers, tasks and subscriptions.
func (r *run) finalize(status store.InstanceStatus, reason string, errJSON json.RawMessage) {
	if r.final {
		return
	}
	r.loadAll()
	if r.err != nil {
		return
	}

	for _, p := range r.sorted() {
		if r.keepBlocks && r.holdsBlock(p) {
			continue
		}
		if p.isTask() && p.inFlight() {
			r.stopAttempt(p)
		}
		r.cancelPtr(p)
	}
	r.clearTimers(0)

	r.final = true
	r.inst.Status = status
	r.reportToParent(status, reason)
	r.inst.Reason = reason
	r.inst.EndedAt = r.now
	if errJSON != nil {
		r.inst.Error = errJSON
	}
	r.ist.Draining = nil

	typ := map[store.InstanceStatus]string{
		store.InstanceCompleted:  auditInstanceCompleted,
		store.InstanceFailed:     auditInstanceFailed,
		store.InstanceCancelled:  auditInstanceCancelled,
		store.InstanceTerminated: auditInstanceTerminate,
	}[status]
	data := map[string]any{}
	if reason != "" {
		data["reason"] = reason
	}
	if errJSON != nil {
		data["error"] = errJSON
	}
	r.audit(typ, nil, data)
}

// pause stops new work from starting.
func (r *run) pause(reason string) error {
	if err := r.commandable(); err != nil {
		return err
	}
	if r.inst.Status != store.InstanceRunning {
		return fmt.Errorf("pausing %s instance: %w", r.inst.Status, ErrWrongStatus)
	}

	if reason == "" {
		reason = "paused by request"
	}
	r.inst.Status = store.InstancePaused
	r.inst.Reason = reason
	r.audit(auditInstancePaused, nil, map[string]any{"reason": reason})

	return nil
}

// resume lets a paused instance go on: steps that waited start, a step
// suspended by its failure runs again with a fresh attempt budget, and
// timers that came due meanwhile fire in due order.
func (r *run) resume() error {
	if err := r.commandable(); err != nil {
		return err
	}
	if r.inst.Status != store.InstancePaused {
		return fmt.Errorf("resuming %s instance: %w", r.inst.Status, ErrWrongStatus)
	}

	r.loadAll()
	r.loadSuspended()
	r.inst.Status = store.InstanceRunning
	r.inst.Reason = ""
	r.audit(auditInstanceResumed, nil, nil)
	if r.ist.EndOnResume {
		r.ist.EndOnResume = false
		r.finalize(store.InstanceCompleted, "", nil)
		return nil
	}

	for _, p := range r.sorted() {
		if !p.st.Suspended || p.row.Status != store.StepFailed {
			continue
		}
		p.st.Suspended = false
		p.st.BudgetBase = p.row.Attempt
		p.row.Status = store.StepPending
		p.row.EndedAt = zeroTime
		p.row.Work = true
		p.row.Report = nil
		r.touch(p)
	}
	r.ist.Suspended = nil

	return nil
}

// loadSuspended adds to the run the steps that failed under the suspend
// behaviour, read from the finished children of their parents.
func (r *run) loadSuspended() {
	for _, s := range r.ist.Suspended {
		if _, ok := r.ptrs[s.ID]; ok || r.err != nil {
			continue
		}

		kids, err := r.e.store.StepChildren(r.ctx, r.inst.ID, s.Parent)
		if err != nil {
			r.fail(fmt.Errorf("loading suspended step %d: %w", s.ID, err))
			return
		}
		for _, k := range kids {
			if k.ID != s.ID {
				continue
			}
			p, err := decodePtr(r.g, k)
			if err != nil {
				r.fail(err)
				return
			}
			r.ptrs[k.ID] = p
		}
	}
}

// delivering returns the pointers whose dispatched attempt is claimed,
// unexpired: a push dispatcher is calling the service with it.
func (r *run) delivering() (map[int64]bool, error) {
	tasks, err := r.e.store.TaskList(r.ctx, r.inst.ID)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}

	out := map[int64]bool{}
	for _, t := range tasks {
		if t.ClaimedBy != "" && t.ClaimExpires.After(r.now) {
			out[t.PointerID] = true
		}
	}

	return out, nil
}

// stopAttempt notes that the attempt in flight on p is no longer
// needed, so that its worker is told once the transition commits.
func (r *run) stopAttempt(p *ptr) {
	r.stopped = append(r.stopped, Attempt{
		InstanceID: r.inst.ID, StepID: p.node.ID, PointerID: p.row.ID,
		Attempt: p.row.Attempt, Service: p.row.Service, Token: p.row.Token,
	})
}

// cancel begins a cancel: nothing new starts, attempts in flight drain,
// then the on_cancel steps run.
func (r *run) cancel(reason string) error {
	if err := r.commandable(); err != nil {
		return err
	}
	if r.inst.Status == store.InstanceCancelling {
		return fmt.Errorf("cancelling a cancelling instance: %w", ErrWrongStatus)
	}

	r.loadAll()
	delivering, err := r.delivering()
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "cancelled by request"
	}
	r.inst.Status = store.InstanceCancelling
	r.inst.Reason = reason
	r.ist.CancelReason = reason
	r.audit(auditCancelRequested, nil, map[string]any{"reason": reason})
	r.undoOnCancel()

	for _, p := range r.sorted() {
		if p.row.Status.Final() {
			continue
		}
		// Only an attempt a worker has taken is drained: one still
		// waiting in its dispatch row is withdrawn at once. A claim that
		// lands meanwhile moves the step's rev, so this transition
		// conflicts and is redone with the step running, or claimed. A
		// push attempt whose call is open is claimed but not started
		// (its step starts when the service answers): it is drained too.
		if p.isTask() && (p.row.Status == store.StepRunning || delivering[p.row.ID]) {
			r.ist.Draining = append(r.ist.Draining, p.row.ID)
			r.stopAttempt(p)
			r.touch(p)
			continue
		}
		r.cancelPtr(p)
	}

	if len(r.ist.Draining) > 0 {
		r.setTimer(nil, store.TimerCancelGrace, r.now.Add(r.e.opts.CancelGrace), true)
		return nil
	}
	r.startCleanup()

	return nil
}

// startCleanup runs the on_cancel steps.
func (r *run) startCleanup() {
	r.ist.Cleanup = true
	r.clearTimer(0, store.TimerCancelGrace)
	r.audit(auditCleanupStarted, nil, nil)
	r.spawn(nil, r.g.Cancel, 0, r.cleanupState())
}

// terminate ends the instance at once without cleanup.
func (r *run) terminate(reason string) error {
	if err := r.commandable(); err != nil {
		return err
	}

	if reason == "" {
		reason = "terminated by request"
	}
	r.finalize(store.InstanceTerminated, reason, nil)

	return nil
}

func (r *run) commandable() error {
	if r.inst.Status.Final() {
		return fmt.Errorf("instance %s is %s: %w", r.inst.ID, r.inst.Status, ErrFinished)
	}

	return nil
}
