package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/store"
)

// Audit types of sub-workflows.
const (
	auditChildStarted   = "child_started"
	auditCancelByParent = "cancelled by parent"
)

// startChild starts a new attempt of a workflow step: a child instance
// of the named definition, created in this same transition, whose end
// reports to this attempt through the store's report path. Nothing is
// held in memory while the child runs.
func (r *run) startChild(p *ptr) {
	p.row.Attempt++
	p.row.Report = nil
	p.st.Child = ""
	r.touch(p)

	input, serr := r.taskInput(p)
	if serr != nil {
		serr.Retryable = false
		r.attemptFailed(p, serr, auditStepFailed)
		return
	}

	depth := 1
	if r.ist.Parent != nil {
		depth = r.ist.Parent.Depth + 1
	}
	if depth > r.e.opts.MaxWorkflowDepth {
		r.attemptFailed(p, &store.StepError{
			Code: "workflow_too_deep",
			Message: fmt.Sprintf("a child at depth %d is over the limit of %d nested sub-workflows",
				depth, r.e.opts.MaxWorkflowDepth),
		}, auditStepFailed)
		return
	}

	g, err := r.e.startGraph(r.ctx, StartParams{
		Definition: p.node.Workflow, Version: p.node.WorkflowVersion,
	})
	if err == nil {
		input, err = r.e.checkInput(g, input)
	}
	if err != nil {
		// A definition not registered yet may come: that attempt is
		// retried by the step's policy. Bad input is not.
		r.attemptFailed(p, &store.StepError{
			Code: "child_not_started", Message: err.Error(),
			Retryable: errors.Is(err, store.ErrNotFound),
		}, auditStepFailed)
		return
	}

	p.row.Token = uuid.NewString()
	link := &parentLink{
		Instance: r.inst.ID, Pointer: p.row.ID, Attempt: p.row.Attempt, Token: p.row.Token,
		Depth: depth,
	}
	params, err := r.e.createParams(g, input, "", link)
	if err != nil {
		r.fail(err)
		return
	}

	p.st.Child = params.Instance.ID
	p.row.Status = store.StepRunning
	p.row.Input = input
	p.row.Error = nil
	r.tr.Creates = append(r.tr.Creates, params)
	r.audit(auditChildStarted, p, map[string]any{
		"child_instance_id": params.Instance.ID, "definition": g.Def.Name, "version": g.Def.Version,
	})
}

// cancelChild asks the child of a workflow step to cancel, in the same
// commit as the step's own cancel.
func (r *run) cancelChild(p *ptr) {
	if p.node.Kind != definition.KindWorkflow || p.st.Frame != "" || p.st.Child == "" ||
		p.row.Status != store.StepRunning {
		return
	}

	r.tr.Reports = append(r.tr.Reports, store.StepReportParams{
		InstanceID: p.st.Child, PointerID: 1, Kind: store.ReportCancel, Now: r.now,
	})
}

// reportToParent tells the parent step of a child instance how the
// child ended, in the commit that ends it.
func (r *run) reportToParent(status store.InstanceStatus, reason string) {
	link := r.ist.Parent
	if link == nil {
		return
	}

	rep := store.StepReportParams{
		InstanceID: link.Instance, PointerID: link.Pointer, Attempt: link.Attempt,
		Token: link.Token, Now: r.now,
	}
	if status == store.InstanceCompleted {
		rep.Kind, rep.Output = store.ReportCompleted, r.inst.Output
	} else {
		rep.Kind = store.ReportFailed
		rep.Error = &store.StepError{
			Code:      "child_" + string(status),
			Message:   fmt.Sprintf("child instance %s is %s: %s", r.inst.ID, status, reason),
			Retryable: status == store.InstanceFailed,
		}
	}
	r.tr.Reports = append(r.tr.Reports, rep)
}

// childCancelled applies a cancel request from the parent.
func (r *run) childCancelled(p *ptr) {
	p.row.Work = false
	r.touch(p)
	if r.inst.Status == store.InstanceCancelling {
		return
	}
	if err := r.cancel(auditCancelByParent); err != nil {
		r.e.log.Warn("cancel from parent refused", keyInstance, r.inst.ID, keyErr, err)
	}
}

// ChildInstances returns the ids of the child instances the workflow
// steps of an instance started, oldest first, read from its audit rows.
func (e *Engine) ChildInstances(ctx context.Context, id string) ([]string, error) {
	evs, err := e.Audit(ctx, id, 0, 100000)
	if err != nil {
		return nil, err
	}

	var out []string
	for _, ev := range evs {
		if ev.Type != auditChildStarted {
			continue
		}
		data, err := decodeJSON(ev.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding audit row %d: %w", ev.Seq, err)
		}
		if m, ok := data.(map[string]any); ok {
			if child, ok := m["child_instance_id"].(string); ok {
				out = append(out, child)
			}
		}
	}

	return out, nil
}
