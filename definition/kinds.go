package definition

import (
	"reflect"
	"strings"
)

// kindFields lists, for each supported kind, the fields a step of that
// kind may have besides id, name and type. A kind missing here is
// refused as an unknown step type.
var kindFields = map[Kind][]string{
	KindTask: {"service", "action", "input", "output", "retry", "timeouts", "on_failure",
		"outcome", "on_outcome", "compensate"},
	KindSequence: {"steps"},
	KindParallel: {"branches"},
	KindForeach:  {"items", "parallel", "max_concurrency", "result", "output", "steps"},
	KindIf:       {"condition", "steps", "else"},
	KindSwitch:   {"cases", "default"},
	KindWhile:    {"condition", "max_iterations", "steps"},
	KindDelay:    {"duration", "until"},
	KindWait: {"event", "key", "as_of", "timeout", "on_timeout", "cancel_if",
		"cancel_continue", "output"},
	KindGoto:     {"next"},
	KindSaga:     {"steps", "then", "retry"},
	KindSchedule: {"duration", "steps"},
	KindRecur:    {"interval", "cancel_if", "max_iterations", "steps"},
	KindWorkflow: {"workflow", "version", "input", "output", "retry", "on_failure",
		"compensate"},
	KindEnd: {},
	KindUserTask: {"prompt", "assignee", "options", "output", "timeout", "escalate_to",
		"on_failure"},
}

// article names a step of kind k for messages: "a task step", "an if
// step", "a user_task step".
func article(k Kind) string {
	if k != KindUserTask && strings.IndexByte("aeiou", string(k)[0]) >= 0 {
		return "an " + string(k) + " step"
	}

	return "a " + string(k) + " step"
}

// checkFields refuses the fields the step wrote that its kind does not
// use, such as items on a task.
func (c *compiler) checkFields(n *Node) {
	allowed := map[string]bool{"id": true, "name": true, "type": true}
	for _, f := range kindFields[n.Kind] {
		allowed[f] = true
	}

	for _, f := range writtenFields(n.Step) {
		if !allowed[f] {
			c.fs.add(fieldPath(n.Path, f), "not allowed on %s", article(n.Kind))
		}
	}
}

// writtenFields lists the JSON names of the fields of s that the source
// wrote or that are not zero.
func writtenFields(s *Step) []string {
	v := reflect.ValueOf(s).Elem()
	var out []string
	for name, i := range jsonFields(v.Type()) {
		if s.keys[name] || !v.Field(i).IsZero() {
			out = append(out, name)
		}
	}

	return out
}

// required reports whether the field of n holds a value, and records a
// fault when it does not.
func (c *compiler) required(n *Node, field, value string) bool {
	if strings.TrimSpace(value) == "" {
		c.fs.add(fieldPath(n.Path, field), "required for %s", article(n.Kind))
		return false
	}

	return true
}

// task checks and compiles a task step.
func (c *compiler) task(n *Node, depth int) {
	s := n.Step
	if c.required(n, "service", s.Service) {
		c.service(n)
	}
	c.required(n, "action", s.Action)
	n.Service, n.Action = s.Service, s.Action

	if s.Input != nil {
		n.Input = c.mapping(fieldPath(n.Path, "input"), s.Input)
	}
	n.Output = c.output(n)
	c.taskPolicy(n)
	c.outcomes(n, depth)
	c.compensation(n, depth)
}

// service checks the service a task step names: a well-formed name,
// known to the registry when there is one.
func (c *compiler) service(n *Node) {
	name := n.Step.Service
	switch {
	case !validService.MatchString(name):
		c.fs.add(fieldPath(n.Path, "service"), "%q is not a service name (a letter, then up to "+
			"127 letters, digits, '_', '.' or '-')", name)
	case c.opts.KnownService != nil && !c.opts.KnownService(name):
		c.fs.add(fieldPath(n.Path, "service"), "step %q names unknown service %q: register it "+
			"first", n.ID, name)
	}
}

// compensation checks and compiles a step's compensation block. Inside
// it there may be no saga, no further compensation, no end and no jump
// out.
func (c *compiler) compensation(n *Node, depth int) {
	s := n.Step
	if len(s.Compensate) == 0 {
		if s.keys["compensate"] {
			c.fs.add(fieldPath(n.Path, "compensate"), "needs at least one step")
		}
		return
	}
	if c.compensating > 0 {
		c.fs.add(fieldPath(n.Path, "compensate"), "not allowed inside a compensation block")
		return
	}

	n.Compensates = true
	c.compensating++
	saga := c.sagaDepth
	c.sagaDepth = 0
	c.body(n, BlockCompensate, n.Path, "compensate", s.Compensate, depth, "")
	c.sagaDepth = saga
	c.compensating--
}

