package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

const timerColumns = `instance_id, pointer_id, kind, attempt, fire_at, while_paused`

func scanTimer(r rowScanner) (store.Timer, error) {
	var t store.Timer
	err := r.Scan(&t.InstanceID, &t.PointerID, &t.Kind, &t.Attempt, timeCol{&t.FireAt},
		boolCol{&t.WhilePaused})

	return t, err
}

// upsertTimers writes timers, replacing any of the same pointer and kind.
func (w *writer) upsertTimers(ctx context.Context, instanceID string, timers []store.Timer) error {
	for _, t := range timers {
		_, err := w.exec(ctx, `INSERT INTO workflow_timers (`+timerColumns+`)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (instance_id, pointer_id, kind) DO UPDATE SET
			attempt = excluded.attempt, fire_at = excluded.fire_at,
			while_paused = excluded.while_paused`,
			instanceID, t.PointerID, string(t.Kind), t.Attempt, ms(t.FireAt),
			boolInt(t.WhilePaused))
		if err != nil {
			return fmt.Errorf("writing %s timer of step %d: %w", t.Kind, t.PointerID, err)
		}
	}

	return nil
}

// deleteTimers removes every timer of each key's pointer, or only the
// one of its kind when the key names one.
func (w *writer) deleteTimers(ctx context.Context, instanceID string, keys []store.TimerKey) error {
	for _, k := range keys {
		query := `DELETE FROM workflow_timers WHERE instance_id = ? AND pointer_id = ?`
		args := []any{instanceID, k.PointerID}
		if k.Kind != "" {
			query += ` AND kind = ?`
			args = append(args, string(k.Kind))
		}

		if _, err := w.exec(ctx, query, args...); err != nil {
			return fmt.Errorf("deleting timers of step %d: %w", k.PointerID, err)
		}
	}

	return nil
}

// lowerDue moves the instance's due time back to at when it is later or
// unset, unless the instance is final.
func (w *writer) lowerDue(ctx context.Context, instanceID string, at time.Time) error {
	_, err := w.exec(ctx, `UPDATE workflow_instances SET due_at = ?
		WHERE id = ? AND (due_at IS NULL OR due_at > ?) AND status NOT IN `+finalStatuses,
		ms(at), instanceID, ms(at))
	if err != nil {
		return fmt.Errorf("moving due time: %w", err)
	}

	return nil
}

// TimerList lists an instance's timers by FireAt, then pointer and kind.
func (s *Store) TimerList(ctx context.Context, instanceID string) ([]store.Timer, error) {
	rows, err := s.readQuery(ctx, `SELECT `+timerColumns+` FROM workflow_timers
		WHERE instance_id = ? ORDER BY fire_at, pointer_id, kind`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("listing timers: %w", err)
	}

	timers, err := collect(rows, scanTimer)
	if err != nil {
		return nil, fmt.Errorf("listing timers: %w", err)
	}

	return timers, nil
}
