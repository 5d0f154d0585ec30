package engine_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

const userTaskDef = `
name: refund
version: 1
steps:
  - id: approve
    type: user_task
    prompt: "'Refund ' + string(input.amount) + '?'"
    assignee: input.approver
    options: [approve, reject]
    output: decision
  - id: after
    type: if
    condition: data.decision.option == 'approve'
    steps:
      - {id: paid, type: delay, duration: 1ms}
`

// openTasks waits until the instance has n open user tasks and returns
// them.
func (h *harness) openTasks(f engine.UserTaskFilter, n int) []engine.UserTask {
	h.t.Helper()
	var tasks []engine.UserTask
	h.waitFor("open user tasks", func() bool {
		page, err := h.e.ListUserTasks(h.ctx, f)
		if err != nil {
			h.t.Fatalf("listing user tasks: %v", err)
		}
		tasks = page.Tasks
		return len(tasks) == n
	})

	return tasks
}

// TestUserTaskCompletes lists an open user task by assignee and
// instance, refuses an unknown option, completes it with the chooser
// recorded in the output and the audit, and refuses a second answer, on
// SQLite and on PostgreSQL.
func TestUserTaskCompletes(t *testing.T) {
	for name, at := range bothStores {
		t.Run(name, func(t *testing.T) { userTaskCompletes(t, at(t)) })
	}
}

func userTaskCompletes(t *testing.T, open opener) {
	h := newHarnessOn(t, open, fastOptions())
	h.register(userTaskDef)
	h.run()
	id := h.start("refund", `{"amount": 40, "approver": "alice"}`)
	other := h.start("refund", `{"amount": 7, "approver": "bob"}`)

	tasks := h.openTasks(engine.UserTaskFilter{Assignee: "alice"}, 1)
	got := tasks[0]
	if got.InstanceID != id || got.StepID != "approve" || got.Prompt != "Refund 40?" ||
		!slices.Equal(got.Options, []string{"approve", "reject"}) {
		t.Fatalf("task = %+v", got)
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: other}, 1)
	h.openTasks(engine.UserTaskFilter{}, 2)

	err := h.e.CompleteUserTask(h.ctx, id, "approve", "maybe", "alice")
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "option") {
		t.Fatalf("unknown option: err = %v, want ErrInvalid naming option", err)
	}
	if err := h.e.CompleteUserTask(h.ctx, id, "approve", "approve", "carol"); err != nil {
		t.Fatalf("completing: %v", err)
	}

	inst := h.wait(id)
	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status = %s, want completed", inst.Status)
	}
	data := dataOf(t, inst.Data)
	dec, _ := data["decision"].(map[string]any)
	if dec["option"] != "approve" || dec["by"] != "carol" {
		t.Errorf("decision = %v, want approve by carol", data["decision"])
	}
	if _, ran := h.step(id, "paid"); !ran {
		t.Error("the approve branch did not run")
	}
	if types := auditTypes(h.audit(id), "approve"); !slices.Contains(types, "user_task_completed") {
		t.Errorf("audit of approve = %v, want user_task_completed", types)
	}
	for _, ev := range h.audit(id) {
		if ev.Type == "user_task_completed" && !strings.Contains(string(ev.Data), `"carol"`) {
			t.Errorf("audit row %s does not name the chooser", ev.Data)
		}
	}

	err = h.e.CompleteUserTask(h.ctx, id, "approve", "reject", "alice")
	if !errors.Is(err, engine.ErrFinished) {
		t.Errorf("second answer: err = %v, want ErrFinished", err)
	}
	h.openTasks(engine.UserTaskFilter{}, 1)
}