// workflow checks and compiles a workflow (sub-workflow) step. The
// child definition is looked up when the step starts, so that
// definitions may be registered in any order.
func (c *compiler) workflow(n *Node, depth int) {
	s := n.Step
	if c.required(n, "workflow", s.Workflow) && !validName.MatchString(s.Workflow) {
		c.fs.add(fieldPath(n.Path, "workflow"), "%q is not a valid definition name", s.Workflow)
	}
	n.Workflow = s.Workflow
	if s.WorkflowVersion < 0 {
		c.fs.add(fieldPath(n.Path, "version"), "must not be negative, got %d", s.WorkflowVersion)
	}
	n.WorkflowVersion = s.WorkflowVersion

	if s.Input != nil {
		n.Input = c.mapping(fieldPath(n.Path, "input"), s.Input)
	}
	n.Output = c.output(n)
	c.taskPolicy(n)
	c.compensation(n, depth)
}

// beside checks and compiles a schedule or recur step, whose steps run
// beside the main path. Neither may stand in on_cancel or in a
// compensation block.
func (c *compiler) beside(n *Node, depth int) {
	s := n.Step
	if c.compensating > 0 {
		c.fs.add(n.Path, "%s cannot stand in a compensation block", article(n.Kind))
	}
	if strings.HasPrefix(n.Path, "on_cancel") {
		c.fs.add(n.Path, "%s cannot stand in on_cancel", article(n.Kind))
	}

	if n.Kind == KindSchedule {
		if c.required(n, "duration", s.Duration) {
			n.Duration = c.duration(fieldPath(n.Path, "duration"), s.Duration)
		}
	} else {
		if c.required(n, "interval", s.Interval) {
			at := fieldPath(n.Path, "interval")
			n.Interval = c.duration(at, s.Interval)
			if n.Interval != nil && n.Interval.Expr == nil && n.Interval.Literal <= 0 {
				c.fs.add(at, "must be positive, got %s", s.Interval)
			}
		}
		if c.required(n, "cancel_if", s.CancelIf) {
			n.CancelIf = c.typedExpr(fieldPath(n.Path, "cancel_if"), s.CancelIf, "a boolean",
				reflect.Bool)
		}
		c.iterations(n)
	}

	c.body(n, BlockSteps, n.Path, "steps", s.Steps, depth, article(n.Kind))
}

// saga checks and compiles a saga step.
func (c *compiler) saga(n *Node, depth int) {
	s := n.Step
	if c.compensating > 0 {
		c.fs.add(n.Path, "a saga cannot stand in a compensation block")
	}

	n.Then = SagaContinue
	switch s.Then {
	case "", SagaContinue, SagaRetry, SagaEnd:
		if s.Then != "" {
			n.Then = s.Then
		}
	default:
		c.fs.add(fieldPath(n.Path, "then"), "unknown value %q (want continue, retry or end)", s.Then)
	}

	n.Retry = c.retry
	if s.Retry != nil {
		at := fieldPath(n.Path, "retry")
		if n.Then != SagaRetry {
			c.fs.add(at, "needs then: retry")
		}
		c.checkRetry(at, s.Retry)
		n.Retry = overlayRetry(c.retry, s.Retry)
		c.checkIntervals(at, n.Retry)
	}

	c.sagaDepth++
	c.body(n, BlockSteps, n.Path, "steps", s.Steps, depth, article(n.Kind))
	c.sagaDepth--
}

// outcomes checks and compiles a step's outcome expression and branches.
func (c *compiler) outcomes(n *Node, depth int) {
	s := n.Step
	if s.Outcome != "" {
		n.Outcome = c.expr(fieldPath(n.Path, "outcome"), s.Outcome)
		if len(s.OnOutcome) == 0 {
			c.fs.add(fieldPath(n.Path, "outcome"), "needs on_outcome branches to select")
		}
	}

	at := fieldPath(n.Path, "on_outcome")
	n.Outcomes = len(s.OnOutcome)
	for i, b := range s.OnOutcome {
		bp := indexPath(at, i)
		if b == nil {
			c.fs.add(bp, "want an outcome branch, got null")
			continue
		}
		c.body(n, OutcomeBlock(i), bp, "steps", b.Steps, depth, "an outcome branch")
	}

	c.checkOverlaps(n, n.Outcomes, OutcomeBlock)
}

