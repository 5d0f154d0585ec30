package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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

// This file holds one test per case of docs cases.md (faults other
// engines shipped) that needs no remote service and no second node, and
// tests of the engine-core rules of the design brief that no other test
// covers. Durations are scaled down to milliseconds; time is checked
// only as order and lower bounds, never as upper bounds.

// manualClock is an engine clock that moves only when the test moves it.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Now()}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// outsideWorker is the worker name under which tests play a remote
// service: no Go handler runs its tasks, the test claims and reports.
const outsideWorker = "outside-worker"

// claimOutside polls until a task of service is handed to the outside
// worker and returns it.
func claimOutside(h *harness, service string) store.Task {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tasks, err := h.e.Store().TaskClaim(h.ctx, store.TaskClaimParams{
			Worker: outsideWorker, Services: []string{service}, Limit: 1,
			LeaseTTL: time.Minute, Now: time.Now(),
		})
		if err != nil {
			h.t.Fatalf("claiming a %s task: %v", service, err)
		}
		if len(tasks) > 0 {
			return tasks[0]
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for a %s task", service)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// claimNothingLater checks that no task of service is handed out, even
// an hour from now when every claim would have expired.
func claimNothingLater(h *harness, service string) {
	h.t.Helper()
	tasks, err := h.e.Store().TaskClaim(h.ctx, store.TaskClaimParams{
		Worker: "another-worker", Services: []string{service}, Limit: 10,
		LeaseTTL: time.Minute, Now: time.Now().Add(time.Hour),
	})
	if err != nil {
		h.t.Fatalf("claiming %s tasks: %v", service, err)
	}
	if len(tasks) != 0 {
		h.t.Fatalf("claim gave %d %s tasks (attempt %d), want none",
			len(tasks), service, tasks[0].Attempt)
	}
}

// reportDone reports a task as completed with output.
func reportDone(h *harness, task store.Task, output string) (store.ReportResult, error) {
	return h.e.Report(h.ctx, engine.ReportParams{
		InstanceID: task.InstanceID, PointerID: task.PointerID, Attempt: task.Attempt,
		Token: task.Token, Output: json.RawMessage(output),
	})
}

// stepRows returns the step rows of a definition step id, by id.
func stepRows(h *harness, id, stepID string) []store.Step {
	h.t.Helper()
	steps, err := h.e.Steps(h.ctx, id)
	if err != nil {
		h.t.Fatalf("listing steps: %v", err)
	}

	var out []store.Step
	for _, s := range steps {
		if s.StepID == stepID {
			out = append(out, s)
		}
	}

	return out
}

// seqsOf returns the seqs of the audit rows of one type about one step
// ("" for rows about the instance).
func seqsOf(evs []store.AuditEvent, stepID, typ string) []int64 {
	var out []int64
	for _, ev := range evs {
		if ev.StepID == stepID && ev.Type == typ {
			out = append(out, ev.Seq)
		}
	}

	return out
}

// checkGapFree checks that audit seqs run 1, 2, 3, ... without gaps.
func checkGapFree(t *testing.T, evs []store.AuditEvent) {
	t.Helper()
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("audit row %d (%s) has seq %d, want %d", i, ev.Type, ev.Seq, i+1)
		}
	}
}

// checkStatus checks an instance's status.
func checkStatus(t *testing.T, inst store.Instance, want store.InstanceStatus) {
	t.Helper()
	if inst.Status != want {
		t.Fatalf("status = %s (reason %q, error %s), want %s",
			inst.Status, inst.Reason, inst.Error, want)
	}
}

// instanceNow reads an instance.
func instanceNow(h *harness, id string) store.Instance {
	h.t.Helper()
	inst, err := h.e.Instance(h.ctx, id)
	if err != nil {
		h.t.Fatalf("reading instance: %v", err)
	}

	return inst
}

