package engine_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// TestStepHooksWrapInOrder runs two step hooks around every handler, the
// first registered outermost, and fails the attempt when a hook returns
// an error.
func TestStepHooksWrapInOrder(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: hooked
version: 1
steps:
  - {id: a, type: task, service: rec, action: note, input: "'a'"}
  - {id: b, type: task, service: rec, action: note, input: "'b'", retry: {max_attempts: 1}}
`)
	var rec recorder
	for _, name := range []string{"outer", "inner"} {
		h.e.UseStep(func(next engine.HandlerFunc) engine.HandlerFunc {
			return func(ctx context.Context, task engine.Task) (any, error) {
				rec.add(name + ":before:" + task.StepID)
				if name == "inner" && task.StepID == "b" {
					return nil, engine.NonRetryable("vetoed", "the inner hook refused b")
				}
				out, err := next(ctx, task)
				rec.add(name + ":after:" + task.StepID)
				return out, err
			}
		})
	}
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "hooked", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)

	want := []string{"outer:before:a", "inner:before:a", "a", "inner:after:a", "outer:after:a",
		"outer:before:b", "inner:before:b", "outer:after:b"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls =\n%v\nwant\n%v", got, want)
	}
	if e := dataOf(t, inst.Error); e["code"] != "vetoed" || e["step_id"] != "b" {
		t.Fatalf("error = %v, want vetoed at b", e)
	}
}

// TestInstanceHooks runs the instance hooks in order: a Starting hook
// that refuses stores nothing, Ended hooks see each final instance once,
// and an Ended error is counted without changing the instance.
func TestInstanceHooks(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: plain
version: 1
steps:
  - {id: a, type: task, service: rec, action: note, input: input.say}
`)
	var rec recorder
	refuse := errors.New("not on sundays")
	h.e.UseInstance(engine.InstanceHook{
		Starting: func(_ context.Context, inst store.Instance) error {
			rec.add("first-starting:" + string(inst.Input))
			if string(inst.Input) == `{"say":"no"}` {
				return refuse
			}
			return nil
		},
		Ended: func(_ context.Context, inst store.Instance) error {
			rec.add("first-ended:" + string(inst.Status))
			return nil
		},
	})
	h.e.UseInstance(engine.InstanceHook{
		Ended: func(_ context.Context, inst store.Instance) error {
			rec.add("second-ended:" + string(inst.Status))
			return errors.New("audit sink down")
		},
	})
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	_, _, err := h.e.StartInstance(h.ctx, engine.StartParams{
		Definition: "plain", Input: []byte(`{"say":"no"}`),
	})
	if !errors.Is(err, engine.ErrHook) || !errors.Is(err, refuse) {
		t.Fatalf("refused start = %v, want ErrHook wrapping the hook's error", err)
	}
	page, err := h.e.ListInstances(h.ctx, store.InstanceFilter{})
	if err != nil || len(page.Instances) != 0 {
		t.Fatalf("instances after a refused start = %d (%v), want 0", len(page.Instances), err)
	}

	id := begin(h, "plain", `{"say":"hi"}`)
	wantCompleted(t, h.wait(id))
	h.waitFor("the ended hooks", func() bool { return h.e.Counters().HookErrors.Load() == 1 })

	want := []string{`first-starting:{"say":"no"}`, `first-starting:{"say":"hi"}`, "hi",
		"first-ended:completed", "second-ended:completed"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls =\n%v\nwant\n%v", got, want)
	}
}
