package engine

import (
	"encoding/json"
	"slices"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Audit types of compensation.
const (
	auditSagaUnwinding      = "saga_unwinding"
	auditCompensationStart  = "compensation_started"
	auditStepCompensated    = "step_compensated"
	auditSagaRetryScheduled = "saga_retry_scheduled"
)

// frameCompensation marks a pointer that runs one step's compensation
// block under the pointer that unwinds (a saga, the root, or the
// cleanup pointer). It is a scope of its own that holds the compensated
// step's output and loop context.
const frameCompensation = "compensation"

// compEntry is a completed step whose compensation may have to run: its
// place in the instance's completion order, its output and the loop
// context it ran in.
type compEntry struct {
	Seq     int64  `json:"seq"`
	Step    string `json:"step"`
	Out     any    `json:"out,omitempty"`
	Item    any    `json:"item,omitempty"`
	Index   int    `json:"index,omitempty"`
	HasItem bool   `json:"has_item,omitempty"`
	Iter    int    `json:"iter,omitempty"`
}

// entry describes completed (or failed) step p for its compensation.
func (r *run) entry(p *ptr, out any) compEntry {
	r.ist.CompSeq++
	env := r.env(p)
	e := compEntry{Seq: r.ist.CompSeq, Step: p.node.ID, Out: out}
	if item, ok := env["item"]; ok && item != nil {
		e.Item, e.HasItem = item, true
		e.Index, _ = env["index"].(int)
	}
	e.Iter, _ = env["iteration"].(int)

	return e
}

// remember records completed step p, which has a compensation, with the
// nearest saga around it, or with the root when there is none. During a
// cancel it goes straight to the list that compensate-on-cancel runs.
func (r *run) remember(p *ptr, out any) {
	if r.inCleanup(p) || r.inCompensation(p) {
		return
	}

	if r.inst.Status == store.InstanceCancelling {
		if r.g.CompensateOnCancel {
			r.ist.Undo = append(r.ist.Undo, r.entry(p, out))
		}
		return
	}
	e := r.entry(p, out)
	if holder := r.sagaOf(p); holder != nil {
		holder.st.Comp = append(holder.st.Comp, e)
		r.touch(holder)
	}
}

// sagaOf returns the nearest saga pointer above p, or the root pointer.
func (r *run) sagaOf(p *ptr) *ptr {
	for q := r.parent(p); q != nil; q = r.parent(q) {
		if q.st.Frame == "" && q.node.Kind == definition.KindSaga {
			return q
		}
		if q.row.ParentID == 0 {
			return q
		}
	}

	return nil
}

// inCompensation reports whether p runs inside a compensation block.
func (r *run) inCompensation(p *ptr) bool {
	for q := p; q != nil; q = r.parent(q) {
		if q.st.Frame == frameCompensation {
			return true
		}
	}

	return false
}

// handUp gives the steps a completed saga remembered to the saga (or
// root) around it, so that a later failure there undoes them too.
func (r *run) handUp(s *ptr) {
	if len(s.st.Comp) == 0 {
		return
	}
	if holder := r.sagaOf(s); holder != nil {
		holder.st.Comp = append(holder.st.Comp, s.st.Comp...)
		r.touch(holder)
	}
	s.st.Comp = nil
}

// compensate applies the compensate failure action of step p: the
// nearest saga around it unwinds, or the whole instance when there is
// none.
func (r *run) compensate(p *ptr, serr *store.StepError) {
	holder := r.sagaOf(p)
	if holder == nil {
		r.failStep(p, "step_failed: "+p.node.ID, errorJSON(p, serr))
		return
	}

	r.unwind(holder, p, errorJSON(p, serr))
}

// unwind starts unwinding holder (a saga or the root) because failed
// failed: what still runs inside it is cancelled, and the compensations
// of the failed step and of every completed step inside it are queued
// in reverse completion order.
func (r *run) unwind(holder, failed *ptr, failure json.RawMessage) {
	r.loadAll()
	if r.err != nil {
		return
	}

	entries := slices.Clone(holder.st.Comp)
	for _, q := range r.sorted() {
		if q == holder || !r.within(q, holder) || q.row.Status.Final() {
			continue
		}
		entries = append(entries, q.st.Comp...)
		if q.isTask() && q.inFlight() {
			r.stopAttempt(q)
		}
		r.cancelPtr(q)
	}
	if failed.node.Compensates && failed.st.Frame == "" {
		entries = append(entries, r.entry(failed, nil))
	}
	slices.SortFunc(entries, func(a, b compEntry) int { return int(b.Seq - a.Seq) })

	holder.st.Comp = nil
	holder.st.Unwind = entries
	holder.st.Unwinding = true
	holder.st.Failure = failure
	r.touch(holder)
	r.audit(auditSagaUnwinding, holder, map[string]any{
		"failed": failed.node.ID, "compensations": len(entries),
	})
	r.nextCompensation(holder)
}

// within reports whether q stands below holder.
func (r *run) within(q, holder *ptr) bool {
	for p := r.parent(q); p != nil; p = r.parent(p) {
		if p == holder {
			return true
		}
	}

	return false
}

// nextCompensation starts the next queued compensation of holder, or
// finishes the unwinding when none is left.
func (r *run) nextCompensation(holder *ptr) {
	if len(holder.st.Unwind) == 0 {
		r.unwound(holder)
		return
	}

	e := holder.st.Unwind[0]
	holder.st.Unwind = holder.st.Unwind[1:]
	holder.st.Next++
	r.touch(holder)
	node, ok := r.g.Nodes[e.Step]
	if !ok || !node.Compensates {
		r.nextCompensation(holder)
		return
	}

	st := ptrState{
		Frame: frameCompensation, Block: definition.BlockCompensate,
		Scope: map[string]any{e.Step: map[string]any{"output": e.Out}},
		Item:  e.Item, Index: e.Index, HasItem: e.HasItem, Iter: e.Iter,
	}
	p := r.spawnQuiet(holder, node, holder.st.Next, st)
	r.audit(auditCompensationStart, p, nil)
	r.activate(p)
}

// compensationDone notes that a compensation under holder finished and
// starts the next one.
func (r *run) compensationDone(holder, p *ptr) {
	r.audit(auditStepCompensated, p, nil)
	r.nextCompensation(holder)
}

// unwound goes on once every compensation of holder has run: the
// cleanup pointer runs the on_cancel steps, the root fails the
// instance, and a saga does what its then says.
func (r *run) unwound(holder *ptr) {
	holder.st.Unwinding = false
	r.touch(holder)
	switch {
	case holder.row.StepID == definition.CancelID:
		r.startBlock(holder, definition.BlockSteps)
		return
	case holder.row.ParentID == 0:
		r.failInstance("compensated", holder.st.Failure)
		return
	}

	switch holder.node.Then {
	case definition.SagaEnd:
		r.finalize(store.InstanceTerminated, "saga_compensated: "+holder.node.ID, holder.st.Failure)
	case definition.SagaRetry:
		r.retrySaga(holder)
	default:
		holder.row.Status = store.StepCompensated
		holder.row.EndedAt = r.now
		r.clearTimers(holder.row.ID)
		r.childDone(holder)
	}
}

// retrySaga schedules the next pass of a saga, or fails it when its
// passes are spent.
func (r *run) retrySaga(s *ptr) {
	used := s.row.Attempt - s.st.BudgetBase
	if used < s.node.Retry.MaxAttempts {
		delay := r.backoff(s.node.Retry, used)
		s.row.Status = store.StepSleeping
		r.setTimer(s, store.TimerRetry, r.now.Add(delay), false)
		r.audit(auditSagaRetryScheduled, s, map[string]any{"delay_ms": delay.Milliseconds()})
		return
	}

	s.row.Status = store.StepFailed
	s.row.EndedAt = r.now
	failure := s.st.Failure
	if outer := r.sagaOf(s); outer != nil && outer.row.ParentID != 0 {
		r.unwind(outer, s, failure)
		return
	}
	r.failStep(s, "saga_failed: "+s.node.ID, failure)
}

// startSaga runs a pass of a saga from its first step.
func (r *run) startSaga(s *ptr) {
	s.row.Attempt++
	s.row.Status = store.StepRunning
	s.st.Unwinding = false
	s.st.Unwind = nil
	s.st.Failure = nil
	s.st.Comp = nil
	r.startBlock(s, definition.BlockSteps)
}

// undoOnCancel queues, for compensate-on-cancel, the compensations of
// every completed step the instance remembers, before the pointers that
// remember them are cancelled; a saga cut short while it unwinds hands
// over the compensations it had not started yet.
func (r *run) undoOnCancel() {
	if !r.g.CompensateOnCancel {
		return
	}

	for _, p := range r.sorted() {
		if !p.row.Status.Final() {
			r.ist.Undo = append(r.ist.Undo, p.st.Comp...)
			r.ist.Undo = append(r.ist.Undo, p.st.Unwind...)
		}
	}
}

// cleanupState is the state the cleanup pointer starts with: with
// compensate-on-cancel, it first runs the queued compensations.
func (r *run) cleanupState() ptrState {
	if !r.g.CompensateOnCancel || len(r.ist.Undo) == 0 {
		return ptrState{}
	}

	undo := slices.Clone(r.ist.Undo)
	slices.SortFunc(undo, func(a, b compEntry) int { return int(b.Seq - a.Seq) })
	r.ist.Undo = nil

	return ptrState{Unwinding: true, Unwind: undo}
}
