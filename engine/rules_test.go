package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// TestRuleNumbersExact keeps a 19-digit decimal and integers above 2^53
// byte-exact through a task, the store, a reopen and a second task.
func TestRuleNumbersExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	h := newHarnessAt(t, path, fastOptions())
	h.register(`
name: numbers
version: 1
steps:
  - {id: echo1, type: task, service: num, action: echo, input: input, output: first}
  - {id: hold, type: wait, event: go, key: "'k'"}
  - {id: echo2, type: task, service: num, action: echo, output: second,
     input: {dec: data.first.dec, big: data.first.big, huge: data.first.huge}}
`)
	var rec recorder
	echo := func(_ context.Context, task engine.Task) (any, error) {
		rec.add(string(task.Input))
		return json.RawMessage(task.Input), nil
	}
	h.e.Handle("num", "echo", echo)
	h.run()

	const input = `{"dec":1234567890.123456789,"big":9007199254740993,` +
		`"huge":123456789012345678901234567890}`
	id := h.start("numbers", input)
	waitStepStatus(h, id, "hold", store.StepWaiting)
	h.stop()

	h2 := newHarnessAt(t, path, fastOptions())
	h2.e.Handle("num", "echo", echo)
	h2.run()
	publish(h2, "go", "k", `{}`)
	inst := h2.wait(id)
	wantCompleted(t, inst)
	assertAuditSeq(t, h2, id)

	const sorted = `{"big":9007199254740993,"dec":1234567890.123456789,` +
		`"huge":123456789012345678901234567890}`
	if got := rec.list(); !slices.Equal(got, []string{sorted, sorted}) {
		t.Fatalf("task inputs = %v, want %s twice", got, sorted)
	}
	if string(inst.Input) != input {
		t.Fatalf("input = %s, want %s", inst.Input, input)
	}
	wantData := `{"big":9007199254740993,"dec":1234567890.123456789,"first":` + sorted +
		`,"huge":123456789012345678901234567890,"second":` + sorted + `}`
	if string(inst.Data) != wantData || string(inst.Output) != wantData {
		t.Fatalf("data = %s\noutput = %s\nwant both %s", inst.Data, inst.Output, wantData)
	}
}

