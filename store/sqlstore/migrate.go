package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// migrations holds one folder of numbered goose migrations per dialect.
//
//go:embed migrations
var migrations embed.FS

// Migrate brings the schema of db up to date with the dialect's
// migrations, holding the dialect's migration lock meanwhile.
func Migrate(ctx context.Context, db *sql.DB, d *Dialect) error {
	if d.MigrateLock == "" {
		return migrate(ctx, db, d)
	}

	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s schema: %w", d.Name, err)
	}
	defer conn.Close()

	if _, err := conn.ExecContext(ctx, d.MigrateLock); err != nil {
		return fmt.Errorf("migrating %s schema: taking migration lock: %w", d.Name, err)
	}

	err = migrate(ctx, db, d)
	if _, unlockErr := conn.ExecContext(context.WithoutCancel(ctx), d.MigrateUnlock); unlockErr != nil {
		err = errors.Join(err, fmt.Errorf("migrating %s schema: freeing migration lock: %w",
			d.Name, unlockErr))
	}

	return err
}

// migrate runs the dialect's migrations that db has not had yet.
func migrate(ctx context.Context, db *sql.DB, d *Dialect) error {
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
