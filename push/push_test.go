package push_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/store"
)

func TestInlineResultCompletesTheStep(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	svc.answer = func(_ context.Context, task *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		return output(`{"got": ` + task.GetInput() + `}`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "inline", Addresses: []string{svc.addr}})
	h.register(oneStep("inline", "inline", ""))

	inst := h.wait(h.start("inline", `{"n": 7}`))

	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
	}
	if got := string(inst.Data); !strings.Contains(got, `"got":{"n":7}`) {
		t.Fatalf("data %s, want the service's output with the input", got)
	}
	calls, _ := svc.snapshot()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	task := calls[0].task
	if task.GetIdempotencyKey() == "" || task.GetTaskToken() == "" || task.GetAttempt() != 1 {
		t.Fatalf("task %v lacks its key, token or attempt", task)
	}
}

func TestAcceptedAttemptReportsLater(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc, tasks := acceptingService(t)
	h.service(store.Service{Name: "slow", Addresses: []string{svc.addr}})
	h.register(oneStep("slow", "slow", "    timeouts: {start_to_close: 1m}"))
	id := h.start("slow", `{}`)

	task := <-tasks
	if task.GetDeadline() == nil {
		t.Fatalf("task %v has no deadline; its step has a start_to_close cap", task)
	}
	_, err := h.eng.Report(h.ctx, engine.ReportParams{
		InstanceID: task.GetInstanceId(), PointerID: task.GetPointerId(),
		Attempt: int(task.GetAttempt()), Token: task.GetTaskToken(), Output: json.RawMessage(`"later"`),
	})
	if err != nil {
		t.Fatalf("reporting: %v", err)
	}

	if inst := h.wait(id); inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
	}
	if calls, _ := svc.snapshot(); len(calls) != 1 {
		t.Fatalf("%d calls, want 1: an accepted attempt is not sent again while its claim holds", len(calls))
	}
}

func TestServiceDownAtFirstCostsNoAttempt(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	h.service(store.Service{Name: "late", Addresses: []string{svc.addr}, DispatchLimit: 1000})
	h.register(oneStep("late", "late", "    retry: {max_attempts: 1}"))
	id := h.start("late", `{}`)

	waitFor(t, "the dispatcher to find the service down", func() bool {
		return h.d.Counters().Unreachable.Load() >= 3
	})
	svc.up(t)
	inst := h.wait(id)

	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed once the service is up", inst.Status, inst.Error)
	}
	steps, err := h.eng.Steps(h.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.StepID == "work" && s.Attempt != 1 {
			t.Fatalf("step ran %d attempts; an unreachable service costs none", s.Attempt)
		}
	}
}

func TestDispatchLimitFailsTheAttempt(t *testing.T) {
	h := newHarness(t, push.Options{BreakerFailures: 1000})
	svc := newService(t)
	h.service(store.Service{Name: "gone", Addresses: []string{svc.addr}, DispatchLimit: 3})
	h.register(oneStep("gone", "gone", "    retry: {max_attempts: 1}"))

	inst := h.wait(h.start("gone", `{}`))

	if inst.Status != store.InstanceFailed || !strings.Contains(string(inst.Error), "dispatch_failed") {
		t.Fatalf("instance %s with %s, want failed with dispatch_failed", inst.Status, inst.Error)
	}
	if n := h.d.Counters().Unreachable.Load(); n != 3 {
		t.Fatalf("%d unreachable calls, want the dispatch limit, 3", n)
	}
}

func TestBreakerStopsCallingADownService(t *testing.T) {
	h := newHarness(t, push.Options{BreakerFailures: 2, BreakerOpen: time.Hour})
	svc := newService(t)
	h.service(store.Service{Name: "down", Addresses: []string{svc.addr}, DispatchLimit: 1000})
	h.register(oneStep("down", "down", ""))
	for range 20 {
		h.start("down", `{}`)
	}

	waitFor(t, "the breaker to open", func() bool { return h.d.Counters().Unreachable.Load() >= 2 })
	time.Sleep(500 * time.Millisecond)

	// Calls already claimed when the breaker opened are refused by it
	// too; nothing new is claimed while it is open.
	sent := h.d.Counters().Sent.Load()
	time.Sleep(500 * time.Millisecond)
	if later := h.d.Counters().Sent.Load(); later != sent {
		t.Fatalf("%d calls became %d while the breaker was open", sent, later)
	}
	tasks, err := h.st.TaskList(h.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 20 {
		t.Fatalf("%d tasks queued, want all 20 kept for when the service is back", len(tasks))
	}
}

func TestConcurrencyLimitHolds(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		time.Sleep(30 * time.Millisecond)
		return output(`1`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "capped", Addresses: []string{svc.addr}, Concurrency: 3})
	h.register(oneStep("capped", "capped", ""))

	var ids []string
	for range 40 {
		ids = append(ids, h.start("capped", `{}`))
	}
	for _, id := range ids {
		if inst := h.wait(id); inst.Status != store.InstanceCompleted {
			t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
		}
	}

	calls, maxHeld := svc.snapshot()
	if maxHeld > 3 {
		t.Fatalf("service held %d calls at once, over its limit of 3", maxHeld)
	}
	if maxHeld < 2 || len(calls) != 40 {
		t.Fatalf("%d calls, at most %d at once; want 40 calls running side by side", len(calls), maxHeld)
	}
}

