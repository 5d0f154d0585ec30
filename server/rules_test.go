package server_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// TestServeReportRules checks the completion rules at the API: a
// duplicate of the same attempt is ALREADY_APPLIED with the stored
// outcome, a report for another attempt is FAILED_PRECONDITION, and a
// heartbeat of a finished attempt too.
func TestServeReportRules(t *testing.T) {
	p := startServe(t)
	p.register(t, `
name: two
version: 1
steps:
  - {id: a, type: task, service: svc, action: a, output: a}
  - {id: b, type: task, service: idle, action: b}
`)
	ctx := p.ctx(t)
	id := p.start(t, "two", `{}`)

	polled, err := p.steps.PollTasks(ctx, &weftv1.PollTasksRequest{
		Service: "svc", Worker: "w", Wait: durationpb.New(10 * time.Second),
	})
	if err != nil || len(polled.GetTasks()) != 1 {
		t.Fatalf("polling: %v, %v", polled, err)
	}
	task := polled.GetTasks()[0]
	if task.GetIdempotencyKey() == "" || task.GetTaskToken() == "" {
		t.Fatalf("task without idempotency key or token: %v", task)
	}
	ref := &weftv1.TaskRef{InstanceId: id, PointerId: task.GetPointerId(), Attempt: 1, TaskToken: task.GetTaskToken()}

	hb, err := p.steps.HeartbeatTask(ctx, &weftv1.HeartbeatTaskRequest{Task: ref, TaskId: task.GetTaskId(), Worker: "w"})
	if err != nil || hb.GetClaimExpires() == nil || hb.GetCancelRequested() {
		t.Fatalf("heartbeat of the running attempt: %v, %v", hb, err)
	}

	first, err := p.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: `"one"`})
	if err != nil || first.GetOutcome() != weftv1.ReportOutcome_REPORT_OUTCOME_ACCEPTED {
		t.Fatalf("first completion: %v, %v", first, err)
	}
	again, err := p.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: ref, Output: `"two"`})
	if err != nil || again.GetOutcome() != weftv1.ReportOutcome_REPORT_OUTCOME_ALREADY_APPLIED ||
		again.GetStoredOutput() != `"one"` {
		t.Fatalf("duplicate completion: %v, %v; want already applied with \"one\"", again, err)
	}
	failAgain, err := p.steps.FailTask(ctx, &weftv1.FailTaskRequest{Task: ref,
		Error: &weftv1.StepError{Message: "late thought"}})
	if err != nil || failAgain.GetOutcome() != weftv1.ReportOutcome_REPORT_OUTCOME_ALREADY_APPLIED ||
		failAgain.GetStoredOutput() != `"one"` {
		t.Fatalf("failure after completion: %v, %v; want already applied with \"one\"", failAgain, err)
	}

	other := &weftv1.TaskRef{InstanceId: id, PointerId: ref.GetPointerId(), Attempt: 2, TaskToken: ref.GetTaskToken()}
	_, err = p.steps.CompleteTask(ctx, &weftv1.CompleteTaskRequest{Task: other, Output: "1"})
	wantCode(t, "a report for another attempt", err, codes.FailedPrecondition)

	waitFor(t, "b to be dispatched", func() bool {
		got, err := p.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
		_, ok := stepOf(got, "b")
		return err == nil && ok
	})
	_, err = p.steps.HeartbeatTask(ctx, &weftv1.HeartbeatTaskRequest{Task: ref})
	wantCode(t, "a heartbeat of a finished attempt", err, codes.FailedPrecondition)

	got, err := p.state.GetInstance(ctx, &weftv1.GetInstanceRequest{InstanceId: id})
	if err != nil || decode(t, got.GetInstance().GetData())["a"] != "one" {
		t.Fatalf("instance data after the reports: %v, %v; want a = one", got, err)
	}
	tasks, err := p.state.ListTasks(ctx, &weftv1.ListTasksRequest{InstanceId: id})
	if err != nil || len(tasks.GetTasks()) != 1 || tasks.GetTasks()[0].GetStepId() != "b" {
		t.Fatalf("pending tasks = %v, %v; want b's", tasks, err)
	}
}

