// Package definition reads workflow definitions written in YAML or JSON,
// validates them, and compiles them into the step graph the engine runs.
//
// A definition is immutable once registered: the engine keeps the source
// text and compiles it again whenever it needs the graph.
package definition

import (
	"encoding/json"
)

// Kind names what a step does.
type Kind string

// The step kinds of the engine core.
const (
	KindTask     Kind = "task"
	KindSequence Kind = "sequence"
	KindParallel Kind = "parallel"
	KindForeach  Kind = "foreach"
	KindIf       Kind = "if"
	KindSwitch   Kind = "switch"
	KindWhile    Kind = "while"
	KindDelay    Kind = "delay"
	KindWait     Kind = "wait"
)

// The step kinds of control flow beyond the core.
const (
	// KindGoto continues at the step named by Next, in the goto's own
	// block or a block around it.
	KindGoto Kind = "goto"
	// KindEnd completes the instance at once.
	KindEnd Kind = "end"
	// KindSaga runs its steps as a saga: when one of them fails, the
	// compensations of those that completed run in reverse order.
	KindSaga Kind = "saga"
	// KindWorkflow starts a child instance of another definition and
	// waits for it.
	KindWorkflow Kind = "workflow"
	// KindSchedule runs its steps once after a delay, beside the main
	// path.
	KindSchedule Kind = "schedule"
	// KindRecur runs its steps every interval, beside the main path,
	// until a condition holds.
	KindRecur Kind = "recur"
	// KindUserTask waits for a person to choose one of its options.
	KindUserTask Kind = "user_task"
)

// FailureAction is what happens when a task step has spent its attempts.
type FailureAction string

// The failure actions of the engine core.
const (
	// FailInstance fails the instance with the step's error.
	FailInstance FailureAction = "fail"
	// SuspendInstance pauses the instance for a person; resuming it runs
	// the step again with a fresh attempt budget.
	SuspendInstance FailureAction = "suspend"
	// TerminateInstance ends the instance at once, without cleanup.
	TerminateInstance FailureAction = "terminate"
	// Compensate unwinds the nearest saga around the step (or, outside
	// any saga, every completed step of the instance) by running the
	// compensations of the completed steps in reverse completion order.
	Compensate FailureAction = "compensate"
)

// SagaThen is what a saga does once its compensations have run.
type SagaThen string

// The ways a saga goes on after unwinding.
const (
	// SagaContinue goes on after the saga, which is marked compensated.
	SagaContinue SagaThen = "continue"
	// SagaRetry runs the saga again from its first step after the retry
	// policy's interval, until its attempts are spent.
	SagaRetry SagaThen = "retry"
	// SagaEnd terminates the instance.
	SagaEnd SagaThen = "end"
)

// Definition is a workflow definition as its author wrote it.
type Definition struct {
	// Name identifies the workflow; with Version it is immutable.
	Name string `json:"name"`
	// Version is a positive integer; a new version is a new registration.
	Version int `json:"version"`
	// Description is free text for people.
	Description string `json:"description,omitempty"`
	// InputSchema, when set, is a JSON Schema every start input must meet.
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	// Defaults apply to every task step that does not set its own.
	Defaults *Defaults `json:"defaults,omitempty"`
	// Deadline, when set, is a duration after which a running instance
	// fails with reason deadline_exceeded.
	Deadline string `json:"deadline,omitempty"`
	// Output, when set, is an expression whose value becomes the
	// instance's output; by default the output is the instance data.
	Output string `json:"output,omitempty"`
	// Steps run in order when the instance starts.
	Steps []*Step `json:"steps"`
	// OnCancel steps run in order when the instance is cancelled, after
	// its in-flight attempts have drained.
	OnCancel []*Step `json:"on_cancel,omitempty"`
	// CompensateOnCancel runs the compensations of every completed step,
	// in reverse completion order, when the instance is cancelled, before
	// the OnCancel steps.
	CompensateOnCancel bool `json:"compensate_on_cancel,omitempty"`
}