// TestJoinWaitsForEveryBranch is case 1: in PAR{[DELAY(10s)] | [B]} ->
// C, at 3 s B is done but the join is not and C has not started; C runs
// once, after both branches. The clock is the test's, so "at 3 s" is
// exact. A parallel step without branches is refused at registration.
func TestJoinWaitsForEveryBranch(t *testing.T) {
	clock := newManualClock()
	opts := fastOptions()
	opts.Clock = clock
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: join
version: 1
steps:
  - id: split
    type: parallel
    branches:
      - steps:
          - {id: nap, type: delay, duration: 10s}
      - steps:
          - {id: b, type: task, service: svc, action: b}
  - {id: c, type: task, service: svc, action: c}
`)
	var rec recorder
	for _, action := range []string{"b", "c"} {
		h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
			rec.add(action)
			return action, nil
		})
	}
	h.run()
	startedAt := clock.Now()
	id := h.start("join", `{}`)

	h.waitFor("b to complete", func() bool {
		b, ok := h.step(id, "b")
		return ok && b.Status == store.StepCompleted
	})
	clock.add(3 * time.Second)
	time.Sleep(100 * time.Millisecond)

	if nap, _ := h.step(id, "nap"); nap.Status != store.StepSleeping {
		t.Fatalf("at 3s nap is %s, want sleeping", nap.Status)
	}
	if split := stepRows(h, id, "split")[0]; split.Status != store.StepRunning {
		t.Fatalf("at 3s the join is %s, want running", split.Status)
	}
	if _, ok := h.step(id, "c"); ok || rec.count("c") != 0 {
		t.Fatalf("at 3s c has started (%d calls), want not started", rec.count("c"))
	}

	clock.add(8 * time.Second)
	inst := h.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	if n := rec.count("c"); n != 1 {
		t.Fatalf("c ran %d times, want 1", n)
	}
	nap, _ := h.step(id, "nap")
	split := stepRows(h, id, "split")[0]
	c, _ := h.step(id, "c")
	if got := nap.EndedAt.Sub(startedAt); got < 10*time.Second {
		t.Fatalf("nap ended %v after the start, want at least 10s", got)
	}
	if split.EndedAt.Before(nap.EndedAt) || c.StartedAt.Before(split.EndedAt) {
		t.Fatalf("nap ended %v, join %v, c started %v: want that order",
			nap.EndedAt, split.EndedAt, c.StartedAt)
	}
	evs := h.audit(id)
	bDone, cSent := seqsOf(evs, "b", "step_completed"), seqsOf(evs, "c", "step_dispatched")
	if len(bDone) != 1 || len(cSent) != 1 || cSent[0] < bDone[0] {
		t.Fatalf("b completed at seqs %v, c dispatched at %v: want one each, b first",
			bDone, cSent)
	}
	checkGapFree(t, evs)

	for _, branches := range []string{"branches: []", "branches: null", ""} {
		src := "name: empty-join\nversion: 1\nsteps:\n  - id: split\n    type: parallel\n"
		if branches != "" {
			src += "    " + branches + "\n"
		}
		_, err := h.e.RegisterDefinition(h.ctx, []byte(src))
		if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "branches") {
			t.Fatalf("registering a join over %q: %v, want ErrInvalid naming branches",
				branches, err)
		}
	}
}

// TestWideFanOut is case 2: a parallel foreach over N items then a join
// completes, holds exactly N completed iteration records, and the join
// completes once, after the last item.
func TestWideFanOut(t *testing.T) {
	for _, n := range []int{40, 1000, 10000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n > 1000 && (testing.Short() || os.Getenv("WEFT_SOAK") != "1") {
				t.Skip("10000 items run only with WEFT_SOAK=1 and without -short")
			}
			testWideFanOut(t, n)
		})
	}
}

func testWideFanOut(t *testing.T, n int) {
	h := newHarness(t)
	h.register(`
name: fanout
version: 1
steps:
  - id: each
    type: foreach
    items: input.items
    parallel: true
    result: steps.double.output
    output: doubled
    steps:
      - {id: double, type: task, service: svc, action: double, input: item}
  - {id: after, type: task, service: svc, action: after, input: "len(data.doubled)"}
`)
	var afterCalls atomic.Int32
	var afterSaw atomic.Int64
	h.e.Handle("svc", "double", func(ctx context.Context, task engine.Task) (any, error) {
		var v int
		if err := json.Unmarshal(task.Input, &v); err != nil {
			return nil, err
		}
		return 2 * v, nil
	})
	h.e.Handle("svc", "after", func(ctx context.Context, task engine.Task) (any, error) {
		var v int64
		_ = json.Unmarshal(task.Input, &v)
		afterSaw.Store(v)
		afterCalls.Add(1)
		return nil, nil
	})
	h.run()
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	input, _ := json.Marshal(map[string]any{"items": items})
	id := h.start("fanout", string(input))

	inst := h.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	rows := stepRows(h, id, "each")
	container := rows[0]
	var iterations, completed int
	var lastItem time.Time
	for _, r := range rows[1:] {
		if r.ParentID != container.ID {
			t.Fatalf("each row %d has parent %d, want %d", r.ID, r.ParentID, container.ID)
		}
		iterations++
		if r.Status == store.StepCompleted {
			completed++
		}
		if r.EndedAt.After(lastItem) {
			lastItem = r.EndedAt
		}
	}
	if iterations != n || completed != n {
		t.Fatalf("%d iteration records, %d completed, want %d and %d",
			iterations, completed, n, n)
	}
	if container.Status != store.StepCompleted || container.EndedAt.Before(lastItem) {
		t.Fatalf("join %s at %v, last item ended %v: want completed after it",
			container.Status, container.EndedAt, lastItem)
	}

	doubled, _ := dataOf(t, inst.Data)["doubled"].([]any)
	if len(doubled) != n {
		t.Fatalf("doubled has %d results, want %d", len(doubled), n)
	}
	for i, v := range doubled {
		if v != float64(2*i) {
			t.Fatalf("doubled[%d] = %v, want %d", i, v, 2*i)
		}
	}

	if afterCalls.Load() != 1 || afterSaw.Load() != int64(n) {
		t.Fatalf("after ran %d times seeing %d results, want once seeing %d",
			afterCalls.Load(), afterSaw.Load(), n)
	}
	evs := h.audit(id)
	done := seqsOf(evs, "double", "step_completed")
	sent := seqsOf(evs, "after", "step_dispatched")
	if len(done) != n || len(sent) != 1 || sent[0] < slices.Max(done) {
		t.Fatalf("%d items completed, after dispatched at %v (last item at %d): "+
			"want %d, then after once", len(done), sent, slices.Max(done), n)
	}
	checkGapFree(t, evs)
}

// TestRetryCountsEveryAttempt is case 3: max_attempts N runs an always
// failing step exactly N times, 1 meaning one run and no retry record,
// and the instance fails in the same transition as the last attempt:
// no backoff wait follows it.
func TestRetryCountsEveryAttempt(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("max_attempts=%d", n), func(t *testing.T) {
			h := newHarness(t)
			h.register(fmt.Sprintf(`
name: boom
version: 1
steps:
  - id: boom
    type: task
    service: svc
    action: fail
    retry: {max_attempts: %d, initial_interval: 5ms, backoff_coefficient: 1}
`, n))
			var calls atomic.Int32
			h.e.Handle("svc", "fail", func(ctx context.Context, task engine.Task) (any, error) {
				calls.Add(1)
				return nil, engine.Retryable("broken", fmt.Sprintf("attempt %d", task.Attempt))
			})
			h.run()

			id := h.start("boom", `{}`)
			inst := h.wait(id)

			checkStatus(t, inst, store.InstanceFailed)
			if got := int(calls.Load()); got != n {
				t.Fatalf("handler ran %d times, want %d", got, n)
			}
			if step, _ := h.step(id, "boom"); step.Attempt != n {
				t.Fatalf("step attempt = %d, want %d", step.Attempt, n)
			}
			evs := h.audit(id)
			failed := seqsOf(evs, "boom", "step_failed")
			retries := seqsOf(evs, "boom", "step_retry_scheduled")
			if len(failed) != n || len(retries) != n-1 {
				t.Fatalf("%d step_failed and %d retries, want %d and %d",
					len(failed), len(retries), n, n-1)
			}
			end := evs[len(evs)-1]
			last := evs[len(evs)-2]
			if end.Type != "instance_failed" || last.Seq != failed[n-1] ||
				!end.At.Equal(last.At) {
				t.Fatalf("audit ends with %s at %v after %s at %v: want the last step_failed "+
					"then instance_failed in one transition", end.Type, end.At, last.Type, last.At)
			}
			timers, err := h.e.Store().TimerList(h.ctx, id)
			if err != nil || len(timers) != 0 {
				t.Fatalf("timers after failing = %v (%v), want none", timers, err)
			}
			checkGapFree(t, evs)
		})
	}
}

// TestRetryDelaysAreHonoured is case 4: with an initial interval of
// 30 ms and coefficient 2 the gaps between attempts are at least 30, 60
// and 120 ms, wherever the task step sits and however its attempt
// fails. Times are stored in milliseconds, hence the 2 ms tolerance.
func TestRetryDelaysAreHonoured(t *testing.T) {
	const policy = `{max_attempts: 4, initial_interval: 30ms, backoff_coefficient: 2}`
	cases := []struct {
		name    string
		steps   string
		timeout bool
		outside bool
	}{
		{name: "handler error", steps: `
  - {id: work, type: task, service: svc, action: work, retry: ` + policy + `}`},
		{name: "in a parallel branch", steps: `
  - id: split
    type: parallel
    branches:
      - steps: [{id: other, type: delay, duration: 1ms}]
      - steps: [{id: work, type: task, service: svc, action: work, retry: ` + policy + `}]`},
		{name: "in a foreach iteration", steps: `
  - id: each
    type: foreach
    items: "[1]"
    steps: [{id: work, type: task, service: svc, action: work, retry: ` + policy + `}]`},
		{name: "start_to_close timeout", timeout: true, steps: `
  - id: work
    type: task
    service: svc
    action: work
    retry: ` + policy + `
    timeouts: {start_to_close: 10ms}`},
		{name: "outside worker", outside: true, steps: `
  - {id: work, type: task, service: remote, action: work, retry: ` + policy + `}`},
	}
	want := []time.Duration{30 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.register("name: delays\nversion: 1\nsteps:" + tc.steps + "\n")
			var mu sync.Mutex
			var calls []time.Time
			h.e.Handle("svc", "work", func(ctx context.Context, _ engine.Task) (any, error) {
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
				if tc.timeout {
					<-ctx.Done()
				}
				return nil, engine.Retryable("broken", "always")
			})
			h.run()
			id := h.start("delays", `{}`)

			if tc.outside {
				for range 4 {
					task := claimOutside(h, "remote")
					mu.Lock()
					calls = append(calls, time.Now())
					mu.Unlock()
					_, err := h.e.Report(h.ctx, engine.ReportParams{
						InstanceID: id, PointerID: task.PointerID, Attempt: task.Attempt,
						Token: task.Token, Err: engine.Retryable("broken", "always"),
					})
					if err != nil {
						t.Fatalf("reporting attempt %d: %v", task.Attempt, err)
					}
				}
			}
			inst := h.wait(id)

			checkStatus(t, inst, store.InstanceFailed)
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 4 {
				t.Fatalf("%d attempts ran, want 4", len(calls))
			}
			for i, w := range want {
				if gap := calls[i+1].Sub(calls[i]); gap < w-2*time.Millisecond {
					t.Fatalf("gap before attempt %d = %v, want at least %v", i+2, gap, w)
				}
			}
			var delays []string
			for _, ev := range h.audit(id) {
				if ev.Type == "step_retry_scheduled" {
					delays = append(delays, string(ev.Data))
				}
			}
			wantDelays := []string{`{"delay_ms":30}`, `{"delay_ms":60}`, `{"delay_ms":120}`}
			if !slices.Equal(delays, wantDelays) {
				t.Fatalf("retry delays = %v, want %v", delays, wantDelays)
			}
		})
	}
}

// TestCancelDuringDelay is case 5: in A -> DELAY -> B, a cancel during
// the delay cancels the instance, B never runs (not even once the delay
// would have ended), the timer is gone, and nothing is dispatched after
// the cancel is recorded.
func TestCancelDuringDelay(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: sleepy
version: 1
steps:
  - {id: a, type: task, service: svc, action: a}
  - {id: nap, type: delay, duration: 300ms}
  - {id: b, type: task, service: svc, action: b}
`)
	var rec recorder
	for _, action := range []string{"a", "b"} {
		h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
			rec.add(action)
			return nil, nil
		})
	}
	h.run()
	id := h.start("sleepy", `{}`)

	h.waitFor("the delay to start", func() bool {
		nap, ok := h.step(id, "nap")
		return ok && nap.Status == store.StepSleeping
	})
	napStarted := time.Now()
	if err := h.e.Cancel(h.ctx, id, "no longer needed"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	inst := h.wait(id)

	checkStatus(t, inst, store.InstanceCancelled)
	timers, err := h.e.Store().TimerList(h.ctx, id)
	if err != nil || len(timers) != 0 {
		t.Fatalf("timers after cancel = %v (%v), want none", timers, err)
	}
	tasks, err := h.e.Store().TaskList(h.ctx, id)
	if err != nil || len(tasks) != 0 {
		t.Fatalf("tasks after cancel = %v (%v), want none", tasks, err)
	}

	time.Sleep(time.Until(napStarted.Add(400 * time.Millisecond)))
	if got := rec.list(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("calls = %v, want [a]", got)
	}
	if _, ok := h.step(id, "b"); ok {
		t.Fatal("b has a step row, want none")
	}
	if nap, _ := h.step(id, "nap"); nap.Status != store.StepCancelled {
		t.Fatalf("nap is %s, want cancelled", nap.Status)
	}
	evs := h.audit(id)
	cancelAt := seqsOf(evs, "", "instance_cancel_requested")
	if len(cancelAt) != 1 {
		t.Fatalf("%d cancel requests audited, want 1", len(cancelAt))
	}
	for _, ev := range evs {
		if ev.Seq > cancelAt[0] && (ev.Type == "step_dispatched" || ev.Type == "step_started") {
			t.Fatalf("%s of %s at seq %d, after the cancel at %d", ev.Type, ev.StepID, ev.Seq,
				cancelAt[0])
		}
	}
	checkGapFree(t, evs)
}

