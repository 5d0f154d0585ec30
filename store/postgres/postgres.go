// Package postgres opens weft's shared store: a PostgreSQL database,
// driven by pgx through its database/sql driver, with the shared SQL
// store on top. Any number of weft nodes may open the same database; they
// claim instances and tasks with FOR UPDATE SKIP LOCKED, fence writes
// with the lease epoch against the database clock, and wake each other
// with LISTEN/NOTIFY.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlstore"
)

func init() {
	// pgx reports a statement on a connection it closed (the server went
	// away mid-read) as ErrConnClosed, wrapped in an error that is not
	// marked safe to retry: the database is away all the same.
	store.RegisterUnavailable(func(err error) bool { return errors.Is(err, pgconn.ErrConnClosed) })
}

// config is what the options set.
type config struct {
	maxConns    int
	writers     int
	maxBatch    int
	schema      string
	notify      bool
	logger      *slog.Logger
	maxIdleTime time.Duration
}

// DefaultConnectTimeout bounds each new connection's attempt when the
// URL sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// defaultWriters is how many committers a node runs by default.
const defaultWriters = 3

// Option changes how Open opens the database.
type Option func(*config)

// WithMaxConns sets the size of the read pool (default 8). Each node
// also holds one connection for its committer, one for migrations while
// it opens, and one for LISTEN.
func WithMaxConns(n int) Option {
	return func(c *config) { c.maxConns = n }
}

// WithWriters sets how many transactions the node commits at once, each
// on its own connection with its own group commit (default 3). The
// writes of one instance always share one of them.
func WithWriters(n int) Option {
	return func(c *config) { c.writers = n }
}

// WithMaxBatch bounds how many writes share one commit (default
// sqlstore.DefaultMaxBatch).
func WithMaxBatch(n int) Option {
	return func(c *config) { c.maxBatch = n }
}

// WithSchema makes every connection work in schema (its search_path),
// which must exist; by default the server's search_path holds. Tests use
// a fresh schema each; notices go to nodes on the same schema only.
func WithSchema(schema string) Option {
	return func(c *config) { c.schema = schema }
}

// WithoutNotify turns off LISTEN/NOTIFY: the store neither sends notices
// nor offers Notifications, and other nodes' work is found by polling
// alone.
func WithoutNotify() Option {
	return func(c *config) { c.notify = false }
}

// WithLogger sets the logger of the listener's reconnects (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Store is the PostgreSQL store: the shared SQL store plus the listener
// that turns other nodes' notices into wake-ups.
type Store struct {
	*sqlstore.Store
	listener *listener
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string), migrates its schema and starts the store. Several
// nodes may open and migrate the same database at once: migrations run
// under an advisory lock. A new connection gives up after the URL's
// connect_timeout, or DefaultConnectTimeout.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg := config{
		maxConns: 8, writers: defaultWriters, notify: true, logger: slog.Default(),
		maxIdleTime: 5 * time.Minute,
	}
	for _, o := range opts {
		o(&cfg)
	}

	if cfg.maxConns < 1 || cfg.writers < 1 {
		return nil, fmt.Errorf("opening postgres store: max conns %d, writers %d: "+
			"both must be at least 1", cfg.maxConns, cfg.writers)
	}

	conn, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: parsing database url: %w", err)
	}

	if cfg.schema != "" {
		conn.RuntimeParams["search_path"] = cfg.schema
	}

	// Without a bound a connection attempt that the network leaves
	// unanswered waits for ever, and the committer, whose batches run
	// under no caller's deadline, with it.
	if conn.ConnectTimeout == 0 {
		conn.ConnectTimeout = DefaultConnectTimeout
	}

	s, err := open(ctx, conn, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store on %s/%s: %w", conn.Host, conn.Database, err)
	}

	return s, nil
}

// open opens the writer and the read pool, migrates, and starts the
// store and its listener.
func open(ctx context.Context, conn *pgx.ConnConfig, cfg config) (*Store, error) {
	writer := stdlib.OpenDB(*conn)
	writer.SetMaxOpenConns(max(cfg.writers, 2))
	writer.SetConnMaxIdleTime(cfg.maxIdleTime)
	if err := writer.PingContext(ctx); err != nil {
		return nil, errors.Join(err, writer.Close())
	}

	if err := sqlstore.Migrate(ctx, writer, sqlstore.Postgres); err != nil {
		return nil, errors.Join(err, writer.Close())
	}

	reader := stdlib.OpenDB(*conn)
	reader.SetMaxOpenConns(cfg.maxConns)
	reader.SetMaxIdleConns(cfg.maxConns)
	reader.SetConnMaxIdleTime(cfg.maxIdleTime)

	sender := uuid.NewString()
	channel := ""
	if cfg.notify {
		channel = Channel(cfg.schema)
	}

	s, err := sqlstore.New(sqlstore.Config{
		Writer: writer, Reader: reader, Dialect: sqlstore.Postgres, MaxBatch: cfg.maxBatch,
		Writers: cfg.writers,
		Channel: channel, Sender: sender,
	})
	if err != nil {
		return nil, errors.Join(err, reader.Close(), writer.Close())
	}

	out := &Store{Store: s}
	if cfg.notify {
		out.listener = newListener(conn, channel, sender, cfg.logger)
	}

	return out, nil
}

// maxChannel is the longest channel name PostgreSQL takes, in bytes.
const maxChannel = 63

// Channel is the LISTEN/NOTIFY channel of the nodes on schema ("weft"
// when schema is empty, "weft." and the schema otherwise, cut to the 63
// bytes PostgreSQL takes).
func Channel(schema string) string {
	if schema == "" {
		return "weft"
	}

	ch := "weft." + schema
	for len(ch) > maxChannel {
		_, size := utf8.DecodeLastRuneInString(ch)
		ch = ch[:len(ch)-size]
	}

	return ch
}

// Notifications returns the notices other nodes on the same database and
// schema send from now on; the channel closes when ctx ends. Without
// notify it only closes when ctx ends.
func (s *Store) Notifications(ctx context.Context) <-chan store.Notice {
	if s.listener == nil {
		ch := make(chan store.Notice)
		go func() {
			<-ctx.Done()
			close(ch)
		}()

		return ch
	}

	return s.listener.subscribe(ctx)
}

// Close stops the listener, then closes the database handles.
func (s *Store) Close() error {
	if s.listener != nil {
		s.listener.stop()
	}

	return s.Store.Close()
}