// TestRuleInputPerAttempt evaluates a task's input again for each
// attempt: the retry sees data written after the first attempt began.
func TestRuleInputPerAttempt(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: reeval
version: 1
steps:
  - id: both
    type: parallel
    branches:
      - steps:
          - {id: flaky, type: task, service: re, action: flaky,
             input: {marker: "data.marker ?? 'unset'"},
             retry: {max_attempts: 3, initial_interval: 1ms}}
      - steps:
          - {id: mark, type: task, service: re, action: mark, output: marker}
`)
	var rec recorder
	h.e.Handle("re", "mark", func(context.Context, engine.Task) (any, error) {
		return "set", nil
	})
	h.e.Handle("re", "flaky", func(ctx context.Context, task engine.Task) (any, error) {
		rec.add(fmt.Sprintf("%d:%s", task.Attempt, task.Input))
		if task.Attempt > 1 {
			return "ok", nil
		}
		for {
			inst, err := h.e.Instance(ctx, task.InstanceID)
			if err != nil {
				return nil, err
			}
			if strings.Contains(string(inst.Data), `"marker"`) {
				return nil, engine.Retryable("again", "try once more")
			}
			if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
				return nil, err
			}
		}
	})
	h.run()

	id := begin(h, "reeval", `{}`)
	wantCompleted(t, h.wait(id))

	want := []string{`1:{"marker":"unset"}`, `2:{"marker":"set"}`}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("attempt inputs = %v, want %v", got, want)
	}
	if s, _ := h.step(id, "flaky"); string(s.Input) != `{"marker":"set"}` || s.Attempt != 2 {
		t.Fatalf("stored step = attempt %d input %s, want attempt 2 input {marker: set}",
			s.Attempt, s.Input)
	}
}

// TestRuleRetryPolicy covers the knobs that decide whether a failure is
// retried and what happens once the attempts are spent.
func TestRuleRetryPolicy(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name   string
		policy string
		err    error
		calls  int32
		status store.InstanceStatus
		code   string
	}{{
		name:   "non-retryable-code",
		policy: "retry: {max_attempts: 5, initial_interval: 1ms, non_retryable: [bad_input]}",
		err:    engine.Retryable("bad_input", "no"),
		calls:  1, status: store.InstanceFailed, code: "bad_input",
	}, {
		name:   "other-code",
		policy: "retry: {max_attempts: 3, initial_interval: 1ms, non_retryable: [bad_input]}",
		err:    engine.Retryable("flaky", "no"),
		calls:  3, status: store.InstanceFailed, code: "flaky",
	}, {
		name:   "non-retryable-error",
		policy: "retry: {max_attempts: 5, initial_interval: 1ms}",
		err:    engine.NonRetryable("fatal", "no"),
		calls:  1, status: store.InstanceFailed, code: "fatal",
	}, {
		name:   "plain-error",
		policy: "retry: {max_attempts: 2, initial_interval: 1ms}",
		err:    errors.New("boom"),
		calls:  2, status: store.InstanceFailed, code: "error",
	}, {
		name:   "terminate",
		policy: "retry: {max_attempts: 2, initial_interval: 1ms}, on_failure: terminate",
		err:    engine.Retryable("flaky", "no"),
		calls:  2, status: store.InstanceTerminated, code: "flaky",
	}}
	calls := map[string]*atomic.Int32{}
	var afterCalls atomic.Int32
	for _, tt := range tests {
		h.register(fmt.Sprintf(`
name: %s
version: 1
steps:
  - {id: s, type: task, service: retry, action: %s, %s}
  - {id: after, type: task, service: retry, action: after}
`, tt.name, tt.name, tt.policy))
		n := &atomic.Int32{}
		calls[tt.name] = n
		h.e.Handle("retry", tt.name, func(context.Context, engine.Task) (any, error) {
			n.Add(1)
			return nil, tt.err
		})
	}
	h.e.Handle("retry", "after", func(context.Context, engine.Task) (any, error) {
		afterCalls.Add(1)
		return nil, nil
	})
	h.run()

	for _, tt := range tests {
		id := begin(h, tt.name, `{}`)
		inst := h.wait(id)

		if inst.Status != tt.status || inst.Reason != "step_failed: s" {
			t.Fatalf("%s: instance = %s (%s), want %s (step_failed: s)",
				tt.name, inst.Status, inst.Reason, tt.status)
		}
		if got := calls[tt.name].Load(); got != tt.calls {
			t.Fatalf("%s: handler ran %d times, want %d", tt.name, got, tt.calls)
		}
		if e := dataOf(t, inst.Error); e["code"] != tt.code || e["step_id"] != "s" {
			t.Fatalf("%s: error = %v, want code %s at step s", tt.name, e, tt.code)
		}
		types := auditTypes(h.audit(id), "s")
		if n := count(types, "step_failed"); n != int(tt.calls) {
			t.Fatalf("%s: %d step_failed rows, want %d: %v", tt.name, n, tt.calls, types)
		}
	}
	if n := afterCalls.Load(); n != 0 {
		t.Fatalf("the step after a failed one ran %d times, want 0", n)
	}
}

// TestRuleRetryMaxInterval caps the growing backoff at max_interval.
func TestRuleRetryMaxInterval(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: capped
version: 1
steps:
  - {id: s, type: task, service: retry, action: fail,
     retry: {max_attempts: 4, initial_interval: 10ms, backoff_coefficient: 10,
             max_interval: 30ms}}
`)
	var mu sync.Mutex
	var at []time.Time
	h.e.Handle("retry", "fail", func(context.Context, engine.Task) (any, error) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return nil, engine.Retryable("flaky", "no")
	})
	h.run()

	id := begin(h, "capped", `{}`)
	if inst := h.wait(id); inst.Status != store.InstanceFailed {
		t.Fatalf("status = %s, want failed", inst.Status)
	}

	var delays []string
	for _, ev := range h.audit(id) {
		if ev.Type == "step_retry_scheduled" {
			delays = append(delays, string(ev.Data))
		}
	}
	want := []string{`{"delay_ms":10}`, `{"delay_ms":30}`, `{"delay_ms":30}`}
	if !slices.Equal(delays, want) {
		t.Fatalf("retry delays = %v, want %v", delays, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, d := range []time.Duration{10, 30, 30} {
		gap := at[i+1].Sub(at[i])
		if gap < d*time.Millisecond-2*time.Millisecond {
			t.Fatalf("gap before attempt %d = %v, want at least %dms", i+2, gap, d)
		}
	}
}

// TestRuleRetrySuspend pauses the instance when the attempts are spent;
// resume runs the step again with a fresh budget, its attempt numbers
// going on from where they stopped.
func TestRuleRetrySuspend(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: suspend
version: 1
steps:
  - {id: s, type: task, service: sus, action: work, output: result,
     retry: {max_attempts: 2, initial_interval: 1ms}, on_failure: suspend}
  - {id: after, type: task, service: sus, action: after}
`)
	var mu sync.Mutex
	var attempts []int
	var afterCalls atomic.Int32
	h.e.Handle("sus", "work", func(_ context.Context, task engine.Task) (any, error) {
		mu.Lock()
		attempts = append(attempts, task.Attempt)
		mu.Unlock()
		if task.Attempt < 4 {
			return nil, engine.Retryable("flaky", "no")
		}
		return "fixed", nil
	})
	h.e.Handle("sus", "after", func(context.Context, engine.Task) (any, error) {
		afterCalls.Add(1)
		return nil, nil
	})
	h.run()

	id := begin(h, "suspend", `{}`)
	inst := waitInstanceStatus(h, id, store.InstancePaused)

	if inst.Reason != "step_failed: s" {
		t.Fatalf("paused with reason %q, want %q", inst.Reason, "step_failed: s")
	}
	mu.Lock()
	got := slices.Clone(attempts)
	mu.Unlock()
	if !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("attempts before resume = %v, want [1 2]", got)
	}
	if s, _ := h.step(id, "s"); s.Status != store.StepFailed {
		t.Fatalf("suspended step is %s, want failed", s.Status)
	}
	if afterCalls.Load() != 0 {
		t.Fatal("the step after the suspended one ran")
	}

	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	inst = h.wait(id)
	wantCompleted(t, inst)

	mu.Lock()
	got = slices.Clone(attempts)
	mu.Unlock()
	if !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Fatalf("attempts = %v, want [1 2 3 4]", got)
	}
	if dataOf(t, inst.Data)["result"] != "fixed" || afterCalls.Load() != 1 {
		t.Fatalf("data = %s, after ran %d times; want result fixed and after once",
			inst.Data, afterCalls.Load())
	}
}

// TestRuleStartToClose times out an attempt whose handler blocks: the
// timeout counts as an attempt, the step is retried, and the timed out
// attempt's report comes too late.
func TestRuleStartToClose(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: slow
version: 1
steps:
  - {id: s, type: task, service: slow, action: job, output: result,
     timeouts: {start_to_close: 80ms}, retry: {max_attempts: 2, initial_interval: 1ms}}
`)
	release, proceed := make(chan struct{}), make(chan struct{})
	defer close(release)
	first := make(chan engine.Task, 1)
	h.e.Handle("slow", "job", func(ctx context.Context, task engine.Task) (any, error) {
		if task.Attempt == 1 {
			first <- task
			<-release
			return "late", nil
		}
		select {
		case <-proceed:
		case <-ctx.Done():
		}
		return "ok", nil
	})
	h.run()

	id := begin(h, "slow", `{}`)
	task := <-first
	h.waitFor("attempt 2 to run", func() bool {
		s, _ := h.step(id, "s")
		return s.Attempt == 2 && s.Status == store.StepRunning
	})

	res, err := h.e.Report(h.ctx, engine.ReportParams{
		InstanceID: id, PointerID: task.PointerID, Attempt: 1, Output: json.RawMessage(`"late"`),
	})
	if !errors.Is(err, engine.ErrLate) || res.Outcome != store.ReportLate {
		t.Fatalf("report of attempt 1 = %v, %v; want ErrLate", res.Outcome, err)
	}
	close(proceed)
	inst := h.wait(id)
	wantCompleted(t, inst)

	if got := dataOf(t, inst.Data)["result"]; got != "ok" {
		t.Fatalf("data.result = %v, want ok", got)
	}
	var timedOut []int
	for _, ev := range h.audit(id) {
		if ev.Type == "step_timed_out" {
			timedOut = append(timedOut, ev.Attempt)
		}
	}
	if !slices.Equal(timedOut, []int{1}) {
		t.Fatalf("timed out attempts = %v, want [1]", timedOut)
	}
	if n := count(auditTypes(h.audit(id), "s"), "report_late"); n != 1 {
		t.Fatalf("report_late rows = %d, want 1", n)
	}
}

