package storeurl_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/store/storeurl"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url    string
		kind   storeurl.Kind
		target string
	}{
		{"weft.db", storeurl.SQLite, "weft.db"},
		{"./data/weft.db", storeurl.SQLite, "./data/weft.db"},
		{"/var/lib/weft/weft.db", storeurl.SQLite, "/var/lib/weft/weft.db"},
		{"sqlite://weft.db", storeurl.SQLite, "weft.db"},
		{"sqlite:///var/lib/weft.db", storeurl.SQLite, "/var/lib/weft.db"},
		{"file:weft.db", storeurl.SQLite, "weft.db"},
		{"file:///tmp/weft.db", storeurl.SQLite, "/tmp/weft.db"},
		{"postgres://u@h:5432/db", storeurl.Postgres, "postgres://u@h:5432/db"},
		{"postgresql://u@h/db?sslmode=disable", storeurl.Postgres, "postgresql://u@h/db?sslmode=disable"},
	}
	for _, tt := range tests {
		kind, target, err := storeurl.Parse(tt.url)
		if err != nil || kind != tt.kind || target != tt.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tt.url, kind, target, err, tt.kind, tt.target)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, url := range []string{"", "  ", "mysql://u@h/db", "sqlite://", "redis://h"} {
		if _, _, err := storeurl.Parse(url); !errors.Is(err, storeurl.ErrBadURL) {
			t.Errorf("Parse(%q): error = %v, want ErrBadURL", url, err)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	s := open(t, "sqlite://"+path)
	if _, ok := s.(*sqlite.Store); !ok {
		t.Fatalf("opened %T, want *sqlite.Store", s)
	}
}

func TestOpenPostgres(t *testing.T) {
	url, schema := pgtest.Schema(t)
	s, err := storeurl.Open(t.Context(), url, storeurl.Options{
		Postgres: []postgres.Option{postgres.WithSchema(schema)},
	})
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	defer s.Close()

	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("opened %T, want *postgres.Store", s)
	}

	if _, err := s.DefinitionList(t.Context(), ""); err != nil {
		t.Fatalf("listing definitions: %v", err)
	}
}

func open(t *testing.T, url string) store.Store {
	t.Helper()

	s, err := storeurl.Open(t.Context(), url, storeurl.Options{})
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}

	t.Cleanup(func() { _ = s.Close() })

	return s
}
