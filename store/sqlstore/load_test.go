package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // The "sqlite" database/sql driver.
)

// TestActiveStepsSeekTheActiveRowsOnly checks SQLite's plan for the
// query that loads an instance's active steps: every seed must seek its
// own index (work, waiting, timers), never walk the instance's whole
// primary-key range, which grows with its history and made the load of
// a long while loop slower at every iteration.
func TestActiveStepsSeekTheActiveRowsOnly(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })

	if err := Migrate(ctx, db, SQLite); err != nil {
		t.Fatalf("migrating: %v", err)
	}

	for _, paused := range []string{"", ` AND while_paused = 1`} {
		id := "i1"
		rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+fmt.Sprintf(activeSteps, paused),
			id, id, id, int64(1), id, id)
		if err != nil {
			t.Fatalf("explaining: %v", err)
		}

		var plan []string
		for rows.Next() {
			var node, parent, unused int
			var detail string
			if err := rows.Scan(&node, &parent, &unused, &detail); err != nil {
				t.Fatalf("reading plan: %v", err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("reading plan: %v", err)
		}
		_ = rows.Close()

		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN workflow_steps") ||
				strings.HasSuffix(line, "workflow_steps_1 (instance_id=?)") {
				t.Fatalf("plan walks the instance's history: %q in\n%s",
					line, strings.Join(plan, "\n"))
			}
		}
	}
}
