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

	// A large transition checks its lease before the bulk of its writes:
	// from then on the write transaction holds the instance (SQLite's
	// single writer, PostgreSQL's row lock), so the lease cannot run out
	// from under it while its rows are written. Where rows are locked,
	// every transition takes the instance's row before the timers', as
	// reports and heartbeats do, so that they wait for each other instead
	// of deadlocking.
	locked := len(t.TimersAdd)+len(t.TimersDelete)+len(t.Steps) > largeTransition
	switch {
	case locked:
		if err := w.lockInstance(ctx, t); err != nil {
			return err
		}
	case w.s.dialect.ForUpdate != "":
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

	last, err := w.fenceInstance(ctx, t, locked)
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

	if err := w.addSubscriptions(ctx, t.InstanceID, t.SubscriptionsAdd, t.Now); err != nil {
		return err
	}

	return w.crossInstance(ctx, t)
}

// crossInstance writes what a transition does to other instances: the
// instances it starts, then the reports it sends.
func (w *writer) crossInstance(ctx context.Context, t *store.Transition) error {
	for _, p := range t.Creates {
		if err := w.insertInstance(ctx, newInstance(p), p); err != nil {
			return fmt.Errorf("starting instance %s: %w", p.Instance.ID, err)
		}
	}

	for _, p := range t.Reports {
		_, err := w.report(ctx, p)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reporting to instance %s: %w", p.InstanceID, err)
		}
	}

	return nil
}

// largeTransition is how many timer and step rows a transition may hold
// before it checks its lease ahead of writing them.
const largeTransition = 64

// lockInstance checks that the transition's owner and epoch still hold
// an unexpired lease by the database clock, and takes the instance's row
// for the rest of the write transaction; ErrLeaseLost when the lease is
// gone.
func (w *writer) lockInstance(ctx context.Context, t *store.Transition) error {
	n, err := w.exec(ctx, `UPDATE workflow_instances SET lease_epoch = lease_epoch
		WHERE id = ? AND lease_owner = ? AND lease_epoch = ?
		AND lease_expires > `+w.s.dialect.Now, t.InstanceID, t.Owner, t.Epoch)
	if err != nil {
		return fmt.Errorf("locking instance: %w", err)
	}

	if n == 0 {
		return fmt.Errorf("owner %q epoch %d: %w", t.Owner, t.Epoch, store.ErrLeaseLost)
	}

	return nil
}

// fenceInstance writes the instance's new fields, its due time and its
// lease, only while the transition's owner and epoch still hold an
// unexpired lease by the database clock (checked by lockInstance before,
// when locked). It returns the new last_seq, or ErrLeaseLost when the
// lease is gone.
func (w *writer) fenceInstance(ctx context.Context, t *store.Transition, locked bool) (int64, error) {
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

	expiry := ` AND lease_expires > ` + w.s.dialect.Now
	if locked {
		expiry = ``
	}

	var last, dueAt int64
	var hasDue bool
	err := w.queryRow(ctx, `UPDATE workflow_instances SET status = ?, reason = ?, data = ?,
		output = ?, error = ?, state = ?, next_pointer = ?, ended_at = ?, updated_at = ?,
		last_seq = last_seq + ?,
		due_at = CASE WHEN wake <> ? THEN CAST(? AS BIGINT) ELSE `+due+` END, `+lease+`
		WHERE id = ? AND lease_owner = ? AND lease_epoch = ?`+expiry+`
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
