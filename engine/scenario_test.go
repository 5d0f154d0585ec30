package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// TestScenarioBasicRun is seed scenario 1: steps run in order, each
// completion triggers the next, the state is persisted throughout and
// the final result can be queried, also from a reopened store.
func TestScenarioBasicRun(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: basic
version: 1
steps:
  - id: a
    type: task
    service: math
    action: add
    input: {value: "data.start", add: 1}
    output: a
  - id: b
    type: task
    service: math
    action: add
    input: {value: "data.a", add: 10}
    output: b
  - id: c
    type: task
    service: math
    action: add
    input: {value: "steps.b.output", add: 100}
    output: c
`)
	var rec recorder
	h.e.Handle("math", "add", func(ctx context.Context, task engine.Task) (any, error) {
		var in struct{ Value, Add int }
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, err
		}
		rec.add(task.StepID)
		return in.Value + in.Add, nil
	})
	h.run()

	id := h.start("basic", `{"start": 5}`)
	inst := h.wait(id)

	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status = %s (%s), want completed", inst.Status, inst.Error)
	}
	if got := rec.list(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("calls = %v, want [a b c]", got)
	}
	out := dataOf(t, inst.Output)
	if out["a"] != 6.0 || out["b"] != 16.0 || out["c"] != 116.0 {
		t.Fatalf("output = %v, want a=6 b=16 c=116", out)
	}

	var order []string
	for _, ev := range h.audit(id) {
		if ev.StepID != "" {
			order = append(order, ev.StepID+":"+ev.Type)
		}
	}
	want := []string{
		"a:step_dispatched", "a:step_started", "a:step_completed",
		"b:step_dispatched", "b:step_started", "b:step_completed",
		"c:step_dispatched", "c:step_started", "c:step_completed",
	}
	if !slices.Equal(order, want) {
		t.Fatalf("audit order =\n%v\nwant\n%v", order, want)
	}

	h.stop()
	h2 := newHarnessAt(t, h.path, fastOptions())
	again, err := h2.e.Instance(h2.ctx, id)
	if err != nil {
		t.Fatalf("reading instance after reopen: %v", err)
	}
	if again.Status != store.InstanceCompleted || string(again.Output) != string(inst.Output) {
		t.Fatalf("after reopen: %s %s, want completed %s", again.Status, again.Output, inst.Output)
	}
}

// TestScenarioParallelJoin is seed scenario 2: two branches overlap in
// time, the join waits for both, and each branch's partial result can be
// read while the other runs.
func TestScenarioParallelJoin(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: fanout
version: 1
steps:
  - id: split
    type: parallel
    branches:
      - steps:
          - {id: left, type: task, service: work, action: left, output: left}
      - steps:
          - {id: right, type: task, service: work, action: right, output: right}
  - id: join
    type: task
    service: work
    action: join
    input: {l: "data.left", r: "data.right"}
    output: joined
`)
	leftIn, rightIn := make(chan struct{}), make(chan struct{})
	releaseRight := make(chan struct{})
	var joinCalls atomic.Int32
	h.e.Handle("work", "left", func(ctx context.Context, _ engine.Task) (any, error) {
		close(leftIn)
		<-rightIn
		return "L", nil
	})
	h.e.Handle("work", "right", func(ctx context.Context, _ engine.Task) (any, error) {
		close(rightIn)
		<-leftIn
		<-releaseRight
		return "R", nil
	})
	h.e.Handle("work", "join", func(ctx context.Context, task engine.Task) (any, error) {
		joinCalls.Add(1)
		var in map[string]string
		_ = json.Unmarshal(task.Input, &in)
		return in["l"] + in["r"], nil
	})
	h.run()

	id := h.start("fanout", `{}`)

	h.waitFor("left's result while right runs", func() bool {
		inst, err := h.e.Instance(h.ctx, id)
		return err == nil && dataOf(t, inst.Data)["left"] == "L"
	})
	right, _ := h.step(id, "right")
	if right.Status != store.StepRunning {
		t.Fatalf("right is %s while left is done, want running", right.Status)
	}
	if _, ok := h.step(id, "join"); ok || joinCalls.Load() != 0 {
		t.Fatal("join started before both branches finished")
	}

	close(releaseRight)
	inst := h.wait(id)
	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status = %s (%s), want completed", inst.Status, inst.Error)
	}
	if got := dataOf(t, inst.Output)["joined"]; got != "LR" {
		t.Fatalf("joined = %v, want LR", got)
	}
	if joinCalls.Load() != 1 {
		t.Fatalf("join ran %d times, want 1", joinCalls.Load())
	}
}

