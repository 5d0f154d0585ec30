package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft/store"
)

// errClosed answers writes submitted after Close.
var errClosed = errors.New("store closed")

// writeFunc is one write: it runs inside the batch's transaction, in its
// own savepoint, and any error it returns rolls back only its own work.
type writeFunc func(ctx context.Context, w *writer) error

// errDeferred marks an op that lost a deadlock to another node's
// transaction: its savepoint was rolled back and it runs again in the
// next batch, once this one has committed and freed its locks.
var errDeferred = errors.New("deferred to the next batch")

// op is a write waiting for the committer.
type op struct {
	ctx        context.Context
	fn         writeFunc
	transition bool
	// key is the id of the instance whose row the op locks first, if
	// any; where the database locks rows, a batch runs its ops in key
	// order, so that two nodes' batches take instance locks in the same
	// order.
	key   string
	tries int
	done  chan error
}

// counts are what a write or a batch adds to the store's counters, and
// the notices it sends.
type counts struct {
	transitions int64
	rows        int64
	bytes       int64
	instances   bool
	tasks       bool
}

func (c *counts) add(o counts) {
	c.transitions += o.transitions
	c.rows += o.rows
	c.bytes += o.bytes
	c.instances = c.instances || o.instances
	c.tasks = c.tasks || o.tasks
}

// maxRetries bounds how often a write that lost a deadlock or a
// serialization check against another node runs again.
const maxRetries = 5

// committer is a goroutine that commits writes on its own connection. A
// Store has one per writer (Config.Writers); SQLite's has one.
type committer struct {
	s   *Store
	max int

	mu     sync.Mutex
	queue  []*op
	closed bool

	// conn and stmts belong to the committer goroutine alone, and so
	// does feedRows, the audit rows of the open transaction.
	conn     *sql.Conn
	stmts    map[string]*sql.Stmt
	feedRows int64

	signal  chan struct{}
	quit    chan struct{}
	stopped chan struct{}
}

func newCommitter(s *Store, maxBatch int) *committer {
	return &committer{
		s:       s,
		max:     maxBatch,
		signal:  make(chan struct{}, 1),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// submit queues ops; it fails once the committer is stopping.
func (c *committer) submit(ops ...*op) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()

		return errClosed
	}

	c.queue = append(c.queue, ops...)
	c.mu.Unlock()

	select {
	case c.signal <- struct{}{}:
	default:
	}

	return nil
}

// run commits batches until the committer is stopped and its queue is
// empty.
func (c *committer) run() {
	defer close(c.stopped)
	defer c.release()

	for {
		batch, closed := c.next()
		if len(batch) > 0 {
			c.apply(batch)

			continue
		}

		if closed {
			return
		}

		select {
		case <-c.signal:
		case <-c.quit:
		}
	}
}

// next takes up to max ops off the queue.
func (c *committer) next() ([]*op, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	n := min(len(c.queue), c.max)
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil
	}

	return batch, c.closed
}

// stop refuses new writes, waits for the queued ones and reports whether
// this call was the one that stopped the committer.
func (c *committer) stop() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.stopped

		return false
	}

	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	<-c.stopped

	return true
}

// apply runs a batch in one transaction and answers each op, but for
// those deferred to the next batch.
func (c *committer) apply(batch []*op) {
	if c.s.dialect.ForUpdate != "" {
		slices.SortStableFunc(batch, func(a, b *op) int { return strings.Compare(a.key, b.key) })
	}

	results := make([]error, len(batch))

	total, err := c.runBatch(context.Background(), batch, results)
	if err != nil {
		err = c.markUnavailable(err)
		c.reset()
		for i := range results {
			results[i] = err
		}
	} else {
		c.s.transitions.Add(total.transitions)
		c.s.rows.Add(total.rows)
		c.s.bytes.Add(total.bytes)
	}

	var deferred []*op
	for i, o := range batch {
		if errors.Is(results[i], errDeferred) {
			o.tries++
			deferred = append(deferred, o)

			continue
		}

		o.done <- results[i]
	}

	if len(deferred) > 0 {
		c.mu.Lock()
		c.queue = append(deferred, c.queue...)
		c.mu.Unlock()
	}
}

