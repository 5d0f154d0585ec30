package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Audit types of user tasks.
const (
	auditUserTaskOpened    = "user_task_opened"
	auditUserTaskCompleted = "user_task_completed"
	auditUserTaskEscalated = "user_task_escalated"
)

// UserTask is an open user task: a step waiting for a person to choose
// one of its options.
type UserTask struct {
	InstanceID string
	// PointerID names the task's pointer, StepID its definition step.
	PointerID int64
	StepID    string
	Prompt    string
	Assignee  string
	Options   []string
	CreatedAt time.Time
}

// UserTaskFilter selects open user tasks; empty fields match every task.
type UserTaskFilter struct {
	Assignee   string
	InstanceID string
	// PageSize bounds the page (default 100); PageToken continues one.
	PageSize  int
	PageToken string
}

// UserTaskPage is a page of open user tasks, oldest first.
type UserTaskPage struct {
	Tasks         []UserTask
	NextPageToken string
}

// userTaskInput is what a user task's step row holds as its input.
type userTaskInput struct {
	Prompt   string   `json:"prompt"`
	Assignee string   `json:"assignee"`
	Options  []string `json:"options"`
}

// choice is a user task's output.
type choice struct {
	Option string `json:"option"`
	By     string `json:"by"`
}

// startUserTask opens a user task: the pointer waits with its prompt,
// assignee and options in its row and a token a choice must match.
func (r *run) startUserTask(p *ptr) {
	env := r.env(p)
	prompt, err := p.node.Prompt.EvalString(env)
	if err != nil {
		r.exprFailed(p, err)
		return
	}
	assignee, err := p.node.Assignee.EvalString(env)
	if err == nil && assignee == "" {
		err = fmt.Errorf("assignee %q gives an empty string", p.node.Assignee.Source)
	}
	if err != nil {
		r.exprFailed(p, err)
		return
	}

	if !r.armTimeout(p, env) {
		return
	}

	p.row.Attempt++
	p.row.Report = nil
	p.row.Token = uuid.NewString()
	p.row.Status = store.StepWaiting
	p.row.Assignee = assignee
	input := mustJSON(userTaskInput{Prompt: prompt, Assignee: assignee, Options: p.node.Options})
	if len(input) > r.e.opts.MaxPayloadBytes {
		r.exprFailed(p, fmt.Errorf("prompt: payload too large: the task's %d bytes are over the "+
			"%d byte limit", len(input), r.e.opts.MaxPayloadBytes))
		return
	}
	p.row.Input = input
	r.touch(p)
	r.audit(auditUserTaskOpened, p, map[string]any{"assignee": assignee})
}

// userTaskChosen completes a waiting user task with the choice reported.
func (r *run) userTaskChosen(p *ptr, rep *store.Report) {
	if p.row.Status != store.StepWaiting {
		return
	}

	var c choice
	if err := json.Unmarshal(rep.Output, &c); err != nil {
		r.fail(fmt.Errorf("decoding choice of step %d: %w", p.row.ID, err))
		return
	}
	r.clearTimers(p.row.ID)
	r.audit(auditUserTaskCompleted, p, c)
	r.complete(p, map[string]any{"option": c.Option, "by": c.By}, true)
}

// userTaskTimedOut escalates a user task once, or fails it by its
// on_failure when it has no escalate_to.
func (r *run) userTaskTimedOut(p *ptr) {
	if p.row.Status != store.StepWaiting {
		return
	}

	if p.node.EscalateTo == nil {
		serr := &store.StepError{Code: "user_task_timeout",
			Message: "no option was chosen before the timeout"}
		p.row.Error = mustJSON(serr)
		p.row.Status = store.StepFailed
		p.row.EndedAt = r.now
		r.touch(p)
		r.audit(auditStepTimedOut, p, serr)
		r.giveUp(p, serr)
		return
	}

	to, err := p.node.EscalateTo.EvalString(r.env(p))
	if err == nil && to == "" {
		err = fmt.Errorf("escalate_to %q gives an empty string", p.node.EscalateTo.Source)
	}
	if err != nil {
		r.exprFailed(p, err)
		return
	}

	var in userTaskInput
	if err := json.Unmarshal(p.row.Input, &in); err != nil {
		r.fail(fmt.Errorf("decoding user task %d: %w", p.row.ID, err))
		return
	}
	from := p.row.Assignee
	in.Assignee = to
	p.row.Assignee = to
	p.row.Input = mustJSON(in)
	r.touch(p)
	r.audit(auditUserTaskEscalated, p, map[string]any{"from": from, "to": to})
}