// TestServeStartKeyAndPause checks idempotent starts, and pause and
// resume, through the API.
func TestServeStartKeyAndPause(t *testing.T) {
	p := startServe(t)
	p.register(t, "name: idle\nversion: 1\nsteps:\n  - {id: a, type: task, service: nobody, action: x}\n")
	ctx := p.ctx(t)

	req := &weftv1.StartInstanceRequest{Definition: "idle", Input: `{"n": 1}`, StartKey: "order-1"}
	first, err := p.exec.StartInstance(ctx, req)
	if err != nil || !first.GetCreated() {
		t.Fatalf("first start: %v, %v", first, err)
	}
	again, err := p.exec.StartInstance(ctx, req)
	if err != nil || again.GetCreated() || again.GetInstance().GetId() != first.GetInstance().GetId() {
		t.Fatalf("same key, same input: %v, %v; want the first instance, not created", again, err)
	}
	_, err = p.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{Definition: "idle", Input: `{"n": 2}`,
		StartKey: "order-1"})
	wantCode(t, "same key, other input", err, codes.AlreadyExists)

	id := first.GetInstance().GetId()
	paused, err := p.exec.PauseInstance(ctx, &weftv1.PauseInstanceRequest{InstanceId: id, Reason: "look"})
	if err != nil || paused.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_PAUSED ||
		paused.GetInstance().GetReason() != "look" {
		t.Fatalf("pause: %v, %v", paused, err)
	}
	resumed, err := p.exec.ResumeInstance(ctx, &weftv1.ResumeInstanceRequest{InstanceId: id})
	if err != nil || resumed.GetInstance().GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING {
		t.Fatalf("resume: %v, %v", resumed, err)
	}
	_, err = p.exec.ResumeInstance(ctx, &weftv1.ResumeInstanceRequest{InstanceId: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("resume of a running instance: %v, want FAILED_PRECONDITION", err)
	}

	list, err := p.state.ListInstances(ctx, &weftv1.ListInstancesRequest{StartKey: "order-1"})
	if err != nil || len(list.GetInstances()) != 1 {
		t.Fatalf("listing by start key: %v, %v", list, err)
	}
	list, err = p.state.ListInstances(ctx, &weftv1.ListInstancesRequest{DataPath: "n", DataValue: "1"})
	if err != nil || len(list.GetInstances()) != 1 {
		t.Fatalf("listing by data: %v, %v", list, err)
	}
	_, err = p.exec.TerminateInstance(ctx, &weftv1.TerminateInstanceRequest{InstanceId: id, Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.exec.RetryInstance(ctx, &weftv1.RetryInstanceRequest{InstanceId: id})
	wantCode(t, "retry of a terminated instance", err, codes.FailedPrecondition)
}

// TestServeListPaging pages through instances newest first.
func TestServeListPaging(t *testing.T) {
	p := startServe(t)
	p.register(t, "name: idle\nversion: 1\nsteps:\n  - {id: a, type: task, service: nobody, action: x}\n")
	ctx := p.ctx(t)
	var ids []string
	for range 3 {
		ids = append(ids, p.start(t, "idle", `{}`))
		time.Sleep(5 * time.Millisecond)
	}

	page, err := p.state.ListInstances(ctx, &weftv1.ListInstancesRequest{Definition: "idle", PageSize: 2})
	if err != nil || len(page.GetInstances()) != 2 || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, %v", page, err)
	}
	if page.GetInstances()[0].GetId() != ids[2] || page.GetInstances()[1].GetId() != ids[1] {
		t.Fatalf("first page = %v, want the two newest, newest first", page.GetInstances())
	}
	next, err := p.state.ListInstances(ctx, &weftv1.ListInstancesRequest{
		Definition: "idle", PageSize: 2, PageToken: page.GetNextPageToken(),
	})
	if err != nil || len(next.GetInstances()) != 1 || next.GetInstances()[0].GetId() != ids[0] ||
		next.GetNextPageToken() != "" {
		t.Fatalf("second page: %v, %v; want the oldest and no more", next, err)
	}
}