// TestBacklogAfterOutageKeepsLimits queues work while the service is
// down, brings it up, and measures what the service sees while the
// backlog drains: never more than its concurrency limit at once, and a
// rate within 10% of its rate limit.
func TestBacklogAfterOutageKeepsLimits(t *testing.T) {
	const (
		n     = 100
		limit = 4
		rate  = 20.0
	)
	h := newHarness(t, push.Options{BreakerFailures: 2})
	svc := newService(t)
	svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		// At 20 calls a second a call of 60ms keeps about 1.2 open; the
		// bucket's burst of 4 when the service comes back meets the
		// concurrency limit of 4.
		time.Sleep(60 * time.Millisecond)
		return output(`1`), nil
	}
	h.service(store.Service{
		Name: "paced", Addresses: []string{svc.addr}, Concurrency: limit, Rate: rate, Burst: 4,
		DispatchLimit: 1000,
	})
	h.register(oneStep("paced", "paced", ""))
	var ids []string
	for range n {
		ids = append(ids, h.start("paced", `{}`))
	}
	waitFor(t, "the breaker to open", func() bool { return h.d.Counters().Unreachable.Load() >= 2 })

	svc.up(t)
	for _, id := range ids {
		if inst := h.wait(id); inst.Status != store.InstanceCompleted {
			t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
		}
	}

	calls, maxHeld := svc.snapshot()
	if maxHeld > limit {
		t.Fatalf("service held %d calls at once, over its limit of %d", maxHeld, limit)
	}
	if len(calls) < n {
		t.Fatalf("%d calls for %d attempts", len(calls), n)
	}
	span := calls[len(calls)-1].at.Sub(calls[0].at).Seconds()
	got := float64(len(calls)-1) / span
	t.Logf("%d calls in %.2fs: %.1f/s, at most %d at once", len(calls), span, got, maxHeld)
	if got > rate*1.1 {
		t.Fatalf("rate %.1f/s, over its limit of %.0f/s by more than 10%%", got, rate)
	}
	if got < rate*0.9 && !raceEnabled {
		t.Fatalf("rate %.1f/s, want within 10%% of %.0f/s", got, rate)
	}
}

