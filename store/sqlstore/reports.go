package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// Reasons given for late reports and heartbeats.
const (
	reasonFinished   = "instance finished"
	reasonToken      = "token does not match"
	reasonSuperseded = "attempt superseded"
	reasonNotRunning = "step not running"
)

// StepReport accepts an outcome for a pointer's attempt without a lease.
// It answers ErrNotFound when the instance or step is missing. The
// checks run in this order: a finished instance, a wrong token and
// another attempt make the report late; a report already stored for
// the attempt makes it a duplicate, answered with the stored report
// (even after the engine applied it); a step neither dispatched nor
// running makes it late. Late reports are audited as report_late and
// change nothing else. An accepted report is stored, marks the step as
// having work, deletes its task rows and wakes the instance.
func (s *Store) StepReport(ctx context.Context, p store.StepReportParams) (store.ReportResult, error) {
	var res store.ReportResult
	err := s.writeInstance(ctx, p.InstanceID, func(ctx context.Context, w *writer) error {
		var err error
		res, err = w.report(ctx, p)

		return err
	})
	if err != nil {
		return store.ReportResult{}, fmt.Errorf("reporting step %d of instance %s: %w",
			p.PointerID, p.InstanceID, err)
	}

	return res, nil
}

func (w *writer) report(ctx context.Context, p store.StepReportParams) (store.ReportResult, error) {
	status, st, err := w.reportTarget(ctx, p.InstanceID, p.PointerID)
	if err != nil {
		return store.ReportResult{}, err
	}

	if p.Kind == store.ReportCancel {
		return w.cancelReport(ctx, p, status, st)
	}

	reason := lateReason(status, st, p.Token, p.Attempt)
	if reason == "" && st.Report != nil && st.Report.Attempt == p.Attempt {
		return store.ReportResult{Outcome: store.ReportDuplicate, Stored: st.Report}, nil
	}

	if reason == "" && !reportable(p.Kind, st.Status) {
		reason = reasonNotRunning
	}

	if reason != "" {
		return store.ReportResult{Outcome: store.ReportLate, Reason: reason},
			w.auditLate(ctx, st, p, reason)
	}

	rep := &store.Report{Kind: p.Kind, Attempt: p.Attempt, Output: p.Output, Error: p.Error, At: p.Now}
	if err := w.storeReport(ctx, p.InstanceID, p.PointerID, rep); err != nil {
		return store.ReportResult{}, err
	}

	if err := w.deleteTasks(ctx, p.InstanceID, []int64{p.PointerID}); err != nil {
		return store.ReportResult{}, err
	}

	return store.ReportResult{Outcome: store.ReportAccepted}, w.wake(ctx, p.InstanceID, p.Now)
}

// reportable reports whether a step in this status takes a report of
// this kind: a choice a waiting user task, any other a running attempt.
func reportable(kind store.ReportKind, status store.StepStatus) bool {
	if kind == store.ReportChoice {
		return status == store.StepWaiting
	}

	return status == store.StepDispatched || status == store.StepRunning
}

// cancelReport accepts a cancel request for a step that is not final in
// an instance that is not final, whatever its attempt, status or token.
func (w *writer) cancelReport(
	ctx context.Context, p store.StepReportParams, status store.InstanceStatus, st store.Step,
) (store.ReportResult, error) {
	reason := ""
	switch {
	case status.Final():
		reason = reasonFinished
	case st.Status.Final():
		reason = reasonNotRunning
	}
	if reason != "" {
		return store.ReportResult{Outcome: store.ReportLate, Reason: reason},
			w.auditLate(ctx, st, p, reason)
	}

	rep := &store.Report{Kind: p.Kind, Attempt: st.Attempt, Output: p.Output, Error: p.Error, At: p.Now}
	if err := w.storeReport(ctx, p.InstanceID, p.PointerID, rep); err != nil {
		return store.ReportResult{}, err
	}

	return store.ReportResult{Outcome: store.ReportAccepted}, w.wake(ctx, p.InstanceID, p.Now)
}

// reportTarget reads what a report or heartbeat is checked against: the
// instance's status and the step; ErrNotFound when either is missing.
func (w *writer) reportTarget(
	ctx context.Context, instanceID string, pointer int64,
) (store.InstanceStatus, store.Step, error) {
	status, err := w.instanceStatus(ctx, instanceID)
	if err != nil {
		return "", store.Step{}, err
	}

	st, err := w.getStep(ctx, instanceID, pointer)

	return status, st, err
}

// lateReason says why a report or heartbeat with this token and attempt
// comes too late, or "" when it does not (yet). Only the holder of the
// current attempt's token may report: a pointer without a token (a
// container, or a task not dispatched yet) takes no report at all.
func lateReason(status store.InstanceStatus, st store.Step, token string, attempt int) string {
	switch {
	case status.Final():
		return reasonFinished
	case st.Token == "" || token != st.Token:
		return reasonToken
	case attempt != st.Attempt:
		return reasonSuperseded
	}

	return ""
}