// runBatch runs every op of the batch and commits, running a batch of
// one again when it lost to another node's transaction.
func (c *committer) runBatch(ctx context.Context, batch []*op, results []error) (counts, error) {
	for try := 0; ; try++ {
		total, err := c.runBatchOnce(ctx, batch, results)
		if err != nil || len(batch) > 1 || !retryable(results[0]) || try == maxRetries {
			return total, err
		}
	}
}

// runBatchOnce runs every op of the batch and commits. It fills results
// with each op's own error; a returned error means nothing was
// committed. A batch of one needs no savepoint: its failure rolls back
// the whole transaction.
func (c *committer) runBatchOnce(ctx context.Context, batch []*op, results []error) (counts, error) {
	if err := c.begin(ctx); err != nil {
		return counts{}, fmt.Errorf("beginning write batch: %w", err)
	}

	savepoints := len(batch) > 1
	var total counts
	for i, o := range batch {
		n, opErr, fatal := c.runOp(ctx, o, savepoints)
		if fatal != nil {
			return counts{}, fatal
		}

		results[i] = opErr
		if opErr == nil {
			total.add(n)
		}
	}

	if !savepoints && results[0] != nil {
		if err := c.execConn(ctx, "ROLLBACK"); err != nil {
			return counts{}, fmt.Errorf("rolling back write batch: %w", err)
		}

		return counts{}, nil
	}

	if err := c.notify(ctx, total); err != nil {
		return counts{}, fmt.Errorf("notifying other nodes: %w", err)
	}

	if err := c.execConn(ctx, "COMMIT"); err != nil {
		return counts{}, fmt.Errorf("committing write batch: %w", err)
	}

	c.s.commits.Add(1)

	return total, nil
}

// runOp runs one op, in a savepoint when asked. opErr is the op's own
// failure; fatal means the transaction can no longer be used.
func (c *committer) runOp(ctx context.Context, o *op, savepoint bool) (n counts, opErr, fatal error) {
	if err := o.ctx.Err(); err != nil {
		return counts{}, err, nil
	}

	if savepoint {
		if err := c.execConn(ctx, "SAVEPOINT op"); err != nil {
			return counts{}, nil, fmt.Errorf("opening savepoint: %w", err)
		}
	}

	w := &writer{c: c, s: c.s}
	opErr = w.call(ctx, o.fn)

	if savepoint && opErr != nil {
		if err := c.execConn(ctx, "ROLLBACK TO SAVEPOINT op"); err != nil {
			return counts{}, nil, fmt.Errorf("rolling back savepoint: %w", err)
		}

		if retryable(opErr) && o.tries < maxRetries {
			opErr = errDeferred
		}
	}

	if savepoint {
		if err := c.execConn(ctx, "RELEASE SAVEPOINT op"); err != nil {
			return counts{}, nil, fmt.Errorf("releasing savepoint: %w", err)
		}
	}

	if o.transition {
		w.n.transitions = 1
	}

	return w.n, opErr, nil
}

// beginTries bounds how many connections begin tries: after an outage
// the pool may hand out connections the server side has closed, which
// only a statement finds out.
const beginTries = 4

// begin takes the committer's own connection when it has none, and opens
// a transaction on it. The transaction is driven with plain statements
// rather than sql.Tx, so that statements prepared once on the
// connection serve every batch. A BEGIN that fails on a connection that
// no longer answers gives it up and tries another: it changed nothing.
func (c *committer) begin(ctx context.Context) error {
	var err error
	for range beginTries {
		if err = c.connect(ctx); err != nil {
			return err
		}

		c.feedRows = 0
		if err = c.execConn(ctx, c.s.dialect.Begin); err == nil || !c.broken() {
			return err
		}

		c.release()
	}

	return err
}

// connect takes the committer's own connection when it has none.
func (c *committer) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}

	conn, err := c.s.writer.Conn(ctx)
	// Batches run under no deadline, so one here is the driver's connect
	// timeout: the database did not answer.
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || store.IsUnavailable(err)) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	if err != nil {
		return err
	}

	c.conn = conn
	c.stmts = make(map[string]*sql.Stmt)

	return nil
}

// execConn runs a statement that is not worth preparing.
func (c *committer) execConn(ctx context.Context, query string) error {
	_, err := c.conn.ExecContext(ctx, query)

	return err
}

// retryable reports whether err is the database refusing a write because
// of a concurrent transaction (a deadlock or a serialization failure),
// which the same write may pass when run again.
func retryable(err error) bool {
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) {
		return false
	}

	switch coded.SQLState() {
	case "40001", "40P01":
		return true
	}

	return false
}