func TestCancelReachesAcceptedAttempt(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc, tasks := acceptingService(t)
	h.service(store.Service{Name: "held", Addresses: []string{svc.addr}})
	h.register(oneStep("held", "held", ""))
	id := h.start("held", `{}`)
	task := <-tasks

	if err := h.eng.Cancel(h.ctx, id, "user asked"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	var req *weftv1.CancelTaskRequest
	select {
	case req = <-svc.cancelc:
	case <-time.After(10 * time.Second):
		t.Fatal("the service was not told of the cancel")
	}
	if req.GetTask().GetPointerId() != task.GetPointerId() || req.GetTask().GetTaskToken() != task.GetTaskToken() ||
		req.GetTask().GetAttempt() != task.GetAttempt() || req.GetReason() == "" {
		t.Fatalf("cancel %v does not name the attempt %v with a reason", req, task)
	}

	// The service may still finish; its report is recorded.
	_, err := h.eng.Report(h.ctx, engine.ReportParams{
		InstanceID: id, PointerID: task.GetPointerId(), Attempt: int(task.GetAttempt()),
		Token: task.GetTaskToken(), Output: json.RawMessage(`"done anyway"`),
	})
	if err != nil {
		t.Fatalf("report after cancel: %v", err)
	}
	inst := h.wait(id)
	if inst.Status != store.InstanceCancelled {
		t.Fatalf("status %s, want cancelled", inst.Status)
	}
	steps, err := h.eng.Steps(h.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.StepID == "work" && s.Status != store.StepCompleted {
			t.Fatalf("step %s after its late report, want completed (recorded)", s.Status)
		}
	}
}

func TestExpiredAcceptedClaimResendsTheSameAttempt(t *testing.T) {
	h := newHarness(t, push.Options{AcceptedTTL: 300 * time.Millisecond})
	svc := newService(t)
	var mu sync.Mutex
	var seen []*weftv1.Task
	svc.answer = func(_ context.Context, task *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, task)
		if len(seen) < 3 {
			return accepted(), nil
		}
		return output(`"third time"`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "lost", Addresses: []string{svc.addr}})
	h.register(oneStep("lost", "lost", ""))

	inst := h.wait(h.start("lost", `{}`))

	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, task := range seen[1:] {
		if task.GetIdempotencyKey() != seen[0].GetIdempotencyKey() || task.GetAttempt() != 1 ||
			task.GetTaskToken() != seen[0].GetTaskToken() {
			t.Fatalf("resent %v, want the first attempt again, %v", task, seen[0])
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDownServiceRunsDownNoTimeout keeps a service down past its step's
// heartbeat and start-to-close timeouts: they run from when the service
// takes the attempt, so none passes while it cannot be reached.
func TestDownServiceRunsDownNoTimeout(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	h.service(store.Service{Name: "late", Addresses: []string{svc.addr}, DispatchLimit: 1000})
	h.register(oneStep("late", "late",
		"    retry: {max_attempts: 1}\n    timeouts: {heartbeat: 500ms, start_to_close: 1s}"))
	id := h.start("late", `{}`)

	waitFor(t, "the dispatcher to find the service down", func() bool {
		return h.d.Counters().Unreachable.Load() >= 3
	})
	time.Sleep(1200 * time.Millisecond)
	svc.up(t)

	if inst := h.wait(id); inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed once the service is up", inst.Status, inst.Error)
	}
}

func TestBadAnswersFailTheAttempt(t *testing.T) {
	tests := []struct {
		name   string
		answer *weftv1.ExecuteTaskResponse
		code   string
	}{
		{"output not JSON", output(`{not json`), "bad_output"},
		{"error without code", &weftv1.ExecuteTaskResponse{Result: &weftv1.ExecuteTaskResponse_Error{
			Error: &weftv1.StepError{}}}, `"code":"error"`},
		{"output over the size a call takes", output(`"` + strings.Repeat("x", 17<<20) + `"`),
			"payload_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, push.Options{})
			svc := newService(t)
			svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
				return tt.answer, nil
			}
			svc.up(t, grpc.MaxSendMsgSize(32<<20))
			h.service(store.Service{Name: "odd", Addresses: []string{svc.addr}})
			h.register(oneStep("odd", "odd", "    retry: {max_attempts: 1}"))

			inst := h.wait(h.start("odd", `{}`))

			if inst.Status != store.InstanceFailed || !strings.Contains(string(inst.Error), tt.code) {
				t.Fatalf("instance %s with %.200s, want failed with %s", inst.Status, inst.Error, tt.code)
			}
			if calls, _ := svc.snapshot(); len(calls) != 1 {
				t.Fatalf("%d calls, want 1: the service answered", len(calls))
			}
		})
	}
}

// TestLongCallIsSentOnce holds a call open longer than the claim the
// dispatcher takes by default: the claim lasts past the call's deadline,
// so the attempt is not sent a second time while the first call runs.
func TestLongCallIsSentOnce(t *testing.T) {
	h := newHarness(t, push.Options{ClaimTTL: 300 * time.Millisecond})
	svc := newService(t)
	svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		time.Sleep(time.Second)
		return output(`"slow"`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "long", Addresses: []string{svc.addr}, DispatchTimeout: 5 * time.Second})
	h.register(oneStep("long", "long", ""))

	if inst := h.wait(h.start("long", `{}`)); inst.Status != store.InstanceCompleted {
		t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
	}
	if calls, maxHeld := svc.snapshot(); len(calls) != 1 || maxHeld != 1 {
		t.Fatalf("%d calls, %d at once; want the attempt sent once", len(calls), maxHeld)
	}
}

