package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/storetest"
)

func TestConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return pgtest.Open(t)
	})
}

func TestNodes(t *testing.T) {
	pgtest.URL(t)
	storetest.Nodes(t, func(t *testing.T) (store.Store, store.Store) {
		url, schema := pgtest.Schema(t)

		return pgtest.OpenSchema(t, url, schema), pgtest.OpenSchema(t, url, schema)
	})
}

func TestChannel(t *testing.T) {
	long := strings.Repeat("é", 40)
	tests := []struct{ schema, want string }{
		{"", "weft"},
		{"tenant_a", "weft.tenant_a"},
		{long, "weft." + strings.Repeat("é", 29)},
	}
	for _, tt := range tests {
		if got := postgres.Channel(tt.schema); got != tt.want || len(got) > 63 {
			t.Errorf("Channel(%q) = %q, want %q (at most 63 bytes)", tt.schema, got, tt.want)
		}
	}
}

// TestFeedNodes runs the feed's concurrent part on two stores of one
// schema, holding an instance's row from a connection of the test's own.
func TestFeedNodes(t *testing.T) {
	pgtest.URL(t)
	var mu sync.Mutex
	schemas := map[*testing.T][2]string{}
	open := func(t *testing.T) (store.Store, store.Store) {
		url, schema := pgtest.Schema(t)
		mu.Lock()
		schemas[t] = [2]string{url, schema}
		mu.Unlock()

		return pgtest.OpenSchema(t, url, schema), pgtest.OpenSchema(t, url, schema)
	}
	hold := func(t *testing.T, instanceID string) (func() bool, func()) {
		mu.Lock()
		db := schemas[t]
		mu.Unlock()

		return holdInstance(t, db[0], db[1], instanceID)
	}
	storetest.FeedNodes(t, open, hold)
}

// holdInstance locks an instance's row in a transaction of its own until
// release; blocked reports whether another transaction waits for it.
func holdInstance(t *testing.T, url, schema, id string) (blocked func() bool, release func()) {
	t.Helper()
	ctx := t.Context()
	connect := func() *pgx.Conn {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatalf("parsing url: %v", err)
		}
		cfg.RuntimeParams["search_path"] = schema
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connecting: %v", err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })

		return conn
	}

	holder, watcher := connect(), connect()
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatalf("beginning: %v", err)
	}
	var pid int
	err = tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM workflow_instances
		WHERE id = $1 FOR UPDATE`, id).Scan(&pid)
	if err != nil {
		t.Fatalf("locking instance %s: %v", id, err)
	}

	blocked = func() bool {
		var n int
		err := watcher.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE $1::int = ANY(pg_blocking_pids(pid))`, pid).Scan(&n)
		if err != nil {
			t.Errorf("looking for blocked transactions: %v", err)
			return true
		}

		return n > 0
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(context.Background()); err != nil {
				t.Errorf("releasing instance %s: %v", id, err)
			}
		})
	}
	t.Cleanup(release)

	return blocked, release
}