// TestRuleStartToCloseSpendsAttempts fails the instance once every
// attempt has timed out, each timeout counting as an attempt, even when
// the handler gives up at its deadline like a good handler does.
func TestRuleStartToCloseSpendsAttempts(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: stuck
version: 1
steps:
  - {id: s, type: task, service: slow, action: stuck,
     timeouts: {start_to_close: 40ms}, retry: {max_attempts: 2, initial_interval: 1ms}}
`)
	var calls atomic.Int32
	h.e.Handle("slow", "stuck", func(ctx context.Context, _ engine.Task) (any, error) {
		calls.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.run()

	id := begin(h, "stuck", `{}`)
	inst := h.wait(id)

	if inst.Status != store.InstanceFailed {
		t.Fatalf("status = %s, want failed", inst.Status)
	}
	if e := dataOf(t, inst.Error); e["code"] != "start_to_close_timeout" || e["attempt"] != 2.0 {
		t.Fatalf("error = %v, want start_to_close_timeout at attempt 2", e)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	if n := count(auditTypes(h.audit(id), "s"), "step_timed_out"); n != 2 {
		t.Fatalf("step_timed_out rows = %d, want 2", n)
	}
}

// TestRuleHeartbeat keeps an attempt alive while its handler heartbeats,
// times it out when the heartbeats stop, and never lets heartbeats carry
// it past start_to_close.
func TestRuleHeartbeat(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name     string
		timeouts string
		status   store.InstanceStatus
		code     string
		min      time.Duration
	}{
		{"steady", "{heartbeat: 400ms, start_to_close: 20s}", store.InstanceCompleted, "",
			time.Second},
		{"silent", "{heartbeat: 400ms, start_to_close: 20s}", store.InstanceFailed,
			"heartbeat_timeout", 400 * time.Millisecond},
		{"capped", "{heartbeat: 400ms, start_to_close: 1s}", store.InstanceFailed,
			"start_to_close_timeout", time.Second},
	}
	for _, tt := range tests {
		h.register(fmt.Sprintf(`
name: hb-%s
version: 1
steps:
  - {id: s, type: task, service: hb, action: %s, timeouts: %s, retry: {max_attempts: 1}}
`, tt.name, tt.name, tt.timeouts))
	}
	h.e.Handle("hb", "steady", func(ctx context.Context, _ engine.Task) (any, error) {
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) {
			if err := engine.Heartbeat(ctx); err != nil {
				return nil, err
			}
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return nil, err
			}
		}
		return "done", nil
	})
	h.e.Handle("hb", "silent", func(ctx context.Context, _ engine.Task) (any, error) {
		if err := engine.Heartbeat(ctx); err != nil {
			return nil, err
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.e.Handle("hb", "capped", func(ctx context.Context, _ engine.Task) (any, error) {
		for {
			if err := engine.Heartbeat(ctx); err != nil {
				return nil, err
			}
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return nil, err
			}
		}
	})
	h.run()

	for _, tt := range tests {
		began := time.Now()
		id := begin(h, "hb-"+tt.name, `{}`)
		inst := h.wait(id)
		took := time.Since(began)

		if inst.Status != tt.status {
			t.Fatalf("%s: status = %s (%s), want %s", tt.name, inst.Status, inst.Error, tt.status)
		}
		if tt.code != "" {
			if e := dataOf(t, inst.Error); e["code"] != tt.code {
				t.Fatalf("%s: error = %v, want code %s", tt.name, e, tt.code)
			}
		}
		if took < tt.min {
			t.Fatalf("%s: took %v, want at least %v", tt.name, took, tt.min)
		}
	}
}

// TestRuleScheduleToStart times out a task that no worker takes.
func TestRuleScheduleToStart(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: orphan
version: 1
steps:
  - {id: s, type: task, service: nobody, action: work,
     timeouts: {schedule_to_start: 40ms}, retry: {max_attempts: 2, initial_interval: 1ms}}
`)
	h.run()

	id := begin(h, "orphan", `{}`)
	inst := h.wait(id)

	if inst.Status != store.InstanceFailed {
		t.Fatalf("status = %s, want failed", inst.Status)
	}
	if e := dataOf(t, inst.Error); e["code"] != "schedule_to_start_timeout" {
		t.Fatalf("error = %v, want code schedule_to_start_timeout", e)
	}
	if n := count(auditTypes(h.audit(id), "s"), "step_timed_out"); n != 2 {
		t.Fatalf("step_timed_out rows = %d, want 2", n)
	}
	tasks, err := h.st.TaskList(h.ctx, id)
	if err != nil || len(tasks) != 0 {
		t.Fatalf("tasks left = %v (%v), want none", tasks, err)
	}
}