// ListUserTasks lists the open user tasks by filter, oldest first.
func (e *Engine) ListUserTasks(ctx context.Context, f UserTaskFilter) (UserTaskPage, error) {
	if f.PageSize < 0 {
		return UserTaskPage{}, invalid("page_size", "must not be negative, got %d", f.PageSize)
	}

	page, err := e.store.UserTaskList(ctx, store.UserTaskFilter(f))
	if err != nil {
		return UserTaskPage{}, err
	}

	out := UserTaskPage{NextPageToken: page.NextPageToken}
	for _, st := range page.Steps {
		t, err := userTask(st)
		if err != nil {
			return UserTaskPage{}, err
		}
		out.Tasks = append(out.Tasks, t)
	}

	return out, nil
}

// userTask reads an open user task from its step row.
func userTask(st store.Step) (UserTask, error) {
	var in userTaskInput
	if err := json.Unmarshal(st.Input, &in); err != nil {
		return UserTask{}, fmt.Errorf("decoding user task %s/%d: %w", st.InstanceID, st.ID, err)
	}

	return UserTask{
		InstanceID: st.InstanceID, PointerID: st.ID, StepID: st.StepID, Prompt: in.Prompt,
		Assignee: st.Assignee, Options: in.Options, CreatedAt: st.CreatedAt,
	}, nil
}

// CompleteUserTask answers an open user task of an instance with one of
// its options, chosen by the identity by. step is the step id, or the
// pointer id when a loop holds several open tasks of one step. The
// step's output becomes {"option": option, "by": by} and the audit row
// user_task_completed records both. An option the task does not offer
// is refused with ErrInvalid naming option; a task that is not open
// (answered, cancelled, or no user task at all) with ErrWrongStatus.
func (e *Engine) CompleteUserTask(ctx context.Context, instanceID, step, option, by string) error {
	for _, f := range []struct{ name, value string }{
		{"instance_id", instanceID}, {"step", step}, {"option", option}, {"by", by},
	} {
		if f.value == "" {
			return invalid(f.name, "required")
		}
	}

	inst, err := e.store.InstanceGet(ctx, instanceID)
	if err != nil {
		return err
	}
	if inst.Status.Final() {
		return fmt.Errorf("instance %s is %s: %w", instanceID, inst.Status, ErrFinished)
	}

	st, err := e.openUserTask(ctx, instanceID, step)
	if err != nil {
		return err
	}
	t, err := userTask(st)
	if err != nil {
		return err
	}
	if !slices.Contains(t.Options, option) {
		return invalid("option", "%q is not one of the options %q of step %s", option,
			t.Options, st.StepID)
	}

	res, err := e.store.StepReport(ctx, store.StepReportParams{
		InstanceID: instanceID, PointerID: st.ID, Attempt: st.Attempt, Token: st.Token,
		Kind: store.ReportChoice, Output: mustJSON(choice{Option: option, By: by}),
		Now: e.clock.Now(),
	})
	if err != nil {
		return err
	}
	if res.Outcome != store.ReportAccepted {
		return fmt.Errorf("step: user task %s of instance %s is no longer open: %w", step,
			instanceID, ErrWrongStatus)
	}
	e.wake(e.wakeSched)

	return nil
}

// openUserTask finds the open user task that step names: a pointer id,
// or the id of a step with exactly one open task.
func (e *Engine) openUserTask(ctx context.Context, instanceID, step string) (store.Step, error) {
	steps, err := e.store.StepList(ctx, instanceID)
	if err != nil {
		return store.Step{}, err
	}

	id, err := strconv.ParseInt(step, 10, 64)
	byPointer := err == nil
	var open []store.Step
	for _, st := range steps {
		if byPointer && st.ID != id || !byPointer && st.StepID != step {
			continue
		}
		if st.Status == store.StepWaiting && st.Assignee != "" &&
			(st.Report == nil || st.Report.Attempt != st.Attempt) {
			open = append(open, st)
		}
	}

	switch len(open) {
	case 0:
		return store.Step{}, fmt.Errorf("no open user task at step %s of instance %s: %w",
			step, instanceID, ErrWrongStatus)
	case 1:
		return open[0], nil
	}

	return store.Step{}, invalid("step", "%s has %d open user tasks; name one by its pointer id",
		step, len(open))
}

// isUserTask reports whether the pointer is a user task step.
func (p *ptr) isUserTask() bool {
	return p.st.Frame == "" && p.node.Kind == definition.KindUserTask
}