// TestScenarioRetry is seed scenario 3: max_attempts 4 runs an
// always-failing step exactly four times, then the instance fails with
// the error in the step and in the audit log.
func TestScenarioRetry(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: flaky
version: 1
steps:
  - id: boom
    type: task
    service: svc
    action: fail
    retry: {max_attempts: 4, initial_interval: 10ms, backoff_coefficient: 2}
  - id: after
    type: task
    service: svc
    action: never
`)
	var calls atomic.Int32
	h.e.Handle("svc", "fail", func(ctx context.Context, task engine.Task) (any, error) {
		n := calls.Add(1)
		if task.Attempt != int(n) {
			return nil, fmt.Errorf("attempt %d on call %d", task.Attempt, n)
		}
		return nil, engine.Retryable("broken", fmt.Sprintf("failure %d", n))
	})
	h.e.Handle("svc", "never", func(ctx context.Context, _ engine.Task) (any, error) {
		return nil, errors.New("must not run")
	})
	h.run()

	id := h.start("flaky", `{}`)
	inst := h.wait(id)

	if inst.Status != store.InstanceFailed {
		t.Fatalf("status = %s, want failed", inst.Status)
	}
	if calls.Load() != 4 {
		t.Fatalf("handler ran %d times, want 4", calls.Load())
	}
	errInfo := dataOf(t, inst.Error)
	if errInfo["step_id"] != "boom" || errInfo["message"] != "failure 4" {
		t.Fatalf("instance error = %v, want step boom, failure 4", errInfo)
	}
	step, _ := h.step(id, "boom")
	if step.Status != store.StepFailed || step.Attempt != 4 {
		t.Fatalf("step = %s attempt %d, want failed attempt 4", step.Status, step.Attempt)
	}
	evs := h.audit(id)
	types := auditTypes(evs, "boom")
	if n := count(types, "step_failed"); n != 4 {
		t.Fatalf("audit has %d step_failed, want 4: %v", n, types)
	}
	if n := count(types, "step_retry_scheduled"); n != 3 {
		t.Fatalf("audit has %d retries, want 3: %v", n, types)
	}
	if last := evs[len(evs)-1]; last.Type != "instance_failed" {
		t.Fatalf("last audit row = %s, want instance_failed", last.Type)
	}
	if _, ok := h.step(id, "after"); ok {
		t.Fatal("the step after the failed one started")
	}
}

// TestScenarioCancel is seed scenario 4: the running step finishes and
// is recorded, nothing new starts, cleanup runs, the status is cancelled.
func TestScenarioCancel(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: cancellable
version: 1
steps:
  - {id: slow, type: task, service: svc, action: slow, output: slow}
  - {id: next, type: task, service: svc, action: next}
on_cancel:
  - {id: cleanup, type: task, service: svc, action: cleanup, output: cleaned}
`)
	started := make(chan struct{})
	var rec recorder
	h.e.Handle("svc", "slow", func(ctx context.Context, _ engine.Task) (any, error) {
		close(started)
		<-ctx.Done()
		rec.add("slow")
		return "finished anyway", nil
	})
	h.e.Handle("svc", "next", func(ctx context.Context, _ engine.Task) (any, error) {
		rec.add("next")
		return nil, nil
	})
	h.e.Handle("svc", "cleanup", func(ctx context.Context, _ engine.Task) (any, error) {
		rec.add("cleanup")
		return true, nil
	})
	h.run()

	id := h.start("cancellable", `{}`)
	<-started
	if err := h.e.Cancel(h.ctx, id, "user asked"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	inst := h.wait(id)

	if inst.Status != store.InstanceCancelled {
		t.Fatalf("status = %s, want cancelled", inst.Status)
	}
	if got := rec.list(); !slices.Equal(got, []string{"slow", "cleanup"}) {
		t.Fatalf("calls = %v, want [slow cleanup]", got)
	}
	slow, _ := h.step(id, "slow")
	if slow.Status != store.StepCompleted || string(slow.Output) != `"finished anyway"` {
		t.Fatalf("slow = %s %s, want completed with its output", slow.Status, slow.Output)
	}
	if _, ok := h.step(id, "next"); ok {
		t.Fatal("a step started after the cancel")
	}
	if dataOf(t, inst.Data)["cleaned"] != true {
		t.Fatalf("cleanup output missing from data: %s", inst.Data)
	}
	if err := h.e.Cancel(h.ctx, id, ""); !errors.Is(err, engine.ErrFinished) {
		t.Fatalf("cancel of a cancelled instance: %v, want ErrFinished", err)
	}
	_ = time.Now
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}

	return n
}