// TestUserTaskRefusals checks the refusals of CompleteUserTask that
// change nothing: missing fields, no such instance, a step that is no
// user task.
func TestUserTaskRefusals(t *testing.T) {
	h := newHarness(t)
	h.register(userTaskDef)
	h.run()
	id := h.start("refund", `{"amount": 1, "approver": "alice"}`)
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)

	cases := []struct {
		name                string
		inst, step, opt, by string
		want                error
		field               string
	}{
		{"no instance id", "", "approve", "approve", "a", engine.ErrInvalid, "instance_id"},
		{"no step", id, "", "approve", "a", engine.ErrInvalid, "step"},
		{"no option", id, "approve", "", "a", engine.ErrInvalid, "option"},
		{"no chooser", id, "approve", "approve", "", engine.ErrInvalid, "by"},
		{"missing instance", "nope", "approve", "approve", "a", store.ErrNotFound, ""},
		{"not a user task", id, "after", "approve", "a", engine.ErrWrongStatus, "step"},
		{"unknown pointer", id, "99", "approve", "a", engine.ErrWrongStatus, "step"},
	}
	for _, tt := range cases {
		err := h.e.CompleteUserTask(h.ctx, tt.inst, tt.step, tt.opt, tt.by)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want %v naming %q", tt.name, err, tt.want, tt.field)
		}
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)
}

// TestUserTaskTimeout escalates a task once to escalate_to and audits
// it; without escalate_to the timeout fails the step by on_failure.
func TestUserTaskTimeout(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: escalating
version: 1
steps:
  - {id: ask, type: user_task, prompt: "'Go?'", assignee: "'ops'", options: [go],
     timeout: 30ms, escalate_to: "'lead'"}
`)
	h.register(`
name: lapsing
version: 1
steps:
  - {id: ask, type: user_task, prompt: "'Go?'", assignee: "'ops'", options: [go],
     timeout: 30ms, on_failure: terminate}
`)
	h.run()

	esc := h.start("escalating", `{}`)
	h.openTasks(engine.UserTaskFilter{Assignee: "lead"}, 1)
	var escalated []store.AuditEvent
	for _, ev := range h.audit(esc) {
		if ev.Type == "user_task_escalated" {
			escalated = append(escalated, ev)
		}
	}
	if len(escalated) != 1 || !strings.Contains(string(escalated[0].Data), `"lead"`) {
		t.Errorf("escalation audit = %v, want one to lead", escalated)
	}
	if err := h.e.CompleteUserTask(h.ctx, esc, "ask", "go", "lead"); err != nil {
		t.Fatalf("completing escalated task: %v", err)
	}
	if inst := h.wait(esc); inst.Status != store.InstanceCompleted {
		t.Errorf("escalated: status = %s, want completed", inst.Status)
	}

	lapse := h.start("lapsing", `{}`)
	inst := h.wait(lapse)
	if inst.Status != store.InstanceTerminated || inst.Reason != "step_failed: ask" {
		t.Errorf("lapsed: status %s reason %q, want terminated by step_failed: ask",
			inst.Status, inst.Reason)
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: lapse}, 0)
}

// TestUserTaskCancel removes a cancelled instance's task from the list
// and refuses an answer to it.
func TestUserTaskCancel(t *testing.T) {
	h := newHarness(t)
	h.register(userTaskDef)
	h.run()
	id := h.start("refund", `{"amount": 1, "approver": "alice"}`)
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)

	if err := h.e.Pause(h.ctx, id, "hold"); err != nil {
		t.Fatalf("pausing: %v", err)
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)
	if err := h.e.Cancel(h.ctx, id, "no longer needed"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	if inst := h.wait(id); inst.Status != store.InstanceCancelled {
		t.Fatalf("status = %s, want cancelled", inst.Status)
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 0)
	if err := h.e.CompleteUserTask(h.ctx, id, "approve", "approve", "alice"); err == nil {
		t.Error("answered a cancelled task")
	}
}

// TestUserTaskWhilePaused accepts an answer while the instance is paused;
// the steps after the task run once it resumes.
func TestUserTaskWhilePaused(t *testing.T) {
	h := newHarness(t)
	h.register(userTaskDef)
	h.run()
	id := h.start("refund", `{"amount": 1, "approver": "alice"}`)
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)

	if err := h.e.Pause(h.ctx, id, "hold"); err != nil {
		t.Fatalf("pausing: %v", err)
	}
	if err := h.e.CompleteUserTask(h.ctx, id, "approve", "approve", "alice"); err != nil {
		t.Fatalf("completing while paused: %v", err)
	}
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 0)
	if inst, _ := h.e.Instance(h.ctx, id); inst.Status != store.InstancePaused {
		t.Fatalf("status = %s, want paused", inst.Status)
	}
	if err := h.e.Resume(h.ctx, id); err != nil {
		t.Fatalf("resuming: %v", err)
	}
	if inst := h.wait(id); inst.Status != store.InstanceCompleted {
		t.Errorf("status = %s, want completed", inst.Status)
	}
	if _, ran := h.step(id, "paid"); !ran {
		t.Error("the approve branch did not run")
	}
}

// TestUserTaskByPointer answers one of two open tasks of one step, which
// a step id cannot name, by its pointer id.
func TestUserTaskByPointer(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: both
version: 1
steps:
  - id: each
    type: foreach
    items: "['a', 'b']"
    parallel: true
    steps:
      - {id: ask, type: user_task, prompt: "'Ship ' + item + '?'", assignee: "'ops'",
         options: [ship, hold]}
`)
	h.run()
	id := h.start("both", `{}`)
	tasks := h.openTasks(engine.UserTaskFilter{InstanceID: id}, 2)

	err := h.e.CompleteUserTask(h.ctx, id, "ask", "ship", "ann")
	if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), "step") {
		t.Fatalf("ambiguous step: err = %v, want ErrInvalid naming step", err)
	}
	for _, task := range tasks {
		ptr := strconv.FormatInt(task.PointerID, 10)
		if err := h.e.CompleteUserTask(h.ctx, id, ptr, "ship", "ann"); err != nil {
			t.Fatalf("completing pointer %s: %v", ptr, err)
		}
	}
	if inst := h.wait(id); inst.Status != store.InstanceCompleted {
		t.Errorf("status = %s, want completed", inst.Status)
	}
}

