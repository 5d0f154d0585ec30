package engine_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// sagaWorld is the handlers saga tests share: "do" records do:<input>
// and fails for the inputs in fail (each only for its first failures
// times when count is set), "undo" records undo:<input>.
type sagaWorld struct {
	rec   recorder
	mu    sync.Mutex
	fails map[string]int
}

func newSagaWorld(h *harness, fails map[string]int) *sagaWorld {
	w := &sagaWorld{fails: fails}
	h.e.Handle("trip", "do", func(_ context.Context, task engine.Task) (any, error) {
		in := inputText(task.Input)
		w.rec.add("do:" + in)
		w.mu.Lock()
		defer w.mu.Unlock()
		if n := w.fails[in]; n != 0 {
			w.fails[in] = n - 1
			return nil, engine.NonRetryable("refused", in+" refused")
		}
		return "ok-" + in, nil
	})
	h.e.Handle("trip", "undo", func(_ context.Context, task engine.Task) (any, error) {
		w.rec.add("undo:" + inputText(task.Input))
		return nil, nil
	})
	h.e.Handle("trip", "note", noteHandler(&w.rec))

	return w
}

// sagaStep is a task doing name with a one-step compensation undoing it.
func sagaStep(name string) string {
	return `
      - {id: ` + name + `, type: task, service: trip, action: do, input: "'` + name + `'",
         compensate: [{id: un` + name + `, type: task, service: trip, action: undo,
                       input: "'` + name + `'"}]}`
}

// outdent moves a sagaStep to the top level of a definition.
func outdent(step string) string {
	return strings.ReplaceAll(step, "\n      ", "\n  ")
}

func wantCalls(t *testing.T, w *sagaWorld, want ...string) {
	t.Helper()
	if got := w.rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls =\n%v\nwant\n%v", got, want)
	}
}

// TestSagaUnwindsInReverse fails the fourth step of a saga of four: the
// compensations of the fourth, third, second and first run in that
// order, the saga is marked compensated and the instance completes
// after it.
func TestSagaUnwindsInReverse(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga4
version: 1
steps:
  - id: trip
    type: saga
    steps:` + sagaStep("a") + sagaStep("b") + sagaStep("c") + sagaStep("d") + `
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"d": 1})
	h.run()

	id := begin(h, "saga4", `{}`)
	wantCompleted(t, h.wait(id))

	wantCalls(t, w, "do:a", "do:b", "do:c", "do:d", "undo:d", "undo:c", "undo:b", "undo:a", "after")
	if s, _ := h.step(id, "trip"); s.Status != store.StepCompensated {
		t.Fatalf("saga is %s, want compensated", s.Status)
	}
	evs := h.audit(id)
	if got := len(seqsOf(evs, "trip", "saga_unwinding")); got != 1 {
		t.Fatalf("saga_unwinding rows = %d, want 1", got)
	}
	for _, sid := range []string{"a", "b", "c", "d"} {
		if got := len(seqsOf(evs, sid, "step_compensated")); got != 1 {
			t.Fatalf("%s: step_compensated rows = %d, want 1", sid, got)
		}
	}
	checkGapFree(t, evs)
}