// lateDefinition is TASK(A) -> B with A run by an outside worker and a
// cleanup step.
const lateDefinition = `
name: late
version: 1
steps:
  - {id: a, type: task, service: remote, action: a}
  - {id: b, type: task, service: svc, action: b}
on_cancel:
  - {id: cleanup, type: task, service: svc, action: cleanup}
`

// TestLateCompletionAfterTerminate is case 6: TASK(A) -> B terminated
// while A runs; A's later success is answered and audited as late,
// changes no status, B never runs, A is never handed out again, and no
// cleanup runs.
func TestLateCompletionAfterTerminate(t *testing.T) {
	h := newHarness(t)
	h.register(lateDefinition)
	var rec recorder
	for _, action := range []string{"b", "cleanup"} {
		h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
			rec.add(action)
			return nil, nil
		})
	}
	h.run()
	id := h.start("late", `{}`)
	task := claimOutside(h, "remote")

	if err := h.e.Terminate(h.ctx, id, "operator"); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	checkStatus(t, instanceNow(h, id), store.InstanceTerminated)
	before := h.audit(id)

	res, err := reportDone(h, task, `"done at last"`)

	if !errors.Is(err, engine.ErrLate) || res.Outcome != store.ReportLate {
		t.Fatalf("late report: %v %q, want ErrLate and outcome late", err, res.Outcome)
	}
	checkLateReport(t, h, id, before, store.InstanceTerminated)
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("calls = %v, want none (no b, no cleanup)", got)
	}
}