// TestChangedAddressesLetCallsFinish re-registers a service with another
// address list while a call is open: the call runs to its end and the
// attempt is not sent again.
func TestChangedAddressesLetCallsFinish(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	open := make(chan struct{}, 1)
	svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		open <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		return output(`"kept"`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "moving", Addresses: []string{svc.addr}})
	h.register(oneStep("moving", "moving", ""))
	id := h.start("moving", `{}`)

	<-open
	_, port, _ := strings.Cut(svc.addr, ":")
	h.service(store.Service{Name: "moving", Addresses: []string{svc.addr, "localhost:" + port}})

	if inst := h.wait(id); inst.Status != store.InstanceCompleted || string(inst.Output) != "" &&
		!strings.Contains(string(inst.Data), "kept") {
		t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
	}
	if calls, _ := svc.snapshot(); len(calls) != 1 {
		t.Fatalf("%d calls, want the attempt sent once", len(calls))
	}
}

// TestCancelDuringOpenCall cancels while the service is still answering
// the call: the attempt is drained (its step starts only with the
// answer), the service is told, its answer is recorded and the
// compensation runs.
func TestCancelDuringOpenCall(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	open := make(chan struct{}, 1)
	svc.answer = func(_ context.Context, task *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		if task.GetStepId() == "charge" {
			open <- struct{}{}
			time.Sleep(time.Second)
		}
		return output(`"done"`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "pay", Addresses: []string{svc.addr}})
	h.register(`
name: pay
version: 1
compensate_on_cancel: true
steps:
  - id: charge
    type: task
    service: pay
    action: charge
    compensate:
      - {id: refund, type: task, service: pay, action: refund}
`)
	id := h.start("pay", `{}`)

	<-open
	if err := h.eng.Cancel(h.ctx, id, "changed my mind"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	select {
	case <-svc.cancelc:
	case <-time.After(10 * time.Second):
		t.Fatal("the service was not told of the cancel")
	}

	if inst := h.wait(id); inst.Status != store.InstanceCancelled {
		t.Fatalf("status %s (%s), want cancelled", inst.Status, inst.Error)
	}
	calls, _ := svc.snapshot()
	var steps []string
	for _, c := range calls {
		steps = append(steps, c.task.GetStepId())
	}
	if len(steps) != 2 || steps[0] != "charge" || steps[1] != "refund" {
		t.Fatalf("calls %v, want charge then its refund", steps)
	}
}

// TestRaisedRateTakesEffect starts a service at a rate of one call every
// 1000 s, queues work, and raises the rate: the loop that waits out the
// old rate looks again at once.
func TestRaisedRateTakesEffect(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	svc.up(t)
	h.service(store.Service{Name: "slowly", Addresses: []string{svc.addr}, Rate: 0.001})
	h.register(oneStep("slowly", "slowly", ""))
	var ids []string
	for range 5 {
		ids = append(ids, h.start("slowly", `{}`))
	}
	waitFor(t, "the first call", func() bool { calls, _ := svc.snapshot(); return len(calls) == 1 })

	h.service(store.Service{Name: "slowly", Addresses: []string{svc.addr}, Rate: 100, Burst: 5})
	for _, id := range ids {
		if inst := h.wait(id); inst.Status != store.InstanceCompleted {
			t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
		}
	}
}

// TestBusyServiceSpendsNoDispatchTry has a service with one slot answer
// RESOURCE_EXHAUSTED to every call past it: those answers say the
// service is up, so they spend none of the attempt's dispatch tries and
// every instance completes, each call run once.
func TestBusyServiceSpendsNoDispatchTry(t *testing.T) {
	h := newHarness(t, push.Options{})
	svc := newService(t)
	var slot sync.Mutex
	svc.answer = func(context.Context, *weftv1.Task) (*weftv1.ExecuteTaskResponse, error) {
		if !slot.TryLock() {
			st, _ := status.New(codes.ResourceExhausted, "the one slot is busy").WithDetails(
				&errdetails.RetryInfo{RetryDelay: durationpb.New(20 * time.Millisecond)})
			return nil, st.Err()
		}
		defer slot.Unlock()
		time.Sleep(30 * time.Millisecond)
		return output(`1`), nil
	}
	svc.up(t)
	h.service(store.Service{Name: "narrow", Addresses: []string{svc.addr}, DispatchLimit: 2})
	h.register(oneStep("narrow", "narrow", "    retry: {max_attempts: 1}"))

	var ids []string
	for range 10 {
		ids = append(ids, h.start("narrow", `{}`))
	}
	for _, id := range ids {
		if inst := h.wait(id); inst.Status != store.InstanceCompleted {
			t.Fatalf("status %s (%s), want completed", inst.Status, inst.Error)
		}
	}
	if n := h.d.Counters().Busy.Load(); n == 0 {
		t.Fatal("no busy answer was seen; the test did not fill the slot")
	}
}