// TestRuleDeadline fails an instance that passes its deadline, running
// or paused, and leaves no timer behind.
func TestRuleDeadline(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: deadline
version: 1
deadline: 100ms
steps:
  - {id: nap, type: delay, duration: 10s}
`)
	h.run()

	for _, pause := range []bool{false, true} {
		id := begin(h, "deadline", `{}`)
		if pause {
			waitStepStatus(h, id, "nap", store.StepSleeping)
			if err := h.e.Pause(h.ctx, id, "hold on"); err != nil {
				t.Fatalf("pause: %v", err)
			}
		}
		inst := h.wait(id)

		if inst.Status != store.InstanceFailed || inst.Reason != "deadline_exceeded" {
			t.Fatalf("paused=%t: instance = %s (%s), want failed (deadline_exceeded)",
				pause, inst.Status, inst.Reason)
		}
		timers, err := h.st.TimerList(h.ctx, id)
		if err != nil || len(timers) != 0 {
			t.Fatalf("paused=%t: timers left = %v (%v), want none", pause, timers, err)
		}
	}
}

// TestRulePauseRunningStep pauses an instance while a step runs: the
// step finishes and is recorded, the next one waits for resume.
func TestRulePauseRunningStep(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: pausable
version: 1
steps:
  - {id: a, type: task, service: p, action: a, output: a}
  - {id: b, type: task, service: p, action: b}
`)
	started, release := make(chan struct{}), make(chan struct{})
	var bCalls atomic.Int32
	h.e.Handle("p", "a", func(ctx context.Context, _ engine.Task) (any, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "done", nil
	})
	h.e.Handle("p", "b", func(context.Context, engine.Task) (any, error) {
		bCalls.Add(1)
		return nil, nil
	})
	h.run()

	id := begin(h, "pausable", `{}`)
	<-started
	if err := h.e.Pause(h.ctx, id, "hold on"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	close(release)
	waitStepStatus(h, id, "a", store.StepCompleted)
	time.Sleep(100 * time.Millisecond)

	inst, err := h.e.Instance(h.ctx, id)
	if err != nil || inst.Status != store.InstancePaused || inst.Reason != "hold on" {
		t.Fatalf("instance = %s (%s), %v; want paused (hold on)", inst.Status, inst.Reason, err)
	}
	if dataOf(t, inst.Data)["a"] != "done" {
		t.Fatalf("data = %s, want a's output recorded during the pause", inst.Data)
	}
	if b, ok := h.step(id, "b"); (ok && b.Status != store.StepPending) || bCalls.Load() != 0 {
		t.Fatalf("b is %s and ran %d times during the pause, want pending or absent and 0",
			b.Status, bCalls.Load())
	}

	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	wantCompleted(t, h.wait(id))

	var order []string
	for _, ev := range h.audit(id) {
		switch {
		case ev.Type == "instance_paused", ev.Type == "instance_resumed":
			order = append(order, ev.Type)
		case ev.Type == "step_completed" || ev.Type == "step_dispatched":
			order = append(order, ev.StepID+":"+ev.Type)
		}
	}
	want := []string{"a:step_dispatched", "instance_paused", "a:step_completed",
		"instance_resumed", "b:step_dispatched", "b:step_completed"}
	if !slices.Equal(order, want) {
		t.Fatalf("audit order = %v, want %v", order, want)
	}
	if bCalls.Load() != 1 {
		t.Fatalf("b ran %d times, want 1", bCalls.Load())
	}
}

