package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

const definitionColumns = "name, version, source, status, created_at"

func scanDefinition(r rowScanner) (store.Definition, error) {
	var d store.Definition
	err := r.Scan(&d.Name, &d.Version, jsonCol{&d.Source}, &d.Status, timeCol{&d.CreatedAt})

	return d, err
}

// DefinitionCreate stores a new version; ErrAlreadyExists when the
// (name, version) exists. An empty status means active, a zero CreatedAt
// means now.
func (s *Store) DefinitionCreate(ctx context.Context, d store.Definition) error {
	if d.Status == "" {
		d.Status = store.DefinitionActive
	}

	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now()
	}

	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		n, err := w.exec(ctx, `INSERT INTO workflow_definitions (`+definitionColumns+`)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			d.Name, d.Version, string(d.Source), string(d.Status), ms(d.CreatedAt))
		if err != nil {
			return err
		}

		if n == 0 {
			return store.ErrAlreadyExists
		}

		return nil
	})
	if err != nil {
		return fmt.Errorf("creating definition %s v%d: %w", d.Name, d.Version, err)
	}

	return nil
}

// DefinitionGet returns a version; version 0 means the newest version
// whatever its status.
func (s *Store) DefinitionGet(ctx context.Context, name string, version int) (store.Definition, error) {
	query := `SELECT ` + definitionColumns + ` FROM workflow_definitions
		WHERE name = ? AND version = ?`
	args := []any{name, version}
	if version == 0 {
		query = `SELECT ` + definitionColumns + ` FROM workflow_definitions
			WHERE name = ? ORDER BY version DESC LIMIT 1`
		args = args[:1]
	}

	d, err := scanDefinition(s.readRow(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}

	if err != nil {
		return store.Definition{}, fmt.Errorf("getting definition %s v%d: %w", name, version, err)
	}

	return d, nil
}

// DefinitionList lists every version, of one name when name is set,
// ordered by name then version.
func (s *Store) DefinitionList(ctx context.Context, name string) ([]store.Definition, error) {
	query := `SELECT ` + definitionColumns + ` FROM workflow_definitions`
	var args []any
	if name != "" {
		query += ` WHERE name = ?`
		args = append(args, name)
	}

	rows, err := s.readQuery(ctx, query+` ORDER BY name, version`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing definitions: %w", err)
	}

	defs, err := collect(rows, scanDefinition)
	if err != nil {
		return nil, fmt.Errorf("listing definitions: %w", err)
	}

	return defs, nil
}

// DefinitionSetStatus deprecates or reactivates a version.
func (s *Store) DefinitionSetStatus(
	ctx context.Context, name string, version int, status store.DefinitionStatus,
) error {
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		n, err := w.exec(ctx, `UPDATE workflow_definitions SET status = ?
			WHERE name = ? AND version = ?`, string(status), name, version)
		if err != nil {
			return err
		}

		if n == 0 {
			return store.ErrNotFound
		}

		return nil
	})
	if err != nil {
		return fmt.Errorf("setting status of definition %s v%d: %w", name, version, err)
	}

	return nil
}

// DefinitionDelete removes a version; ErrInUse while any instance of it
// is stored, finished or not, until a purge removes it. So a version
// that an instance ever ran on can never be registered again with other
// content.
func (s *Store) DefinitionDelete(ctx context.Context, name string, version int) error {
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		var used int
		err := w.queryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM workflow_instances
			WHERE definition_name = ? AND definition_version = ? LIMIT 1) u`,
			name, version).Scan(&used)
		if err != nil {
			return err
		}

		if used > 0 {
			return store.ErrInUse
		}

		n, err := w.exec(ctx, `DELETE FROM workflow_definitions WHERE name = ? AND version = ?`,
			name, version)
		if err != nil {
			return err
		}

		if n == 0 {
			return store.ErrNotFound
		}

		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting definition %s v%d: %w", name, version, err)
	}

	return nil
}

// collect scans every row and closes rows.
func collect[T any](rows *sql.Rows, scan func(rowScanner) (T, error)) ([]T, error) {
	defer rows.Close()

	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}

		out = append(out, v)
	}

	if err := rows.Err(); err != nil {
		return nil, err
	}

	return out, nil
}
