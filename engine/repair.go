package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/store"
)

// Audit types of the repair commands.
const (
	auditInstanceRetried = "instance_retried"
	auditStepSkipped     = "step_skipped"
)

// RetryInstance makes a failed instance run again from the step whose
// failure failed it: that step starts a new attempt with a fresh retry
// budget (attempt numbers go on from the last one), and the steps that
// were active beside it start again. An instance that is not failed is
// refused with ErrWrongStatus, as is one whose failure came from no
// step (a deadline, a failed cleanup).
func (e *Engine) RetryInstance(ctx context.Context, id string) error {
	return e.repair(ctx, id, func(r *run) error { return r.retryFailed() })
}

// SkipStep makes a failed instance go on after the step whose failure
// failed it, as if the step had completed with output (JSON; empty means
// null): the output is written to the step's output path, the step is
// marked skipped and the next step starts. stepID must name the failed
// step. An instance that is not failed is refused with ErrWrongStatus.
func (e *Engine) SkipStep(ctx context.Context, id, stepID string, output json.RawMessage) error {
	if stepID == "" {
		return invalid("step_id", "required")
	}
	if len(output) > e.opts.MaxPayloadBytes {
		return fmt.Errorf("output: %d bytes over the %d byte limit: %w",
			len(output), e.opts.MaxPayloadBytes, ErrTooLarge)
	}
	out, err := decodeJSON(output)
	if err != nil {
		return invalid("output", "malformed JSON: %v", err)
	}

	return e.repair(ctx, id, func(r *run) error { return r.skipFailed(stepID, out) })
}

// repair applies a command to a failed instance.
func (e *Engine) repair(ctx context.Context, id string, apply func(*run) error) error {
	if id == "" {
		return invalid("instance_id", "required")
	}

	inst, err := e.store.InstanceGet(ctx, id)
	if err != nil {
		return err
	}
	if inst.Status != store.InstanceFailed {
		return fmt.Errorf("instance %s is %s, not failed: %w", id, inst.Status, ErrWrongStatus)
	}

	return e.leased(ctx, id, apply)
}

// reopen loads the failed step and makes the instance running again,
// with the steps the failure halted started again beside it.
func (r *run) reopen(verb string) (*ptr, error) {
	if r.inst.Status != store.InstanceFailed {
		return nil, fmt.Errorf("%s %s instance: %w", verb, r.inst.Status, ErrWrongStatus)
	}
	f := r.ist.Failed
	if f == nil {
		return nil, fmt.Errorf("%s instance failed by %q: no step to start again from: %w",
			verb, r.inst.Reason, ErrWrongStatus)
	}

	p := r.loadFinished(f.ID, f.Parent)
	if r.err != nil {
		return nil, r.err
	}
	if p == nil {
		return nil, fmt.Errorf("%s instance: failed step %d is gone: %w", verb, f.ID, ErrWrongStatus)
	}

	r.inst.Status = store.InstanceRunning
	r.inst.Reason = ""
	r.inst.Error = nil
	r.inst.EndedAt = zeroTime
	r.ist.Failed = nil
	halted := r.ist.Halted
	r.ist.Halted = nil
	if r.g.Deadline > 0 {
		r.setTimer(nil, store.TimerDeadline, r.inst.CreatedAt.Add(r.g.Deadline), true)
	}
	for _, h := range halted {
		r.restart(h)
	}

	return p, r.err
}

// restart creates a pending pointer again for a step the failure halted.
func (r *run) restart(h haltedStep) {
	node, ok := r.g.Nodes[h.Step]
	_, loaded := r.ptrs[h.Parent]
	if !ok || (h.Parent != 0 && !loaded) {
		r.fail(fmt.Errorf("restarting halted step %s: parent %d not loaded", h.Step, h.Parent))
		return
	}

	var st ptrState
	if len(h.State) > 0 {
		if err := json.Unmarshal(h.State, &st); err != nil {
			r.fail(fmt.Errorf("decoding halted step %s: %w", h.Step, err))
			return
		}
	}
	st.BudgetBase = h.Attempt
	id := r.inst.NextPointer
	r.inst.NextPointer++
	row := store.Step{
		InstanceID: r.inst.ID, ID: id, StepID: node.ID, ParentID: h.Parent, Slot: h.Slot,
		Status: store.StepPending, Work: true, Attempt: h.Attempt, CreatedAt: r.now,
	}
	r.ptrs[id] = &ptr{row: row, st: st, node: node, dirty: true}
}

// loadFinished adds a finished pointer to the run, read from its
// parent's finished children; nil when there is none.
func (r *run) loadFinished(id, parent int64) *ptr {
	if p, ok := r.ptrs[id]; ok {
		return p
	}

	kids, err := r.e.store.StepChildren(r.ctx, r.inst.ID, parent)
	if err != nil {
		r.fail(fmt.Errorf("loading step %d: %w", id, err))
		return nil
	}
	for _, k := range kids {
		if k.ID != id {
			continue
		}
		p, err := decodePtr(r.g, k)
		if err != nil {
			r.fail(err)
			return nil
		}
		r.ptrs[k.ID] = p
		return p
	}

	return nil
}

// retryFailed starts the failed step again with a fresh attempt budget.
func (r *run) retryFailed() error {
	p, err := r.reopen("retrying")
	if err != nil {
		return err
	}

	p.st.BudgetBase = p.row.Attempt
	p.st.Suspended = false
	p.row.Status = store.StepPending
	p.row.EndedAt = zeroTime
	p.row.Work = true
	p.row.Report = nil
	r.touch(p)
	r.audit(auditInstanceRetried, p, nil)

	return nil
}

// skipFailed marks the failed step skipped with out as its output and
// goes on after it.
func (r *run) skipFailed(stepID string, out any) error {
	if f := r.ist.Failed; r.inst.Status == store.InstanceFailed && f != nil {
		if p := r.loadFinished(f.ID, f.Parent); p != nil && p.node.ID != stepID {
			return invalid("step_id", "%q is not the failed step (%s is)", stepID, p.node.ID)
		}
	}
	p, err := r.reopen("skipping a step of")
	if err != nil {
		return err
	}

	raw, err := json.Marshal(out)
	if err != nil {
		return invalid("output", "%v", err)
	}
	p.row.Status = store.StepSkipped
	p.row.Output = raw
	p.row.EndedAt = r.now
	p.row.Work = false
	r.touch(p)
	if p.node.Output != nil && p.st.Frame == "" {
		p.node.Output.Set(r.data, out)
		r.dataDirty = true
	}
	if recorded(p.node.Kind) {
		r.record(p, out)
	}
	r.audit(auditStepSkipped, p, nil)
	r.childDone(p)

	return r.err
}