// Defaults holds the retry policy, timeouts and failure action that task
// steps inherit.
type Defaults struct {
	// Retry is merged field by field under each task step's own policy,
	// over the package defaults (DefaultMaxAttempts and the rest).
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Timeouts are merged field by field under each task step's own.
	Timeouts *Timeouts `json:"timeouts,omitempty"`
	// OnFailure applies to task steps that set none; FailInstance when
	// empty.
	OnFailure FailureAction `json:"on_failure,omitempty"`
}

// RetryPolicy says how often and how fast a failing task step is tried
// again. Durations are Go duration strings such as "500ms" or "1m".
type RetryPolicy struct {
	// MaxAttempts counts every run, the first included: 1 means no retry.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// InitialInterval is the wait before the second attempt.
	InitialInterval string `json:"initial_interval,omitempty"`
	// BackoffCoefficient multiplies the wait after each attempt (>= 1).
	BackoffCoefficient float64 `json:"backoff_coefficient,omitempty"`
	// MaxInterval caps the wait between attempts.
	MaxInterval string `json:"max_interval,omitempty"`
	// Jitter is a fraction in [0, 1] of the wait added or removed at random.
	Jitter float64 `json:"jitter,omitempty"`
	// NonRetryable lists error codes that fail the step at once.
	NonRetryable []string `json:"non_retryable,omitempty"`

	// keys holds the fields present in the source, so that an explicit
	// zero (max_attempts: 0) can be told from an absent field.
	keys map[string]bool
}

// Timeouts bound one attempt of a task step. Empty means no limit.
type Timeouts struct {
	// StartToClose is an absolute cap on one attempt once a worker took it.
	StartToClose string `json:"start_to_close,omitempty"`
	// Heartbeat is the longest gap allowed between two heartbeats.
	Heartbeat string `json:"heartbeat,omitempty"`
	// ScheduleToStart is how long a task may wait for a worker.
	ScheduleToStart string `json:"schedule_to_start,omitempty"`
}

