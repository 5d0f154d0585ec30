package definition

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"time"
)

// CompileOptions adjusts what CompileWith accepts.
type CompileOptions struct {
	// KnownService reports whether a service of that name is registered;
	// a task step naming any other service is refused. Nil accepts every
	// well-formed service name.
	KnownService func(name string) bool
}

// Compile validates a definition and builds its step graph, accepting
// every service name. It is CompileWith with no options.
func Compile(d *Definition) (*Graph, error) {
	return CompileWith(d, CompileOptions{})
}

// CompileWith validates a definition and builds its step graph: every
// step becomes a Node, every expression is compiled, and the retry
// policy, timeouts and failure action of each task step are resolved
// from the step, then the definition's defaults, then the package
// defaults. Root and Cancel carry a sequence Step made for them (it is
// not in the source); Root's Path is "" and Cancel's "on_cancel". A
// definition at fault gives a *ValidationError listing every fault
// found, each with its path.
func CompileWith(d *Definition, opts CompileOptions) (*Graph, error) {
	if d == nil {
		return nil, errors.New("compiling definition: nil definition")
	}

	c := &compiler{
		opts:  opts,
		nodes: map[string]*Node{},
		ids:   map[string]string{},
	}
	g := &Graph{Def: d, Nodes: c.nodes, CompensateOnCancel: d.CompensateOnCancel}
	c.header(d, g)
	c.defaults(d.Defaults)

	if len(d.Steps) == 0 {
		c.fs.add("steps", "a definition needs at least one step")
	}
	g.Root = c.container(RootID, "", "steps", d.Steps)
	g.Cancel = c.container(CancelID, "on_cancel", "on_cancel", d.OnCancel)
	c.resolveJumps()
	c.checkRefs()
	if c.count > MaxSteps {
		c.fs.add("", "the definition has %d steps, over the limit of %d", c.count, MaxSteps)
	}

	if err := c.fs.err(); err != nil {
		return nil, err
	}

	return g, nil
}

// BranchBlock names the block of parallel branch i, as in "branch:1".
func BranchBlock(i int) string {
	return BlockBranch + ":" + strconv.Itoa(i)
}

// CaseBlock names the block of switch case i, as in "case:0".
func CaseBlock(i int) string {
	return BlockCase + ":" + strconv.Itoa(i)
}

// compiler holds the state of one compilation.
type compiler struct {
	opts CompileOptions
	fs   faults
	// nodes holds every node with a valid, unique id.
	nodes map[string]*Node
	// ids maps each step id to the path of the first step that has it.
	ids map[string]string
	// count is the number of steps seen.
	count int
	// refs are the step outputs expressions read.
	refs []stepRef
	// jumps are the goto and end nodes, checked once every id is known.
	jumps []*Node
	// sagaDepth counts the sagas around the step being built, and
	// compensating the compensation blocks.
	sagaDepth    int
	compensating int
	// retry, limits and onFailure are the definition's defaults over the
	// package's.
	retry     Retry
	limits    Limits
	onFailure FailureAction
}

var (
	// validName matches a definition name.
	validName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,127}$`)
	// validService matches a service name; the service registry takes the
	// same names (store.ValidServiceName).
	validService = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,127}$`)
	// validID matches a step id.
	validID = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
)

// header checks and compiles the definition's own fields.
func (c *compiler) header(d *Definition, g *Graph) {
	switch {
	case d.Name == "":
		c.fs.add("name", "required")
	case !validName.MatchString(d.Name):
		c.fs.add("name", "%q is not a valid name: use letters, digits, '_', '-' and '.', "+
			"starting with a letter, at most 128", d.Name)
	}

	switch {
	case d.Version < 1:
		c.fs.add("version", "must be at least 1, got %d", d.Version)
	case d.Version > math.MaxInt32:
		c.fs.add("version", "must be at most %d, got %d", math.MaxInt32, d.Version)
	}

	if d.Deadline != "" {
		dl, err := time.ParseDuration(d.Deadline)
		switch {
		case err != nil:
			c.fs.add("deadline", "not a duration: %q", d.Deadline)
		case dl <= 0:
			c.fs.add("deadline", "must be positive, got %s", d.Deadline)
		default:
			g.Deadline = dl
		}
	}

	if d.Output != "" {
		g.Output = c.expr("output", d.Output)
	}

	if len(d.InputSchema) > 0 {
		schema, err := CompileSchema(d.InputSchema)
		if err != nil {
			c.fs.add("input_schema", "%s", err.Error())
		}
		g.Schema = schema
	}
}

