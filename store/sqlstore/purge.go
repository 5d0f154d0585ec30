package sqlstore

import (
	"context"
	"fmt"

	"github.com/weftworks/weft/store"
)

// DefaultPurgeLimit is how many instances one purge deletes when asked
// for none or fewer.
const DefaultPurgeLimit = 100

// purgeTables are the tables whose rows belong to an instance by their
// instance_id column, each with an index that starts with it.
var purgeTables = []string{
	"workflow_steps", "workflow_events", "workflow_timers", "dispatch_tasks",
	"event_deliveries", "event_subscriptions",
}

// purged is one instance a purge deletes.
type purged struct {
	id, definition, startKey string
}

// InstancePurge deletes up to Limit (DefaultPurgeLimit when under 1)
// finished instances that ended before Before, oldest first, with every
// row that belongs to them and the start keys that name them, in one
// write. Rows another node has locked are skipped, for a later purge.
func (s *Store) InstancePurge(ctx context.Context, p store.InstancePurgeParams) (int, error) {
	limit := p.Limit
	if limit < 1 {
		limit = DefaultPurgeLimit
	}

	var n int
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		rows, err := w.query(ctx, `SELECT id, definition_name, start_key FROM workflow_instances
			WHERE ended_at IS NOT NULL AND ended_at < ? AND status IN `+finalStatuses+`
			ORDER BY ended_at LIMIT ?`+s.dialect.SkipLocked, ms(p.Before), limit)
		if err != nil {
			return err
		}

		victims, err := collect(rows, func(r rowScanner) (purged, error) {
			var v purged
			err := r.Scan(&v.id, &v.definition, &v.startKey)

			return v, err
		})
		if err != nil {
			return err
		}

		n = len(victims)

		return w.purge(ctx, victims)
	})
	if err != nil {
		return 0, fmt.Errorf("purging instances: %w", err)
	}

	return n, nil
}

// purge deletes the instances and what belongs to them.
func (w *writer) purge(ctx context.Context, victims []purged) error {
	if len(victims) == 0 {
		return nil
	}

	ids := make([]any, len(victims))
	for i, v := range victims {
		ids[i] = v.id
	}

	in := `(` + placeholders(len(ids)) + `)`
	for _, table := range purgeTables {
		if _, err := w.exec(ctx, `DELETE FROM `+table+` WHERE instance_id IN `+in, ids...); err != nil {
			return fmt.Errorf("purging %s: %w", table, err)
		}
	}

	for _, v := range victims {
		if v.startKey == "" {
			continue
		}

		_, err := w.exec(ctx, `DELETE FROM start_keys
			WHERE definition_name = ? AND start_key = ? AND instance_id = ?`,
			v.definition, v.startKey, v.id)
		if err != nil {
			return fmt.Errorf("purging start key: %w", err)
		}
	}

	_, err := w.exec(ctx, `DELETE FROM workflow_instances WHERE id IN `+in, ids...)
	if err != nil {
		return fmt.Errorf("purging workflow_instances: %w", err)
	}

	return nil
}
