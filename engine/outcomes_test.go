package engine_test

import (
	"context"
	"slices"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

const outcomeSource = `
name: outcomes
version: 1
steps:
  - id: grade
    type: task
    service: shop
    action: grade
    output: graded
    outcome: result.tags
    on_outcome:
      - value: ship
        steps:
          - {id: ship, type: task, service: shop, action: branch, input: "'ship'"}
      - value: refund
        steps:
          - {id: refund, type: task, service: shop, action: branch, input: "'refund'"}
      - value: notify
        steps:
          - {id: notify, type: task, service: shop, action: branch, input: "'notify'"}
      - steps:
          - {id: log, type: task, service: shop, action: branch, input: "'log'"}
  - {id: after, type: task, service: shop, action: note, input: "'after'"}
`

// TestOutcomeBranches runs every branch the outcome selects: the outcome
// ["ship", "notify"] matches two branches, which run at the same time
// (each waits for the other two) together with the branch without a
// value; the refund branch never runs; the next step runs once, after
// all three.
func TestOutcomeBranches(t *testing.T) {
	h := newHarness(t)
	h.register(outcomeSource)
	var rec recorder
	g := newGate(3)
	h.e.Handle("shop", "grade", func(context.Context, engine.Task) (any, error) {
		return map[string]any{"tags": []string{"ship", "notify"}}, nil
	})
	h.e.Handle("shop", "branch", func(ctx context.Context, task engine.Task) (any, error) {
		if err := g.arrive(ctx); err != nil {
			return nil, err
		}
		rec.add(inputText(task.Input))
		return nil, nil
	})
	h.e.Handle("shop", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "outcomes", `{}`)
	wantCompleted(t, h.wait(id))

	calls := rec.list()
	if len(calls) != 4 || calls[3] != "after" {
		t.Fatalf("calls = %v, want three branches then after", calls)
	}
	branches := slices.Clone(calls[:3])
	slices.Sort(branches)
	if !slices.Equal(branches, []string{"log", "notify", "ship"}) {
		t.Fatalf("branches run = %v, want log, notify and ship", branches)
	}
	if _, ran := h.step(id, "refund"); ran {
		t.Fatal("the refund branch ran")
	}
	if s, _ := h.step(id, "grade"); s.Status != store.StepCompleted {
		t.Fatalf("grade is %s, want completed", s.Status)
	}
}

// TestOutcomeNoMatch goes on at once when no branch matches and none is
// unconditional.
func TestOutcomeNoMatch(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: outcome-none
version: 1
steps:
  - id: grade
    type: task
    service: shop
    action: grade
    on_outcome:
      - {value: 1, steps: [{id: one, type: task, service: shop, action: note, input: "'one'"}]}
      - {value: 2, steps: [{id: two, type: task, service: shop, action: note, input: "'two'"}]}
  - {id: after, type: task, service: shop, action: note, input: "'after'"}
`)
	var rec recorder
	h.e.Handle("shop", "grade", func(context.Context, engine.Task) (any, error) { return 3, nil })
	h.e.Handle("shop", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "outcome-none", `{}`)
	wantCompleted(t, h.wait(id))
	if got := rec.list(); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("calls = %v, want only after", got)
	}

	h.e.Handle("shop", "grade", func(context.Context, engine.Task) (any, error) { return 2, nil })
	id = begin(h, "outcome-none", `{}`)
	wantCompleted(t, h.wait(id))
	if got := rec.list(); !slices.Equal(got[1:], []string{"two", "after"}) {
		t.Fatalf("calls = %v, want two then after", got)
	}
}
