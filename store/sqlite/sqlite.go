// Package sqlite opens weft's embedded store: an SQLite file in WAL mode,
// driven by the pure-Go modernc.org/sqlite, with the shared SQL store on
// top. One weft process owns the file at a time; a lock file beside it
// makes a second one fail fast.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"time"

	"github.com/gofrs/flock"
	_ "modernc.org/sqlite" // The "sqlite" database/sql driver.

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlstore"
)

// Synchronous is SQLite's synchronous setting for the writer.
type Synchronous string

// Synchronous settings. Full syncs the WAL on every commit, so nothing
// acknowledged is lost even when the machine loses power; Normal syncs
// only at checkpoints, so a power loss may drop the last commits (a
// process crash loses nothing).
const (
	SynchronousFull   Synchronous = "FULL"
	SynchronousNormal Synchronous = "NORMAL"
)

// config is what the options set.
type config struct {
	synchronous Synchronous
	busyTimeout time.Duration
	readers     int
	maxBatch    int
}

// Option changes how Open opens the database.
type Option func(*config)

// WithSynchronous sets the writer's synchronous mode (default
// SynchronousFull).
func WithSynchronous(s Synchronous) Option {
	return func(c *config) { c.synchronous = s }
}

// WithBusyTimeout sets how long a connection waits for a lock inside the
// file (default 5s).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) { c.busyTimeout = d }
}

// WithReaders sets the size of the read pool (default: GOMAXPROCS, at
// least 4).
func WithReaders(n int) Option {
	return func(c *config) { c.readers = n }
}

// WithMaxBatch bounds how many writes share one commit (default
// sqlstore.DefaultMaxBatch).
func WithMaxBatch(n int) Option {
	return func(c *config) { c.maxBatch = n }
}

// Store is the SQLite store: the shared SQL store plus the file lock it
// holds until Close.
type Store struct {
	*sqlstore.Store
	lock *flock.Flock
}

// Open opens (creating when missing) and migrates the database at path,
// and locks it for this process with path+".lock". When another process,
// or another Open in this one, holds the lock it fails at once with an
// error wrapping store.ErrLocked.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{
		synchronous: SynchronousFull,
		busyTimeout: 5 * time.Second,
		readers:     max(runtime.GOMAXPROCS(0), 4),
	}
	for _, o := range opts {
		o(&cfg)
	}

	// The lock is named after the file's real path, so that a second
	// process reaching the same file through a symbolic link, or by
	// another relative path, finds the same lock.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}

	lock := flock.New(path + ".lock")
	ok, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock.Path(), err)
	}

	if !ok {
		return nil, fmt.Errorf("opening %s: another weft process holds %s: %w",
			path, lock.Path(), store.ErrLocked)
	}

	s, err := open(ctx, path, cfg)
	if err != nil {
		return nil, errors.Join(err, lock.Unlock())
	}

	return &Store{Store: s, lock: lock}, nil
}

// open opens the writer and the read pool, migrates and starts the store.
func open(ctx context.Context, path string, cfg config) (*sqlstore.Store, error) {
	writer, err := sql.Open("sqlite", dsn(path, cfg, false))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}

	writer.SetMaxOpenConns(1)
	writer.SetConnMaxIdleTime(0)
	if err := sqlstore.Migrate(ctx, writer, sqlstore.SQLite); err != nil {
		return nil, errors.Join(fmt.Errorf("opening %s: %w", path, err), writer.Close())
	}

	reader, err := sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("opening %s: %w", path, err), writer.Close())
	}

	reader.SetMaxOpenConns(cfg.readers)
	reader.SetMaxIdleConns(cfg.readers)

	s, err := sqlstore.New(sqlstore.Config{
		Writer: writer, Reader: reader, Dialect: sqlstore.SQLite, MaxBatch: cfg.maxBatch,
	})
	if err != nil {
		return nil, errors.Join(err, reader.Close(), writer.Close())
	}

	return s, nil
}

// dsn builds the driver's connection string: WAL, the busy timeout, and
// either the writer's synchronous mode with immediate transactions or a
// query-only reader.
func dsn(path string, cfg config, reader bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(cfg.busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "off")
	if reader {
		q.Set("_query_only", "1")
	} else {
		q.Set("_synchronous", string(cfg.synchronous))
		q.Set("_txlock", "immediate")
	}

	return path + "?" + q.Encode()
}

// Close closes the database and releases the file lock.
func (s *Store) Close() error {
	return errors.Join(s.Store.Close(), s.lock.Unlock())
}