// TestRulePauseTimersInOrder lets delays come due during a pause: none
// fires then, and at resume they fire in due order, not creation order.
func TestRulePauseTimersInOrder(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: timers
version: 1
steps:
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: dx, type: delay, duration: 1200ms}
          - {id: x, type: task, service: rec, action: note, input: "'x'"}
      - steps:
          - {id: dy, type: delay, duration: 600ms}
          - {id: y, type: task, service: rec, action: note, input: "'y'"}
      - steps:
          - {id: dz, type: delay, duration: 900ms}
          - {id: z, type: task, service: rec, action: note, input: "'z'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "timers", `{}`)
	h.waitFor("three delays", func() bool {
		return count(auditKinds(h.audit(id)), "delay_started") == 3
	})
	if err := h.e.Pause(h.ctx, id, ""); err != nil {
		t.Fatalf("pause: %v", err)
	}
	h.waitFor("every delay to be due", func() bool {
		timers, err := h.st.TimerList(h.ctx, id)
		return err == nil && len(timers) == 3 && time.Now().After(timers[2].FireAt)
	})
	time.Sleep(50 * time.Millisecond)

	if got := rec.list(); len(got) != 0 {
		t.Fatalf("calls during the pause = %v, want none", got)
	}
	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	wantCompleted(t, h.wait(id))

	var order []string
	for _, ev := range h.audit(id) {
		if ev.Type == "step_dispatched" {
			order = append(order, ev.StepID)
		}
	}
	if !slices.Equal(order, []string{"y", "z", "x"}) {
		t.Fatalf("dispatch order = %v, want [y z x]", order)
	}
}

// TestRuleCancelTerminateOverridePause ends a paused instance by cancel
// (its cleanup runs) and by terminate (nothing runs).
func TestRuleCancelTerminateOverridePause(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: paused
version: 1
steps:
  - {id: nap, type: delay, duration: 10s}
on_cancel:
  - {id: undo, type: task, service: rec, action: note, input: "'undo'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	tests := []struct {
		name   string
		end    func(ctx context.Context, id, reason string) error
		status store.InstanceStatus
		calls  []string
	}{
		{"cancel", h.e.Cancel, store.InstanceCancelled, []string{"undo"}},
		{"terminate", h.e.Terminate, store.InstanceTerminated, nil},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, "paused", `{}`)
		waitStepStatus(h, id, "nap", store.StepSleeping)
		if err := h.e.Pause(h.ctx, id, ""); err != nil {
			t.Fatalf("%s: pause: %v", tt.name, err)
		}
		if err := tt.end(h.ctx, id, "stop"); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		inst := h.wait(id)

		if inst.Status != tt.status || inst.Reason != "stop" {
			t.Fatalf("%s: instance = %s (%s), want %s (stop)",
				tt.name, inst.Status, inst.Reason, tt.status)
		}
		if got := rec.list()[before:]; !slices.Equal(got, tt.calls) {
			t.Fatalf("%s: calls = %v, want %v", tt.name, got, tt.calls)
		}
		if s, _ := h.step(id, "nap"); s.Status != store.StepCancelled {
			t.Fatalf("%s: delay is %s, want cancelled", tt.name, s.Status)
		}
	}
}

