package engine

import (
	"fmt"

	"github.com/weftworks/weft/store"
)

// Audit types of goto and end.
const (
	auditStepJumped = "step_jumped"
	auditEnded      = "instance_end_reached"
)

// maxJumps bounds the goto steps one transition may take, so that a loop
// of jumps with nothing to wait for fails instead of spinning.
const maxJumps = 10000

// jump runs a goto: the blocks between the goto and the block of its
// target end (cancelled), and the block that holds the target goes on
// from the target. Registration made sure the target is in a block
// around the goto and that no jump leaves a parallel branch, so the
// pointers in between are exactly the goto's ancestors.
func (r *run) jump(p *ptr) {
	r.jumps++
	if r.jumps > maxJumps {
		r.failInstance("goto_loop", errorJSON(p, &store.StepError{
			Code:    "goto_loop",
			Message: fmt.Sprintf("more than %d jumps in one transition", maxJumps),
		}))
		return
	}

	target := p.node.Target
	var between []*ptr
	owner := r.parent(p)
	for owner != nil && (owner.node != target.Parent || owner.st.Block != target.BlockName) {
		between = append(between, owner)
		owner = r.parent(owner)
	}
	if owner == nil {
		r.fail(fmt.Errorf("goto %s: no pointer runs the block of %s", p.node.ID, target.ID))
		return
	}

	p.row.Status = store.StepCompleted
	p.row.EndedAt = r.now
	r.touch(p)
	for _, q := range between {
		r.cancelPtr(q)
	}
	r.audit(auditStepJumped, p, map[string]any{"next": target.ID})

	owner.st.Idx = target.Index
	r.touch(owner)
	r.spawn(owner, target, target.Index, ptrState{})
}

// end completes the instance at once from an end step, wherever it
// stands: every other active step is cancelled.
func (r *run) end(p *ptr) {
	p.row.Status = store.StepCompleted
	p.row.EndedAt = r.now
	r.touch(p)
	r.audit(auditEnded, p, nil)
	r.completeInstance(p)
}