// Step is one step of a definition. Which fields apply depends on Type.
type Step struct {
	// ID is unique within the whole definition, nested blocks included.
	ID string `json:"id"`
	// Name is an optional label for people.
	Name string `json:"name,omitempty"`
	// Type is the step kind.
	Type Kind `json:"type"`

	// Service and Action name the work of a task step.
	Service string `json:"service,omitempty"`
	Action  string `json:"action,omitempty"`
	// Input builds a task's input: a string is one expression; an object
	// or array is walked and every string in it is an expression, every
	// other value a constant.
	Input any `json:"input,omitempty"`
	// Output is the data path where the step's result is written (task,
	// wait, foreach).
	Output string `json:"output,omitempty"`
	// Retry, Timeouts and OnFailure override the definition's defaults.
	// On a saga with then: retry, Retry paces and counts its passes.
	Retry     *RetryPolicy  `json:"retry,omitempty"`
	Timeouts  *Timeouts     `json:"timeouts,omitempty"`
	OnFailure FailureAction `json:"on_failure,omitempty"`

	// Steps is the body of sequence, foreach, while and the "then"
	// branch of if.
	Steps []*Step `json:"steps,omitempty"`
	// Branches are the parallel branches; the step completes when all do.
	Branches []*Branch `json:"branches,omitempty"`

	// Items is the foreach list expression.
	Items string `json:"items,omitempty"`
	// Parallel runs foreach iterations at once, at most MaxConcurrency
	// (0: no cap) at a time.
	Parallel       bool `json:"parallel,omitempty"`
	MaxConcurrency int  `json:"max_concurrency,omitempty"`
	// Result is evaluated at the end of each foreach iteration; the
	// values, in item order, are written to Output.
	Result string `json:"result,omitempty"`

	// Condition is the if or while condition.
	Condition string `json:"condition,omitempty"`
	// Else is the if step's other branch.
	Else []*Step `json:"else,omitempty"`
	// Cases and Default are the switch branches; the first case whose
	// When holds runs, else Default.
	Cases   []*Case `json:"cases,omitempty"`
	Default []*Step `json:"default,omitempty"`
	// MaxIterations caps a while loop; passing it fails the instance.
	MaxIterations int `json:"max_iterations,omitempty"`

	// Duration (a duration literal or an expression) or Until (an
	// expression giving an RFC 3339 instant) sets a delay; Duration is
	// also how long a schedule step waits before its steps run.
	Duration string `json:"duration,omitempty"`
	Until    string `json:"until,omitempty"`

	// Event and Key (an expression, fixed when the wait starts) select
	// the event a wait takes.
	Event string `json:"event,omitempty"`
	Key   string `json:"key,omitempty"`
	// AsOf is an expression giving the earliest event time the wait
	// takes; by default the instance's start.
	AsOf string `json:"as_of,omitempty"`
	// Timeout (a duration literal or expression) ends the wait and runs
	// OnTimeout.
	Timeout   string  `json:"timeout,omitempty"`
	OnTimeout []*Step `json:"on_timeout,omitempty"`
	// CancelIf abandons the wait when it holds over the instance data;
	// the instance then continues after the wait when CancelContinue is
	// set and fails otherwise.
	CancelIf       string `json:"cancel_if,omitempty"`
	CancelContinue bool   `json:"cancel_continue,omitempty"`

	// Workflow names the definition a workflow step starts a child
	// instance of, and WorkflowVersion its version (0: the newest active
	// one when the step starts).
	Workflow        string `json:"workflow,omitempty"`
	WorkflowVersion int    `json:"version,omitempty"`

	// Interval is how often a recur step runs its steps (a duration
	// literal or expression); CancelIf stops it, and MaxIterations caps
	// its runs.
	Interval string `json:"interval,omitempty"`

	// Next is the id of the step a goto continues at.
	Next string `json:"next,omitempty"`

	// Compensate is the compensation of a task or workflow step: steps
	// run in order to undo what the step did, when a saga around it, or
	// the instance, unwinds.
	Compensate []*Step `json:"compensate,omitempty"`
	// Then is what a saga does once it has unwound: continue (the
	// default), retry or end.
	Then SagaThen `json:"then,omitempty"`

	// Prompt (an expression giving a string: plain text is written as a
	// quoted literal) is what a user task asks; Assignee (an expression
	// giving a string) is who is asked; Options are the answers the
	// person chooses from. After Timeout, EscalateTo (an expression
	// giving a string) is the new assignee; without it a timeout fails
	// the step by OnFailure.
	Prompt     string   `json:"prompt,omitempty"`
	Assignee   string   `json:"assignee,omitempty"`
	Options    []string `json:"options,omitempty"`
	EscalateTo string   `json:"escalate_to,omitempty"`

	// Outcome is an expression giving a task's outcome value from its
	// output (seen as result); by default the outcome is the output.
	// OnOutcome lists the branches that the outcome selects: every
	// branch whose value matches runs, at once, and one without a value
	// always runs.
	Outcome   string           `json:"outcome,omitempty"`
	OnOutcome []*OutcomeBranch `json:"on_outcome,omitempty"`

	// keys holds the fields present in the source, so that a field
	// written with its zero value still counts as written.
	keys map[string]bool
}

// Branch is one branch of a parallel step.
type Branch struct {
	// Name is an optional label for people.
	Name string `json:"name,omitempty"`
	// Steps run in order; a branch has at least one.
	Steps []*Step `json:"steps"`
}

// OutcomeBranch is one branch of a task's on_outcome list.
type OutcomeBranch struct {
	// Name is an optional label for people.
	Name string `json:"name,omitempty"`
	// Value is the outcome the branch runs for (any JSON value, compared
	// exactly; an outcome that is a list matches each of its elements).
	// A branch without a value runs whatever the outcome.
	Value any `json:"value,omitempty"`
	// Steps run in order; a branch has at least one.
	Steps []*Step `json:"steps"`
}

// Case is one branch of a switch step.
type Case struct {
	// When is a boolean expression; the first case whose When holds runs.
	When string `json:"when"`
	// Steps run when the case is chosen; a case has at least one.
	Steps []*Step `json:"steps"`
}
