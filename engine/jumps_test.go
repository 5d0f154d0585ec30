package engine_test

import (
	"slices"
	"testing"

	"github.com/weftworks/weft/store"
)

// TestGotoLeavesLoop jumps out of a while loop from inside an if once
// the data says so: the loop's other iterations never run, the steps
// between the loop and the target are skipped, and the target and what
// follows it run once.
func TestGotoLeavesLoop(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: goto-out
version: 1
steps:
  - id: loop
    type: while
    condition: "true"
    max_iterations: 10
    steps:
      - {id: inc, type: task, service: rec, action: inc, input: data.count, output: count}
      - id: enough
        type: if
        condition: data.count >= 3
        steps:
          - {id: out, type: goto, next: done}
  - {id: skipped, type: task, service: rec, action: note, input: "'skipped'"}
  - {id: done, type: task, service: rec, action: note, input: "'done:' + string(data.count)"}
`)
	var rec recorder
	h.e.Handle("rec", "inc", countHandler(&rec))
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "goto-out", `{"count": 0}`)
	wantCompleted(t, h.wait(id))

	want := []string{"inc:0", "inc:1", "inc:2", "done:3"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if s, _ := h.step(id, "loop"); s.Status != store.StepCancelled {
		t.Fatalf("loop is %s, want cancelled by the jump", s.Status)
	}
	if got := seqsOf(h.audit(id), "out", "step_jumped"); len(got) != 1 {
		t.Fatalf("step_jumped rows = %v, want one", got)
	}
}

// TestGotoBackward jumps back to an earlier step of the same block: the
// steps from the target on run again until the jump is not taken.
func TestGotoBackward(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: goto-back
version: 1
steps:
  - {id: inc, type: task, service: rec, action: inc, input: data.count, output: count}
  - id: again
    type: if
    condition: data.count < 3
    steps:
      - {id: back, type: goto, next: inc}
  - {id: done, type: task, service: rec, action: note, input: "'done'"}
`)
	var rec recorder
	h.e.Handle("rec", "inc", countHandler(&rec))
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "goto-back", `{"count": 0}`)
	wantCompleted(t, h.wait(id))

	want := []string{"inc:0", "inc:1", "inc:2", "done"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
}

// TestEndInsideWhile ends the instance successfully from inside a while
// loop: nothing after the end runs, a parallel branch still waiting is
// cancelled, and the instance is completed with its data as output.
func TestEndInsideWhile(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: end-loop
version: 1
steps:
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: hold, type: wait, event: never, key: "'k'"}
      - steps:
          - id: loop
            type: while
            condition: "true"
            steps:
              - {id: inc, type: task, service: rec, action: inc, input: data.count, output: count}
              - id: stop
                type: if
                condition: data.count == 2
                steps:
                  - {id: finish, type: end}
              - {id: tail, type: task, service: rec, action: note, input: "'tail'"}
  - {id: never, type: task, service: rec, action: note, input: "'never'"}
`)
	var rec recorder
	h.e.Handle("rec", "inc", countHandler(&rec))
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "end-loop", `{"count": 0}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	want := []string{"inc:0", "tail", "inc:1"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if got := dataOf(t, inst.Output)["count"]; got != 2.0 {
		t.Fatalf("output count = %v, want 2", got)
	}
	if s, _ := h.step(id, "hold"); s.Status != store.StepCancelled {
		t.Fatalf("hold is %s, want cancelled", s.Status)
	}
	wantNoSubscriptions(h, id)
}
