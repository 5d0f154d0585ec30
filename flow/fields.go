package flow

import (
	"github.com/weftworks/weft/definition"
)

// Named sets the step's label for people.
func (s *Step) Named(name string) *Step {
	s.s.Name = name
	return s
}

// Input sets a task's or workflow's input mapping: a string is one
// expression, a map or slice is walked and every string in it is an
// expression.
func (s *Step) Input(mapping any) *Step {
	s.s.Input = mapping
	return s
}

// Output sets the data path the step's result is written to.
func (s *Step) Output(path string) *Step {
	s.s.Output = path
	return s
}

// Retry sets the step's retry policy (a saga's with then: retry).
func (s *Step) Retry(p definition.RetryPolicy) *Step {
	s.s.Retry = &p
	return s
}

// Attempts sets the step's max_attempts, 1 meaning no retry.
func (s *Step) Attempts(n int) *Step {
	if s.s.Retry == nil {
		s.s.Retry = &definition.RetryPolicy{}
	}
	s.s.Retry.MaxAttempts = n

	return s
}

// Timeouts sets the limits of one attempt of a task.
func (s *Step) Timeouts(t definition.Timeouts) *Step {
	s.s.Timeouts = &t
	return s
}

// OnFailure sets what happens when the step has spent its attempts.
func (s *Step) OnFailure(a definition.FailureAction) *Step {
	s.s.OnFailure = a
	return s
}

// Compensate sets the steps that undo this one when a saga unwinds.
func (s *Step) Compensate(steps ...*Step) *Step {
	s.s.Compensate = raw(steps)
	return s
}

// Outcome sets the expression giving a task's outcome from its result.
func (s *Step) Outcome(expr string) *Step {
	s.s.Outcome = expr
	return s
}

// When adds an outcome branch run when the outcome matches value.
func (s *Step) When(value any, steps ...*Step) *Step {
	s.s.OnOutcome = append(s.s.OnOutcome, &definition.OutcomeBranch{Value: value, Steps: raw(steps)})
	return s
}

// Always adds an outcome branch run whatever the outcome.
func (s *Step) Always(steps ...*Step) *Step {
	s.s.OnOutcome = append(s.s.OnOutcome, &definition.OutcomeBranch{Steps: raw(steps)})
	return s
}

// Else sets an if step's other branch.
func (s *Step) Else(steps ...*Step) *Step {
	s.s.Else = raw(steps)
	return s
}

// Case adds a switch case run when condition holds.
func (s *Step) Case(condition string, steps ...*Step) *Step {
	s.s.Cases = append(s.s.Cases, &definition.Case{When: condition, Steps: raw(steps)})
	return s
}

// Default sets the steps a switch runs when no case holds.
func (s *Step) Default(steps ...*Step) *Step {
	s.s.Default = raw(steps)
	return s
}

// Parallel makes a foreach run its iterations at once, at most max at a
// time (0: no cap).
func (s *Step) Parallel(max int) *Step {
	s.s.Parallel, s.s.MaxConcurrency = true, max
	return s
}

// Collect sets a foreach's per-iteration result and the path the list
// of results is written to.
func (s *Step) Collect(result, output string) *Step {
	s.s.Result, s.s.Output = result, output
	return s
}

// MaxIterations caps a while or recur step.
func (s *Step) MaxIterations(n int) *Step {
	s.s.MaxIterations = n
	return s
}

// AsOf sets the earliest event time a wait takes.
func (s *Step) AsOf(expr string) *Step {
	s.s.AsOf = expr
	return s
}

// Timeout ends a wait after a duration and runs steps instead.
func (s *Step) Timeout(duration string, steps ...*Step) *Step {
	s.s.Timeout, s.s.OnTimeout = duration, raw(steps)
	return s
}

// CancelIf abandons a wait when the condition holds; the instance then
// goes on after the wait when cont is set, and fails otherwise.
func (s *Step) CancelIf(condition string, cont bool) *Step {
	s.s.CancelIf, s.s.CancelContinue = condition, cont
	return s
}

// Then sets what a saga does once it has unwound.
func (s *Step) Then(t definition.SagaThen) *Step {
	s.s.Then = t
	return s
}

// Version pins a workflow step's child definition version.
func (s *Step) Version(v int) *Step {
	s.s.WorkflowVersion = v
	return s
}
