package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store/postgres/pgtest"
)

// addTask adds the input's "add" to its "value".
func addTask(_ context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
	var in struct{ Value, Add int }
	if err := json.Unmarshal([]byte(task.GetInput()), &in); err != nil {
		return "", &weftv1.StepError{Code: "bad_input", Message: err.Error()}
	}

	return fmt.Sprint(in.Value + in.Add), nil
}

func decode(t *testing.T, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("decoding %q: %v", raw, err)
	}

	return m
}

func stepOf(resp *weftv1.GetInstanceResponse, id string) (*weftv1.Step, bool) {
	for _, st := range resp.GetSteps() {
		if st.GetStepId() == id {
			return st, true
		}
	}

	return nil, false
}

// stepEvents lists "step:type" of the audit rows about steps.
func stepEvents(evs []*weftv1.AuditEvent) []string {
	var out []string
	for _, ev := range evs {
		if ev.GetStepId() != "" && ev.GetStepId() != "$root" {
			out = append(out, ev.GetStepId()+":"+ev.GetType())
		}
	}

	return out
}

// TestServeBasicRun is seed scenario 1 through the API: three steps run
// in order by a pull worker, and the result is read back.
func TestServeBasicRun(t *testing.T) {
	testBasicRun(t, startServe(t))
}

