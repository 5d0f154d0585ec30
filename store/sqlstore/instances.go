package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

const instanceColumns = `id, definition_name, definition_version, status, reason, input, data,
	output, error, start_key, state, created_at, updated_at, ended_at, last_seq, next_pointer,
	lease_owner, lease_epoch, lease_expires, wake, due_at`

// finalStatuses is the SQL list of final instance statuses.
const finalStatuses = `('completed', 'failed', 'cancelled', 'terminated')`

func scanInstance(r rowScanner) (store.Instance, error) {
	var i store.Instance
	err := r.Scan(&i.ID, &i.DefinitionName, &i.DefinitionVersion, &i.Status, &i.Reason,
		jsonCol{&i.Input}, jsonCol{&i.Data}, jsonCol{&i.Output}, jsonCol{&i.Error},
		&i.StartKey, jsonCol{&i.State}, timeCol{&i.CreatedAt}, timeCol{&i.UpdatedAt},
		timeCol{&i.EndedAt}, &i.LastSeq, &i.NextPointer, &i.LeaseOwner, &i.LeaseEpoch,
		timeCol{&i.LeaseExpires}, &i.Wake, timeCol{&i.DueAt})

	return i, err
}

// InstanceCreate stores a new instance with its first steps, timers and
// audit rows, due at once and unleased. An empty ID gets a new UUID. With
// a start key it is idempotent: a live key with the same input hash
// returns the instance it started and created false, a live key with
// another hash is ErrAlreadyExists, and an expired key (or one whose
// instance is gone) is taken over. A zero KeyTTL keeps the key forever.
func (s *Store) InstanceCreate(
	ctx context.Context, p store.InstanceCreateParams,
) (store.Instance, bool, error) {
	inst := newInstance(p)

	var existing store.Instance
	found := false
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		found = false
		if p.StartKey != "" {
			var err error
			existing, found, err = w.takeStartKey(ctx, p, inst.ID)
			if err != nil || found {
				return err
			}
		}

		return w.insertInstance(ctx, inst, p)
	})
	if err != nil {
		return store.Instance{}, false, fmt.Errorf("creating instance: %w", err)
	}

	if found {
		return existing, false, nil
	}

	return inst, true, nil
}

// newInstance fills in what the store decides for a new instance.
func newInstance(p store.InstanceCreateParams) store.Instance {
	inst := p.Instance
	if inst.ID == "" {
		inst.ID = uuid.NewString()
	}

	if inst.StartKey == "" {
		inst.StartKey = p.StartKey
	}

	if inst.CreatedAt.IsZero() {
		inst.CreatedAt = p.Now
	}

	inst.UpdatedAt = inst.CreatedAt
	inst.LastSeq = int64(len(p.Audit))
	inst.LeaseOwner = ""
	inst.LeaseEpoch = 0
	inst.LeaseExpires = time.Time{}
	inst.Wake = 0
	inst.DueAt = p.Now

	return inst
}

// takeStartKey records the start key for the instance id. When a live key
// with the same input names an instance that still exists, it returns
// that instance and found true instead.
func (w *writer) takeStartKey(
	ctx context.Context, p store.InstanceCreateParams, id string,
) (store.Instance, bool, error) {
	var owner, hash string
	var expires time.Time
	err := w.queryRow(ctx, `SELECT instance_id, input_hash, expires_at FROM start_keys
		WHERE definition_name = ? AND start_key = ?`,
		p.Instance.DefinitionName, p.StartKey).Scan(&owner, &hash, timeCol{&expires})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return store.Instance{}, false, err
	}

	live := err == nil && (expires.IsZero() || expires.After(p.Now))
	if live && hash != p.InputHash {
		return store.Instance{}, false, fmt.Errorf("start key %q was used with other input: %w", p.StartKey, store.ErrAlreadyExists)
	}

	if live {
		inst, err := scanInstance(w.queryRow(ctx,
			`SELECT `+instanceColumns+` FROM workflow_instances WHERE id = ?`, owner))
		if err == nil {
			return inst, true, nil
		}

		if !errors.Is(err, sql.ErrNoRows) {
			return store.Instance{}, false, err
		}
	}

	var until time.Time
	if p.KeyTTL > 0 {
		until = p.Now.Add(p.KeyTTL)
	}

	_, err = w.exec(ctx, `INSERT INTO start_keys
		(definition_name, start_key, instance_id, input_hash, expires_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (definition_name, start_key) DO UPDATE SET
		instance_id = excluded.instance_id, input_hash = excluded.input_hash,
		expires_at = excluded.expires_at`,
		p.Instance.DefinitionName, p.StartKey, id, p.InputHash, nullMS(until))

	return store.Instance{}, false, err
}

// insertInstance writes the instance row and what starts with it.
func (w *writer) insertInstance(ctx context.Context, inst store.Instance, p store.InstanceCreateParams) error {
	n, err := w.exec(ctx, `INSERT INTO workflow_instances (`+instanceColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`,
		inst.ID, inst.DefinitionName, inst.DefinitionVersion, string(inst.Status), inst.Reason,
		text(inst.Input), text(inst.Data), text(inst.Output), text(inst.Error), inst.StartKey,
		text(inst.State), ms(inst.CreatedAt), ms(inst.UpdatedAt), nullMS(inst.EndedAt),
		inst.LastSeq, inst.NextPointer, "", 0, nil, 0, ms(inst.DueAt))
	if err != nil {
		return err
	}

	if n == 0 {
		return fmt.Errorf("instance %s: %w", inst.ID, store.ErrAlreadyExists)
	}

	w.readyInstances()

	for _, st := range p.Steps {
		if err := w.insertStep(ctx, inst.ID, st, p.Now); err != nil {
			return err
		}
	}

	if err := w.upsertTimers(ctx, inst.ID, p.Timers); err != nil {
		return err
	}

	return w.insertAudit(ctx, inst.ID, 0, p.Audit, p.Now)
}

// InstanceGet reads one instance.
func (s *Store) InstanceGet(ctx context.Context, id string) (store.Instance, error) {
	inst, err := scanInstance(s.readRow(ctx,
		`SELECT `+instanceColumns+` FROM workflow_instances WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}

	if err != nil {
		return store.Instance{}, fmt.Errorf("getting instance %s: %w", id, err)
	}

	return inst, nil
}