// notify sends, inside the batch's transaction, a notice for each kind
// of work the batch made ready; the database delivers them at commit.
func (c *committer) notify(ctx context.Context, total counts) error {
	s := c.s
	if s.dialect.Notify == "" || s.channel == "" {
		return nil
	}

	for _, n := range []struct {
		set  bool
		kind store.Notice
	}{{total.instances, store.NoticeInstances}, {total.tasks, store.NoticeTasks}} {
		if !n.set {
			continue
		}

		stmt, err := c.stmt(ctx, s.dialect.Notify)
		if err != nil {
			return err
		}

		if _, err := stmt.ExecContext(ctx, s.channel, NoticePayload(n.kind, s.sender)); err != nil {
			return err
		}
	}

	return nil
}

// NoticePayload is the text a notice of kind from sender is sent as.
func NoticePayload(kind store.Notice, sender string) string {
	return string(kind) + ":" + sender
}

// ParseNotice reads a notice's payload; ok is false when it is not one.
func ParseNotice(payload string) (kind store.Notice, sender string, ok bool) {
	k, sender, found := strings.Cut(payload, ":")
	kind = store.Notice(k)
	if !found || (kind != store.NoticeInstances && kind != store.NoticeTasks) {
		return "", "", false
	}

	return kind, sender, true
}

// pingTimeout bounds the ping that asks whether a failed batch's
// connection still works.
const pingTimeout = time.Second

// markUnavailable wraps a failed batch's error in store.ErrUnavailable
// when the committer's connection no longer answers, whatever words the
// driver found for it ("conn closed", "bad connection"), so that callers
// learn that the database is away rather than that the write is wrong.
func (c *committer) markUnavailable(err error) error {
	if c.conn == nil || store.IsUnavailable(err) || !c.broken() {
		return err
	}

	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// broken reports whether the committer's connection fails a ping.
func (c *committer) broken() bool {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()

	return c.conn.PingContext(ctx) != nil
}

// reset abandons a failed batch: it rolls back whatever is left of the
// transaction and gives the connection back, so the next batch starts
// on a fresh one.
func (c *committer) reset() {
	if c.conn == nil {
		return
	}

	_ = c.execConn(context.Background(), "ROLLBACK")
	c.release()
}

// release closes the prepared statements and gives the connection back
// to the pool.
func (c *committer) release() {
	if c.conn == nil {
		return
	}

	c.closeStatements()
	_ = c.conn.Close()
	c.conn = nil
}

// committerFor picks the committer of an op: by the hash of its
// instance key, so that the writes of one instance queue behind each
// other on one connection, or in turn for the writes without one.
func (s *Store) committerFor(key string) *committer {
	if len(s.committers) == 1 {
		return s.committers[0]
	}

	if key == "" {
		return s.committers[s.next.Add(1)%uint64(len(s.committers))]
	}

	h := fnv.New32a()
	h.Write([]byte(key))

	return s.committers[h.Sum32()%uint32(len(s.committers))]
}

// write runs fn through the committer and returns its result once the
// batch holding it has committed.
func (s *Store) write(ctx context.Context, fn writeFunc) error {
	return s.writeAll(ctx, false, nil, fn)[0]
}

// writeInstance is write for an fn that locks the instance id first.
func (s *Store) writeInstance(ctx context.Context, id string, fn writeFunc) error {
	return s.writeAll(ctx, false, []string{id}, fn)[0]
}

// writeAll queues one op per fn, with the instance key of the same
// index when keys has one, so that they may share a commit, and waits
// for all of them.
func (s *Store) writeAll(ctx context.Context, transition bool, keys []string, fns ...writeFunc) []error {
	ops := make([]*op, len(fns))
	for i, fn := range fns {
		ops[i] = &op{ctx: ctx, fn: fn, transition: transition, done: make(chan error, 1)}
		if i < len(keys) {
			ops[i].key = keys[i]
		}
	}

	groups := make(map[*committer][]*op, 1)
	for _, o := range ops {
		c := s.committerFor(o.key)
		groups[c] = append(groups[c], o)
	}

	for c, group := range groups {
		if err := c.submit(group...); err != nil {
			for _, o := range group {
				o.done <- err
			}
		}
	}

	errs := make([]error, len(fns))

	for i, o := range ops {
		select {
		case errs[i] = <-o.done:
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}

	return errs
}