// TestRuleTerminateRunningStep ends an instance at once while a step
// runs: the handler's context is cancelled and its report is late.
func TestRuleTerminateRunningStep(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: doomed
version: 1
steps:
  - {id: a, type: task, service: t, action: a}
  - {id: b, type: task, service: t, action: b}
`)
	started := make(chan struct{})
	cause := make(chan error, 1)
	var bCalls atomic.Int32
	h.e.Handle("t", "a", func(ctx context.Context, _ engine.Task) (any, error) {
		close(started)
		<-ctx.Done()
		cause <- ctx.Err()
		return "finished anyway", nil
	})
	h.e.Handle("t", "b", func(context.Context, engine.Task) (any, error) {
		bCalls.Add(1)
		return nil, nil
	})
	h.run()

	id := begin(h, "doomed", `{}`)
	<-started
	if err := h.e.Terminate(h.ctx, id, "enough"); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	inst := h.wait(id)

	if inst.Status != store.InstanceTerminated || inst.Reason != "enough" {
		t.Fatalf("instance = %s (%s), want terminated (enough)", inst.Status, inst.Reason)
	}
	select {
	case err := <-cause:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	h.waitFor("the late report", func() bool {
		return count(auditTypes(h.audit(id), "a"), "report_late") == 1
	})
	if s, _ := h.step(id, "a"); s.Status != store.StepCancelled {
		t.Fatalf("step a is %s, want cancelled", s.Status)
	}
	if _, ok := h.step(id, "b"); ok || bCalls.Load() != 0 {
		t.Fatal("b started after the terminate")
	}
}

// TestRuleIdempotentStart returns the first instance for the same start
// key and input, and refuses the key with another input.
func TestRuleIdempotentStart(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: once
version: 1
steps:
  - {id: nap, type: delay, duration: 1ms}
`)
	h.run()

	start := func(input string) (store.Instance, bool, error) {
		return h.e.StartInstance(h.ctx, engine.StartParams{
			Definition: "once", Input: json.RawMessage(input), StartKey: "order-7",
		})
	}
	first, created, err := start(`{"a": 1, "b": {"c": 2.50, "d": [1, 2]}}`)
	if err != nil || !created {
		t.Fatalf("first start: created %t, %v; want created", created, err)
	}
	t.Cleanup(func() { assertAuditSeq(t, h, first.ID) })

	for _, same := range []string{
		`{"a":1,"b":{"c":2.50,"d":[1,2]}}`,
		`{"b": {"d": [1, 2], "c": 2.50}, "a": 1}`,
	} {
		again, created, err := start(same)
		if err != nil || created || again.ID != first.ID {
			t.Fatalf("same key and input %s: %s created %t, %v; want %s, not created",
				same, again.ID, created, err, first.ID)
		}
	}
	for _, other := range []string{`{"a": 2}`, `{"a": 1, "b": {"c": 2.50, "d": [2, 1]}}`} {
		if _, _, err := start(other); !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("same key, other input %s: %v, want store.ErrAlreadyExists", other, err)
		}
	}
	wantCompleted(t, h.wait(first.ID))

	page, err := h.e.ListInstances(h.ctx, store.InstanceFilter{DefinitionName: "once"})
	if err != nil || len(page.Instances) != 1 {
		t.Fatalf("instances = %d (%v), want 1", len(page.Instances), err)
	}
}