// TestServeBasicRunOnPostgres is seed scenario 1 through a weft serve
// whose --database is a postgres:// URL, on a fresh schema.
func TestServeBasicRunOnPostgres(t *testing.T) {
	url, schema := pgtest.Schema(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	testBasicRun(t, startServe(t, "--database", url+sep+"search_path="+schema))
}

func testBasicRun(t *testing.T, p *serveProc) {
	p.register(t, `
name: basic
version: 1
steps:
  - {id: a, type: task, service: math, action: add, input: {value: "data.start", add: 1}, output: a}
  - {id: b, type: task, service: math, action: add, input: {value: "data.a", add: 10}, output: b}
  - {id: c, type: task, service: math, action: add, input: {value: "steps.b.output", add: 100}, output: c}
`)
	w := runWorker(t, p, "math", map[string]taskFunc{"add": addTask})

	id := p.start(t, "basic", `{"start": 5}`)
	got, evs := p.wait(t, id)

	if s := got.GetInstance().GetStatus(); s != weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED {
		t.Fatalf("status = %v (%s), want completed", s, got.GetInstance().GetError())
	}
	out := decode(t, got.GetInstance().GetOutput())
	if out["a"] != 6.0 || out["b"] != 16.0 || out["c"] != 116.0 {
		t.Fatalf("output = %v, want a=6 b=16 c=116", out)
	}
	if calls := w.called(); !slices.Equal(calls, []string{"a", "b", "c"}) {
		t.Fatalf("worker ran %v, want [a b c]", calls)
	}
	want := []string{
		"a:step_dispatched", "a:step_started", "a:step_completed",
		"b:step_dispatched", "b:step_started", "b:step_completed",
		"c:step_dispatched", "c:step_started", "c:step_completed",
	}
	if order := stepEvents(evs); !slices.Equal(order, want) {
		t.Fatalf("audit order =\n%v\nwant\n%v", order, want)
	}
	for _, st := range []string{"a", "b", "c"} {
		step, ok := stepOf(got, st)
		if !ok || step.GetStatus() != weftv1.StepStatus_STEP_STATUS_COMPLETED || step.GetAttempt() != 1 {
			t.Fatalf("step %s = %v, want completed at attempt 1", st, step)
		}
	}
}

// TestServeParallelJoin is seed scenario 2 through the API: the branches
// overlap, the left result is readable while the right one runs, and the
// join starts once, after both.
func TestServeParallelJoin(t *testing.T) {
	p := startServe(t)
	p.register(t, `
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
  - {id: join, type: task, service: work, action: join, input: {l: "data.left", r: "data.right"}, output: joined}
`)
	releaseRight := make(chan struct{})
	var joins atomic.Int32
	w := runWorker(t, p, "work", map[string]taskFunc{
		"left": func(context.Context, *weftv1.Task) (string, *weftv1.StepError) { return `"L"`, nil },
		"right": func(ctx context.Context, _ *weftv1.Task) (string, *weftv1.StepError) {
			select {
			case <-releaseRight:
			case <-ctx.Done():
			}
			return `"R"`, nil
		},
		"join": func(_ context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
			joins.Add(1)
			var in map[string]string
			_ = json.Unmarshal([]byte(task.GetInput()), &in)
			out, _ := json.Marshal(in["l"] + in["r"])
			return string(out), nil
		},
	})

	id := p.start(t, "fanout", `{}`)
	var mid *weftv1.GetInstanceResponse
	waitFor(t, "left's result while right runs", func() bool {
		var err error
		mid, err = p.state.GetInstance(p.ctx(t), &weftv1.GetInstanceRequest{InstanceId: id})
		return err == nil && decode(t, mid.GetInstance().GetData())["left"] == "L" &&
			slices.Contains(w.called(), "right")
	})
	right, _ := stepOf(mid, "right")
	if right.GetStatus() != weftv1.StepStatus_STEP_STATUS_RUNNING {
		t.Fatalf("right is %v while left is done, want running", right.GetStatus())
	}
	if left, _ := stepOf(mid, "left"); left.GetOutput() != `"L"` {
		t.Fatalf("left's partial result = %q, want \"L\"", left.GetOutput())
	}
	if _, ok := stepOf(mid, "join"); ok || joins.Load() != 0 {
		t.Fatal("join started before both branches finished")
	}

	close(releaseRight)
	got, _ := p.wait(t, id)
	if s := got.GetInstance().GetStatus(); s != weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED {
		t.Fatalf("status = %v (%s), want completed", s, got.GetInstance().GetError())
	}
	if joined := decode(t, got.GetInstance().GetOutput())["joined"]; joined != "LR" {
		t.Fatalf("joined = %v, want LR", joined)
	}
	if joins.Load() != 1 {
		t.Fatalf("join ran %d times, want 1", joins.Load())
	}
}

// TestServeRetry is seed scenario 3 through the API: max_attempts 4 on an
// always-failing step runs it exactly four times, then the instance fails
// with the error.
func TestServeRetry(t *testing.T) {
	p := startServe(t)
	p.register(t, `
name: flaky
version: 1
steps:
  - id: boom
    type: task
    service: svc
    action: fail
    retry: {max_attempts: 4, initial_interval: 10ms, backoff_coefficient: 2}
  - {id: after, type: task, service: svc, action: never}
`)
	var calls atomic.Int32
	w := runWorker(t, p, "svc", map[string]taskFunc{
		"fail": func(_ context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
			n := calls.Add(1)
			if task.GetAttempt() != n {
				t.Errorf("attempt %d on call %d", task.GetAttempt(), n)
			}
			return "", &weftv1.StepError{Code: "broken", Message: fmt.Sprintf("failure %d", n), Retryable: true}
		},
		"never": func(context.Context, *weftv1.Task) (string, *weftv1.StepError) {
			t.Error("the step after the failed one ran")
			return "null", nil
		},
	})

	id := p.start(t, "flaky", `{}`)
	got, evs := p.wait(t, id)

	inst := got.GetInstance()
	if inst.GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_FAILED {
		t.Fatalf("status = %v, want failed", inst.GetStatus())
	}
	if n := calls.Load(); n != 4 || len(w.called()) != 4 {
		t.Fatalf("the step ran %d times, want 4", n)
	}
	if e := decode(t, inst.GetError()); e["step_id"] != "boom" || e["message"] != "failure 4" {
		t.Fatalf("instance error = %v, want step boom, failure 4", e)
	}
	step, _ := stepOf(got, "boom")
	if step.GetStatus() != weftv1.StepStatus_STEP_STATUS_FAILED || step.GetAttempt() != 4 {
		t.Fatalf("boom = %v attempt %d, want failed at attempt 4", step.GetStatus(), step.GetAttempt())
	}
	failed := 0
	for _, e := range stepEvents(evs) {
		if e == "boom:step_failed" {
			failed++
		}
	}
	if failed != 4 {
		t.Fatalf("audit has %d step_failed rows, want 4", failed)
	}
	if last := evs[len(evs)-1]; last.GetType() != "instance_failed" {
		t.Fatalf("last audit row = %s, want instance_failed", last.GetType())
	}
	if _, ok := stepOf(got, "after"); ok {
		t.Fatal("the step after the failed one started")
	}
}

// TestServeCancel is seed scenario 4 through the API: the running step
// finishes and is recorded, nothing new starts, the cleanup runs, and the
// instance ends cancelled.
func TestServeCancel(t *testing.T) {
	p := startServe(t)
	p.register(t, `
name: cancellable
version: 1
steps:
  - {id: slow, type: task, service: svc, action: slow, output: slow}
  - {id: next, type: task, service: svc, action: next}
on_cancel:
  - {id: cleanup, type: task, service: svc, action: cleanup, output: cleaned}
`)
	started, release := make(chan *weftv1.Task, 1), make(chan struct{})
	w := runWorker(t, p, "svc", map[string]taskFunc{
		"slow": func(ctx context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
			started <- task
			<-release
			return `"finished anyway"`, nil
		},
		"next":    func(context.Context, *weftv1.Task) (string, *weftv1.StepError) { return "null", nil },
		"cleanup": func(context.Context, *weftv1.Task) (string, *weftv1.StepError) { return "true", nil },
	})

	id := p.start(t, "cancellable", `{}`)
	task := <-started
	resp, err := p.exec.CancelInstance(p.ctx(t), &weftv1.CancelInstanceRequest{InstanceId: id, Reason: "user asked"})
	if err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	if s := resp.GetInstance().GetStatus(); s != weftv1.InstanceStatus_INSTANCE_STATUS_CANCELLING {
		t.Fatalf("status after cancel = %v, want cancelling while slow runs", s)
	}
	hb, err := p.steps.HeartbeatTask(p.ctx(t), &weftv1.HeartbeatTaskRequest{Task: &weftv1.TaskRef{
		InstanceId: id, PointerId: task.GetPointerId(), Attempt: task.GetAttempt(), TaskToken: task.GetTaskToken(),
	}})
	if err != nil || !hb.GetCancelRequested() {
		t.Fatalf("heartbeat during cancel = %v, %v; want cancel_requested", hb, err)
	}
	close(release)
	got, _ := p.wait(t, id)

	if s := got.GetInstance().GetStatus(); s != weftv1.InstanceStatus_INSTANCE_STATUS_CANCELLED {
		t.Fatalf("status = %v, want cancelled", s)
	}
	if calls := w.called(); !slices.Equal(calls, []string{"slow", "cleanup"}) {
		t.Fatalf("worker ran %v, want [slow cleanup]", calls)
	}
	slow, _ := stepOf(got, "slow")
	if slow.GetStatus() != weftv1.StepStatus_STEP_STATUS_COMPLETED || slow.GetOutput() != `"finished anyway"` {
		t.Fatalf("slow = %v %s, want completed with its output", slow.GetStatus(), slow.GetOutput())
	}
	if _, ok := stepOf(got, "next"); ok {
		t.Fatal("a step started after the cancel")
	}
	if decode(t, got.GetInstance().GetData())["cleaned"] != true {
		t.Fatalf("cleanup output missing from data: %s", got.GetInstance().GetData())
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestServeRetryAndSkip restarts a failed instance from its failed step
// through the API, with attempt numbers going on, then skips the step
// when it fails again, supplying its output.
func TestServeRetryAndSkip(t *testing.T) {
	p := startServe(t)
	p.register(t, `
name: repair
version: 1
steps:
  - {id: boom, type: task, service: svc, action: fail, retry: {max_attempts: 1}, output: got}
  - {id: after, type: task, service: svc, action: echo, input: data.got}
`)
	var attempts []int32
	var mu sync.Mutex
	runWorker(t, p, "svc", map[string]taskFunc{
		"fail": func(_ context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
			mu.Lock()
			attempts = append(attempts, task.GetAttempt())
			mu.Unlock()
			return "", &weftv1.StepError{Code: "broken", Message: "still broken"}
		},
		"echo": func(_ context.Context, task *weftv1.Task) (string, *weftv1.StepError) {
			return task.GetInput(), nil
		},
	})
	ctx := p.ctx(t)

	id := p.start(t, "repair", `{}`)
	got, _ := p.wait(t, id)
	if got.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_FAILED {
		t.Fatalf("status = %v, want failed", got.GetInstance().GetStatus())
	}

	retried, err := p.exec.RetryInstance(ctx, &weftv1.RetryInstanceRequest{InstanceId: id})
	if err != nil || retried.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING {
		t.Fatalf("retry: %v, %v; want running", retried, err)
	}
	got, _ = p.wait(t, id)
	if got.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_FAILED {
		t.Fatalf("after the retry: status = %v, want failed again", got.GetInstance().GetStatus())
	}
	mu.Lock()
	if !slices.Equal(attempts, []int32{1, 2}) {
		t.Fatalf("attempts = %v, want [1 2]", attempts)
	}
	mu.Unlock()

	_, err = p.exec.SkipStep(ctx, &weftv1.SkipStepRequest{InstanceId: id, StepId: "after", Output: `1`})
	wantCode(t, "skip of a step that did not fail", err, codes.InvalidArgument)
	skipped, err := p.exec.SkipStep(ctx, &weftv1.SkipStepRequest{
		InstanceId: id, StepId: "boom", Output: `{"fixed": true}`,
	})
	if err != nil || skipped.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING {
		t.Fatalf("skip: %v, %v; want running", skipped, err)
	}
	got, _ = p.wait(t, id)
	if got.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED {
		t.Fatalf("after the skip: status = %v (%s), want completed",
			got.GetInstance().GetStatus(), got.GetInstance().GetError())
	}
	after, _ := stepOf(got, "after")
	if decode(t, after.GetOutput())["fixed"] != true {
		t.Fatalf("after's output = %s, want the skipped step's supplied output", after.GetOutput())
	}
}