// TestSagaSequenceCompensation gives the middle step a compensation of
// two steps: it runs whole before the next compensation starts.
func TestSagaSequenceCompensation(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga-seq
version: 1
steps:
  - id: trip
    type: saga
    steps:` + sagaStep("a") + `
      - id: b
        type: task
        service: trip
        action: do
        input: "'b'"
        compensate:
          - {id: unb1, type: task, service: trip, action: undo, input: "'b1'"}
          - {id: unb2, type: task, service: trip, action: undo, input: "'b2:' + steps.b.output"}` +
		sagaStep("c") + `
`)
	w := newSagaWorld(h, map[string]int{"c": 1})
	h.run()

	id := begin(h, "saga-seq", `{}`)
	wantCompleted(t, h.wait(id))

	wantCalls(t, w, "do:a", "do:b", "do:c", "undo:c", "undo:b1", "undo:b2:ok-b", "undo:a")
}

// TestSagaRetry runs a saga again after it unwound: the second step
// fails in the first two passes only, so the compensations run once per
// failed pass, the third pass completes, and the instance completes.
func TestSagaRetry(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga-retry
version: 1
steps:
  - id: trip
    type: saga
    then: retry
    retry: {max_attempts: 3, initial_interval: 5ms}
    steps:` + sagaStep("a") + sagaStep("b") + `
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"b": 2})
	h.run()

	id := begin(h, "saga-retry", `{}`)
	wantCompleted(t, h.wait(id))

	pass := []string{"do:a", "do:b", "undo:b", "undo:a"}
	want := append(append(slices.Clone(pass), pass...), "do:a", "do:b", "after")
	wantCalls(t, w, want...)
	if s, _ := h.step(id, "trip"); s.Status != store.StepCompleted || s.Attempt != 3 {
		t.Fatalf("saga = %s at pass %d, want completed at pass 3", s.Status, s.Attempt)
	}
	if got := len(seqsOf(h.audit(id), "trip", "saga_retry_scheduled")); got != 2 {
		t.Fatalf("saga_retry_scheduled rows = %d, want 2", got)
	}
}

// TestSagaRetrySpent fails the instance when every pass failed.
func TestSagaRetrySpent(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga-spent
version: 1
steps:
  - id: trip
    type: saga
    then: retry
    retry: {max_attempts: 2, initial_interval: 1ms}
    steps:` + sagaStep("a") + `
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"a": 5})
	h.run()

	id := begin(h, "saga-spent", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if inst.Reason != "saga_failed: trip" {
		t.Fatalf("reason = %q, want saga_failed: trip", inst.Reason)
	}
	wantCalls(t, w, "do:a", "undo:a", "do:a", "undo:a")
}

// TestSagaEnd terminates the instance once the saga unwound.
func TestSagaEnd(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga-end
version: 1
steps:
  - id: trip
    type: saga
    then: end
    steps:` + sagaStep("a") + sagaStep("b") + `
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"b": 1})
	h.run()

	id := begin(h, "saga-end", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceTerminated)
	if inst.Reason != "saga_compensated: trip" {
		t.Fatalf("reason = %q, want saga_compensated: trip", inst.Reason)
	}
	wantCalls(t, w, "do:a", "do:b", "undo:b", "undo:a")
}

// TestSagaNestedBlocks unwinds steps that completed inside an if, a
// foreach (each compensation seeing its own item) and a nested saga
// that completed, in reverse completion order.
func TestSagaNestedBlocks(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: saga-nested
version: 1
steps:
  - id: trip
    type: saga
    steps:` + sagaStep("a") + `
      - id: maybe
        type: if
        condition: "true"
        steps:` + strings.ReplaceAll(sagaStep("b"), "\n      ", "\n          ") + `
      - id: each
        type: foreach
        items: "['x', 'y']"
        steps:
          - {id: item, type: task, service: trip, action: do, input: "'i-' + item",
             compensate: [{id: unitem, type: task, service: trip, action: undo,
                           input: "'i-' + item + '-' + string(index)"}]}
      - id: inner
        type: saga
        steps:` + strings.ReplaceAll(sagaStep("c"), "\n      ", "\n          ") + `
      - {id: boom, type: task, service: trip, action: do, input: "'boom'"}
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"boom": 1})
	h.run()

	id := begin(h, "saga-nested", `{}`)
	wantCompleted(t, h.wait(id))

	wantCalls(t, w, "do:a", "do:b", "do:i-x", "do:i-y", "do:c", "do:boom",
		"undo:c", "undo:i-y-1", "undo:i-x-0", "undo:b", "undo:a", "after")
}

// TestCompensateOutsideSaga unwinds the whole instance for a step with
// on_failure compensate, then fails it.
func TestCompensateOutsideSaga(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: comp-all
version: 1
steps:` + outdent(sagaStep("a")) + outdent(sagaStep("b")) + `
  - {id: c, type: task, service: trip, action: do, input: "'c'", on_failure: compensate}
  - {id: after, type: task, service: trip, action: note, input: "'after'"}
`)
	w := newSagaWorld(h, map[string]int{"c": 1})
	h.run()

	id := begin(h, "comp-all", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if inst.Reason != "compensated" || !strings.Contains(string(inst.Error), `"step_id":"c"`) {
		t.Fatalf("reason %q error %s, want compensated with step c", inst.Reason, inst.Error)
	}
	wantCalls(t, w, "do:a", "do:b", "do:c", "undo:b", "undo:a")
}

