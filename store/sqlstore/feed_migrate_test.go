package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // The "pgx" database/sql driver.
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // The "sqlite" database/sql driver.

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/sqlstore"
)

// feedMigration is the migration that gives the audit log its feed
// position.
const feedMigration = 4

// TestFeedMigration migrates a database that holds audit rows from
// before the feed position to the newest schema: the old rows keep an
// order (by time on PostgreSQL, by rowid, their old position, on
// SQLite), and rows written afterwards, by this release or by the one
// before, come after them.
func TestFeedMigration(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		url, schema := pgtest.Schema(t)
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		db := openDB(t, "pgx", url+sep+"search_path="+schema)
		upTo(t, db, goose.DialectPostgres, "postgres")
		// Inserted out of time order: the migration numbers them by time.
		insertOld(t, db, []string{"('b', 1, 't', 20)", "('a', 1, 't', 10)", "('a', 2, 't', 30)"})
		checkMigrated(t, db, sqlstore.Postgres, []string{"a/1", "b/1", "a/2"})
	})

	t.Run("sqlite", func(t *testing.T) {
		db := openDB(t, "sqlite", filepath.Join(t.TempDir(), "old.db"))
		upTo(t, db, goose.DialectSQLite3, "sqlite")
		insertOld(t, db, []string{"('b', 1, 't', 20)", "('a', 1, 't', 10)", "('a', 2, 't', 30)"})
		checkMigrated(t, db, sqlstore.SQLite, []string{"b/1", "a/1", "a/2"})
	})
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("opening %s: %v", driver, err)
	}
	t.Cleanup(func() { _ = db.Close() })

	return db
}

// upTo migrates db to the version before the feed migration.
func upTo(t *testing.T, db *sql.DB, dialect goose.Dialect, dir string) {
	t.Helper()
	p, err := goose.NewProvider(dialect, db, os.DirFS(filepath.Join("migrations", dir)),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatalf("making migrations: %v", err)
	}
	if _, err := p.UpTo(t.Context(), feedMigration-1); err != nil {
		t.Fatalf("migrating to %d: %v", feedMigration-1, err)
	}
}

func insertOld(t *testing.T, db *sql.DB, rows []string) {
	t.Helper()
	for _, r := range rows {
		_, err := db.ExecContext(t.Context(), `INSERT INTO workflow_events (instance_id, seq, type, at)
			VALUES `+r)
		if err != nil {
			t.Fatalf("inserting %s: %v", r, err)
		}
	}
}

// checkMigrated migrates db and checks the feed lists the old rows in
// want's order, then a row written after them.
func checkMigrated(t *testing.T, db *sql.DB, d *sqlstore.Dialect, want []string) {
	t.Helper()
	ctx := t.Context()
	if err := sqlstore.Migrate(ctx, db, d); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	s, err := sqlstore.New(sqlstore.Config{Writer: db, Dialect: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	_, _, err = s.InstanceCreate(ctx, store.InstanceCreateParams{
		Instance: store.Instance{ID: "c", DefinitionName: "d", DefinitionVersion: 1,
			Status: store.InstanceRunning},
		Audit: []store.AuditEvent{{Type: "instance_started"}},
	})
	if err != nil {
		t.Fatalf("creating an instance: %v", err)
	}

	// A node of the previous release, during a rolling upgrade, writes
	// no position.
	insertOld(t, db, []string{"('old', 1, 't', 40)"})

	want = append(want, "c/1", "old/1")
	feed := readAll(ctx, t, s, len(want))
	for i, ev := range feed {
		if i > 0 && ev.Position <= feed[i-1].Position {
			t.Fatalf("position %d after %d", ev.Position, feed[i-1].Position)
		}
		if got := ev.Event.InstanceID + "/" + strconv.FormatInt(ev.Event.Seq, 10); got != want[i] {
			t.Fatalf("feed row %d is %s, want %s (feed %v)", i, got, want[i], feed)
		}
	}
}

// readAll reads the feed until it has n rows: on PostgreSQL a row waits
// while another test's transaction that began before it runs.
func readAll(ctx context.Context, t *testing.T, s *sqlstore.Store, n int) []store.FeedEvent {
	t.Helper()
	for range 3000 {
		feed, err := s.AuditFeed(ctx, 0, 0)
		if err != nil {
			t.Fatalf("reading the feed: %v", err)
		}
		if len(feed) >= n {
			return feed
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("feed has fewer than %d rows after 30s", n)

	return nil
}