// TestLateCompletionAfterCancel is case 6 with a cancel: A does not
// report within the cancel grace, the cleanup runs and the instance is
// cancelled; A's later success is late and changes nothing.
func TestLateCompletionAfterCancel(t *testing.T) {
	opts := fastOptions()
	opts.CancelGrace = 50 * time.Millisecond
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(lateDefinition)
	var rec recorder
	for _, action := range []string{"b", "cleanup"} {
		h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
			rec.add(action)
			return nil, nil
		})
	}
	h.run()
	id := h.start("late", `{}`)
	task := claimOutside(h, "remote")

	if err := h.e.Cancel(h.ctx, id, "operator"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	checkStatus(t, h.wait(id), store.InstanceCancelled)
	before := h.audit(id)

	res, err := reportDone(h, task, `"done at last"`)

	if !errors.Is(err, engine.ErrLate) || res.Outcome != store.ReportLate {
		t.Fatalf("late report: %v %q, want ErrLate and outcome late", err, res.Outcome)
	}
	checkLateReport(t, h, id, before, store.InstanceCancelled)
	if got := rec.list(); !slices.Equal(got, []string{"cleanup"}) {
		t.Fatalf("calls = %v, want [cleanup]", got)
	}
}

// checkLateReport checks that a late report of step a added only its
// report_late audit row and changed nothing else.
func checkLateReport(t *testing.T, h *harness, id string, before []store.AuditEvent,
	status store.InstanceStatus) {
	t.Helper()
	after := h.audit(id)
	if len(after) != len(before)+1 || after[len(after)-1].Type != "report_late" ||
		after[len(after)-1].StepID != "a" {
		t.Fatalf("audit grew from %d to %d rows ending %s, want one report_late of a",
			len(before), len(after), after[len(after)-1].Type)
	}
	checkGapFree(t, after)
	checkStatus(t, instanceNow(h, id), status)
	if a, _ := h.step(id, "a"); a.Status != store.StepCancelled || len(a.Output) != 0 {
		t.Fatalf("a = %s with output %s, want cancelled without output", a.Status, a.Output)
	}
	if _, ok := h.step(id, "b"); ok {
		t.Fatal("b has a step row, want none")
	}
	time.Sleep(50 * time.Millisecond)
	claimNothingLater(h, "remote")
	if n := len(seqsOf(h.audit(id), "a", "step_dispatched")); n != 1 {
		t.Fatalf("a dispatched %d times, want 1", n)
	}
}

