// Package pgtest gives tests a PostgreSQL store on a fresh schema of
// their own. The server comes from WEFT_TEST_POSTGRES (a postgres://
// URL); without it the tests skip, unless WEFT_REQUIRE_POSTGRES=1 is set
// (as CI does), which makes a missing server a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store/postgres"
)

// Environment variables the helpers read.
const (
	// EnvURL holds the test server's URL.
	EnvURL = "WEFT_TEST_POSTGRES"
	// EnvRequire, set to 1, fails tests that find no server.
	EnvRequire = "WEFT_REQUIRE_POSTGRES"
)

// URL returns the test server's URL, skipping the test when there is
// none (failing it when EnvRequire is 1).
func URL(t testing.TB) string {
	t.Helper()

	url := os.Getenv(EnvURL)
	if url != "" {
		return url
	}

	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s is not set and %s=1: the PostgreSQL tests need a server", EnvURL, EnvRequire)
	}

	t.Skipf("PostgreSQL tests skipped: set %s to a server's URL, for example "+
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", EnvURL)

	return ""
}

// Schema creates a fresh, empty schema on the test server and drops it
// (with everything in it) when the test ends. It returns the URL and the
// schema's name.
func Schema(t testing.TB) (url, schema string) {
	t.Helper()

	url = URL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = "weft_test_" + hex.EncodeToString(b)
	ident := pgx.Identifier{schema}.Sanitize()

	exec(t, url, "CREATE SCHEMA "+ident)
	t.Cleanup(func() { exec(t, url, "DROP SCHEMA "+ident+" CASCADE") })

	return url, schema
}

// exec runs one statement on its own connection.
func exec(t testing.TB, url, sql string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", EnvURL, err)
	}
	defer conn.Close(ctx) //nolint:errcheck // Nothing to do on failure.

	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("running %q: %v", sql, err)
	}
}

// Open opens a store on a fresh schema; it is closed, and the schema
// dropped, when the test ends.
func Open(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()

	url, schema := Schema(t)

	return OpenSchema(t, url, schema, opts...)
}

// OpenSchema opens another store on a schema that Schema made, as
// another node would; it is closed when the test ends.
func OpenSchema(t testing.TB, url, schema string, opts ...postgres.Option) *postgres.Store {
	t.Helper()

	opts = append([]postgres.Option{postgres.WithSchema(schema)}, opts...)
	s, err := postgres.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatalf("opening postgres store: %v", err)
	}

	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing postgres store: %v", err)
		}
	})

	return s
}
