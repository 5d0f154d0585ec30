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

const stepColumns = `instance_id, id, rev, created_at, step_id, parent_id, slot, status,
	attempt, service, action, input, output, error, state, token, work, report_kind,
	report_attempt, report_output, report_error, report_event, report_at, started_at,
	ended_at, assignee`

// finalStepStatuses is the SQL list of final step statuses.
const finalStepStatuses = `('completed', 'failed', 'skipped', 'cancelled', 'compensated')`

// reportCols holds a step's report columns while they are scanned.
type reportCols struct {
	kind    sql.NullString
	attempt sql.NullInt64
	output  json.RawMessage
	errJSON json.RawMessage
	event   sql.NullInt64
	at      time.Time
}

func (r *reportCols) dest() []any {
	return []any{&r.kind, &r.attempt, jsonCol{&r.output}, jsonCol{&r.errJSON}, &r.event,
		timeCol{&r.at}}
}

// report builds the stored report from columns that hold one.
func (r *reportCols) report() (*store.Report, error) {
	rep := &store.Report{
		Kind:    store.ReportKind(r.kind.String),
		Attempt: int(r.attempt.Int64),
		Output:  r.output,
		EventID: r.event.Int64,
		At:      r.at,
	}
	if len(r.errJSON) > 0 {
		rep.Error = new(store.StepError)
		if err := json.Unmarshal(r.errJSON, rep.Error); err != nil {
			return nil, fmt.Errorf("reading report error: %w", err)
		}
	}

	return rep, nil
}

// reportArgs binds a report to the six report columns.
func reportArgs(r *store.Report) ([]any, error) {
	if r == nil {
		return []any{nil, nil, nil, nil, nil, nil}, nil
	}

	var errJSON any
	if r.Error != nil {
		b, err := json.Marshal(r.Error)
		if err != nil {
			return nil, fmt.Errorf("encoding report error: %w", err)
		}

		errJSON = string(b)
	}

	var event any
	if r.EventID != 0 {
		event = r.EventID
	}

	return []any{string(r.Kind), r.Attempt, text(r.Output), errJSON, event, ms(r.At)}, nil
}

func scanStep(r rowScanner) (store.Step, error) {
	var st store.Step
	var rep reportCols
	dest := []any{&st.InstanceID, &st.ID, &st.Rev, timeCol{&st.CreatedAt}, &st.StepID,
		&st.ParentID, &st.Slot, &st.Status, &st.Attempt, &st.Service, &st.Action,
		jsonCol{&st.Input}, jsonCol{&st.Output}, jsonCol{&st.Error}, jsonCol{&st.State},
		&st.Token, boolCol{&st.Work}}
	dest = append(dest, rep.dest()...)
	dest = append(dest, timeCol{&st.StartedAt}, timeCol{&st.EndedAt}, &st.Assignee)
	if err := r.Scan(dest...); err != nil {
		return store.Step{}, err
	}

	if !rep.kind.Valid {
		return st, nil
	}

	var err error
	st.Report, err = rep.report()

	return st, err
}

// stepValues binds the columns an engine write sets, step_id to ended_at
// in stepColumns order.
func stepValues(st store.Step) ([]any, error) {
	rep, err := reportArgs(st.Report)
	if err != nil {
		return nil, err
	}

	args := []any{st.StepID, st.ParentID, st.Slot, string(st.Status), st.Attempt, st.Service,
		st.Action, text(st.Input), text(st.Output), text(st.Error), text(st.State), st.Token,
		boolInt(st.Work)}
	args = append(args, rep...)

	return append(args, nullMS(st.StartedAt), nullMS(st.EndedAt), st.Assignee), nil
}

// insertStep writes a new pointer with rev 1; ErrConflict when the id is
// taken.
func (w *writer) insertStep(ctx context.Context, instanceID string, st store.Step, now time.Time) error {
	vals, err := stepValues(st)
	if err != nil {
		return err
	}

	if st.CreatedAt.IsZero() {
		st.CreatedAt = now
	}

	args := append([]any{instanceID, st.ID, 1, ms(st.CreatedAt)}, vals...)
	n, err := w.exec(ctx, `INSERT INTO workflow_steps (`+stepColumns+`) VALUES (
		?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return fmt.Errorf("inserting step %d: %w", st.ID, err)
	}

	if n == 0 {
		return fmt.Errorf("inserting step %d: %w", st.ID, store.ErrConflict)
	}

	return nil
}

// updateStep replaces a pointer whose rev is still st.Rev and bumps the
// rev; ErrConflict when it moved on.
func (w *writer) updateStep(ctx context.Context, instanceID string, st store.Step) error {
	args, err := stepValues(st)
	if err != nil {
		return err
	}

	args = append(args, instanceID, st.ID, st.Rev)
	n, err := w.exec(ctx, `UPDATE workflow_steps SET step_id = ?, parent_id = ?, slot = ?,
		status = ?, attempt = ?, service = ?, action = ?, input = ?, output = ?, error = ?,
		state = ?, token = ?, work = ?, report_kind = ?, report_attempt = ?,
		report_output = ?, report_error = ?, report_event = ?, report_at = ?,
		started_at = ?, ended_at = ?, assignee = ?, rev = rev + 1
		WHERE instance_id = ? AND id = ? AND rev = ?`, args...)
	if err != nil {
		return fmt.Errorf("updating step %d: %w", st.ID, err)
	}

	if n == 0 {
		return fmt.Errorf("updating step %d at rev %d: %w", st.ID, st.Rev, store.ErrConflict)
	}

	return nil
}

// getStep reads one pointer inside the write transaction, locking its
// row where the dialect locks: the caller changes it next.
func (w *writer) getStep(ctx context.Context, instanceID string, id int64) (store.Step, error) {
	st, err := scanStep(w.queryRow(ctx, `SELECT `+stepColumns+` FROM workflow_steps
		WHERE instance_id = ? AND id = ?`+w.s.dialect.ForUpdate, instanceID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Step{}, fmt.Errorf("step %d: %w", id, store.ErrNotFound)
	}

	return st, err
}

// StepList returns every step of an instance ordered by id.
func (s *Store) StepList(ctx context.Context, instanceID string) ([]store.Step, error) {
	rows, err := s.readQuery(ctx, `SELECT `+stepColumns+` FROM workflow_steps
		WHERE instance_id = ? ORDER BY id`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("listing steps: %w", err)
	}

	steps, err := collect(rows, scanStep)
	if err != nil {
		return nil, fmt.Errorf("listing steps: %w", err)
	}

	return steps, nil
}

// StepChildren returns the finished children of a pointer by slot, then
// id.
func (s *Store) StepChildren(ctx context.Context, instanceID string, parentID int64) ([]store.Step, error) {
	rows, err := s.readQuery(ctx, `SELECT `+stepColumns+` FROM workflow_steps
		WHERE instance_id = ? AND parent_id = ? AND status IN `+finalStepStatuses+`
		ORDER BY slot, id`, instanceID, parentID)
	if err != nil {
		return nil, fmt.Errorf("listing children of step %d: %w", parentID, err)
	}

	steps, err := collect(rows, scanStep)
	if err != nil {
		return nil, fmt.Errorf("listing children of step %d: %w", parentID, err)
	}

	return steps, nil
}
