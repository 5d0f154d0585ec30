package engine

import (
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// auditOutcome records the outcome of a step and the branches it chose.
const auditOutcome = "outcome_selected"

// frameOutcomes marks the pointer that runs the outcome branches a
// completed task chose. It stands under the task's parent in the task's
// place: the parent goes on once every chosen branch has completed.
const frameOutcomes = "outcomes"

// startOutcomes selects the outcome branches of completed task p by its
// outcome value and starts every one that matches, at once; with none,
// the parent goes on at once.
func (r *run) startOutcomes(p *ptr, out any) {
	env := r.env(p)
	env["result"] = out
	outcome := out
	if p.node.Outcome != nil {
		v, err := p.node.Outcome.Eval(env)
		if err != nil {
			r.exprFailed(p, fmt.Errorf("outcome: %w", err))
			return
		}
		outcome = definition.Normalize(v)
	}

	var picked []int
	for i, b := range p.node.Step.OnOutcome {
		if b.Value == nil || outcomeMatches(outcome, b.Value) {
			picked = append(picked, i)
		}
	}
	r.audit(auditOutcome, p, map[string]any{"outcome": outcome, "branches": picked})
	if len(picked) == 0 {
		r.childDone(p)
		return
	}

	parent := r.parent(p)
	if parent == nil {
		r.fail(fmt.Errorf("step %s: outcome branches without a parent", p.node.ID))
		return
	}
	r.spawn(parent, p.node, p.row.Slot, ptrState{Frame: frameOutcomes, Picked: picked})
}

// runOutcomes starts the chosen branches of an outcomes pointer.
func (r *run) runOutcomes(p *ptr) {
	p.row.Status = store.StepRunning
	p.st.Outstanding = len(p.st.Picked)
	r.touch(p)
	for _, i := range p.st.Picked {
		st := ptrState{Frame: frameBranch, Block: definition.OutcomeBlock(i)}
		r.spawn(p, p.node, i, st)
		if r.final || r.err != nil || p.row.Status.Final() {
			return
		}
	}
}

// outcomeDone counts a finished branch of an outcomes pointer.
func (r *run) outcomeDone(p *ptr) {
	p.st.Outstanding--
	r.touch(p)
	if p.st.Outstanding <= 0 {
		r.complete(p, nil, false)
	}
}

// outcomeMatches reports whether an outcome selects a branch value: the
// two are equal as JSON, or the outcome is a list holding the value.
func outcomeMatches(outcome, value any) bool {
	want := canonical(definition.Normalize(value))
	if list, ok := outcome.([]any); ok {
		for _, v := range list {
			if canonical(v) == want {
				return true
			}
		}
		return false
	}

	return canonical(outcome) == want
}

func canonical(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}

	return string(raw)
}
