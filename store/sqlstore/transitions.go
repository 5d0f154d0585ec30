package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/weftworks/weft/store"
)

// TransitionApply writes each transition atomically as its own op of the
// group commit, so several share one commit while a failing one is
// rolled back alone. The result has one error per transition: nil when
// it committed, ErrLeaseLost when fenced off, ErrConflict when a step
// moved on. On success the store has set each audit row's InstanceID,
// Seq and (when zero) At, and each added task's ID.
func (s *Store) TransitionApply(ctx context.Context, ts []*store.Transition) []error {
	fns := make([]writeFunc, len(ts))
	keys := make([]string, len(ts))
	for i, t := range ts {
		keys[i] = t.InstanceID
		fns[i] = func(ctx context.Context, w *writer) error {
			return w.applyTransition(ctx, t)
		}
	}

	errs := s.writeAll(ctx, true, keys, fns...)
	for i, err := range errs {
		if err != nil {
			errs[i] = fmt.Errorf("applying transition to instance %s: %w", ts[i].InstanceID, err)
		}
	}

	return errs
}

// applyTransition writes one transition. Timers go first so that the
// fenced instance update can compute the due time from them; the steps,
// audit rows, tasks and subscriptions follow. Deliveries made by new
// subscriptions wake the instance themselves.
func (w *writer) applyTransition(ctx context.Context, t *store.Transition) error {
	if t.Instance.Status == "" {
		return errors.New("transition without an instance status")
	}

	// Where rows are locked, take the instance's row before the timers',
	// as reports and heartbeats do, so that they wait for each other
	// instead of deadlocking.
	if w.s.dialect.ForUpdate != "" {
		_, err := w.instanceStatus(ctx, t.InstanceID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}

	if err := w.deleteTimers(ctx, t.InstanceID, t.TimersDelete); err != nil {
		return err
	}

	if err := w.upsertTimers(ctx, t.InstanceID, t.TimersAdd); err != nil {
		return err
	}

	last, err := w.fenceInstance(ctx, t)
	if err != nil {
		return err
	}

	for _, st := range t.Steps {
		if st.Rev == 0 {
			err = w.insertStep(ctx, t.InstanceID, st, t.Now)
		} else {
			err = w.updateStep(ctx, t.InstanceID, st)
		}

		if err != nil {
			return err
		}
	}

	base := last - int64(len(t.Audit))
	if err := w.insertAudit(ctx, t.InstanceID, base, t.Audit, t.Now); err != nil {
		return err
	}

	if err := w.deleteTasks(ctx, t.InstanceID, t.TasksDelete); err != nil {
		return err
	}

	if err := w.insertTasks(ctx, t.InstanceID, t.TasksAdd, t.Now); err != nil {
		return err
	}

	if err := w.deleteSubscriptions(ctx, t.InstanceID, t.SubscriptionsDelete); err != nil {
		return err
	}

	return w.addSubscriptions(ctx, t.InstanceID, t.SubscriptionsAdd, t.Now)
}

// fenceInstance writes the instance's new fields, its due time and its
// lease, only while the transition's owner and epoch still hold an
// unexpired lease by the database clock. It returns the new last_seq,
// or ErrLeaseLost when the lease is gone.
func (w *writer) fenceInstance(ctx context.Context, t *store.Transition) (int64, error) {
	u := t.Instance
	due := `(SELECT MIN(fire_at) FROM workflow_timers WHERE instance_id = ?)`
	dueArgs := []any{t.InstanceID}
	switch {
	case u.Status.Final():
		due, dueArgs = `NULL`, nil
	case u.Status == store.InstancePaused:
		due = `(SELECT MIN(fire_at) FROM workflow_timers
			WHERE instance_id = ? AND while_paused = 1)`
	}

	lease := `lease_owner = '', lease_expires = NULL`
	if t.KeepLease {
		lease = `lease_owner = lease_owner`
	}

	args := []any{string(u.Status), u.Reason, text(u.Data), text(u.Output), text(u.Error),
		text(u.State), u.NextPointer, nullMS(u.EndedAt), ms(t.Now), len(t.Audit), t.Wake,
		ms(t.Now)}
	args = append(args, dueArgs...)
	args = append(args, t.InstanceID, t.Owner, t.Epoch)

	var last, dueAt int64
	var hasDue bool
	err := w.queryRow(ctx, `UPDATE workflow_instances SET status = ?, reason = ?, data = ?,
		output = ?, error = ?, state = ?, next_pointer = ?, ended_at = ?, updated_at = ?,
		last_seq = last_seq + ?,
		due_at = CASE WHEN wake <> ? THEN CAST(? AS BIGINT) ELSE `+due+` END, `+lease+`
		WHERE id = ? AND lease_owner = ? AND lease_epoch = ?
		AND lease_expires > `+w.s.dialect.Now+`
		RETURNING last_seq, COALESCE(due_at, 0), due_at IS NOT NULL`,
		args...).Scan(&last, &dueAt, boolCol{&hasDue})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("owner %q epoch %d: %w", t.Owner, t.Epoch, store.ErrLeaseLost)
	}

	if err != nil {
		return 0, fmt.Errorf("updating instance: %w", err)
	}

	w.wrote(1, args[:6])
	if hasDue && dueAt <= ms(t.Now) && !t.KeepLease {
		w.readyInstances()
	}

	return last, nil
}