// TestEventBeforeWait is case 7: in TASK(A) -> WAIT(done, id) -> C the
// event is published while A still runs; the wait takes it when it
// starts, C runs once and the instance completes.
func TestEventBeforeWait(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: early
version: 1
steps:
  - {id: a, type: task, service: svc, action: a}
  - {id: done, type: wait, event: done, key: input.id, output: event}
  - {id: c, type: task, service: svc, action: c}
`)
	started, release := make(chan struct{}), make(chan struct{})
	var cCalls atomic.Int32
	h.e.Handle("svc", "a", func(ctx context.Context, _ engine.Task) (any, error) {
		close(started)
		<-release
		return nil, nil
	})
	h.e.Handle("svc", "c", func(ctx context.Context, _ engine.Task) (any, error) {
		cCalls.Add(1)
		return nil, nil
	})
	h.run()
	id := h.start("early", `{"id": "order-7"}`)
	<-started

	_, err := h.e.PublishEvent(h.ctx, engine.PublishParams{
		Name: "done", Key: "order-7", Data: json.RawMessage(`{"ok": true}`),
	})
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	if _, ok := h.step(id, "done"); ok {
		t.Fatal("the wait started while a was running")
	}
	close(release)
	inst := h.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	if cCalls.Load() != 1 {
		t.Fatalf("c ran %d times, want 1", cCalls.Load())
	}
	if ev, _ := dataOf(t, inst.Data)["event"].(map[string]any); ev["ok"] != true {
		t.Fatalf("event data = %v, want {ok: true}", dataOf(t, inst.Data)["event"])
	}
	evs := h.audit(id)
	if got := auditTypes(evs, "done"); !slices.Equal(got,
		[]string{"wait_started", "event_received", "step_completed"}) {
		t.Fatalf("wait audit = %v, want wait_started event_received step_completed", got)
	}
	checkGapFree(t, evs)
}

// TestEventBeforeInstanceNeedsAsOf is the rule for case 7's events that
// come before the instance: a wait takes the oldest event with its name
// and key whose time is at or after its as-of, which is the instance's
// start unless the wait sets as_of. So an event published before the
// instance existed is kept, not taken by default, and taken by a wait
// whose as_of is earlier than the event.
func TestEventBeforeInstanceNeedsAsOf(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: by-default
version: 1
steps:
  - {id: ready, type: wait, event: ready, key: input.id, output: event}
`)
	h.register(`
name: as-of
version: 1
steps:
  - {id: ready, type: wait, event: ready, key: input.id, as_of: input.since, output: event}
`)
	h.run()
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	publish := func(n int) {
		_, err := h.e.PublishEvent(h.ctx, engine.PublishParams{
			Name: "ready", Key: "k1", Data: json.RawMessage(fmt.Sprintf(`{"n": %d}`, n)),
		})
		if err != nil {
			t.Fatalf("publishing event %d: %v", n, err)
		}
	}
	publish(1)
	time.Sleep(5 * time.Millisecond)

	byDefault := h.start("by-default", `{"id": "k1"}`)
	h.waitFor("the wait to start", func() bool {
		s, ok := h.step(byDefault, "ready")
		return ok && s.Status == store.StepWaiting
	})
	time.Sleep(100 * time.Millisecond)
	if s, _ := h.step(byDefault, "ready"); s.Status != store.StepWaiting {
		t.Fatalf("by default the wait is %s with an earlier event, want waiting", s.Status)
	}
	publish(2)
	inst := h.wait(byDefault)
	checkStatus(t, inst, store.InstanceCompleted)
	if got := dataOf(t, inst.Data)["event"]; fmt.Sprint(got) != "map[n:2]" {
		t.Fatalf("by default the wait took %v, want the later event n=2", got)
	}

	withAsOf := h.start("as-of", fmt.Sprintf(`{"id": "k1", "since": %q}`, since))
	inst = h.wait(withAsOf)

	checkStatus(t, inst, store.InstanceCompleted)
	if got := dataOf(t, inst.Data)["event"]; fmt.Sprint(got) != "map[n:1]" {
		t.Fatalf("with an earlier as_of the wait took %v, want the oldest event n=1", got)
	}
}