// TestRuleStartRefusesBadInput refuses, with ErrInvalid and nothing
// created, inputs that break the schema or are no JSON object.
func TestRuleStartRefusesBadInput(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: strict
version: 1
input_schema: {type: object, required: [id], properties: {id: {type: string}}}
steps:
  - {id: nap, type: delay, duration: 1ms}
`)
	h.register(`
name: lax
version: 1
steps:
  - {id: nap, type: delay, duration: 1ms}
`)
	h.run()

	tests := []struct{ def, input string }{
		{"strict", `{}`},
		{"strict", `{"id": 7}`},
		{"lax", `[1, 2]`},
		{"lax", `"text"`},
		{"lax", `null`},
		{"lax", `{"open": `},
	}
	for _, tt := range tests {
		_, _, err := h.e.StartInstance(h.ctx, engine.StartParams{
			Definition: tt.def, Input: json.RawMessage(tt.input),
		})
		if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "input") {
			t.Fatalf("%s %s: %v, want ErrInvalid naming input", tt.def, tt.input, err)
		}
	}
	page, err := h.e.ListInstances(h.ctx, store.InstanceFilter{})
	if err != nil || len(page.Instances) != 0 {
		t.Fatalf("instances = %d (%v), want none", len(page.Instances), err)
	}

	id := begin(h, "strict", `{"id": "ok"}`)
	wantCompleted(t, h.wait(id))
}

// TestRuleEventForUnknownInstance refuses an event addressed to an
// instance that does not exist.
func TestRuleEventForUnknownInstance(t *testing.T) {
	h := newHarness(t)
	h.run()

	_, err := h.e.PublishEvent(h.ctx, engine.PublishParams{
		Name: "go", Key: "k", InstanceID: "no-such-instance",
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("publish to an unknown instance: %v, want store.ErrNotFound", err)
	}
}

// TestRuleFinishedInstance refuses every command on a completed or
// failed instance with ErrFinished.
func TestRuleFinishedInstance(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: short
version: 1
steps:
  - {id: s, type: task, service: fin, action: run, retry: {max_attempts: 1}}
`)
	h.e.Handle("fin", "run", func(_ context.Context, task engine.Task) (any, error) {
		if string(task.Input) == `{"fail":true}` {
			return nil, errors.New("boom")
		}
		return nil, nil
	})
	h.run()

	commands := map[string]func(id string) error{
		"pause":     func(id string) error { return h.e.Pause(h.ctx, id, "") },
		"resume":    func(id string) error { return h.e.Resume(h.ctx, id) },
		"cancel":    func(id string) error { return h.e.Cancel(h.ctx, id, "") },
		"terminate": func(id string) error { return h.e.Terminate(h.ctx, id, "") },
	}
	for _, input := range []string{`{"fail":false}`, `{"fail":true}`} {
		id := begin(h, "short", input)
		inst := h.wait(id)

		for name, cmd := range commands {
			if err := cmd(id); !errors.Is(err, engine.ErrFinished) {
				t.Fatalf("%s of a %s instance: %v, want ErrFinished", name, inst.Status, err)
			}
		}
		_, err := h.e.PublishEvent(h.ctx, engine.PublishParams{Name: "poke", InstanceID: id})
		if !errors.Is(err, engine.ErrFinished) {
			t.Fatalf("event for a %s instance: %v, want ErrFinished", inst.Status, err)
		}
		again, err := h.e.Instance(h.ctx, id)
		if err != nil || again.Status != inst.Status || again.LastSeq != inst.LastSeq {
			t.Fatalf("after the refused commands: %s seq %d (%v), want %s seq %d",
				again.Status, again.LastSeq, err, inst.Status, inst.LastSeq)
		}
	}
}

// auditKinds returns the types of audit rows in order.
func auditKinds(evs []store.AuditEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}

	return out
}

// TestRuleErrorReportIsBounded cuts a failure report's code and message
// to their limits before anything stores them, so a service cannot grow
// a step, the instance or the audit log without bound.
func TestRuleErrorReportIsBounded(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: noisy
version: 1
steps:
  - {id: s, type: task, service: noisy, action: run, retry: {max_attempts: 1}}
`)
	h.run()

	id := begin(h, "noisy", `{}`)
	task := claimOutside(h, "noisy")
	_, err := h.e.Report(h.ctx, engine.ReportParams{
		InstanceID: task.InstanceID, PointerID: task.PointerID, Attempt: task.Attempt,
		Token: task.Token, Err: &engine.Error{
			Code: strings.Repeat("c", 1<<20), Message: strings.Repeat("m", 20<<20),
		},
	})
	if err != nil {
		t.Fatalf("report: %v", err)
	}

	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	limit := engine.MaxErrorCodeBytes + engine.MaxErrorMessageBytes + 1024
	if len(inst.Error) > limit {
		t.Fatalf("instance error holds %d bytes, want at most %d", len(inst.Error), limit)
	}
	for _, ev := range h.audit(id) {
		if len(ev.Data) > limit {
			t.Fatalf("audit row %s holds %d bytes, want at most %d", ev.Type, len(ev.Data), limit)
		}
	}
	s, _ := h.step(id, "s")
	if len(s.Error) > limit {
		t.Fatalf("step error holds %d bytes, want at most %d", len(s.Error), limit)
	}
	if !strings.Contains(string(s.Error), "(cut from 20971520 bytes)") {
		t.Fatalf("step error does not say it was cut: %.200s", s.Error)
	}
}

// TestRuleDataLimit fails an instance whose data grows over
// Options.MaxDataBytes, naming the step whose output took it over, and
// keeps the data it had before that output.
func TestRuleDataLimit(t *testing.T) {
	opts := fastOptions()
	opts.MaxDataBytes = 10000
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: grow
version: 1
steps:
  - id: loop
    type: while
    condition: "true"
    max_iterations: 100
    steps:
      - {id: add, type: task, service: grow, action: add, input: data.list, output: list}
`)
	h.e.Handle("grow", "add", func(_ context.Context, task engine.Task) (any, error) {
		var list []string
		if err := json.Unmarshal(task.Input, &list); err != nil && string(task.Input) != "null" {
			return nil, err
		}
		return append(list, strings.Repeat("x", 1000)), nil
	})
	h.run()

	id := begin(h, "grow", `{}`)
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if inst.Reason != "data_too_large" || !strings.Contains(string(inst.Error), "payload too large") {
		t.Fatalf("reason %q, error %s; want data_too_large, payload too large", inst.Reason, inst.Error)
	}
	if !strings.Contains(string(inst.Error), `"step_id":"add"`) {
		t.Fatalf("error %s does not name the step add", inst.Error)
	}
	if len(inst.Data) > opts.MaxDataBytes {
		t.Fatalf("data holds %d bytes, want at most %d", len(inst.Data), opts.MaxDataBytes)
	}
	if n := len(dataOf(t, inst.Data)["list"].([]any)); n != 9 {
		t.Fatalf("data list has %d items, want the 9 that fit", n)
	}
}

