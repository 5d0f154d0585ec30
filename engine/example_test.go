package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// Example embeds the engine in a program: an SQLite store, a Go handler
// for the task's service and action, one definition, one instance.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()

	e := engine.New(st, engine.Options{Logger: slog.New(slog.DiscardHandler)})
	e.Handle("greeter", "say-hello", func(ctx context.Context, t engine.Task) (any, error) {
		var in struct{ Name string }
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, engine.NonRetryable("bad_input", err.Error())
		}
		return "Hello, " + in.Name, nil
	})
	if err := e.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer e.Stop()

	_, err = e.RegisterDefinition(ctx, []byte(`
name: hello
version: 1
steps:
  - id: greet
    type: task
    service: greeter
    action: say-hello
    input: {name: input.name}
    output: greeting
`))
	if err != nil {
		fmt.Println(err)
		return
	}

	inst, _, err := e.StartInstance(ctx, engine.StartParams{
		Definition: "hello", Input: json.RawMessage(`{"name": "Ann"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	inst, err = e.Wait(ctx, inst.ID)
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(inst.Status, string(inst.Output))
	// Output:
	// completed {"greeting":"Hello, Ann","name":"Ann"}
}

// exampleEngine starts an engine on a new SQLite file with handlers
// registered by setup; stop ends it and removes the file.
func exampleEngine(setup func(e *engine.Engine)) (e *engine.Engine, stop func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		panic(err)
	}

	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"))
	if err != nil {
		panic(err)
	}

	e = engine.New(st, engine.Options{
		Logger:       slog.New(slog.DiscardHandler),
		PollInterval: 20 * time.Millisecond,
	})
	if setup != nil {
		setup(e)
	}
	if err := e.Start(ctx); err != nil {
		panic(err)
	}

	return e, func() {
		e.Stop()
		_ = st.Close()
		_ = os.RemoveAll(dir)
	}
}

// exampleStart registers src and starts an instance of it.
func exampleStart(e *engine.Engine, src, input string) string {
	ctx := context.Background()
	def, err := e.RegisterDefinition(ctx, []byte(src))
	if err != nil {
		panic(err)
	}

	inst, _, err := e.StartInstance(ctx, engine.StartParams{
		Definition: def.Name, Input: json.RawMessage(input),
	})
	if err != nil {
		panic(err)
	}

	return inst.ID
}

// exampleWaitStep polls until the newest pointer of a step has a status.
func exampleWaitStep(e *engine.Engine, id, stepID string, want store.StepStatus) {
	for {
		steps, err := e.Steps(context.Background(), id)
		if err != nil {
			panic(err)
		}
		status := store.StepStatus("")
		for _, s := range steps {
			if s.StepID == stepID {
				status = s.Status
			}
		}
		if status == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flakyDefinition has one task that the handler below fails once.
const flakyDefinition = `
name: flaky
version: 1
steps:
  - id: fetch
    type: task
    service: remote
    action: fetch
    retry: {max_attempts: 3, initial_interval: 10ms}
    output: page
`

// flakyHandler fails the first attempt with a retryable error.
func flakyHandler(_ context.Context, t engine.Task) (any, error) {
	if t.Attempt == 1 {
		return nil, engine.Retryable("unavailable", "try again")
	}
	return map[string]int{"attempt": t.Attempt}, nil
}

// ExampleEngine_Steps lists the execution pointers of an instance whose
// task failed once and was retried: the root pointer and the task's,
// which ended on attempt 2.
func ExampleEngine_Steps() {
	e, stop := exampleEngine(func(e *engine.Engine) { e.Handle("remote", "fetch", flakyHandler) })
	defer stop()
	ctx := context.Background()

	id := exampleStart(e, flakyDefinition, `{}`)
	inst, err := e.Wait(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	steps, err := e.Steps(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(inst.Status, string(inst.Data))
	for _, s := range steps {
		fmt.Printf("%d %s parent=%d %s attempt=%d output=%s\n",
			s.ID, s.StepID, s.ParentID, s.Status, s.Attempt, s.Output)
	}
	// Output:
	// completed {"page":{"attempt":2}}
	// 1 $root parent=0 completed attempt=0 output=
	// 2 fetch parent=1 completed attempt=2 output={"attempt":2}
}

// ExampleEngine_Audit prints the audit trail of the same retried task:
// every transition's rows, numbered per instance without gaps.
func ExampleEngine_Audit() {
	e, stop := exampleEngine(func(e *engine.Engine) { e.Handle("remote", "fetch", flakyHandler) })
	defer stop()
	ctx := context.Background()

	id := exampleStart(e, flakyDefinition, `{}`)
	if _, err := e.Wait(ctx, id); err != nil {
		fmt.Println(err)
		return
	}
	evs, err := e.Audit(ctx, id, 0, 100)
	if err != nil {
		fmt.Println(err)
		return
	}

	for _, ev := range evs {
		fmt.Println(ev.Seq, ev.Type, ev.StepID, ev.Attempt)
	}
	// Output:
	// 1 instance_started  0
	// 2 step_dispatched fetch 1
	// 3 step_started fetch 1
	// 4 step_failed fetch 1
	// 5 step_retry_scheduled fetch 1
	// 6 step_dispatched fetch 2
	// 7 step_started fetch 2
	// 8 step_completed fetch 2
	// 9 instance_completed  0
}

// ExampleNonRetryable fails a task at once, whatever its retry policy:
// the instance fails with the step's error.
func ExampleNonRetryable() {
	e, stop := exampleEngine(func(e *engine.Engine) {
		e.Handle("payments", "charge", func(context.Context, engine.Task) (any, error) {
			return nil, engine.NonRetryable("card_declined", "the card was declined")
		})
	})
	defer stop()

	id := exampleStart(e, `
name: charge
version: 1
steps:
  - {id: charge, type: task, service: payments, action: charge, retry: {max_attempts: 5}}
`, `{}`)
	inst, err := e.Wait(context.Background(), id)
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(inst.Status, inst.Reason)
	fmt.Println(string(inst.Error))
	// Output:
	// failed step_failed: charge
	// {"attempt":1,"code":"card_declined","message":"the card was declined","step_id":"charge"}
}

// ExampleEngine_PublishEvent completes a wait with an event. The event's
// time is after the instance's start, so the wait takes it whether it
// is published before or after the wait begins. The amount keeps its
// value; written back into the data, 12.50 takes its shortest form.
func ExampleEngine_PublishEvent() {
	e, stop := exampleEngine(nil)
	defer stop()
	ctx := context.Background()

	id := exampleStart(e, `
name: await-payment
version: 1
steps:
  - {id: paid, type: wait, event: order.paid, key: input.order, output: payment}
`, `{"order": "o-7"}`)
	_, err := e.PublishEvent(ctx, engine.PublishParams{
		Name: "order.paid", Key: "o-7", Data: json.RawMessage(`{"amount": 12.50}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	inst, err := e.Wait(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(inst.Status, string(inst.Data))
	// Output:
	// completed {"order":"o-7","payment":{"amount":12.5}}
}

// ExampleEngine_Pause shows which commands apply in which status: the
// error says when a command does not apply, and nothing changes then.
func ExampleEngine_Pause() {
	e, stop := exampleEngine(nil)
	defer stop()
	ctx := context.Background()

	id := exampleStart(e, `
name: parked
version: 1
steps:
  - {id: hold, type: wait, event: go, key: "'k'"}
`, `{}`)
	exampleWaitStep(e, id, "hold", store.StepWaiting)
	show := func(what string, err error) {
		inst, _ := e.Instance(ctx, id)
		switch {
		case errors.Is(err, engine.ErrWrongStatus):
			fmt.Printf("%s: wrong status; %s\n", what, inst.Status)
		case errors.Is(err, engine.ErrFinished):
			fmt.Printf("%s: finished; %s\n", what, inst.Status)
		case err != nil:
			fmt.Printf("%s: %v\n", what, err)
		default:
			fmt.Printf("%s: ok; %s %q\n", what, inst.Status, inst.Reason)
		}
	}

	show("resume", e.Resume(ctx, id))
	show("pause", e.Pause(ctx, id, "maintenance"))
	show("pause", e.Pause(ctx, id, "again"))
	show("resume", e.Resume(ctx, id))
	show("terminate", e.Terminate(ctx, id, "not needed"))
	show("cancel", e.Cancel(ctx, id, ""))
	// Output:
	// resume: wrong status; running
	// pause: ok; paused "maintenance"
	// pause: wrong status; paused
	// resume: ok; running ""
	// terminate: ok; terminated "not needed"
	// cancel: finished; terminated
}

// ExampleEngine_Cancel cancels a waiting instance: the wait is
// cancelled, the on_cancel steps run with the data as it is, and the
// instance ends cancelled with the reason given.
func ExampleEngine_Cancel() {
	cleaned := make(chan string, 1)
	e, stop := exampleEngine(func(e *engine.Engine) {
		e.Handle("storage", "delete", func(_ context.Context, t engine.Task) (any, error) {
			cleaned <- string(t.Input)
			return nil, nil
		})
	})
	defer stop()
	ctx := context.Background()

	id := exampleStart(e, `
name: upload
version: 1
steps:
  - {id: approve, type: wait, event: upload.approved, key: input.key}
on_cancel:
  - {id: delete, type: task, service: storage, action: delete, input: {key: input.key}}
`, `{"key": "tmp/42"}`)
	exampleWaitStep(e, id, "approve", store.StepWaiting)
	if err := e.Cancel(ctx, id, "user gave up"); err != nil {
		fmt.Println(err)
		return
	}
	inst, err := e.Wait(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(inst.Status, inst.Reason)
	fmt.Println("cleanup input:", <-cleaned)
	// Output:
	// cancelled user gave up
	// cleanup input: {"key":"tmp/42"}
}

// ExampleEngine_Report plays a service that has no Go handler in this
// process: it claims the dispatch row, reports the attempt's result,
// reports it again (already applied), and reports once more after the
// instance ended (late, refused with ErrLate).
func ExampleEngine_Report() {
	e, stop := exampleEngine(nil)
	defer stop()
	ctx := context.Background()

	// The service has no handler here: register it, so that definitions
	// may name it.
	_, err := e.RegisterService(ctx, store.Service{Name: "renderer", Mode: store.ServicePull})
	if err != nil {
		fmt.Println(err)
		return
	}

	id := exampleStart(e, `
name: remote-work
version: 1
steps:
  - {id: render, type: task, service: renderer, action: render, output: image}
  - {id: hold, type: wait, event: go, key: "'k'"}
`, `{}`)
	var task store.Task
	for task.ID == 0 {
		tasks, err := e.Store().TaskClaim(ctx, store.TaskClaimParams{
			Worker: "renderer-1", Services: []string{"renderer"}, Limit: 1,
			LeaseTTL: time.Minute, Now: time.Now(),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		if len(tasks) == 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		task = tasks[0]
	}
	fmt.Println("claimed", task.StepID, "attempt", task.Attempt,
		"key ok:", task.IdempotencyKey == fmt.Sprintf("%s/%d/1", id, task.PointerID))

	report := engine.ReportParams{
		InstanceID: task.InstanceID, PointerID: task.PointerID, Attempt: task.Attempt,
		Token: task.Token, Output: json.RawMessage(`{"url": "s3://img/1.png"}`),
	}
	res, err := e.Report(ctx, report)
	fmt.Println(res.Outcome, err)
	res, err = e.Report(ctx, report)
	fmt.Println(res.Outcome, err, string(res.Stored.Output))

	exampleWaitStep(e, id, "hold", store.StepWaiting)
	if err := e.Terminate(ctx, id, "done here"); err != nil {
		fmt.Println(err)
		return
	}
	res, err = e.Report(ctx, report)
	fmt.Println(res.Outcome, res.Reason, errors.Is(err, engine.ErrLate))
	// Output:
	// claimed render attempt 1 key ok: true
	// accepted <nil>
	// already_applied <nil> {"url": "s3://img/1.png"}
	// late instance finished true
}

// ExampleEngine_StartInstance starts with a start key: the same key and
// input give back the first instance; the same key with other input is
// refused.
func ExampleEngine_StartInstance() {
	e, stop := exampleEngine(nil)
	defer stop()
	ctx := context.Background()

	_, err := e.RegisterDefinition(ctx, []byte(`
name: once
version: 1
steps:
  - {id: nap, type: delay, duration: 1ms}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	start := func(input string) (store.Instance, bool, error) {
		return e.StartInstance(ctx, engine.StartParams{
			Definition: "once", Input: json.RawMessage(input), StartKey: "order-7",
		})
	}

	first, created, err := start(`{"order": 7}`)
	fmt.Println(created, err)
	again, created, err := start(`{ "order": 7 }`)
	fmt.Println(created, err, again.ID == first.ID)
	_, _, err = start(`{"order": 8}`)
	fmt.Println(errors.Is(err, store.ErrAlreadyExists))
	// Output:
	// true <nil>
	// false <nil> true
	// true
}
