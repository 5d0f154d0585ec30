package definition

import "strings"

// fence names the kind of block a jump may not leave, or "" when the
// block that holds n may be left: the branches of a parallel step or of
// outcome branches, the iterations of a parallel foreach, compensation
// blocks and the blocks that run beside the main path.
func fence(n *Node) string {
	p := n.Parent
	switch {
	case p == nil:
		return ""
	case p.Kind == KindParallel:
		return "a parallel branch"
	case p.Kind == KindForeach && p.Parallel:
		return "a parallel foreach"
	case strings.HasPrefix(n.BlockName, BlockOutcome):
		return "an outcome branch"
	case n.BlockName == BlockCompensate:
		return "a compensation block"
	case p.Kind == KindSaga:
		return "a saga block"
	case p.Kind == KindSchedule || p.Kind == KindRecur:
		return "a " + string(p.Kind) + " block"
	}

	return ""
}

// resolveJumps checks every goto's target and where each end stands.
// A goto continues at a step of its own block or of a block around it,
// never leaving a fenced block (see fence); an end may not stand in
// on_cancel or in a compensation block.
func (c *compiler) resolveJumps() {
	for _, n := range c.jumps {
		if n.Kind == KindEnd {
			c.checkEnd(n)
			continue
		}
		if n.Step.Next == "" {
			continue
		}

		at := fieldPath(n.Path, "next")
		target, ok := c.nodes[n.Step.Next]
		switch {
		case !ok:
			c.fs.add(at, "no step %q", n.Step.Next)
		case target == n:
			c.fs.add(at, "a goto cannot continue at itself")
		default:
			n.Target = target
			c.checkJump(n, target, at)
		}
	}
}

// checkJump checks that target stands in a block that holds n, reached
// without leaving a fenced block.
func (c *compiler) checkJump(n, target *Node, at string) {
	for cur := n; cur.Parent != nil; cur = cur.Parent {
		if target.Parent == cur.Parent && target.BlockName == cur.BlockName {
			return
		}
		if f := fence(cur); f != "" {
			if encloses(cur.Parent, target) {
				c.fs.add(at, "%q is in another block of %s", target.ID, f)
			} else {
				c.fs.add(at, "%q is outside %s (%s)", target.ID, f, cur.Parent.Path)
			}
			return
		}
	}

	c.fs.add(at, "%q is not in this block or a block around it", target.ID)
}

// encloses reports whether n stands inside outer, at any depth.
func encloses(outer, n *Node) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if p == outer {
			return true
		}
	}

	return false
}

// checkEnd refuses an end step where ending the instance makes no sense.
func (c *compiler) checkEnd(n *Node) {
	for cur := n; cur.Parent != nil; cur = cur.Parent {
		switch {
		case cur.Parent.ID == CancelID:
			c.fs.add(n.Path, "an end step cannot stand in on_cancel")
			return
		case cur.BlockName == BlockCompensate:
			c.fs.add(n.Path, "an end step cannot stand in a compensation block")
			return
		}
	}
}
