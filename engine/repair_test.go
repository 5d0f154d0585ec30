package engine_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// flakySource is a definition whose middle step fails until the test
// lets it pass, beside a parallel branch that is still waiting.
const flakySource = `
name: flaky
version: 1
steps:
  - {id: first, type: task, service: rec, action: note, input: "'first'"}
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: shaky, type: task, service: rec, action: shaky, output: shaky,
             retry: {max_attempts: 2, initial_interval: 1ms}}
      - steps:
          - {id: hold, type: wait, event: go, key: "'k'"}
  - {id: last, type: task, service: rec, action: note, input: "'last:' + string(data.shaky)"}
`

// TestRetryFailedInstance retries a failed instance from its failed step:
// the step runs again with a fresh budget of two attempts and numbers 3
// and 4, the wait halted beside it waits again, the step before it does
// not run again, and the instance completes.
func TestRetryFailedInstance(t *testing.T) {
	h := newHarness(t)
	h.register(flakySource)
	var rec recorder
	var pass atomic.Bool
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.e.Handle("rec", "shaky", func(_ context.Context, task engine.Task) (any, error) {
		rec.add("shaky")
		if pass.Load() && task.Attempt == 4 {
			return "fixed", nil
		}
		return nil, engine.Retryable("flaky", "not yet")
	})
	h.run()

	id := begin(h, "flaky", `{}`)
	checkStatus(t, h.wait(id), store.InstanceFailed)
	if err := h.e.Resume(h.ctx, id); !errors.Is(err, engine.ErrFinished) {
		t.Fatalf("resume of a failed instance = %v, want ErrFinished", err)
	}

	pass.Store(true)
	if err := h.e.RetryInstance(h.ctx, id); err != nil {
		t.Fatalf("retrying: %v", err)
	}
	waitStepStatus(h, id, "hold", store.StepWaiting)
	publish(h, "go", "k", `{}`)
	checkStatus(t, h.wait(id), store.InstanceCompleted)

	want := []string{"first", "shaky", "shaky", "shaky", "shaky", "last:fixed"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	rows := stepRows(h, id, "shaky")
	if len(rows) != 1 || rows[0].Attempt != 4 || rows[0].Status != store.StepCompleted {
		t.Fatalf("shaky rows = %+v, want one completed at attempt 4", rows)
	}
	if got := seqsOf(h.audit(id), "shaky", "instance_retried"); len(got) != 1 {
		t.Fatalf("instance_retried rows = %v, want one", got)
	}
	checkGapFree(t, h.audit(id))

	if err := h.e.RetryInstance(h.ctx, id); !errors.Is(err, engine.ErrWrongStatus) {
		t.Fatalf("retry of a completed instance = %v, want ErrWrongStatus", err)
	}
}

// TestRetryKeepsFreshBudget fails again after the retry's own budget:
// the attempts go 1, 2 then 3, 4, and the instance is failed again.
func TestRetryKeepsFreshBudget(t *testing.T) {
	h := newHarness(t)
	h.register(flakySource)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.e.Handle("rec", "shaky", func(context.Context, engine.Task) (any, error) {
		return nil, engine.Retryable("flaky", "never")
	})
	h.run()

	id := begin(h, "flaky", `{}`)
	checkStatus(t, h.wait(id), store.InstanceFailed)
	if err := h.e.RetryInstance(h.ctx, id); err != nil {
		t.Fatalf("retrying: %v", err)
	}
	waitInstanceStatus(h, id, store.InstanceFailed)

	rows := stepRows(h, id, "shaky")
	if len(rows) != 1 || rows[0].Attempt != 4 || rows[0].Status != store.StepFailed {
		t.Fatalf("shaky rows = %+v, want one failed at attempt 4", rows)
	}
	var attempts []int
	for _, ev := range h.audit(id) {
		if ev.StepID == "shaky" && ev.Type == "step_dispatched" {
			attempts = append(attempts, ev.Attempt)
		}
	}
	if !slices.Equal(attempts, []int{1, 2, 3, 4}) {
		t.Fatalf("dispatched attempts = %v, want [1 2 3 4]", attempts)
	}
}

// TestSkipFailedStep skips the failed step with supplied output: the
// output lands at the step's output path, the next step reads it, the
// step is marked skipped and its handler never ran again.
func TestSkipFailedStep(t *testing.T) {
	h := newHarness(t)
	h.register(flakySource)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.e.Handle("rec", "shaky", func(context.Context, engine.Task) (any, error) {
		rec.add("shaky")
		return nil, engine.NonRetryable("broken", "for good")
	})
	h.run()

	id := begin(h, "flaky", `{}`)
	checkStatus(t, h.wait(id), store.InstanceFailed)

	err := h.e.SkipStep(h.ctx, id, "first", []byte(`"manual"`))
	if !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("skip of a step that did not fail = %v, want ErrInvalid", err)
	}
	if err := h.e.SkipStep(h.ctx, id, "shaky", []byte(`"manual"`)); err != nil {
		t.Fatalf("skipping: %v", err)
	}
	publish(h, "go", "k", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceCompleted)

	want := []string{"first", "shaky", "last:manual"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if s, _ := h.step(id, "shaky"); s.Status != store.StepSkipped {
		t.Fatalf("shaky is %s, want skipped", s.Status)
	}
	if got := dataOf(t, inst.Data)["shaky"]; got != "manual" {
		t.Fatalf("data.shaky = %v, want manual", got)
	}
}

// TestRepairRefusedUnlessFailed refuses retry and skip of a running
// instance, and of a failed one whose failure names no step.
func TestRepairRefusedUnlessFailed(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: parked
version: 1
steps:
  - {id: hold, type: wait, event: never, key: "'k'"}
`)
	h.register(`
name: late
version: 1
deadline: 1ms
steps:
  - {id: hold, type: wait, event: never, key: "'k'"}
`)
	h.run()

	id := begin(h, "parked", `{}`)
	waitStepStatus(h, id, "hold", store.StepWaiting)
	if err := h.e.RetryInstance(h.ctx, id); !errors.Is(err, engine.ErrWrongStatus) {
		t.Fatalf("retry of a running instance = %v, want ErrWrongStatus", err)
	}
	if err := h.e.SkipStep(h.ctx, id, "hold", nil); !errors.Is(err, engine.ErrWrongStatus) {
		t.Fatalf("skip in a running instance = %v, want ErrWrongStatus", err)
	}

	late := begin(h, "late", `{}`)
	checkStatus(t, h.wait(late), store.InstanceFailed)
	if err := h.e.RetryInstance(h.ctx, late); !errors.Is(err, engine.ErrWrongStatus) {
		t.Fatalf("retry after a deadline = %v, want ErrWrongStatus", err)
	}
	checkStatus(t, instanceNow(h, late), store.InstanceFailed)
}

// TestRetryInsideForeach retries a step that failed in the second of
// three foreach iterations: the loop goes on from that iteration, the
// first is not run again, and the results of all three are collected.
func TestRetryInsideForeach(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: each-retry
version: 1
steps:
  - id: each
    type: foreach
    items: input.items
    result: steps.work.output
    output: results
    steps:
      - {id: work, type: task, service: rec, action: work, input: item,
         retry: {max_attempts: 1}}
`)
	var rec recorder
	var fixed atomic.Bool
	h.e.Handle("rec", "work", func(_ context.Context, task engine.Task) (any, error) {
		in := inputText(task.Input)
		rec.add(in)
		if in == "2" && !fixed.Load() {
			return nil, engine.NonRetryable("broken", "item 2")
		}
		return "done-" + in, nil
	})
	h.run()

	id := begin(h, "each-retry", `{"items": [1, 2, 3]}`)
	checkStatus(t, h.wait(id), store.InstanceFailed)
	fixed.Store(true)
	if err := h.e.RetryInstance(h.ctx, id); err != nil {
		t.Fatalf("retrying: %v", err)
	}
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceCompleted)

	if got := rec.list(); !slices.Equal(got, []string{"1", "2", "2", "3"}) {
		t.Fatalf("calls = %v, want 1, 2, 2, 3", got)
	}
	wantJSON(t, "data.results", dataOf(t, inst.Data)["results"], `["done-1","done-2","done-3"]`)
}
