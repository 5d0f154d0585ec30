package engine

import (
	"fmt"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Audit types of schedule and recur.
const (
	auditBesideStarted = "beside_started"
	auditBesideStopped = "recur_stopped"
)

// frameBeside marks the pointer that runs a schedule or recur block
// beside the main path. It stands under the top pointer, so that it
// outlives the block that held the schedule or recur step, and carries
// the loop context that step had.
const frameBeside = "beside"

// startBeside runs a schedule or recur step: the block goes on beside
// the main path under a pointer of its own, and the step completes at
// once. The instance does not complete while such blocks are pending.
func (r *run) startBeside(p *ptr) {
	top := r.top(p)
	if top == nil {
		return
	}

	env := r.env(p)
	st := ptrState{Frame: frameBeside}
	if item, ok := env["item"]; ok && item != nil {
		st.Item, st.HasItem = item, true
		st.Index, _ = env["index"].(int)
	}
	r.ist.Beside++
	q := r.spawnQuiet(top, p.node, int(r.ist.Beside), st)
	r.activate(q)
	if r.final || r.err != nil {
		return
	}

	r.complete(p, nil, false)
}

// armBeside sets a beside pointer's timer: after the schedule's delay,
// or the recur's interval, unless the recur's stop condition holds.
func (r *run) armBeside(p *ptr) {
	d := p.node.Duration
	status := store.StepSleeping
	if p.node.Kind == definition.KindRecur {
		if r.recurStops(p) {
			return
		}
		d, status = p.node.Interval, store.StepWaiting
	}

	wait, err := d.Eval(r.env(p))
	if err != nil {
		r.exprFailed(p, err)
		return
	}
	p.row.Status = status
	r.touch(p)
	r.setTimer(p, store.TimerDelay, r.now.Add(wait), false)
	if p.st.Loops == 0 {
		r.audit(auditBesideStarted, p, map[string]any{"at": r.now.Add(wait).UTC()})
	}
}

// besideTimer runs the block of a beside pointer whose time has come: a
// schedule runs it once, a recur runs its next iteration unless its
// stop condition holds by now.
func (r *run) besideTimer(p *ptr) {
	if p.node.Kind == definition.KindSchedule {
		p.row.Status = store.StepRunning
		r.startBlock(p, definition.BlockSteps)
		return
	}
	if r.recurStops(p) {
		return
	}

	p.row.Status = store.StepRunning
	r.touch(p)
	st := ptrState{
		Frame: frameIteration, Block: definition.BlockSteps, Iter: p.st.Loops,
		Item: p.st.Item, Index: p.st.Index, HasItem: p.st.HasItem,
	}
	r.spawn(p, p.node, p.st.Loops, st)
}

// recurNext goes on after a recur iteration finished.
func (r *run) recurNext(p *ptr) {
	p.st.Loops++
	r.touch(p)
	if p.st.Loops >= p.node.MaxIterations {
		r.audit(auditBesideStopped, p, map[string]any{"runs": p.st.Loops, "cap": true})
		r.complete(p, nil, false)
		return
	}
	r.armBeside(p)
}

// recurStops completes a recur pointer when its stop condition holds;
// it also drops the pending run.
func (r *run) recurStops(p *ptr) bool {
	ok, err := p.node.CancelIf.EvalBool(r.env(p))
	if err != nil {
		r.exprFailed(p, err)
		return true
	}
	if !ok {
		return false
	}

	r.audit(auditBesideStopped, p, map[string]any{"runs": p.st.Loops})
	r.complete(p, nil, false)

	return true
}

// besideDone notes that a beside block ended; the instance completes
// when its main path did and no beside block is left.
func (r *run) besideDone(p *ptr) {
	r.ist.Pending--
	if r.ist.Pending > 0 || !r.ist.MainDone {
		return
	}

	top := r.parent(p)
	if top == nil {
		r.fail(fmt.Errorf("beside step %d: no top pointer", p.row.ID))
		return
	}
	top.row.Status = store.StepCompleted
	top.row.EndedAt = r.now
	r.touch(top)
	r.completeInstance(top)
}

// checkRecurs stops the waiting recur pointers whose stop condition now
// holds, so that a pending run does not happen.
func (r *run) checkRecurs() {
	for _, p := range r.sorted() {
		if r.final || r.err != nil {
			return
		}
		if p.st.Frame == frameBeside && p.row.Status == store.StepWaiting {
			if r.recurStops(p) {
				r.clearTimers(p.row.ID)
			}
		}
	}
}
