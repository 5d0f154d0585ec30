package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/weftworks/weft/store"
)

// activeSteps selects the active pointers of an instance with all their
// ancestors: pointers with work, pointers with a due timer, waiting
// pointers. Each seed is a separate indexed select, so the cost follows
// the active part of the instance, not its history. The seeds are joined
// with UNION ALL (active's UNION drops the duplicates): with a plain
// UNION, SQLite merges them in id order through the primary key and
// walks every step the instance ever had. The placeholders are the
// instance id three times, the due time with the timer filter's
// arguments, then the instance id twice more. %s is the timer filter.
const activeSteps = `WITH RECURSIVE seed(id) AS (
		SELECT id FROM workflow_steps
		WHERE instance_id = ? AND work = 1 AND status NOT IN ` + finalStepStatuses + `
		UNION ALL
		SELECT id FROM workflow_steps WHERE instance_id = ? AND status = 'waiting'
		UNION ALL
		SELECT s.id FROM workflow_timers t
		JOIN workflow_steps s ON s.instance_id = t.instance_id AND s.id = t.pointer_id
		WHERE t.instance_id = ? AND t.fire_at <= ?%s
		AND s.status NOT IN ` + finalStepStatuses + `
	), active(id) AS (
		SELECT id FROM seed
		UNION
		SELECT s.parent_id FROM workflow_steps s JOIN active a ON s.id = a.id
		WHERE s.instance_id = ? AND s.parent_id <> 0
	)
	SELECT ` + stepColumns + ` FROM workflow_steps
	WHERE instance_id = ? AND id IN (SELECT id FROM active) ORDER BY id`

// InstanceLoad reads what a transition needs, in one read transaction:
// the instance; the non-final steps with work, the non-final steps with
// a due timer, the waiting steps, and all their ancestors, by id; and
// the due timers by FireAt (instance timers included). While the
// instance is paused only timers that fire while paused count as due.
// With All it returns every non-final step instead.
func (s *Store) InstanceLoad(ctx context.Context, p store.InstanceLoadParams) (store.Loaded, error) {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{
		ReadOnly: true, Isolation: s.dialect.LoadIsolation,
	})
	if err != nil {
		return store.Loaded{}, fmt.Errorf("loading instance %s: %w", p.InstanceID, err)
	}
	defer tx.Rollback() //nolint:errcheck // A read-only transaction has nothing to undo.

	loaded, err := s.load(ctx, tx, p)
	if err != nil {
		return store.Loaded{}, fmt.Errorf("loading instance %s: %w", p.InstanceID, err)
	}

	return loaded, nil
}

func (s *Store) load(ctx context.Context, tx *sql.Tx, p store.InstanceLoadParams) (store.Loaded, error) {
	inst, err := s.loadInstance(ctx, tx, p.InstanceID)
	if err != nil {
		return store.Loaded{}, err
	}

	paused := ""
	if inst.Status == store.InstancePaused {
		paused = ` AND while_paused = 1`
	}

	id := p.InstanceID
	query := fmt.Sprintf(activeSteps, paused)
	args := []any{id, id, id, ms(p.Now), id, id}
	if p.All {
		query = `SELECT ` + stepColumns + ` FROM workflow_steps
			WHERE instance_id = ? AND status NOT IN ` + finalStepStatuses + ` ORDER BY id`
		args = []any{id}
	}

	rows, err := s.txQuery(ctx, tx, query, args...)
	if err != nil {
		return store.Loaded{}, fmt.Errorf("reading steps: %w", err)
	}

	steps, err := collect(rows, scanStep)
	if err != nil {
		return store.Loaded{}, fmt.Errorf("reading steps: %w", err)
	}

	rows, err = s.txQuery(ctx, tx, `SELECT `+timerColumns+` FROM workflow_timers
		WHERE instance_id = ? AND fire_at <= ?`+paused+`
		ORDER BY fire_at, pointer_id, kind`, id, ms(p.Now))
	if err != nil {
		return store.Loaded{}, fmt.Errorf("reading timers: %w", err)
	}

	timers, err := collect(rows, scanTimer)
	if err != nil {
		return store.Loaded{}, fmt.Errorf("reading timers: %w", err)
	}

	s.loaded.Add(int64(1 + len(steps) + len(timers)))

	return store.Loaded{Instance: inst, Steps: steps, Timers: timers}, nil
}

// loadInstance reads the instance row inside the load's transaction.
func (s *Store) loadInstance(ctx context.Context, tx *sql.Tx, id string) (store.Instance, error) {
	rows, err := s.txQuery(ctx, tx,
		`SELECT `+instanceColumns+` FROM workflow_instances WHERE id = ?`, id)
	if err != nil {
		return store.Instance{}, err
	}

	insts, err := collect(rows, scanInstance)
	if err != nil {
		return store.Instance{}, err
	}

	if len(insts) == 0 {
		return store.Instance{}, store.ErrNotFound
	}

	return insts[0], nil
}
