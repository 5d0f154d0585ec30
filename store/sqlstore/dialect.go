package sqlstore

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pressly/goose/v3"
)

// Dialect holds what differs between the SQL databases the store runs on.
// Queries are written once with "?" placeholders; everything else that
// varies is a field here.
type Dialect struct {
	// Name names the dialect in errors and selects its migrations folder.
	Name string
	// Numbered makes placeholders "$1", "$2", ... instead of "?".
	Numbered bool
	// Begin opens a write transaction.
	Begin string
	// Now is an SQL expression for the database clock in unix
	// milliseconds, used for lease expiry.
	Now string
	// SkipLocked is appended to the selects that claim rows, so that
	// several nodes claim without waiting on each other.
	SkipLocked string
	// ForUpdate is appended to the selects inside a write that read a row
	// before changing it, so that a writer on another node waits instead
	// of reading a version about to change. SQLite has one writer and
	// needs none.
	ForUpdate string
	// LockKey, when set, is a statement taking a transaction-scoped lock
	// on the text of its one placeholder. Publishing an event and adding
	// a subscription take the lock of the event's name and key, so that
	// two nodes cannot each miss the other's uncommitted row.
	LockKey string
	// Notify, when set, is a statement that sends its second placeholder
	// on the channel named by the first when the transaction commits.
	Notify string
	// MigrateLock and MigrateUnlock, when set, take and free a session
	// lock around migrations, so that nodes starting together migrate
	// one after the other.
	MigrateLock   string
	MigrateUnlock string
	// LoadIsolation is the isolation of the read transaction that loads
	// an instance, so that its rows come from one snapshot.
	LoadIsolation sql.IsolationLevel
	// JSONEqual returns an expression true when the JSON value at the path
	// of the first placeholder in the column equals the JSON text of the
	// second placeholder.
	JSONEqual func(column string) string
	// JSONPath turns the parts of a dotted path into the value bound to
	// JSONEqual's first placeholder.
	JSONPath func(parts []string) string
	// FeedInsert, when set, is the SQL expression of a new audit row's
	// feed_position, given the row's ordinal within its transaction as
	// its one placeholder; when empty the database numbers the column
	// itself (SQLite's AUTOINCREMENT).
	FeedInsert string
	// FeedHorizon, when set, is an SQL expression of the lowest feed
	// position the lifecycle feed may not return yet, because a
	// transaction still running may commit a row below it.
	FeedHorizon string
	// Goose is the goose dialect the migrations run with.
	Goose goose.Dialect

	rebound sync.Map
}

// SQLite is the dialect of SQLite 3.38 and later.
var SQLite = &Dialect{
	Name:     "sqlite",
	Numbered: false,
	Begin:    "BEGIN IMMEDIATE",
	Now:      "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
	JSONEqual: func(column string) string {
		return "json_extract(" + column + ", ?) = json_extract(?, '$')"
	},
	JSONPath: sqlitePath,
	Goose:    goose.DialectSQLite3,
}

// Postgres is the dialect of PostgreSQL 13 and later. The clock is
// clock_timestamp, not now, since a group commit's transaction may have
// started a while before the statement runs.
var Postgres = &Dialect{
	Name:       "postgres",
	Numbered:   true,
	Begin:      "BEGIN",
	Now:        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	ForUpdate:  " FOR UPDATE",
	LockKey:    "SELECT pg_advisory_xact_lock(hashtext(?))",
	Notify:     "SELECT pg_notify(?, ?)",

	MigrateLock:   "SELECT pg_advisory_lock(hashtext('weft migrations ' || current_schema()))",
	MigrateUnlock: "SELECT pg_advisory_unlock(hashtext('weft migrations ' || current_schema()))",

	LoadIsolation: sql.LevelRepeatableRead,
	JSONEqual: func(column string) string {
		return "(" + column + ")::jsonb #> ?::text[] = ?::jsonb"
	},
	FeedInsert:  "(pg_current_xact_id()::text::BIGINT << " + feedShift + ") + ?",
	FeedHorizon: "(pg_snapshot_xmin(pg_current_snapshot())::text::BIGINT << " + feedShift + ")",
	JSONPath:    postgresPath,
	Goose:       goose.DialectPostgres,
}

// PostgreSQL numbers the lifecycle feed by commit, not by insert: a
// sequence hands out its numbers as rows are inserted, so a transaction
// that took a number first and commits last would put a row behind one
// a reader has passed already, and the reader would never see it.
// Instead each audit row's feed position is the id of the transaction
// that wrote it (pg_current_xact_id), shifted left by feedShift bits,
// plus the row's ordinal within that transaction. A reader returns only
// rows below the xmin of its snapshot shifted the same way: every
// transaction with a smaller id has ended, so no row can appear below
// that horizon any more, and a reader resuming from a position never
// skips one. A writing transaction left open anywhere on the server
// holds the feed back until it ends (docs/operations.md).
const (
	// feedShift is how many bits of a feed position number the rows of
	// one transaction; the transaction id takes the other 43.
	feedShift = "20"
	// maxFeedOrdinal bounds the audit rows of one transaction.
	maxFeedOrdinal = 1 << 20
)

// sqlitePath writes parts as an SQLite JSON path: $."a"."b"[0].
func sqlitePath(parts []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 31); err == nil {
			b.WriteString("[" + p + "]")

			continue
		}

		b.WriteString(`."` + p + `"`)
	}

	return b.String()
}

// postgresPath writes parts as a PostgreSQL text array: {"a","b","0"}.
func postgresPath(parts []string) string {
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = strconv.Quote(p)
	}

	return "{" + strings.Join(quoted, ",") + "}"
}

// splitPath splits a dotted data path, refusing empty parts and quotes.
func splitPath(path string) ([]string, error) {
	parts := strings.Split(path, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, `"\[]`) {
			return nil, fmt.Errorf("invalid data path %q", path)
		}
	}

	return parts, nil
}

// rebind rewrites the "?" placeholders of query for the dialect. Queries
// must not hold a "?" inside a string literal.
func (d *Dialect) rebind(query string) string {
	if !d.Numbered {
		return query
	}

	if q, ok := d.rebound.Load(query); ok {
		return q.(string)
	}

	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)

			continue
		}

		n++
		b.WriteString("$" + strconv.Itoa(n))
	}

	d.rebound.Store(query, b.String())

	return b.String()
}

// placeholders returns n placeholders separated by commas.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}

	return strings.Repeat("?, ", n-1) + "?"
}