// parallel checks and compiles a parallel step and its branches.
func (c *compiler) parallel(n *Node, depth int) {
	s := n.Step
	at := fieldPath(n.Path, "branches")
	if len(s.Branches) == 0 {
		c.fs.add(at, "a parallel step needs at least one branch")
	}

	n.Branches = len(s.Branches)
	n.Blocks = map[string][]*Node{}
	for i, b := range s.Branches {
		bp := indexPath(at, i)
		if b == nil {
			c.fs.add(bp, "want a branch, got null")
			continue
		}
		c.body(n, BranchBlock(i), bp, "steps", b.Steps, depth, "a branch")
	}

	c.checkOverlaps(n, n.Branches, BranchBlock)
}

// foreach checks and compiles a foreach step.
func (c *compiler) foreach(n *Node, depth int) {
	s := n.Step
	if c.required(n, "items", s.Items) {
		n.Items = c.typedExpr(fieldPath(n.Path, "items"), s.Items, "a list",
			reflect.Slice, reflect.Array)
	}

	n.Parallel = s.Parallel
	n.MaxConcurrency = s.MaxConcurrency
	switch at := fieldPath(n.Path, "max_concurrency"); {
	case s.MaxConcurrency < 0:
		c.fs.add(at, "must not be negative, got %d", s.MaxConcurrency)
	case s.MaxConcurrency > 0 && !s.Parallel:
		c.fs.add(at, "needs parallel: true")
	}

	if s.Result != "" {
		n.Result = c.expr(fieldPath(n.Path, "result"), s.Result)
	}
	n.Output = c.output(n)
	switch {
	case s.Result != "" && s.Output == "":
		c.fs.add(fieldPath(n.Path, "result"), "needs an output to write the results to")
	case s.Result == "" && s.Output != "":
		c.fs.add(fieldPath(n.Path, "output"), "needs a result to collect from each iteration")
	}

	c.body(n, BlockSteps, n.Path, "steps", s.Steps, depth, article(n.Kind))
}

// ifStep checks and compiles an if step.
func (c *compiler) ifStep(n *Node, depth int) {
	s := n.Step
	if c.required(n, "condition", s.Condition) {
		n.Condition = c.typedExpr(fieldPath(n.Path, "condition"), s.Condition, "a boolean",
			reflect.Bool)
	}

	c.body(n, BlockSteps, n.Path, "steps", s.Steps, depth, article(n.Kind))
	c.body(n, BlockElse, n.Path, "else", s.Else, depth, "")
}

// switchStep checks and compiles a switch step and its cases.
func (c *compiler) switchStep(n *Node, depth int) {
	s := n.Step
	at := fieldPath(n.Path, "cases")
	if len(s.Cases) == 0 {
		c.fs.add(at, "a switch step needs at least one case")
	}

	n.Cases = len(s.Cases)
	n.When = make([]*Expr, len(s.Cases))
	n.Blocks = map[string][]*Node{}
	for i, cs := range s.Cases {
		cp := indexPath(at, i)
		if cs == nil {
			c.fs.add(cp, "want a case, got null")
			continue
		}
		if strings.TrimSpace(cs.When) == "" {
			c.fs.add(fieldPath(cp, "when"), "required for a case")
		} else {
			n.When[i] = c.typedExpr(fieldPath(cp, "when"), cs.When, "a boolean", reflect.Bool)
		}
		c.body(n, CaseBlock(i), cp, "steps", cs.Steps, depth, "a case")
	}

	c.body(n, BlockDefault, n.Path, "default", s.Default, depth, "")
}

// while checks and compiles a while step.
func (c *compiler) while(n *Node, depth int) {
	s := n.Step
	if c.required(n, "condition", s.Condition) {
		n.Condition = c.typedExpr(fieldPath(n.Path, "condition"), s.Condition, "a boolean",
			reflect.Bool)
	}

	c.iterations(n)
	c.body(n, BlockSteps, n.Path, "steps", s.Steps, depth, article(n.Kind))
}

// iterations checks and resolves a step's max_iterations.
func (c *compiler) iterations(n *Node) {
	s := n.Step
	n.MaxIterations = DefaultMaxIterations
	if s.keys["max_iterations"] || s.MaxIterations != 0 {
		at := fieldPath(n.Path, "max_iterations")
		switch {
		case s.MaxIterations < 1:
			c.fs.add(at, "must be at least 1, got %d", s.MaxIterations)
		case s.MaxIterations > MaxIterationsLimit:
			c.fs.add(at, "%d is over the limit of %d", s.MaxIterations, MaxIterationsLimit)
		}
		n.MaxIterations = s.MaxIterations
	}
}