// TestUserTaskAnswerBeforeCancelIsKept answers a user task and cancels
// the instance right after: the accepted answer is applied (audited, the
// step completed) before the cancel, never dropped.
func TestUserTaskAnswerBeforeCancelIsKept(t *testing.T) {
	h := newHarness(t)
	h.register(userTaskDef)
	h.run()
	id := h.start("refund", `{"amount": 1, "approver": "alice"}`)
	h.openTasks(engine.UserTaskFilter{InstanceID: id}, 1)

	if err := h.e.Pause(h.ctx, id, "hold"); err != nil {
		t.Fatalf("pausing: %v", err)
	}
	if err := h.e.CompleteUserTask(h.ctx, id, "approve", "approve", "alice"); err != nil {
		t.Fatalf("completing: %v", err)
	}
	if err := h.e.Cancel(h.ctx, id, "changed plans"); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	checkStatus(t, h.wait(id), store.InstanceCancelled)

	if s, _ := h.step(id, "approve"); s.Status != store.StepCompleted {
		t.Fatalf("answered task is %s, want completed", s.Status)
	}
	if n := len(seqsOf(h.audit(id), "approve", "user_task_completed")); n != 1 {
		t.Fatalf("%d user_task_completed rows, want 1", n)
	}
}

// TestUserTaskPromptIsBounded fails a user task whose prompt, built from
// the input, is over the payload limit, naming the prompt, rather than
// storing it.
func TestUserTaskPromptIsBounded(t *testing.T) {
	opts := fastOptions()
	opts.MaxPayloadBytes = 4096
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.register(`
name: loud
version: 1
steps:
  - {id: ask, type: user_task, prompt: "input.s + input.s", assignee: "'alice'", options: [ok]}
`)
	h.run()

	id := h.start("loud", fmt.Sprintf(`{"s": %q}`, strings.Repeat("x", 3000)))
	inst := h.wait(id)
	checkStatus(t, inst, store.InstanceFailed)
	if !strings.Contains(string(inst.Error), "prompt: payload too large") {
		t.Fatalf("error = %s, want it to name the prompt as too large", inst.Error)
	}
	if s, _ := h.step(id, "ask"); len(s.Input) > opts.MaxPayloadBytes {
		t.Fatalf("the step stored %d bytes of prompt", len(s.Input))
	}
}