// TestCompensationFails fails the instance with compensation_failed when
// a compensation spends its attempts.
func TestCompensationFails(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: comp-fail
version: 1
steps:
  - id: trip
    type: saga
    steps:
      - {id: a, type: task, service: trip, action: do, input: "'a'",
         compensate: [{id: una, type: task, service: trip, action: do, input: "'una'",
                       retry: {max_attempts: 1}}]}
      - {id: b, type: task, service: trip, action: do, input: "'b'"}
`)
	w := newSagaWorld(h, map[string]int{"b": 1, "una": 1})
	h.run()

	id := begin(h, "comp-fail", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if inst.Reason != "compensation_failed" {
		t.Fatalf("reason = %q, want compensation_failed", inst.Reason)
	}
	wantCalls(t, w, "do:a", "do:b", "do:una")
}

// TestCompensateOnCancel runs the compensations of the completed steps
// in reverse order on cancel, then the on_cancel steps.
func TestCompensateOnCancel(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: comp-cancel
version: 1
compensate_on_cancel: true
steps:` + outdent(sagaStep("a")) + `
  - id: trip
    type: saga
    steps:` + sagaStep("b") + `
      - {id: hold, type: wait, event: never, key: "'k'"}
on_cancel:
  - {id: tidy, type: task, service: trip, action: note, input: "'tidy'"}
`)
	w := newSagaWorld(h, nil)
	h.run()

	id := begin(h, "comp-cancel", `{}`)
	waitStepStatus(h, id, "hold", store.StepWaiting)
	if err := h.e.Cancel(h.ctx, id, "changed plans"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	checkStatus(t, h.wait(id), store.InstanceCancelled)

	wantCalls(t, w, "do:a", "do:b", "undo:b", "undo:a", "tidy")
}

// TestCompensateOnCancelFinishesAnUnwinding cancels an instance while a
// saga unwinds, its compensation of b in flight: b's compensation is
// drained, and the compensation of a, still queued in the saga, runs
// with the cancel's compensations before the cleanup.
func TestCompensateOnCancelFinishesAnUnwinding(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: cancel-unwind
version: 1
compensate_on_cancel: true
steps:
  - id: trip
    type: saga
    steps:` + sagaStep("a") + `
      - {id: b, type: task, service: trip, action: do, input: "'b'",
         compensate: [{id: unb, type: task, service: trip, action: slow-undo, input: "'b'"}]}
      - {id: c, type: task, service: trip, action: do, input: "'c'"}
on_cancel:
  - {id: tidy, type: task, service: trip, action: note, input: "'tidy'"}
`)
	w := newSagaWorld(h, map[string]int{"c": 1})
	release := make(chan struct{})
	h.e.Handle("trip", "slow-undo", func(_ context.Context, task engine.Task) (any, error) {
		w.rec.add("undo:" + inputText(task.Input))
		<-release
		return nil, nil
	})
	h.run()

	id := begin(h, "cancel-unwind", `{}`)
	h.waitFor("b's compensation in flight", func() bool { return w.rec.count("undo:b") == 1 })
	if err := h.e.Cancel(h.ctx, id, "changed plans"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	close(release)
	checkStatus(t, h.wait(id), store.InstanceCancelled)

	wantCalls(t, w, "do:a", "do:b", "do:c", "undo:b", "undo:a", "tidy")
}
