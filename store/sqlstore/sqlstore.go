// Package sqlstore implements store.Store once on database/sql for every
// SQL database weft runs on. What differs between SQLite and PostgreSQL
// (placeholders, the database clock, row locking, JSON paths, the schema's
// column types) lives in a Dialect; the Go logic is shared.
//
// Writes go through a committer goroutine (one by default; PostgreSQL
// runs several, each instance's writes always on the same one) that
// packs the writes waiting at that moment into a single database
// transaction (group commit). Each write runs inside its own savepoint,
// so one that fails (a lost lease, a conflict) is rolled back alone, and
// one that lost a deadlock to another node runs again in the next
// batch; every caller learns its result only after the commit. Reads go
// straight to the read pool.
//
// Times are stored as unix milliseconds and JSON as TEXT, byte for byte.
package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/weftworks/weft/store"
)

// DefaultMaxBatch is how many writes share one commit at most by default.
const DefaultMaxBatch = 256

// Config says which databases a Store uses and how.
type Config struct {
	// Writer takes every write. For SQLite it should hold a single
	// connection, since SQLite has a single writer anyway.
	Writer *sql.DB
	// Reader serves reads; Writer is used when it is nil.
	Reader *sql.DB
	// Dialect is the SQL flavour of both handles.
	Dialect *Dialect
	// MaxBatch bounds how many writes share one commit (default
	// DefaultMaxBatch).
	MaxBatch int
	// Writers is how many committers run at once, each on its own
	// connection of Writer and each packing its own batches (default 1,
	// the only sensible value for SQLite). The writes of one instance
	// always go to the same committer.
	Writers int
	// Channel, with a dialect that can notify, is the channel each
	// commit that made an instance runnable or a task claimable sends a
	// Notice on, for the other nodes; empty sends nothing.
	Channel string
	// Sender names this store in the notices it sends, so that it can
	// tell its own apart.
	Sender string
}

// Store is a store.Store on database/sql. Close it to stop its committer
// and release both database handles.
type Store struct {
	writer     *sql.DB
	reader     *sql.DB
	dialect    *Dialect
	channel    string
	sender     string
	committers []*committer
	next       atomic.Uint64
	reads      readCache

	commits     atomic.Int64
	transitions atomic.Int64
	rows        atomic.Int64
	bytes       atomic.Int64
	loaded      atomic.Int64
}

var _ store.Store = (*Store)(nil)

// New starts a Store on migrated databases (see Migrate).
func New(cfg Config) (*Store, error) {
	if cfg.Writer == nil || cfg.Dialect == nil {
		return nil, errors.New("creating store: writer and dialect are required")
	}

	if cfg.Reader == nil {
		cfg.Reader = cfg.Writer
	}

	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}

	s := &Store{
		writer: cfg.Writer, reader: cfg.Reader, dialect: cfg.Dialect,
		channel: cfg.Channel, sender: cfg.Sender,
	}
	for range max(cfg.Writers, 1) {
		c := newCommitter(s, cfg.MaxBatch)
		s.committers = append(s.committers, c)
		go c.run()
	}

	return s, nil
}

// Stats returns the counters since the store was opened.
func (s *Store) Stats() store.Stats {
	return store.Stats{
		Commits:      s.commits.Load(),
		Transitions:  s.transitions.Load(),
		RowsWritten:  s.rows.Load(),
		BytesWritten: s.bytes.Load(),
		RowsLoaded:   s.loaded.Load(),
	}
}

// Close finishes the writes already queued, stops the committer and
// closes the database handles. Writes submitted afterwards fail.
func (s *Store) Close() error {
	first := false
	for _, c := range s.committers {
		first = c.stop() || first
	}

	if !first {
		return nil
	}

	s.closeReads()

	var errs []error
	if s.reader != s.writer {
		if err := s.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing read pool: %w", err))
		}
	}

	if err := s.writer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing writer: %w", err))
	}

	return errors.Join(errs...)
}

// q rewrites a query's placeholders for the dialect.
func (s *Store) q(query string) string {
	return s.dialect.rebind(query)
}