// foreachDefinition is a foreach over items, then a next step.
func foreachDefinition(name, items string, parallel bool) string {
	return fmt.Sprintf(`
name: %s
version: 1
steps:
  - id: each
    type: foreach
    items: %q
    parallel: %t
    result: item
    output: results
    steps:
      - {id: body, type: task, service: svc, action: body}
  - {id: next, type: task, service: svc, action: next}
`, name, items, parallel)
}

// TestForeachOverEmptyList is case 8: a foreach over an empty list, or
// over null or a missing field (the documented rule: null counts as an
// empty list), sequential or parallel, runs its body 0 times and the
// next step once, and the instance completes.
func TestForeachOverEmptyList(t *testing.T) {
	for _, items := range []string{"input.items", "data.missing", "input.none"} {
		for _, parallel := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s parallel=%t", items, parallel), func(t *testing.T) {
				h := newHarness(t)
				h.register(foreachDefinition("empty", items, parallel))
				var rec recorder
				for _, action := range []string{"body", "next"} {
					h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
						rec.add(action)
						return nil, nil
					})
				}
				h.run()

				id := h.start("empty", `{"items": [], "none": null}`)
				inst := h.wait(id)

				checkStatus(t, inst, store.InstanceCompleted)
				if got := rec.list(); !slices.Equal(got, []string{"next"}) {
					t.Fatalf("calls = %v, want [next]", got)
				}
				if rows := stepRows(h, id, "each"); len(rows) != 1 {
					t.Fatalf("each has %d rows, want 1 (no iteration)", len(rows))
				}
				results, ok := dataOf(t, inst.Data)["results"].([]any)
				if !ok || len(results) != 0 {
					t.Fatalf("results = %v, want an empty list", dataOf(t, inst.Data)["results"])
				}
			})
		}
	}
}

