package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// readCache holds statements prepared on the read pool; database/sql
// prepares each one again, once, on every pool connection it runs on.
type readCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// readStmt returns the query prepared on the read pool. ok is false when
// the cache is full (a long tail of filter combinations): the query then
// runs unprepared.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, bool, error) {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	if st, ok := s.reads.stmts[query]; ok {
		return st, true, nil
	}

	if len(s.reads.stmts) >= maxStatements {
		return nil, false, nil
	}

	st, err := s.reader.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, false, err
	}

	if s.reads.stmts == nil {
		s.reads.stmts = make(map[string]*sql.Stmt)
	}

	s.reads.stmts[query] = st

	return st, true, nil
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

// txQuery runs a select inside a read transaction.
func (s *Store) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, ok, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}

	if !ok {
		return tx.QueryContext(ctx, s.q(query), args...)
	}

	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// closeReads closes the prepared read statements.
func (s *Store) closeReads() {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()

	for _, st := range s.reads.stmts {
		_ = st.Close()
	}

	s.reads.stmts = nil
}