// container builds Root or Cancel: a sequence node that is not written
// in the source and runs the given steps.
func (c *compiler) container(id, path, field string, steps []*Step) *Node {
	n := &Node{
		Step:   &Step{ID: id, Type: KindSequence, Steps: steps},
		ID:     id,
		Kind:   KindSequence,
		Path:   path,
		Blocks: map[string][]*Node{},
	}
	c.nodes[id] = n
	n.Blocks[BlockSteps] = c.block(n, BlockSteps, fieldPath("", field), steps, 1)

	return n
}

// block builds the nodes of a list of steps at path, whose steps stand
// at the given depth.
func (c *compiler) block(parent *Node, name, path string, steps []*Step, depth int) []*Node {
	nodes := make([]*Node, 0, len(steps))
	for i, s := range steps {
		if n := c.step(parent, indexPath(path, i), s, depth); n != nil {
			n.BlockName, n.Index = name, len(nodes)
			nodes = append(nodes, n)
		}
	}

	return nodes
}

// body builds a block of n from the steps under field of path; who names
// the owner in the fault of an empty block that needs a step.
func (c *compiler) body(n *Node, block, path, field string, steps []*Step, depth int,
	who string) {
	at := fieldPath(path, field)
	if who != "" && len(steps) == 0 {
		c.fs.add(at, "%s needs at least one step", who)
	}

	if n.Blocks == nil {
		n.Blocks = map[string][]*Node{}
	}
	n.Blocks[block] = c.block(n, block, at, steps, depth+1)
}

// step checks and builds one step and what it holds.
func (c *compiler) step(parent *Node, path string, s *Step, depth int) *Node {
	c.count++
	if s == nil {
		c.fs.add(path, "want a step, got null")
		return nil
	}
	if depth > MaxDepth {
		c.fs.add(path, "nested %d levels deep, over the limit of %d", depth, MaxDepth)
		return nil
	}

	n := &Node{Step: s, ID: s.ID, Kind: s.Type, Parent: parent, Path: path}
	c.checkID(n)
	if !c.checkType(n) {
		return n
	}

	c.checkFields(n)
	c.build(n, depth)

	return n
}

// checkID checks the step's id and registers the node under it.
func (c *compiler) checkID(n *Node) {
	at := fieldPath(n.Path, "id")
	switch {
	case n.ID == "":
		c.fs.add(at, "required")
		return
	case n.ID == RootID || n.ID == CancelID:
		c.fs.add(at, "%q is reserved", n.ID)
		return
	case !validID.MatchString(n.ID):
		c.fs.add(at, "%q is not a valid id: use letters, digits, '_' and '-', "+
			"starting with a letter or '_', at most 64", n.ID)
		return
	}

	if first, dup := c.ids[n.ID]; dup {
		c.fs.add(at, "duplicate id %q (first at %s)", n.ID, first)
		return
	}
	c.ids[n.ID] = at
	c.nodes[n.ID] = n
}

// checkType checks that the step has a known kind.
func (c *compiler) checkType(n *Node) bool {
	at := fieldPath(n.Path, "type")
	if n.Kind == "" {
		c.fs.add(at, "required")
		return false
	}
	if _, ok := kindFields[n.Kind]; !ok {
		c.fs.add(at, "unknown step type %q", n.Kind)
		return false
	}

	return true
}

// build checks and compiles the fields of the step's kind.
func (c *compiler) build(n *Node, depth int) {
	switch n.Kind {
	case KindTask:
		c.task(n, depth)
	case KindSequence:
		c.body(n, BlockSteps, n.Path, "steps", n.Step.Steps, depth, "a sequence step")
	case KindParallel:
		c.parallel(n, depth)
	case KindForeach:
		c.foreach(n, depth)
	case KindIf:
		c.ifStep(n, depth)
	case KindSwitch:
		c.switchStep(n, depth)
	case KindWhile:
		c.while(n, depth)
	case KindDelay:
		c.delay(n)
	case KindWait:
		c.wait(n, depth)
	case KindGoto:
		c.required(n, "next", n.Step.Next)
		c.jumps = append(c.jumps, n)
	case KindEnd:
		c.jumps = append(c.jumps, n)
	case KindSaga:
		c.saga(n, depth)
	case KindWorkflow:
		c.workflow(n, depth)
	case KindSchedule, KindRecur:
		c.beside(n, depth)
	case KindUserTask:
		c.userTask(n)
	}
}