// TestForeachOverNonList is case 8's other side: items that are neither
// a list nor null fail the instance with a clear error, never a crash;
// the engine goes on running other instances.
func TestForeachOverNonList(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%t", parallel), func(t *testing.T) {
			h := newHarness(t)
			h.register(foreachDefinition("not-a-list", "input.name", parallel))
			h.register(foreachDefinition("a-list", "input.items", parallel))
			var rec recorder
			for _, action := range []string{"body", "next"} {
				h.e.Handle("svc", action, func(ctx context.Context, _ engine.Task) (any, error) {
					rec.add(action)
					return nil, nil
				})
			}
			h.run()

			id := h.start("not-a-list", `{"name": "abc"}`)
			inst := h.wait(id)

			checkStatus(t, inst, store.InstanceFailed)
			info := dataOf(t, inst.Error)
			msg, _ := info["message"].(string)
			if info["step_id"] != "each" || info["code"] != "expression_failed" ||
				!strings.Contains(msg, "want a list") {
				t.Fatalf("error = %v, want step each, expression_failed, saying it wants a list",
					info)
			}
			if got := rec.list(); len(got) != 0 {
				t.Fatalf("calls = %v, want none", got)
			}

			other := h.wait(h.start("a-list", `{"items": [1, 2]}`))
			checkStatus(t, other, store.InstanceCompleted)
		})
	}
}
