package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// readCache holds statements prepared on the read pool; database/sql
// prepares each one again, once, on every pool connection it runs on.
// Its lock is never held while preparing: preparing on the pool waits
// for a free connection, and callers inside a read transaction take the
// lock while they hold one.
type readCache struct {
	mu        sync.Mutex
	stmts     map[string]*sql.Stmt
	preparing map[string]bool
	closed    bool
}

// cachedStmt returns the query's prepared statement, if there is one;
// full is true when there is none and no room for it.
func (s *Store) cachedStmt(query string) (st *sql.Stmt, ok, full bool) {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	st, ok = s.reads.stmts[query]

	return st, ok, !ok && len(s.reads.stmts) >= maxStatements
}

// readStmt returns the query prepared on the read pool. ok is false when
// the cache is full (a long tail of filter combinations): the query then
// runs unprepared.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, bool, error) {
	if st, ok, full := s.cachedStmt(query); ok || full {
		return st, ok, nil
	}

	st, err := s.reader.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, false, err
	}

	st, ok := s.keepStmt(query, st)

	return st, ok, nil
}

// keepStmt caches a statement just prepared and returns the cached one,
// which another caller may have prepared first. ok is false, and st
// closed, when the cache is full or closed.
func (s *Store) keepStmt(query string, st *sql.Stmt) (*sql.Stmt, bool) {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	if have, ok := s.reads.stmts[query]; ok {
		_ = st.Close()
		return have, true
	}

	if s.reads.closed || len(s.reads.stmts) >= maxStatements {
		_ = st.Close()
		return nil, false
	}

	if s.reads.stmts == nil {
		s.reads.stmts = make(map[string]*sql.Stmt)
	}

	s.reads.stmts[query] = st

	return st, true
}

// prepareLater prepares a query on the read pool in the background, at
// most once at a time per query.
func (s *Store) prepareLater(query string) {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	if s.reads.closed || s.reads.preparing[query] {
		return
	}

	if s.reads.preparing == nil {
		s.reads.preparing = make(map[string]bool)
	}

	s.reads.preparing[query] = true
	go func() {
		st, err := s.reader.PrepareContext(context.Background(), s.q(query))
		if err == nil {
			s.keepStmt(query, st)
		}

		s.reads.mu.Lock()
		delete(s.reads.preparing, query)
		s.reads.mu.Unlock()
	}()
}

// readQuery runs a select on the read pool.
func (s *Store) readQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, ok, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}

	if !ok {
		return s.reader.QueryContext(ctx, s.q(query), args...)
	}

	return st.QueryContext(ctx, args...)
}

// readRow runs a select for one row on the read pool.
func (s *Store) readRow(ctx context.Context, query string, args ...any) rowScanner {
	st, ok, err := s.readStmt(ctx, query)
	if err != nil {
		return errRow{err}
	}

	if !ok {
		return s.reader.QueryRowContext(ctx, s.q(query), args...)
	}

	return st.QueryRowContext(ctx, args...)
}

// txQuery runs a select inside a read transaction. It never waits for a
// pool connection: the transaction holds one, and when every connection
// is held so none comes free. A query not prepared yet runs unprepared
// on the transaction's connection, and is prepared on the pool in the
// background for the next time.
func (s *Store) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, ok, full := s.cachedStmt(query)
	if ok {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}

	if !full {
		s.prepareLater(query)
	}

	return tx.QueryContext(ctx, s.q(query), args...)
}

// closeReads closes the prepared read statements.
func (s *Store) closeReads() {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	for _, st := range s.reads.stmts {
		_ = st.Close()
	}

	s.reads.stmts = nil
	s.reads.closed = true
}