// delay checks and compiles a delay step.
func (c *compiler) delay(n *Node) {
	s := n.Step
	switch {
	case s.Duration == "" && s.Until == "":
		c.fs.add(fieldPath(n.Path, "duration"), "a delay step needs duration or until")
	case s.Duration != "" && s.Until != "":
		c.fs.add(fieldPath(n.Path, "until"), "a delay step takes duration or until, not both")
	case s.Duration != "":
		n.Duration = c.duration(fieldPath(n.Path, "duration"), s.Duration)
	default:
		n.Until = c.typedExpr(fieldPath(n.Path, "until"), s.Until, "an instant",
			reflect.String, reflect.Struct, reflect.Int, reflect.Int64, reflect.Float64)
	}
}

// wait checks and compiles a wait step.
func (c *compiler) wait(n *Node, depth int) {
	s := n.Step
	c.required(n, "event", s.Event)
	n.Event = s.Event
	if c.required(n, "key", s.Key) {
		n.Key = c.typedExpr(fieldPath(n.Path, "key"), s.Key, "a string",
			reflect.String, reflect.Int, reflect.Int64, reflect.Float64, reflect.Bool)
	}
	if s.AsOf != "" {
		n.AsOf = c.typedExpr(fieldPath(n.Path, "as_of"), s.AsOf, "an instant",
			reflect.String, reflect.Struct, reflect.Int, reflect.Int64, reflect.Float64)
	}

	if s.Timeout != "" {
		n.Timeout = c.duration(fieldPath(n.Path, "timeout"), s.Timeout)
	} else if len(s.OnTimeout) > 0 {
		c.fs.add(fieldPath(n.Path, "on_timeout"), "needs a timeout")
	}
	c.body(n, BlockOnTimeout, n.Path, "on_timeout", s.OnTimeout, depth, "")

	if s.CancelIf != "" {
		n.CancelIf = c.typedExpr(fieldPath(n.Path, "cancel_if"), s.CancelIf, "a boolean",
			reflect.Bool)
	} else if s.CancelContinue {
		c.fs.add(fieldPath(n.Path, "cancel_continue"), "needs cancel_if")
	}
	n.CancelContinue = s.CancelContinue
	n.Output = c.output(n)
}

// userTask checks and compiles a user task step.
func (c *compiler) userTask(n *Node) {
	s := n.Step
	if c.required(n, "prompt", s.Prompt) {
		n.Prompt = c.typedExpr(fieldPath(n.Path, "prompt"), s.Prompt, "a string",
			reflect.String)
	}
	if c.required(n, "assignee", s.Assignee) {
		n.Assignee = c.typedExpr(fieldPath(n.Path, "assignee"), s.Assignee, "a string",
			reflect.String)
	}
	c.options(n)

	if s.Timeout != "" {
		n.Timeout = c.duration(fieldPath(n.Path, "timeout"), s.Timeout)
	}
	if s.EscalateTo != "" {
		at := fieldPath(n.Path, "escalate_to")
		n.EscalateTo = c.typedExpr(at, s.EscalateTo, "a string", reflect.String)
		if s.Timeout == "" {
			c.fs.add(at, "needs a timeout")
		}
	}

	n.OnFailure = c.onFailure
	if c.sagaDepth > 0 {
		n.OnFailure = Compensate
	}
	if c.checkAction(fieldPath(n.Path, "on_failure"), s.OnFailure) && s.OnFailure != "" {
		n.OnFailure = s.OnFailure
	}
	n.Output = c.output(n)
}

// options checks a user task's options: at least one, none empty, no
// two alike.
func (c *compiler) options(n *Node) {
	at := fieldPath(n.Path, "options")
	if len(n.Step.Options) == 0 {
		c.fs.add(at, "a user task needs at least one option")
		return
	}

	seen := map[string]int{}
	for i, o := range n.Step.Options {
		switch first, dup := seen[o]; {
		case strings.TrimSpace(o) == "":
			c.fs.add(indexPath(at, i), "empty option")
		case dup:
			c.fs.add(indexPath(at, i), "duplicate option %q (first at %s)", o,
				indexPath(at, first))
		default:
			seen[o] = i
		}
	}
	n.Options = n.Step.Options
}
