package definition

import (
	"fmt"
	"sort"
	"strings"
)

// Digest renders what a compiled graph means, node by node, as text, so
// that two graphs can be compared: a definition and its canonical form,
// or the YAML form and the Go builder's form of one workflow, compile to
// the same digest. Compiled expressions are rendered by their source.
func Digest(g *Graph) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deadline=%s output=%s schema=%v compensate_on_cancel=%v\n", g.Deadline,
		exprSource(g.Output), g.Schema != nil, g.CompensateOnCancel)

	ids := make([]string, 0, len(g.Nodes))
	for id := range g.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b.WriteString(nodeDigest(g.Nodes[id]))
		b.WriteByte('\n')
	}

	return b.String()
}

// nodeDigest renders one node.
func nodeDigest(n *Node) string {
	parent := ""
	if n.Parent != nil {
		parent = n.Parent.ID
	}
	blocks := make([]string, 0, len(n.Blocks))
	for name, nodes := range n.Blocks {
		blocks = append(blocks, name+"="+ids(nodes))
	}
	sort.Strings(blocks)
	input := ""
	if n.Input != nil {
		raw, _ := marshalPlain(n.Step.Input)
		input = string(raw)
	}
	when := make([]string, len(n.When))
	for i, e := range n.When {
		when[i] = exprSource(e)
	}

	return coreDigest(n, parent, blocks, input, when) + " " + flowDigest(n)
}

// coreDigest renders the fields of the engine-core kinds.
func coreDigest(n *Node, parent string, blocks []string, input string, when []string) string {
	return fmt.Sprintf("%s %s %s parent=%s blocks=%v branches=%d cases=%d when=%q "+
		"task=%s/%s input=%s output=%v retry=%+v limits=%+v on_failure=%s "+
		"items=%s parallel=%v max_concurrency=%d result=%s condition=%s max_iterations=%d "+
		"duration=%s until=%s event=%s key=%s as_of=%s timeout=%s cancel_if=%s continue=%v",
		n.ID, n.Kind, n.Path, parent, blocks, n.Branches, n.Cases, when,
		n.Service, n.Action, input, n.Output, n.Retry, n.Timeouts, n.OnFailure,
		exprSource(n.Items), n.Parallel, n.MaxConcurrency, exprSource(n.Result),
		exprSource(n.Condition), n.MaxIterations, durationSource(n.Duration),
		exprSource(n.Until), n.Event, exprSource(n.Key), exprSource(n.AsOf),
		durationSource(n.Timeout), exprSource(n.CancelIf), n.CancelContinue)
}

// flowDigest renders the fields of the control-flow kinds.
func flowDigest(n *Node) string {
	target := "-"
	if n.Target != nil {
		target = n.Target.ID
	}
	values := make([]string, len(n.Step.OnOutcome))
	for i, b := range n.Step.OnOutcome {
		if b != nil {
			raw, _ := marshalPlain(b.Value)
			values[i] = string(raw)
		}
	}

	return fmt.Sprintf("at=%s/%d target=%s outcome=%s outcomes=%v then=%s compensates=%v "+
		"workflow=%s/%d interval=%s", n.BlockName, n.Index, target, exprSource(n.Outcome),
		values, n.Then, n.Compensates, n.Workflow, n.WorkflowVersion, durationSource(n.Interval))
}

// exprSource renders an expression, "-" for none.
func exprSource(e *Expr) string {
	if e == nil {
		return "-"
	}

	return e.Source
}

// durationSource renders a duration, "-" for none.
func durationSource(d *DurationExpr) string {
	if d == nil {
		return "-"
	}
	if d.Expr != nil {
		return d.Expr.Source
	}

	return d.Literal.String()
}

// ids lists the ids of nodes, separated by spaces.
func ids(nodes []*Node) string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID
	}

	return strings.Join(out, " ")
}
