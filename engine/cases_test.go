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
// completes once, after the last item. 10 000 items take about 7 s, and
// several times that under the race detector; -short leaves them out.
func TestWideFanOut(t *testing.T) {
	for _, n := range []int{40, 1000, 10000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n > 1000 && testing.Short() {
				t.Skip("10000 items run only without -short")
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

	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Minute)
	defer cancel()
	inst, err := h.e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v (status %s)", id, err, inst.Status)
	}

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

// pauseDefinition is TASK(A) -> B with A run by an outside worker, so
// the test decides when A reports.
const pauseDefinition = `
name: hold
version: 1
steps:
  - {id: a, type: task, service: remote, action: a, output: a}
  - {id: b, type: task, service: svc, action: b, input: data.a}
`

// TestResumeOfInstanceNotPausedIsRefused is case 11 for an instance
// that is not paused: resuming a running instance, resuming twice,
// pausing twice and resuming a cancelling one are refused with
// ErrWrongStatus and change nothing, the one resume that applies
// writes one audit row, and the instance goes on as if the refused
// calls had not been made.
func TestResumeOfInstanceNotPausedIsRefused(t *testing.T) {
	h := newHarness(t)
	h.register(pauseDefinition)
	var rec recorder
	h.e.Handle("svc", "b", func(ctx context.Context, task engine.Task) (any, error) {
		rec.add(string(task.Input))
		return nil, nil
	})
	h.run()
	id := h.start("hold", `{}`)
	task := claimOutside(h, "remote")

	refused := func(what string, call func() error, want store.InstanceStatus) {
		t.Helper()
		before := instanceNow(h, id)
		if err := call(); !errors.Is(err, engine.ErrWrongStatus) {
			t.Fatalf("%s: %v, want ErrWrongStatus", what, err)
		}
		after := instanceNow(h, id)
		if after.Status != want || after.LastSeq != before.LastSeq {
			t.Fatalf("%s: instance %s at seq %d, want %s at seq %d",
				what, after.Status, after.LastSeq, want, before.LastSeq)
		}
	}
	resume := func() error { return h.e.Resume(h.ctx, id) }
	refused("resume of a running instance", resume, store.InstanceRunning)

	if err := h.e.Pause(h.ctx, id, "hold on"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	refused("second pause", func() error { return h.e.Pause(h.ctx, id, "again") },
		store.InstancePaused)
	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	refused("second resume", resume, store.InstanceRunning)

	if _, err := reportDone(h, task, `"from a"`); err != nil {
		t.Fatalf("reporting a: %v", err)
	}
	inst := h.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	if got := rec.list(); !slices.Equal(got, []string{`"from a"`}) {
		t.Fatalf("b calls = %v, want one with a's output", got)
	}
	evs := h.audit(id)
	if p, r := seqsOf(evs, "", "instance_paused"), seqsOf(evs, "", "instance_resumed"); len(p) != 1 ||
		len(r) != 1 || r[0] < p[0] {
		t.Fatalf("paused at seqs %v, resumed at %v: want one of each, in that order", p, r)
	}
	checkGapFree(t, evs)

	id = h.start("hold", `{}`)
	claimOutside(h, "remote")
	if err := h.e.Cancel(h.ctx, id, "stop"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	refused("resume of a cancelling instance", resume, store.InstanceCancelling)
	if err := h.e.Terminate(h.ctx, id, "done"); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	if err := h.e.Resume(h.ctx, id); !errors.Is(err, engine.ErrFinished) {
		t.Fatalf("resume of a terminated instance: %v, want ErrFinished", err)
	}
	if got := seqsOf(h.audit(id), "", "instance_resumed"); len(got) != 0 {
		t.Fatalf("resumed rows at %v for an instance never paused, want none", got)
	}
}

// TestResumeBeforePauseTookEffect is case 11 for a pause that has not
// yet stopped anything: it comes while A is in flight, and the resume
// comes before A reports. Both calls apply; A's report is accepted,
// B runs once after it, and nothing runs between the pause and the
// resume. Then the same with A reporting inside the pause: B waits for
// the resume.
func TestResumeBeforePauseTookEffect(t *testing.T) {
	h := newHarness(t)
	h.register(pauseDefinition)
	var rec recorder
	h.e.Handle("svc", "b", func(ctx context.Context, task engine.Task) (any, error) {
		rec.add(string(task.Input))
		return nil, nil
	})
	h.run()

	for _, reportPaused := range []bool{false, true} {
		id := h.start("hold", `{}`)
		task := claimOutside(h, "remote")

		if err := h.e.Pause(h.ctx, id, "hold on"); err != nil {
			t.Fatalf("pause: %v", err)
		}
		checkStatus(t, instanceNow(h, id), store.InstancePaused)
		if reportPaused {
			if res, err := reportDone(h, task, `"from a"`); err != nil ||
				res.Outcome != store.ReportAccepted {
				t.Fatalf("report during the pause: %v %q, want accepted", err, res.Outcome)
			}
			waitStepStatus(h, id, "a", store.StepCompleted)
			time.Sleep(50 * time.Millisecond)
			if b, ok := h.step(id, "b"); ok && b.Status != store.StepPending {
				t.Fatalf("b is %s during the pause, want pending or absent", b.Status)
			}
		}
		if err := h.e.Resume(h.ctx, id); err != nil {
			t.Fatalf("resume: %v", err)
		}
		checkStatus(t, instanceNow(h, id), store.InstanceRunning)
		if !reportPaused {
			if a, _ := h.step(id, "a"); a.Status != store.StepRunning || a.Attempt != 1 {
				t.Fatalf("after pause and resume a is %s at attempt %d, want running at 1",
					a.Status, a.Attempt)
			}
			if _, err := reportDone(h, task, `"from a"`); err != nil {
				t.Fatalf("reporting a: %v", err)
			}
		}
		inst := h.wait(id)

		checkStatus(t, inst, store.InstanceCompleted)
		evs := h.audit(id)
		var order []string
		for _, ev := range evs {
			switch ev.Type {
			case "instance_paused", "instance_resumed", "step_dispatched", "step_completed":
				order = append(order, strings.TrimPrefix(ev.StepID+":"+ev.Type, ":"))
			}
		}
		want := []string{"a:step_dispatched", "instance_paused", "instance_resumed",
			"a:step_completed", "b:step_dispatched", "b:step_completed"}
		if reportPaused {
			want[2], want[3] = want[3], want[2]
		}
		if !slices.Equal(order, want) {
			t.Fatalf("report during pause %t: audit order = %v, want %v", reportPaused, order, want)
		}
		checkGapFree(t, evs)
	}
	if got := rec.list(); !slices.Equal(got, []string{`"from a"`, `"from a"`}) {
		t.Fatalf("b calls = %v, want one per instance", got)
	}
}

// TestPauseResumeRaceAnswersMatchAudit is case 11 under contention:
// pauses and resumes race each other while the instance runs a loop of
// steps. Every call either applies, and then has its audit row, or is
// refused with ErrWrongStatus (ErrFinished once the instance ended) and
// has none; the rows alternate, no step is dispatched while paused, and
// every iteration runs once.
func TestPauseResumeRaceAnswersMatchAudit(t *testing.T) {
	const iterations = 40
	h := newHarness(t)
	h.register(fmt.Sprintf(`
name: loop
version: 1
steps:
  - id: loop
    type: while
    condition: data.n < %d
    steps:
      - {id: tick, type: task, service: svc, action: tick, input: data.n, output: n}
`, iterations))
	var rec recorder
	h.e.Handle("svc", "tick", func(ctx context.Context, task engine.Task) (any, error) {
		var n int
		if err := json.Unmarshal(task.Input, &n); err != nil {
			return nil, err
		}
		rec.add(fmt.Sprint(n))
		time.Sleep(2 * time.Millisecond)
		return n + 1, nil
	})
	h.run()
	id := h.start("loop", `{"n": 0}`)

	var applied [2]atomic.Int32
	var wg sync.WaitGroup
	for i, call := range []func() error{
		func() error { return h.e.Pause(h.ctx, id, "") },
		func() error { return h.e.Resume(h.ctx, id) },
	} {
		wg.Go(func() {
			for range 30 {
				err := call()
				switch {
				case err == nil:
					applied[i].Add(1)
				case !errors.Is(err, engine.ErrWrongStatus) && !errors.Is(err, engine.ErrFinished):
					t.Errorf("call %d: %v, want nil, ErrWrongStatus or ErrFinished", i, err)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()

	pauses, resumes := int(applied[0].Load()), int(applied[1].Load())
	if resumes > pauses || pauses > resumes+1 {
		t.Fatalf("%d pauses and %d resumes applied: they cannot alternate", pauses, resumes)
	}
	inst := instanceNow(h, id)
	if (inst.Status == store.InstancePaused) != (pauses > resumes) {
		t.Fatalf("instance is %s after %d pauses and %d resumes applied",
			inst.Status, pauses, resumes)
	}
	if inst.Status == store.InstancePaused {
		if err := h.e.Resume(h.ctx, id); err != nil {
			t.Fatalf("last resume: %v", err)
		}
		resumes++
	}
	inst = h.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	evs := h.audit(id)
	paused := false
	var pausedRows, resumedRows int
	for _, ev := range evs {
		switch ev.Type {
		case "instance_paused", "instance_resumed":
			if paused != (ev.Type == "instance_resumed") {
				t.Fatalf("%s at seq %d while paused=%t", ev.Type, ev.Seq, paused)
			}
			paused = !paused
			if paused {
				pausedRows++
			} else {
				resumedRows++
			}
		case "step_dispatched":
			if paused {
				t.Fatalf("%s dispatched at seq %d while paused", ev.StepID, ev.Seq)
			}
		}
	}
	if pausedRows != pauses || resumedRows != resumes {
		t.Fatalf("%d paused and %d resumed rows, want %d and %d (the calls that applied)",
			pausedRows, resumedRows, pauses, resumes)
	}
	want := make([]string, iterations)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("ticks = %v, want each of 0..%d once in order", got, iterations-1)
	}
	checkGapFree(t, evs)
	t.Logf("%d pauses and %d resumes applied", pauses, resumes)
}

// restartOptions are engine options for a restart: leases and task
// claims short, so that the second engine need not wait long for what
// the first one held.
func restartOptions() engine.Options {
	opts := fastOptions()
	opts.LeaseTTL = 300 * time.Millisecond
	opts.TaskLeaseTTL = 300 * time.Millisecond

	return opts
}

// restartDefinition is TASK(S1) -> S2 with S1's start_to_close cap.
func restartDefinition(startToClose string) string {
	return fmt.Sprintf(`
name: restart
version: 1
steps:
  - id: s1
    type: task
    service: slow
    action: s1
    output: s1
    timeouts: {start_to_close: %s}
    retry: {max_attempts: 3, initial_interval: 10ms}
  - {id: s2, type: task, service: svc, action: s2, input: data.s1}
`, startToClose)
}

// runUntilStopped runs S1's first attempt on an engine that is stopped
// while the attempt runs, and returns the instance and the attempt's
// task row as the store held it (the token its worker would report
// with). The handler gives up only when the engine stops.
func runUntilStopped(t *testing.T, open opener, startToClose string) (string, store.Task) {
	t.Helper()
	a := newHarnessOn(t, open, restartOptions())
	a.register(restartDefinition(startToClose))
	started := make(chan struct{})
	a.e.Handle("slow", "s1", func(ctx context.Context, task engine.Task) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	a.run()
	id := a.start("restart", `{}`)
	<-started

	tasks, err := a.st.TaskList(a.ctx, id)
	if err != nil || len(tasks) != 1 || tasks[0].StepID != "s1" || tasks[0].Attempt != 1 {
		t.Fatalf("tasks while s1 runs = %+v (%v), want s1's attempt 1", tasks, err)
	}
	a.stop()

	return id, tasks[0]
}

// s2Counter is S2's handler: it counts its calls and keeps its input.
type s2Counter struct {
	calls atomic.Int32
	input atomic.Value
}

func (c *s2Counter) handle(ctx context.Context, task engine.Task) (any, error) {
	c.calls.Add(1)
	c.input.Store(string(task.Input))

	return nil, nil
}

// checkOneCompletion checks that S1 completed once, by attempt, with
// output, and that S2 ran once, after it, on that output.
func checkOneCompletion(t *testing.T, h *harness, id string, attempt int, output string,
	s2 *s2Counter) {
	t.Helper()
	evs := h.audit(id)
	var completed []int
	for _, ev := range evs {
		if ev.StepID == "s1" && ev.Type == "step_completed" {
			completed = append(completed, ev.Attempt)
		}
	}
	if !slices.Equal(completed, []int{attempt}) {
		t.Fatalf("s1 completed by attempts %v, want only %d", completed, attempt)
	}
	if s1, _ := h.step(id, "s1"); s1.Attempt != attempt || string(s1.Output) != output {
		t.Fatalf("s1 at attempt %d with output %s, want %d and %s",
			s1.Attempt, s1.Output, attempt, output)
	}
	if n, in := s2.calls.Load(), s2.input.Load(); n != 1 || in != output {
		t.Fatalf("s2 ran %d times, last on %v, want once on %s", n, in, output)
	}
	done, sent := seqsOf(evs, "s1", "step_completed"), seqsOf(evs, "s2", "step_dispatched")
	if len(sent) != 1 || sent[0] < done[0] {
		t.Fatalf("s2 dispatched at seqs %v, s1 completed at %v: want once, after s1", sent, done)
	}
	checkGapFree(t, evs)
}

// TestRestartMidStepRedeliversSameAttempt is case 12 in process with
// the downtime inside S1's start_to_close: engine A is stopped while
// S1's Go handler runs; a new engine on the same database (an SQLite
// file, a PostgreSQL schema) hands S1 out
// again with the same attempt and idempotency key (a restart is not an
// attempt), exactly one completion of S1 is accepted, S2 runs once, and
// the stopped run's report, coming after the end, is refused as late.
func TestRestartMidStepRedeliversSameAttempt(t *testing.T) {
	for name, at := range bothStores {
		t.Run(name, func(t *testing.T) { restartRedelivers(t, at(t)) })
	}
}

func restartRedelivers(t *testing.T, open opener) {
	id, first := runUntilStopped(t, open, "1m")
	time.Sleep(400 * time.Millisecond)

	b := newHarnessOn(t, open, restartOptions())
	var rec recorder
	b.e.Handle("slow", "s1", func(ctx context.Context, task engine.Task) (any, error) {
		rec.add(fmt.Sprintf("%d %s", task.Attempt, task.IdempotencyKey))
		return "s1 after the restart", nil
	})
	var s2 s2Counter
	b.e.Handle("svc", "s2", s2.handle)
	b.run()
	inst := b.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	if got := rec.list(); !slices.Equal(got, []string{"1 " + first.IdempotencyKey}) {
		t.Fatalf("s1 calls after the restart = %v, want one of attempt 1 with key %s",
			got, first.IdempotencyKey)
	}
	checkOneCompletion(t, b, id, 1, `"s1 after the restart"`, &s2)
	evs := b.audit(id)
	if n := len(seqsOf(evs, "s1", "step_dispatched")); n != 1 {
		t.Fatalf("s1 dispatched %d times, want once", n)
	}
	if got := auditTypes(evs, "s1"); slices.Contains(got, "step_timed_out") ||
		slices.Contains(got, "step_retry_scheduled") {
		t.Fatalf("s1 audit = %v, want no timeout and no retry", got)
	}

	res, err := reportDone(b, first, `"s1 from the stopped run"`)

	if !errors.Is(err, engine.ErrLate) || res.Outcome != store.ReportLate {
		t.Fatalf("the stopped run's report: %v %q, want ErrLate and outcome late",
			err, res.Outcome)
	}
	after := b.audit(id)
	if len(after) != len(evs)+1 || after[len(evs)].Type != "report_late" ||
		after[len(evs)].StepID != "s1" {
		t.Fatalf("audit grew from %d to %d rows after the stopped run's report, "+
			"want one report_late of s1", len(evs), len(after))
	}
	checkOneCompletion(t, b, id, 1, `"s1 after the restart"`, &s2)
}

// TestRestartMidStepRefusesStaleAttempt is case 12 in process with the
// downtime past S1's start_to_close: engine A is stopped while S1's
// first attempt runs and a new engine starts on the same database after
// the attempt's cap. It times the attempt out and runs a second one;
// the first attempt's report, coming while the second runs, is refused
// as late and audited as report_late; exactly one completion of S1 (the
// second attempt's) is accepted, and S2 runs once.
func TestRestartMidStepRefusesStaleAttempt(t *testing.T) {
	for name, at := range bothStores {
		t.Run(name, func(t *testing.T) { restartRefusesStale(t, at(t)) })
	}
}

func restartRefusesStale(t *testing.T, open opener) {
	id, first := runUntilStopped(t, open, "500ms")
	time.Sleep(time.Until(first.Deadline.Add(200 * time.Millisecond)))

	b := newHarnessOn(t, open, restartOptions())
	var stale struct {
		mu  sync.Mutex
		res store.ReportResult
		err error
	}
	b.e.Handle("slow", "s1", func(ctx context.Context, task engine.Task) (any, error) {
		if task.Attempt == 1 {
			// The first attempt handed out again past its cap: its
			// context has ended, and so has the attempt.
			return nil, ctx.Err()
		}
		res, err := reportDone(b, first, `"s1 from the stopped run"`)
		stale.mu.Lock()
		stale.res, stale.err = res, err
		stale.mu.Unlock()
		return fmt.Sprintf("s1 by attempt %d", task.Attempt), nil
	})
	var s2 s2Counter
	b.e.Handle("svc", "s2", s2.handle)
	b.run()
	inst := b.wait(id)

	checkStatus(t, inst, store.InstanceCompleted)
	stale.mu.Lock()
	defer stale.mu.Unlock()
	if !errors.Is(stale.err, engine.ErrLate) || stale.res.Outcome != store.ReportLate {
		t.Fatalf("the first attempt's report: %v %q, want ErrLate and outcome late",
			stale.err, stale.res.Outcome)
	}
	checkOneCompletion(t, b, id, 2, `"s1 by attempt 2"`, &s2)
	var timedOut, late []int
	for _, ev := range b.audit(id) {
		switch {
		case ev.StepID == "s1" && ev.Type == "step_timed_out":
			timedOut = append(timedOut, ev.Attempt)
		case ev.StepID == "s1" && ev.Type == "report_late":
			late = append(late, ev.Attempt)
		}
	}
	if !slices.Equal(timedOut, []int{1}) || !slices.Equal(late, []int{1}) {
		t.Fatalf("s1 timed out at attempts %v and reported late at %v, want [1] and [1]",
			timedOut, late)
	}
}

// TestRunningInstanceKeepsItsVersion is case 14: I starts on v1 =
// A -> DELAY(1h) -> B; v2 = A -> X -> DELAY -> B is registered while I
// sleeps. I stays on v1 and X never runs for it, while a new start takes
// v2 and runs X. Deleting v1 while I lives is refused with
// store.ErrInUse and changes nothing; once I has finished it is allowed,
// and I stays readable and answers commands with ErrFinished.
func TestRunningInstanceKeepsItsVersion(t *testing.T) {
	clock := newManualClock()
	opts := fastOptions()
	opts.Clock = clock
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	const v1 = `
name: evolve
version: 1
steps:
  - {id: a, type: task, service: svc, action: a}
  - {id: nap, type: delay, duration: 1h}
  - {id: b, type: task, service: svc, action: b}
`
	const v2 = `
name: evolve
version: 2
steps:
  - {id: a, type: task, service: svc, action: a}
  - {id: x, type: task, service: svc, action: x}
  - {id: nap, type: delay, duration: 1h}
  - {id: b, type: task, service: svc, action: b}
`
	h.register(v1)
	var rec recorder
	for _, action := range []string{"a", "x", "b"} {
		h.e.Handle("svc", action, func(ctx context.Context, task engine.Task) (any, error) {
			rec.add(task.InstanceID + " " + action)
			return nil, nil
		})
	}
	h.run()
	first := h.start("evolve", `{}`)
	waitStepStatus(h, first, "nap", store.StepSleeping)

	h.register(v2)
	second := h.start("evolve", `{}`)
	waitStepStatus(h, second, "nap", store.StepSleeping)
	before := instanceNow(h, first)
	err := h.e.DeleteDefinition(h.ctx, "evolve", 1)

	if !errors.Is(err, store.ErrInUse) {
		t.Fatalf("deleting v1 while I lives: %v, want store.ErrInUse", err)
	}
	if _, err := h.e.Store().DefinitionGet(h.ctx, "evolve", 1); err != nil {
		t.Fatalf("v1 after the refused delete: %v", err)
	}
	if after := instanceNow(h, first); after.Status != store.InstanceRunning ||
		after.LastSeq != before.LastSeq {
		t.Fatalf("I after the refused delete: %s at seq %d, want running at seq %d",
			after.Status, after.LastSeq, before.LastSeq)
	}
	clock.add(2 * time.Hour)
	for _, id := range []string{first, second} {
		checkStatus(t, h.wait(id), store.InstanceCompleted)
	}

	if v := instanceNow(h, first).DefinitionVersion; v != 1 {
		t.Fatalf("I ran on v%d, want v1", v)
	}
	if v := instanceNow(h, second).DefinitionVersion; v != 2 {
		t.Fatalf("the later start ran on v%d, want v2", v)
	}
	var calls []string
	for _, c := range rec.list() {
		if id, action, _ := strings.Cut(c, " "); id == first {
			calls = append(calls, action)
		}
	}
	if !slices.Equal(calls, []string{"a", "b"}) {
		t.Fatalf("I's calls = %v, want [a b]", calls)
	}
	if _, ok := h.step(first, "x"); ok {
		t.Fatal("x has a step row in I, want none")
	}
	if n := rec.count(second + " x"); n != 1 {
		t.Fatalf("x ran %d times for the v2 instance, want 1", n)
	}

	// A finished instance still names v1: the version stays, so that
	// (evolve, 1) can never be registered again with other content.
	if err := h.e.DeleteDefinition(h.ctx, "evolve", 1); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("deleting v1 after I finished: %v, want store.ErrInUse", err)
	}
	other := strings.Replace(v1, "nap", "rest", 1)
	if _, err := h.e.RegisterDefinition(h.ctx, []byte(other)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("registering other content as v1: %v, want store.ErrAlreadyExists", err)
	}
}

// TestOversizedOutputFailsWithoutThePayload is case 10: a step whose
// output is over the payload limit fails with "payload too large" by its
// error behaviour, the failure is stored without the payload, and the
// instance does not hang; an output just under the limit passes.
func TestOversizedOutputFailsWithoutThePayload(t *testing.T) {
	const limit = 4096
	opts := fastOptions()
	opts.MaxPayloadBytes = limit
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: big
version: 1
steps:
  - {id: make, type: task, service: big, action: make, input: input.size, output: made,
     retry: {max_attempts: 2, initial_interval: 1ms}}
`)
	var calls atomic.Int64
	h.e.Handle("big", "make", func(_ context.Context, task engine.Task) (any, error) {
		calls.Add(1)
		var size int
		if err := json.Unmarshal(task.Input, &size); err != nil {
			return nil, err
		}
		return strings.Repeat("x", size-2), nil // The JSON string adds two quotes.
	})
	h.run()

	under := h.wait(begin(h, "big", fmt.Sprintf(`{"size": %d}`, limit)))
	wantCompleted(t, under)

	calls.Store(0)
	id := begin(h, "big", fmt.Sprintf(`{"size": %d}`, limit+1))
	over := h.wait(id)
	checkStatus(t, over, store.InstanceFailed)
	if !strings.Contains(string(over.Error), "payload too large") {
		t.Fatalf("instance error = %s, want it to say payload too large", over.Error)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2 (the step's max_attempts)", n)
	}

	rows := stepRows(h, id, "make")
	if len(rows) != 1 {
		t.Fatalf("got %d make steps, want 1", len(rows))
	}
	s := rows[0]
	if len(s.Output) != 0 || (s.Report != nil && len(s.Report.Output) != 0) {
		t.Fatalf("failed step keeps %d+ bytes of output, want none", len(s.Output))
	}
	for _, ev := range h.audit(id) {
		if len(ev.Data) > limit {
			t.Fatalf("audit row %s holds %d bytes, want the payload left out", ev.Type, len(ev.Data))
		}
	}
}
