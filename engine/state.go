package engine

import (
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Frame kinds: a frame pointer runs one block of its container step
// (a parallel branch, a foreach or while iteration) and reports to the
// container pointer above it.
const (
	frameBranch    = "branch"
	frameIteration = "iteration"
)

// ptrState is the engine's bookkeeping kept in a pointer's State column.
type ptrState struct {
	// Frame marks a frame pointer; Block is the block a block-running
	// pointer runs and Idx the position of its current child in it.
	Frame string `json:"frame,omitempty"`
	Block string `json:"block,omitempty"`
	Idx   int    `json:"idx,omitempty"`

	// Scope holds, for root and iteration pointers, the outputs of the
	// steps that completed inside them: step id to {"output": value}.
	Scope map[string]any `json:"scope,omitempty"`
	// Item and Index are a foreach iteration's item; Iter is a while
	// iteration's number from 0.
	Item    any  `json:"item,omitempty"`
	Index   int  `json:"index,omitempty"`
	HasItem bool `json:"has_item,omitempty"`
	Iter    int  `json:"iter,omitempty"`

	// Foreach: the items not started yet, the index of the first of
	// them, and counts. Started items leave the list, so a wide fan-out
	// does not rewrite every item on each completion.
	// TODO: a sequential foreach still rewrites the items left on every
	// iteration (quadratic bytes over a long list); keeping the list in
	// a row written once would make its cost flat.
	Items   []any `json:"items,omitempty"`
	Next    int   `json:"next,omitempty"`
	Running int   `json:"running,omitempty"`
	Done    int   `json:"done,omitempty"`
	// Outstanding counts a parallel step's branches still running.
	Outstanding int `json:"outstanding,omitempty"`
	// Comp lists, on a saga or the root, the completed steps with a
	// compensation; Unwind queues the compensations still to run while
	// Unwinding, and Failure is the error that started the unwinding.
	Comp      []compEntry     `json:"comp,omitempty"`
	Unwind    []compEntry     `json:"unwind,omitempty"`
	Unwinding bool            `json:"unwinding,omitempty"`
	Failure   json.RawMessage `json:"failure,omitempty"`
	// Child is the instance a workflow step's current attempt started.
	Child string `json:"child,omitempty"`
	// Picked lists the outcome branches an outcomes pointer runs.
	Picked []int `json:"picked,omitempty"`
	// Loops counts a while step's finished iterations.
	Loops int `json:"loops,omitempty"`

	// Task: the attempt that opened the current retry budget, and
	// whether the step failed under the suspend behaviour.
	BudgetBase int  `json:"budget_base,omitempty"`
	Suspended  bool `json:"suspended,omitempty"`

	// Wait: the key fixed at start, and whether the timeout branch runs.
	Key       string `json:"key,omitempty"`
	TimedOut  bool   `json:"timed_out,omitempty"`
	ItemCount int    `json:"item_count,omitempty"`
}

// instState is the engine's bookkeeping kept in an instance's State.
type instState struct {
	// Draining lists the task pointers whose attempts were in flight
	// when the cancel began and have not reported yet.
	Draining []int64 `json:"draining,omitempty"`
	// EndOnResume is set when the last step ended while the instance
	// was paused: it completes when it is resumed.
	EndOnResume bool `json:"end_on_resume,omitempty"`
	// Cleanup is set once the on_cancel steps have started.
	Cleanup bool `json:"cleanup,omitempty"`
	// PausedFrom says whether a pause came from a command or a step.
	CancelReason string `json:"cancel_reason,omitempty"`
	// Suspended lists the steps that failed under the suspend behaviour.
	// They are final, so no load returns them: resume reads them back
	// from their parents' finished children.
	Suspended []suspendedStep `json:"suspended,omitempty"`
	// Failed names the step whose failure failed the instance, when a
	// retry or a skip can start again from it; Halted lists the other
	// active steps the failure stopped, to start again with it. The
	// containers above them stay as they were.
	Failed *suspendedStep `json:"failed,omitempty"`
	Halted []haltedStep   `json:"halted,omitempty"`
	// CompSeq numbers the completions of steps with a compensation; Undo
	// holds, during a cancel with compensate-on-cancel, those to run.
	CompSeq int64       `json:"comp_seq,omitempty"`
	Undo    []compEntry `json:"undo,omitempty"`
	// Beside counts the schedule and recur blocks started, Pending those
	// not finished; MainDone is set once the main path ended while some
	// were pending.
	Beside   int64 `json:"beside,omitempty"`
	Pending  int   `json:"pending,omitempty"`
	MainDone bool  `json:"main_done,omitempty"`
	// Parent links a sub-workflow child to the step that started it:
	// the child's end reports to that step.
	Parent *parentLink `json:"parent,omitempty"`
}

// parentLink names the step attempt a child instance reports to.
type parentLink struct {
	Instance string `json:"instance_id"`
	Pointer  int64  `json:"pointer_id"`
	Attempt  int    `json:"attempt"`
	Token    string `json:"token"`
	// Depth is how many parents the child has: 1 for the child of a top
	// instance.
	Depth int `json:"depth,omitempty"`
}

// haltedStep is an active step stopped by the instance's failure: what a
// retry needs to start it again under the same parent.
type haltedStep struct {
	Parent  int64           `json:"parent"`
	Step    string          `json:"step"`
	Slot    int             `json:"slot"`
	Attempt int             `json:"attempt,omitempty"`
	State   json.RawMessage `json:"state,omitempty"`
}

// suspendedStep names a suspended step pointer and its parent.
type suspendedStep struct {
	ID     int64 `json:"id"`
	Parent int64 `json:"parent"`
}

// ptr is a loaded pointer with its decoded state.
type ptr struct {
	row   store.Step
	st    ptrState
	node  *definition.Node
	dirty bool
}

func decodePtr(g *definition.Graph, row store.Step) (*ptr, error) {
	p := &ptr{row: row}
	if len(row.State) > 0 {
		if err := json.Unmarshal(row.State, &p.st); err != nil {
			return nil, fmt.Errorf("decoding step %d state: %w", row.ID, err)
		}
		p.st.Item = definition.Normalize(p.st.Item)
		for i := range p.st.Items {
			p.st.Items[i] = definition.Normalize(p.st.Items[i])
		}
		for k, v := range p.st.Scope {
			p.st.Scope[k] = definition.Normalize(v)
		}
		normalizeEntries(p.st.Comp)
		normalizeEntries(p.st.Unwind)
	}

	node, ok := g.Nodes[row.StepID]
	if !ok {
		return nil, fmt.Errorf("step %d: %q is not in the definition", row.ID, row.StepID)
	}
	p.node = node

	return p, nil
}

func (p *ptr) encode() (store.Step, error) {
	st, err := json.Marshal(p.st)
	if err != nil {
		return store.Step{}, fmt.Errorf("encoding step %d state: %w", p.row.ID, err)
	}

	row := p.row
	if string(st) == "{}" {
		st = nil
	}
	row.State = st

	return row, nil
}

// isTask reports whether the pointer runs a task step itself.
func (p *ptr) isTask() bool {
	return p.st.Frame == "" && p.node.Kind == definition.KindTask
}

// inFlight reports whether the pointer's attempt is with a worker.
func (p *ptr) inFlight() bool {
	return p.row.Status == store.StepDispatched || p.row.Status == store.StepRunning
}

// normalizeEntries gives decoded entries the engine's number types.
func normalizeEntries(es []compEntry) {
	for i := range es {
		es[i].Out = definition.Normalize(es[i].Out)
		es[i].Item = definition.Normalize(es[i].Item)
	}
}
