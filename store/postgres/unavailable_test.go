package postgres_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weftworks/weft/store"
	_ "github.com/weftworks/weft/store/postgres"
)

// notSafe wraps an error as pgx does a statement on a closed connection:
// marked not safe to retry.
type notSafe struct{ err error }

func (e notSafe) Error() string     { return e.err.Error() }
func (e notSafe) Unwrap() error     { return e.err }
func (e notSafe) SafeToRetry() bool { return false }

// TestConnClosedIsUnavailable is the read the outage test saw fail an
// instance as broken: "loading instance ...: conn closed".
func TestConnClosedIsUnavailable(t *testing.T) {
	err := fmt.Errorf("loading instance x: %w", notSafe{pgconn.ErrConnClosed})
	if !store.IsUnavailable(err) {
		t.Fatalf("IsUnavailable(%v) = false, want true", err)
	}
	if store.IsUnavailable(fmt.Errorf("loading instance x: %w", notSafe{fmt.Errorf("syntax")})) {
		t.Fatal("an error that is not the connection's counts as unavailable")
	}
}
