package definition

import (
	"strconv"
	"time"
)

// Block names one list of steps that a pointer runs in order. A step
// owns at most a few blocks; BlockBranch and BlockCase are followed by
// the branch or case index, as in "branch:1".
const (
	BlockSteps     = "steps"
	BlockElse      = "else"
	BlockDefault   = "default"
	BlockOnTimeout = "on_timeout"
	BlockOnCancel  = "on_cancel"
	BlockBranch    = "branch"
	BlockCase      = "case"
	// BlockCompensate is a step's compensation; BlockOutcome, followed
	// by the branch index, is one of its outcome branches.
	BlockCompensate = "compensate"
	BlockOutcome    = "outcome"
)

// RootID is the step id of the pointer that runs a definition's steps,
// and CancelID the one that runs its on_cancel steps. Neither can be used
// as a step id.
const (
	RootID   = "$root"
	CancelID = "$cancel"
)

// Graph is a compiled definition: every step resolved to a Node, every
// expression compiled, every default applied.
type Graph struct {
	// Def is the definition the graph was compiled from.
	Def *Definition
	// Root runs Def.Steps; Cancel runs Def.OnCancel (it has no steps
	// when the definition has none).
	Root   *Node
	Cancel *Node
	// Deadline is the instance's overall deadline, 0 for none.
	Deadline time.Duration
	// Output is the instance output expression, nil for the whole data.
	Output *Expr
	// Schema validates start inputs; nil accepts any input.
	Schema *InputSchema
	// CompensateOnCancel runs compensations on cancel.
	CompensateOnCancel bool
	// Nodes holds every node by step id, Root and Cancel included.
	Nodes map[string]*Node
}

// Node is a compiled step.
type Node struct {
	Step *Step
	ID   string
	Kind Kind
	// Parent is the node whose block holds this one (nil for Root and
	// Cancel); Path is where the step stands in the source, as used in
	// validation messages ("steps[2].branches[0].steps[1]").
	Parent *Node
	Path   string
	// BlockName and Index say where the node stands in its parent: the
	// block that holds it and its position there.
	BlockName string
	Index     int

	// Blocks holds the node's step lists by block name: BlockSteps,
	// BlockElse, BlockDefault, BlockOnTimeout, and "branch:i" / "case:i".
	Blocks map[string][]*Node
	// Branches is the number of parallel branches; Cases the number of
	// switch cases (their conditions are in When).
	Branches int
	Cases    int
	When     []*Expr

	// Workflow and WorkflowVersion name a workflow step's child
	// definition; Input, Output, Retry and OnFailure below apply to it.
	Workflow        string
	WorkflowVersion int

	// Task fields, with defaults applied.
	Service   string
	Action    string
	Input     *Mapping
	Output    Path
	Retry     Retry
	Timeouts  Limits
	OnFailure FailureAction

	// Foreach fields.
	Items          *Expr
	Parallel       bool
	MaxConcurrency int
	Result         *Expr

	// If and while condition; while cap.
	Condition     *Expr
	MaxIterations int

	// Delay: exactly one of Duration or Until.
	Duration *DurationExpr
	Until    *Expr

	// Wait fields.
	Event          string
	Key            *Expr
	AsOf           *Expr
	Timeout        *DurationExpr
	CancelIf       *Expr
	CancelContinue bool

	// User task fields: Timeout (above) and EscalateTo, when set,
	// reassign the task once; OnFailure (above) applies to a timeout
	// without escalation.
	Prompt     *Expr
	Assignee   *Expr
	Options    []string
	EscalateTo *Expr

	// Target is the step a goto continues at.
	Target *Node

	// Outcome computes a task's outcome value, nil for the output
	// itself; Outcomes is the number of its outcome branches, whose
	// blocks are "outcome:i" and whose values are Step.OnOutcome[i].
	Outcome  *Expr
	Outcomes int

	// Then is what a saga does after unwinding; Retry (above) paces its
	// passes when Then is SagaRetry.
	Then SagaThen
	// Compensates reports whether the node has a compensation block.
	Compensates bool
	// Interval paces a recur step (its stop condition is CancelIf, its
	// cap MaxIterations); a schedule step waits Duration.
	Interval *DurationExpr
}

// OutcomeBlock names the block of outcome branch i, as in "outcome:0".
func OutcomeBlock(i int) string {
	return BlockOutcome + ":" + strconv.Itoa(i)
}

// Retry is a resolved retry policy.
type Retry struct {
	MaxAttempts        int
	InitialInterval    time.Duration
	BackoffCoefficient float64
	MaxInterval        time.Duration
	Jitter             float64
	NonRetryable       []string
}

// Limits are the resolved timeouts of a task step; 0 means none.
type Limits struct {
	StartToClose    time.Duration
	Heartbeat       time.Duration
	ScheduleToStart time.Duration
}

// Default policy values used when neither the step, the definition nor
// the server sets them.
const (
	DefaultMaxAttempts        = 3
	DefaultInitialInterval    = time.Second
	DefaultBackoffCoefficient = 2.0
	DefaultMaxInterval        = time.Minute
	DefaultMaxIterations      = 10000
)

// Limits on the size of a definition.
const (
	// MaxDefinitionBytes is the largest source text accepted.
	MaxDefinitionBytes = 1 << 20
	// MaxDepth is the deepest nesting of blocks accepted.
	MaxDepth = 32
	// MaxSteps is the largest number of steps accepted.
	MaxSteps = 2000
	// MaxAttemptsLimit is the largest max_attempts accepted.
	MaxAttemptsLimit = 1000
	// MaxIterationsLimit is the largest max_iterations accepted.
	MaxIterationsLimit = 1_000_000
)

// Block returns the steps of the named block, or nil.
func (n *Node) Block(name string) []*Node {
	return n.Blocks[name]
}