// TestRuleLongTransitionKeepsItsLease fans out wider than a transition
// can write within the lease TTL: the engine extends the lease while it
// works, so the transition commits instead of being fenced off and redone
// forever.
func TestRuleLongTransitionKeepsItsLease(t *testing.T) {
	opts := fastOptions()
	opts.LeaseTTL = 400 * time.Millisecond
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: wide
version: 1
steps:
  - id: each
    type: foreach
    items: input.items
    parallel: true
    steps:
      - {id: one, type: task, service: wide, action: one}
`)
	h.e.Handle("wide", "one", func(context.Context, engine.Task) (any, error) { return nil, nil })
	h.run()

	items, _ := json.Marshal(make([]int, scaled(3000, 500)))
	inst := h.waitWithin(begin(h, "wide", fmt.Sprintf(`{"items": %s}`, items)), 5*time.Minute)
	wantCompleted(t, inst)
	if n := h.e.Counters().LeaseExtends.Load(); n == 0 {
		t.Fatalf("no lease was extended; the fan-out did not outlast the %v lease", opts.LeaseTTL)
	}
	t.Logf("lease extended %d times, lost %d times",
		h.e.Counters().LeaseExtends.Load(), h.e.Counters().LeaseLost.Load())
}

// TestRuleCancelWithdrawsUnclaimedTask cancels an instance whose task
// waits in its dispatch row, taken by no worker: the task is withdrawn
// at once and the cleanup runs, without waiting out the cancel grace.
func TestRuleCancelWithdrawsUnclaimedTask(t *testing.T) {
	opts := fastOptions()
	opts.CancelGrace = time.Hour
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: idle
version: 1
steps:
  - {id: wait-for-worker, type: task, service: nobody, action: x}
on_cancel:
  - {id: tidy, type: task, service: local, action: tidy}
`)
	var tidied atomic.Int32
	h.e.Handle("local", "tidy", func(context.Context, engine.Task) (any, error) {
		tidied.Add(1)
		return nil, nil
	})
	h.run()

	id := begin(h, "idle", `{}`)
	waitStepStatus(h, id, "wait-for-worker", store.StepDispatched)
	if err := h.e.Cancel(h.ctx, id, "not needed"); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceCancelled)
	if n := tidied.Load(); n != 1 {
		t.Fatalf("cleanup ran %d times, want 1", n)
	}
	if s, _ := h.step(id, "wait-for-worker"); s.Status != store.StepCancelled {
		t.Fatalf("task step is %s, want cancelled", s.Status)
	}
	claimNothingLater(h, "nobody")
}

// TestRulePauseHoldsTheEnd pauses an instance whose last step is in
// flight: the step's result is recorded, but the instance stays paused
// (a paused instance goes only to running, cancelling or terminated)
// and completes once it is resumed.
func TestRulePauseHoldsTheEnd(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: last
version: 1
steps:
  - {id: only, type: task, service: p, action: only, output: got}
`)
	started, release := make(chan struct{}), make(chan struct{})
	h.e.Handle("p", "only", func(ctx context.Context, _ engine.Task) (any, error) {
		close(started)
		<-release
		return "done", nil
	})
	h.run()

	id := begin(h, "last", `{}`)
	<-started
	if err := h.e.Pause(h.ctx, id, "hold on"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	close(release)
	waitStepStatus(h, id, "only", store.StepCompleted)
	time.Sleep(100 * time.Millisecond)
	if inst := instanceNow(h, id); inst.Status != store.InstancePaused {
		t.Fatalf("after the last step's result: %s, want still paused", inst.Status)
	}

	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	inst := h.wait(id)
	wantCompleted(t, inst)
	if dataOf(t, inst.Output)["got"] != "done" {
		t.Fatalf("output = %s, want the step's result", inst.Output)
	}
}
