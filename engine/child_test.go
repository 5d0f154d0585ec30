package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// registerChildren registers a child that doubles input.n, with output
// {"doubled": ...}, and a parent that calls it.
func registerChildren(h *harness, retry string) {
	h.register(`
name: doubler
version: 1
output: "{'doubled': data.doubled}"
steps:
  - {id: double, type: task, service: math, action: double, input: data.n, output: doubled}
`)
	h.register(`
name: caller
version: 1
steps:
  - {id: call, type: workflow, workflow: doubler, input: {n: data.n}, output: result` +
		retry + `}
  - {id: after, type: task, service: math, action: note, input: "'after:' + string(data.result.doubled)"}
`)
}

// TestSubWorkflowOutput starts a child with mapped input, waits for it
// and takes its output; the child is a real instance linked to the
// parent step in the audit.
func TestSubWorkflowOutput(t *testing.T) {
	h := newHarness(t)
	registerChildren(h, "")
	var rec recorder
	h.e.Handle("math", "double", doubleHandler(nil))
	h.e.Handle("math", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "caller", `{"n": 21}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	wantJSON(t, "data.result", dataOf(t, inst.Data)["result"], `{"doubled":42}`)
	if got := rec.list(); len(got) != 1 || got[0] != "after:42" {
		t.Fatalf("calls = %v, want after:42", got)
	}
	kids, err := h.e.ChildInstances(h.ctx, id)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children = %v (%v), want one", kids, err)
	}
	child := instanceNow(h, kids[0])
	checkStatus(t, child, store.InstanceCompleted)
	if child.DefinitionName != "doubler" {
		t.Fatalf("child runs %s, want doubler", child.DefinitionName)
	}
}

// TestSubWorkflowFailureRetries fails the first child: the parent step's
// attempt fails, its retry starts a second child, which completes.
func TestSubWorkflowFailureRetries(t *testing.T) {
	h := newHarness(t)
	registerChildren(h, ", retry: {max_attempts: 2, initial_interval: 1ms}")
	var calls atomic.Int32
	var rec recorder
	h.e.Handle("math", "double", doubleHandler(func() error {
		if calls.Add(1) == 1 {
			return engine.NonRetryable("bad_luck", "first child fails")
		}
		return nil
	}))
	h.e.Handle("math", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "caller", `{"n": 2}`)
	wantCompleted(t, h.wait(id))

	kids, err := h.e.ChildInstances(h.ctx, id)
	if err != nil || len(kids) != 2 {
		t.Fatalf("children = %v (%v), want two", kids, err)
	}
	checkStatus(t, instanceNow(h, kids[0]), store.InstanceFailed)
	checkStatus(t, instanceNow(h, kids[1]), store.InstanceCompleted)
	if s, _ := h.step(id, "call"); s.Attempt != 2 || s.Status != store.StepCompleted {
		t.Fatalf("call = %s at attempt %d, want completed at 2", s.Status, s.Attempt)
	}
}

// TestSubWorkflowFailureFailsParent fails the parent when its only
// attempt's child fails.
func TestSubWorkflowFailureFailsParent(t *testing.T) {
	h := newHarness(t)
	registerChildren(h, ", retry: {max_attempts: 1}")
	h.e.Handle("math", "double", doubleHandler(func() error {
		return engine.NonRetryable("bad_luck", "always")
	}))
	h.run()

	id := begin(h, "caller", `{"n": 2}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if e := dataOf(t, inst.Error); e["code"] != "child_failed" || e["step_id"] != "call" {
		t.Fatalf("error = %v, want child_failed at call", e)
	}
}

// TestSubWorkflowCancelReachesChild cancels the parent while its child
// and grandchild wait: both end cancelled.
func TestSubWorkflowCancelReachesChild(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: waiter
version: 1
steps:
  - {id: hold, type: wait, event: never, key: "'k'"}
`)
	h.register(`
name: middle
version: 1
steps:
  - {id: down, type: workflow, workflow: waiter}
`)
	h.register(`
name: top
version: 1
steps:
  - {id: down, type: workflow, workflow: middle}
`)
	h.run()

	id := begin(h, "top", `{}`)
	var grand string
	h.waitFor("the grandchild to wait", func() bool {
		kids, _ := h.e.ChildInstances(h.ctx, id)
		if len(kids) == 0 {
			return false
		}
		grands, _ := h.e.ChildInstances(h.ctx, kids[0])
		if len(grands) == 0 {
			return false
		}
		grand = grands[0]
		s, ok := h.step(grand, "hold")
		return ok && s.Status == store.StepWaiting
	})
	if err := h.e.Cancel(h.ctx, id, "stop"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}

	checkStatus(t, h.wait(id), store.InstanceCancelled)
	kids, _ := h.e.ChildInstances(h.ctx, id)
	checkStatus(t, h.wait(kids[0]), store.InstanceCancelled)
	checkStatus(t, h.wait(grand), store.InstanceCancelled)
	wantNoSubscriptions(h, grand)
}

// TestSubWorkflowGrandchild runs a child of a child: the output comes
// back up through both.
func TestSubWorkflowGrandchild(t *testing.T) {
	h := newHarness(t)
	registerChildren(h, "")
	h.register(`
name: outer
version: 1
steps:
  - {id: inner, type: workflow, workflow: caller, input: {n: input.n}, output: got}
`)
	var rec recorder
	h.e.Handle("math", "double", doubleHandler(nil))
	h.e.Handle("math", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "outer", `{"n": 5}`)
	inst := h.wait(id)
	wantCompleted(t, inst)
	got := dataOf(t, inst.Data)["got"].(map[string]any)
	wantJSON(t, "data.got.result", got["result"], `{"doubled":10}`)
}

// doubleHandler doubles an integer input; fail, when set, may refuse.
func doubleHandler(fail func() error) engine.HandlerFunc {
	return func(_ context.Context, task engine.Task) (any, error) {
		if fail != nil {
			if err := fail(); err != nil {
				return nil, err
			}
		}
		var n int
		if err := jsonUnmarshal(task.Input, &n); err != nil {
			return nil, err
		}
		return 2 * n, nil
	}
}

// TestSubWorkflowDepthIsBounded runs a definition that starts itself as
// its own child: the nesting stops at Options.MaxWorkflowDepth, where
// the deepest step fails with workflow_too_deep, and the failure comes
// back up through every parent, so the top instance fails and nothing
// keeps spawning.
func TestSubWorkflowDepthIsBounded(t *testing.T) {
	opts := fastOptions()
	opts.MaxWorkflowDepth = 3
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: again
version: 1
steps:
  - {id: self, type: workflow, workflow: again, retry: {max_attempts: 1}}
`)
	h.run()

	top := h.wait(begin(h, "again", `{}`))
	checkStatus(t, top, store.InstanceFailed)

	page, err := h.e.ListInstances(h.ctx, store.InstanceFilter{DefinitionName: "again"})
	if err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	if n := len(page.Instances); n != 4 {
		t.Fatalf("%d instances of again, want 4 (the top and 3 nested)", n)
	}
	deepest := page.Instances[0]
	if !strings.Contains(string(deepest.Error), "workflow_too_deep") {
		t.Fatalf("deepest instance error = %s, want workflow_too_deep", deepest.Error)
	}
	for _, inst := range page.Instances {
		checkStatus(t, h.wait(inst.ID), store.InstanceFailed)
	}
}

// TestSubWorkflowWaitsForItsDefinition retries a workflow step whose
// child definition is registered only after the first attempt: a
// missing definition is retried by the step's policy.
func TestSubWorkflowWaitsForItsDefinition(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: early
version: 1
steps:
  - {id: call, type: workflow, workflow: late, output: got,
     retry: {max_attempts: 5, initial_interval: 50ms, backoff_coefficient: 1}}
`)
	h.run()

	id := begin(h, "early", `{}`)
	h.waitFor("the first attempt to fail", func() bool {
		s, ok := h.step(id, "call")
		return ok && s.Attempt >= 1 && s.Status == store.StepSleeping
	})
	h.register(`
name: late
version: 1
steps:
  - {id: nap, type: delay, duration: 1ms}
`)

	inst := h.wait(id)
	wantCompleted(t, inst)
	if s, _ := h.step(id, "call"); s.Attempt < 2 {
		t.Fatalf("call ran %d attempts, want at least 2", s.Attempt)
	}
}
