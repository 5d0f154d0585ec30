package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// maxStatements bounds the committer's prepared statements; past it the
// cache starts again empty.
const maxStatements = 512

// writer is one op's view of the batch transaction. It counts what the
// op writes.
type writer struct {
	c *committer
	s *Store
	n counts
}

// call runs fn, turning a panic into an error so that one bad write
// cannot take the committer down.
func (w *writer) call(ctx context.Context, fn writeFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("writing: panic: %v", r)
		}
	}()

	return fn(ctx, w)
}

// exec runs a write statement and returns how many rows it changed.
func (w *writer) exec(ctx context.Context, query string, args ...any) (int64, error) {
	stmt, err := w.c.stmt(ctx, query)
	if err != nil {
		return 0, err
	}

	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}

	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}

	w.wrote(n, args)

	return n, nil
}

// query runs a select, or a write with RETURNING whose rows the caller
// counts with wrote.
func (w *writer) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	stmt, err := w.c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}

	return stmt.QueryContext(ctx, args...)
}

// queryRow runs a select, or a write with RETURNING, for one row.
func (w *writer) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	stmt, err := w.c.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}

	return stmt.QueryRowContext(ctx, args...)
}

// errRow is a row that failed before it was queried.
type errRow struct{ err error }

// Scan returns the error.
func (r errRow) Scan(...any) error {
	return r.err
}

// readyInstances records that the write made an instance runnable, so
// that the commit notifies the other nodes.
func (w *writer) readyInstances() {
	w.n.instances = true
}

// readyTasks records that the write made a task claimable.
func (w *writer) readyTasks() {
	w.n.tasks = true
}

// lock takes the dialect's transaction-scoped lock on key, when it has
// one.
func (w *writer) lock(ctx context.Context, key string) error {
	if w.s.dialect.LockKey == "" {
		return nil
	}

	stmt, err := w.c.stmt(ctx, w.s.dialect.LockKey)
	if err == nil {
		_, err = stmt.ExecContext(ctx, key)
	}

	if err != nil {
		return fmt.Errorf("locking %q: %w", key, err)
	}

	return nil
}

// wrote counts n rows written with args: the bytes are those of the text
// values bound, counted once per statement that changed something.
func (w *writer) wrote(n int64, args []any) {
	if n == 0 {
		return
	}

	w.n.rows += n
	for _, a := range args {
		switch v := a.(type) {
		case string:
			w.n.bytes += int64(len(v))
		case []byte:
			w.n.bytes += int64(len(v))
		}
	}
}

// stmt returns the query prepared on the committer's connection,
// preparing it the first time.
func (c *committer) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}

	if len(c.stmts) >= maxStatements {
		c.closeStatements()
	}

	st, err := c.conn.PrepareContext(ctx, c.s.q(query))
	if err != nil {
		return nil, err
	}

	c.stmts[query] = st

	return st, nil
}

// closeStatements drops every prepared statement.
func (c *committer) closeStatements() {
	for _, st := range c.stmts {
		_ = st.Close()
	}

	c.stmts = make(map[string]*sql.Stmt)
}