// auditLate writes the report_late audit row of a refused report.
func (w *writer) auditLate(ctx context.Context, st store.Step, p store.StepReportParams, reason string) error {
	data, err := json.Marshal(struct {
		Reason  string `json:"reason"`
		Attempt int    `json:"attempt"`
	}{reason, p.Attempt})
	if err != nil {
		return fmt.Errorf("encoding late report: %w", err)
	}

	return w.appendAudit(ctx, p.InstanceID, p.Now, store.AuditEvent{
		Type: "report_late", StepID: st.StepID, PointerID: st.ID, Attempt: p.Attempt, Data: data,
	})
}

// storeReport sets a step's report, marks it as having work and bumps
// its rev.
func (w *writer) storeReport(ctx context.Context, instanceID string, pointer int64, rep *store.Report) error {
	args, err := reportArgs(rep)
	if err != nil {
		return err
	}

	args = append(args, instanceID, pointer)
	_, err = w.exec(ctx, `UPDATE workflow_steps SET report_kind = ?, report_attempt = ?,
		report_output = ?, report_error = ?, report_event = ?, report_at = ?, work = 1,
		rev = rev + 1 WHERE instance_id = ? AND id = ?`, args...)
	if err != nil {
		return fmt.Errorf("storing report of step %d: %w", pointer, err)
	}

	return nil
}

// wake counts an input for the instance and makes it due now, unless
// it is final.
func (w *writer) wake(ctx context.Context, instanceID string, now time.Time) error {
	n, err := w.exec(ctx, `UPDATE workflow_instances SET wake = wake + 1, due_at = ?
		WHERE id = ? AND status NOT IN `+finalStatuses, ms(now), instanceID)
	if err != nil {
		return fmt.Errorf("waking instance: %w", err)
	}

	if n > 0 {
		w.readyInstances()
	}

	return nil
}

// instanceStatus reads an instance's status, locking its row where the
// dialect locks (so every write that touches an instance takes the
// instance's row first, and two writers meet there rather than deadlock
// further on); ErrNotFound when there is no such instance.
func (w *writer) instanceStatus(ctx context.Context, id string) (store.InstanceStatus, error) {
	var status store.InstanceStatus
	err := w.queryRow(ctx, `SELECT status FROM workflow_instances WHERE id = ?`+
		w.s.dialect.ForUpdate, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("instance %s: %w", id, store.ErrNotFound)
	}

	return status, err
}

// StepHeartbeat records a heartbeat for the current attempt: accepted
// when the instance is not final, the token and the attempt
// match and the step is running, late otherwise (not audited). An
// accepted heartbeat moves the attempt's heartbeat timer to Now plus the
// task's heartbeat limit, never past its start-to-close deadline; a task
// without a heartbeat limit, or none at all, has nothing to move.
func (s *Store) StepHeartbeat(ctx context.Context, p store.StepHeartbeatParams) (store.ReportResult, error) {
	var res store.ReportResult
	err := s.writeInstance(ctx, p.InstanceID, func(ctx context.Context, w *writer) error {
		var err error
		res, err = w.heartbeat(ctx, p)

		return err
	})
	if err != nil {
		return store.ReportResult{}, fmt.Errorf("recording heartbeat of step %d of instance %s: %w",
			p.PointerID, p.InstanceID, err)
	}

	return res, nil
}

func (w *writer) heartbeat(ctx context.Context, p store.StepHeartbeatParams) (store.ReportResult, error) {
	status, st, err := w.reportTarget(ctx, p.InstanceID, p.PointerID)
	if err != nil {
		return store.ReportResult{}, err
	}

	reason := lateReason(status, st, p.Token, p.Attempt)
	if reason == "" && st.Status != store.StepRunning {
		reason = reasonNotRunning
	}

	if reason != "" {
		return store.ReportResult{Outcome: store.ReportLate, Reason: reason}, nil
	}

	task, err := scanTask(w.queryRow(ctx, `SELECT `+taskColumns+` FROM dispatch_tasks
		WHERE instance_id = ? AND pointer_id = ? AND attempt = ? ORDER BY id LIMIT 1`,
		p.InstanceID, p.PointerID, p.Attempt))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && task.Heartbeat <= 0) {
		return store.ReportResult{Outcome: store.ReportAccepted}, nil
	}

	if err != nil {
		return store.ReportResult{}, err
	}

	timer := attemptTimer(&task, store.TimerHeartbeat, heartbeatAt(&task, p.Now))
	if err := w.upsertTimers(ctx, p.InstanceID, []store.Timer{timer}); err != nil {
		return store.ReportResult{}, err
	}

	return store.ReportResult{Outcome: store.ReportAccepted}, w.lowerDue(ctx, p.InstanceID, timer.FireAt)
}
