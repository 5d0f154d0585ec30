package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weftworks/weft/store"
)

// InstanceClaim leases up to Limit runnable instances (a Limit under 1
// counts as 1): DueAt at or before Now, status not final, lease free or
// expired by the database clock. Each claim bumps the epoch and sets the
// expiry to the database clock plus TTL. The result is ordered by DueAt.
func (s *Store) InstanceClaim(ctx context.Context, p store.InstanceClaimParams) ([]store.Instance, error) {
	limit := max(p.Limit, 1)
	now := s.dialect.Now

	var claimed []store.Instance
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		rows, err := w.query(ctx, `UPDATE workflow_instances SET lease_owner = ?,
			lease_epoch = lease_epoch + 1, lease_expires = `+now+` + ?
			WHERE id IN (SELECT id FROM workflow_instances
				WHERE due_at <= ? AND status NOT IN `+finalStatuses+`
				AND (lease_owner = '' OR lease_expires <= `+now+`)
				ORDER BY due_at LIMIT ?`+s.dialect.SkipLocked+`)
			RETURNING `+instanceColumns,
			p.Owner, p.TTL.Milliseconds(), ms(p.Now), limit)
		if err != nil {
			return err
		}

		claimed, err = collect(rows, scanInstance)
		w.wrote(int64(len(claimed)), []any{p.Owner})

		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming instances: %w", err)
	}

	slices.SortFunc(claimed, func(a, b store.Instance) int {
		return cmp.Or(a.DueAt.Compare(b.DueAt), cmp.Compare(a.ID, b.ID))
	})

	return claimed, nil
}

// InstanceLease leases one instance whatever its DueAt and status, for
// commands. The owner that holds the lease may take it again, with a new
// epoch; ErrLeaseLost when another owner holds an unexpired lease and
// ErrNotFound when there is no such instance.
func (s *Store) InstanceLease(
	ctx context.Context, id, owner string, ttl time.Duration,
) (store.Instance, error) {
	now := s.dialect.Now

	var inst store.Instance
	err := s.writeInstance(ctx, id, func(ctx context.Context, w *writer) error {
		var err error
		inst, err = scanInstance(w.queryRow(ctx, `UPDATE workflow_instances SET lease_owner = ?,
			lease_epoch = lease_epoch + 1, lease_expires = `+now+` + ?
			WHERE id = ? AND (lease_owner = '' OR lease_owner = ? OR lease_expires <= `+now+`)
			RETURNING `+instanceColumns,
			owner, ttl.Milliseconds(), id, owner))
		if errors.Is(err, sql.ErrNoRows) {
			return w.missingOr(ctx, id, store.ErrLeaseLost)
		}

		w.wrote(1, []any{owner})

		return err
	})
	if err != nil {
		return store.Instance{}, fmt.Errorf("leasing instance %s: %w", id, err)
	}

	return inst, nil
}

// InstanceExtend moves an unexpired lease's expiry to the database clock
// plus TTL, keeping its epoch; ErrLeaseLost when owner, epoch or expiry
// do not match.
func (s *Store) InstanceExtend(ctx context.Context, p store.InstanceExtendParams) error {
	now := s.dialect.Now
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		n, err := w.exec(ctx, `UPDATE workflow_instances SET lease_expires = `+now+` + ?
			WHERE id = ? AND lease_owner = ? AND lease_epoch = ? AND lease_expires > `+now,
			p.TTL.Milliseconds(), p.InstanceID, p.Owner, p.Epoch)
		if err == nil && n == 0 {
			return store.ErrLeaseLost
		}

		return err
	})
	if err != nil {
		return fmt.Errorf("extending lease of instance %s: %w", p.InstanceID, err)
	}

	return nil
}

// missingOr returns ErrNotFound when the instance does not exist, else
// err.
func (w *writer) missingOr(ctx context.Context, id string, err error) error {
	var one int
	scanErr := w.queryRow(ctx, `SELECT 1 FROM workflow_instances WHERE id = ?`, id).Scan(&one)
	if errors.Is(scanErr, sql.ErrNoRows) {
		return store.ErrNotFound
	}

	if scanErr != nil {
		return scanErr
	}

	return err
}

// InstanceNextDue returns the earliest DueAt of non-final instances whose
// lease is free or expired; ok is false when there is none.
func (s *Store) InstanceNextDue(ctx context.Context) (time.Time, bool, error) {
	var due int64
	err := s.readRow(ctx, `SELECT due_at FROM workflow_instances
		WHERE due_at IS NOT NULL AND status NOT IN `+finalStatuses+`
		AND (lease_owner = '' OR lease_expires <= `+s.dialect.Now+`)
		ORDER BY due_at LIMIT 1`).Scan(&due)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}

	if err != nil {
		return time.Time{}, false, fmt.Errorf("finding next due instance: %w", err)
	}

	return fromMS(due), true, nil
}
