// Package storeurl opens the store a database URL names, picking the
// implementation by the URL's scheme:
//
//	weft.db, ./data/weft.db       SQLite file (a plain path)
//	sqlite://weft.db              SQLite file, relative path
//	sqlite:///var/lib/weft.db     SQLite file, absolute path
//	file:weft.db                  SQLite file
//	postgres://user@host/db       PostgreSQL (postgresql:// too)
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// Kind is the store implementation a URL selects.
type Kind string

// Kinds.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// ErrBadURL is wrapped by the errors of URLs that name no store.
var ErrBadURL = errors.New("bad database url")

// Options are passed to the implementation the URL selects.
type Options struct {
	SQLite   []sqlite.Option
	Postgres []postgres.Option
}

// Parse says which store a URL names and what to open it with: the file
// path for SQLite, the URL itself for PostgreSQL.
func Parse(url string) (Kind, string, error) {
	scheme, rest, found := strings.Cut(url, ":")
	switch {
	case strings.TrimSpace(url) == "":
		return "", "", fmt.Errorf("database url is empty: %w", ErrBadURL)
	case !found || !strings.HasPrefix(rest, "//") && scheme != "file":
		return SQLite, url, nil
	}

	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return Postgres, url, nil
	case "sqlite", "file":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return "", "", fmt.Errorf("database url %q has no file path: %w", url, ErrBadURL)
		}

		return SQLite, path, nil
	}

	return "", "", fmt.Errorf("database url %q: unsupported scheme %q "+
		"(want a file path, sqlite://, file:, postgres:// or postgresql://): %w",
		url, scheme, ErrBadURL)
}

// Open opens (creating or migrating as needed) the store url names.
func Open(ctx context.Context, url string, opts Options) (store.Store, error) {
	kind, target, err := Parse(url)
	if err != nil {
		return nil, err
	}

	if kind == Postgres {
		return postgres.Open(ctx, target, opts.Postgres...)
	}

	return sqlite.Open(ctx, target, opts.SQLite...)
}
