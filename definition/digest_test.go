package definition

import (
	"fmt"
	"sort"
	"strings"
)

// graphDigest renders what a compiled graph means, node by node, so that
// two graphs can be compared: a definition and its canonical form must
// compile to the same digest.
func graphDigest(g *Graph) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deadline=%s output=%s schema=%v\n", g.Deadline, exprSource(g.Output),
		g.Schema != nil)

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
