package flow

import (
	"github.com/weftworks/weft/definition"
)

// Step builds one step. The constructors (Task, Sequence, Parallel, ...)
// set what a kind needs; the methods set the optional fields. A method
// that does not apply to the step's kind sets the field anyway, and Build
// refuses it with its path, as registration refuses it in YAML.
type Step struct {
	s *definition.Step
}

func step(id string, kind definition.Kind) *Step {
	return &Step{s: &definition.Step{ID: id, Type: kind}}
}

// Raw returns the definition step being built.
func (s *Step) Raw() *definition.Step { return s.s }

// Task is work done by a service's action.
func Task(id, service, action string) *Step {
	st := step(id, definition.KindTask)
	st.s.Service, st.s.Action = service, action

	return st
}

// Sequence runs steps in order.
func Sequence(id string, steps ...*Step) *Step {
	st := step(id, definition.KindSequence)
	st.s.Steps = raw(steps)

	return st
}

// Parallel runs branches at once and joins them.
func Parallel(id string, branches ...*Branch) *Step {
	st := step(id, definition.KindParallel)
	for _, b := range branches {
		st.s.Branches = append(st.s.Branches, &definition.Branch{Name: b.name, Steps: raw(b.steps)})
	}

	return st
}

// Branch is one branch of a parallel step.
type Branch struct {
	name  string
	steps []*Step
}

// NewBranch makes a branch of steps run in order.
func NewBranch(steps ...*Step) *Branch {
	return &Branch{steps: steps}
}

// Named labels the branch.
func (b *Branch) Named(name string) *Branch {
	b.name = name
	return b
}

// Foreach runs steps once per element of the list items gives.
func Foreach(id, items string, steps ...*Step) *Step {
	st := step(id, definition.KindForeach)
	st.s.Items, st.s.Steps = items, raw(steps)

	return st
}

// If runs steps when condition holds; see Else.
func If(id, condition string, steps ...*Step) *Step {
	st := step(id, definition.KindIf)
	st.s.Condition, st.s.Steps = condition, raw(steps)

	return st
}

// Switch runs the first case whose condition holds; see Case and
// Default.
func Switch(id string) *Step {
	return step(id, definition.KindSwitch)
}

// While repeats steps while condition holds.
func While(id, condition string, steps ...*Step) *Step {
	st := step(id, definition.KindWhile)
	st.s.Condition, st.s.Steps = condition, raw(steps)

	return st
}

// Delay waits for a duration (a literal or an expression).
func Delay(id, duration string) *Step {
	st := step(id, definition.KindDelay)
	st.s.Duration = duration

	return st
}

// DelayUntil waits until the instant an expression gives.
func DelayUntil(id, until string) *Step {
	st := step(id, definition.KindDelay)
	st.s.Until = until

	return st
}

// Wait waits for an event of a name with the key an expression gives.
func Wait(id, event, key string) *Step {
	st := step(id, definition.KindWait)
	st.s.Event, st.s.Key = event, key

	return st
}

// Goto continues at the step next.
func Goto(id, next string) *Step {
	st := step(id, definition.KindGoto)
	st.s.Next = next

	return st
}

// End completes the instance at once.
func End(id string) *Step {
	return step(id, definition.KindEnd)
}

// Saga runs steps as a saga: when one fails, the compensations of those
// that completed run in reverse order; see Then.
func Saga(id string, steps ...*Step) *Step {
	st := step(id, definition.KindSaga)
	st.s.Steps = raw(steps)

	return st
}

// Workflow starts a child instance of a definition and waits for it.
func Workflow(id, name string) *Step {
	st := step(id, definition.KindWorkflow)
	st.s.Workflow = name

	return st
}

// Schedule runs steps once after a duration, beside the main path.
func Schedule(id, duration string, steps ...*Step) *Step {
	st := step(id, definition.KindSchedule)
	st.s.Duration, st.s.Steps = duration, raw(steps)

	return st
}

// Recur runs steps every interval, beside the main path, until the
// condition stopIf holds.
func Recur(id, interval, stopIf string, steps ...*Step) *Step {
	st := step(id, definition.KindRecur)
	st.s.Interval, st.s.CancelIf, st.s.Steps = interval, stopIf, raw(steps)

	return st
}
