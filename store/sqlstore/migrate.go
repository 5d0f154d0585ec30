package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// migrations holds one folder of numbered goose migrations per dialect.
//
//go:embed migrations
var migrations embed.FS

// Migrate brings the schema of db up to date with the dialect's
// migrations.
func Migrate(ctx context.Context, db *sql.DB, d *Dialect) error {
	fsys, err := fs.Sub(migrations, "migrations/"+d.Name)
	if err != nil {
		return fmt.Errorf("migrating %s schema: %w", d.Name, err)
	}

	p, err := goose.NewProvider(d.Goose, db, fsys,
		goose.WithLogger(goose.NopLogger()), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrating %s schema: %w", d.Name, err)
	}

	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrating %s schema: %w", d.Name, err)
	}

	return nil
}
