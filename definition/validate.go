package definition

import (
	"reflect"
	"slices"
	"sort"
)

// expr compiles an expression, recording a fault at path when it does not
// compile.
func (c *compiler) expr(path, src string) *Expr {
	e, err := CompileExpr(src)
	if err != nil {
		c.fs.add(path, "%s", err.Error())
		return nil
	}
	c.noteRefs(path, e)

	return e
}

// stepRef is an expression's read of a step's output, checked once every
// step id is known.
type stepRef struct {
	path, id string
}

// noteRefs remembers the steps an expression at path reads.
func (c *compiler) noteRefs(path string, e *Expr) {
	for _, id := range e.StepRefs() {
		c.refs = append(c.refs, stepRef{path: path, id: id})
	}
}

// checkRefs records a fault for every expression that reads a step the
// definition does not have.
func (c *compiler) checkRefs() {
	for _, r := range c.refs {
		if _, ok := c.ids[r.id]; !ok {
			c.fs.add(r.path, "no step %q", r.id)
		}
	}
}

// typedExpr compiles an expression whose result must be of one of the
// given kinds (want names them for people). A result whose type is only
// known when it runs, such as data.x, is accepted.
func (c *compiler) typedExpr(path, src, want string, kinds ...reflect.Kind) *Expr {
	e := c.expr(path, src)
	if e == nil {
		return nil
	}

	t := e.prog.Node().Type()
	if t == nil || t.Kind() == reflect.Interface || slices.Contains(kinds, t.Kind()) {
		return e
	}
	c.fs.add(path, "%q gives %s, want %s", src, t, want)

	return nil
}

// duration compiles a duration literal or expression.
func (c *compiler) duration(path, src string) *DurationExpr {
	d, err := CompileDuration(src)
	if err != nil {
		c.fs.add(path, "%s", err.Error())
		return nil
	}

	if d.Expr != nil {
		c.noteRefs(path, d.Expr)
		t := d.Expr.prog.Node().Type()
		switch {
		case t == nil:
		case t.Kind() == reflect.Interface, t.Kind() == reflect.String:
		case t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64:
		default:
			c.fs.add(path, "%q gives %s, want a duration", src, t)
			return nil
		}
	}

	return d
}

// output parses the step's output path, nil when it has none.
func (c *compiler) output(n *Node) Path {
	if n.Step.Output == "" {
		return nil
	}

	p, err := ParsePath(n.Step.Output)
	if err != nil {
		c.fs.add(fieldPath(n.Path, "output"), "%s", err.Error())
		return nil
	}

	return p
}

// mapping compiles a task's input mapping, recording a fault for every
// expression in it that does not compile.
func (c *compiler) mapping(path string, v any) *Mapping {
	before := len(c.fs)
	c.checkMapping(path, v)
	if len(c.fs) > before {
		return nil
	}

	m, err := CompileMapping(v, path)
	if err != nil {
		c.fs.add(path, "%s", err.Error())
		return nil
	}

	return m
}

// checkMapping compiles every string inside v, in a stable order.
func (c *compiler) checkMapping(path string, v any) {
	switch t := v.(type) {
	case string:
		c.expr(path, t)
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.checkMapping(fieldPath(path, k), t[k])
		}
	case []any:
		for i, sub := range t {
			c.checkMapping(indexPath(path, i), sub)
		}
	}
}

// outputAt is an output path and the place of the step that writes it.
type outputAt struct {
	path Path
	at   string
}

// checkOverlaps refuses branches that run at once (parallel branches,
// outcome branches; block names the block of branch i) whose steps, at
// any depth, write overlapping output paths: the result would depend on
// which branch finishes last.
func (c *compiler) checkOverlaps(n *Node, branches int, block func(int) string) {
	var earlier [][]outputAt
	for i := range branches {
		outs := outputs(n.Blocks[block(i)], nil)
		for _, o := range outs {
			for j, prev := range earlier {
				for _, p := range prev {
					if o.path.Overlaps(p.path) {
						c.fs.add(o.at, "%q overlaps %q written by branch %d (%s)",
							o.path.String(), p.path.String(), j, p.at)
					}
				}
			}
		}
		earlier = append(earlier, outs)
	}
}

// outputs appends the output paths written by nodes and everything they
// hold.
func outputs(nodes []*Node, out []outputAt) []outputAt {
	for _, n := range nodes {
		if n.Output != nil {
			out = append(out, outputAt{path: n.Output, at: fieldPath(n.Path, "output")})
		}

		names := make([]string, 0, len(n.Blocks))
		for name := range n.Blocks {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			out = outputs(n.Blocks[name], out)
		}
	}

	return out
}
