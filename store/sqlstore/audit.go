package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

const auditColumns = `instance_id, seq, type, step_id, pointer_id, attempt, data, at`

// auditChunk bounds the rows of one multi-row insert, well below the
// bound parameters either database takes.
const auditChunk = 500

// DefaultAuditLimit is how many rows AuditList returns when asked for
// none or fewer.
const DefaultAuditLimit = 1000

func scanAudit(r rowScanner) (store.AuditEvent, error) {
	var e store.AuditEvent
	err := r.Scan(&e.InstanceID, &e.Seq, &e.Type, &e.StepID, &e.PointerID, &e.Attempt,
		jsonCol{&e.Data}, timeCol{&e.At})

	return e, err
}

// insertAudit writes events as the rows after seq base. It sets each
// event's InstanceID and Seq, and At to now where it is zero.
func (w *writer) insertAudit(
	ctx context.Context, instanceID string, base int64, events []store.AuditEvent, now time.Time,
) error {
	feed := w.s.dialect.FeedInsert
	columns, row := auditColumns, "(?, ?, ?, ?, ?, ?, ?, ?), "
	if feed != "" {
		columns, row = auditColumns+", feed_position", "(?, ?, ?, ?, ?, ?, ?, ?, "+feed+"), "
	}

	for start := 0; start < len(events); start += auditChunk {
		chunk := events[start:min(start+auditChunk, len(events))]
		args := make([]any, 0, len(chunk)*9)
		for i := range chunk {
			e := &chunk[i]
			e.InstanceID = instanceID
			e.Seq = base + int64(start+i) + 1
			if e.At.IsZero() {
				e.At = now
			}

			args = append(args, instanceID, e.Seq, e.Type, e.StepID, e.PointerID, e.Attempt,
				text(e.Data), ms(e.At))
			if feed != "" {
				ord, err := w.c.feedOrdinal()
				if err != nil {
					return err
				}

				args = append(args, ord)
			}
		}

		rows := strings.Repeat(row, len(chunk))
		_, err := w.exec(ctx, `INSERT INTO workflow_events (`+columns+`) VALUES `+
			strings.TrimSuffix(rows, ", "), args...)
		if err != nil {
			return fmt.Errorf("inserting audit rows: %w", err)
		}
	}

	return nil
}

// feedOrdinal numbers an audit row within the batch's transaction, for
// its feed position.
func (c *committer) feedOrdinal() (int64, error) {
	if c.feedRows >= maxFeedOrdinal {
		return 0, fmt.Errorf("inserting audit rows: more than %d in one transaction", maxFeedOrdinal)
	}

	c.feedRows++

	return c.feedRows - 1, nil
}

// appendAudit bumps the instance's last_seq and writes events after it,
// for writes made without the lease.
func (w *writer) appendAudit(
	ctx context.Context, instanceID string, now time.Time, events ...store.AuditEvent,
) error {
	var last int64
	err := w.queryRow(ctx, `UPDATE workflow_instances SET last_seq = last_seq + ?
		WHERE id = ? RETURNING last_seq`, len(events), instanceID).Scan(&last)
	if err != nil {
		return fmt.Errorf("numbering audit rows: %w", err)
	}

	w.wrote(1, nil)

	return w.insertAudit(ctx, instanceID, last-int64(len(events)), events, now)
}

// AuditList lists an instance's audit rows with Seq above afterSeq, in
// order, at most limit (DefaultAuditLimit when limit is under 1).
func (s *Store) AuditList(
	ctx context.Context, instanceID string, afterSeq int64, limit int,
) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}

	rows, err := s.readQuery(ctx, `SELECT `+auditColumns+` FROM workflow_events
		WHERE instance_id = ? AND seq > ? ORDER BY seq LIMIT ?`, instanceID, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("listing audit rows: %w", err)
	}

	events, err := collect(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("listing audit rows: %w", err)
	}

	return events, nil
}

// AuditFeed lists audit rows of every instance after feed position
// after, in commit order, at most limit (DefaultAuditLimit when limit is
// under 1). On SQLite the one writer numbers feed_position in commit
// order; on PostgreSQL the position follows the writing transaction and
// rows still below a running transaction's horizon wait (see feedShift).
func (s *Store) AuditFeed(ctx context.Context, after int64, limit int) ([]store.FeedEvent, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}

	horizon := ""
	if s.dialect.FeedHorizon != "" {
		horizon = ` AND feed_position < ` + s.dialect.FeedHorizon
	}

	rows, err := s.readQuery(ctx, `SELECT feed_position, `+auditColumns+` FROM workflow_events
		WHERE feed_position > ?`+horizon+` ORDER BY feed_position LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the lifecycle feed: %w", err)
	}

	feed, err := collect(rows, func(r rowScanner) (store.FeedEvent, error) {
		var f store.FeedEvent
		e := &f.Event
		err := r.Scan(&f.Position, &e.InstanceID, &e.Seq, &e.Type, &e.StepID, &e.PointerID,
			&e.Attempt, jsonCol{&e.Data}, timeCol{&e.At})

		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the lifecycle feed: %w", err)
	}

	return feed, nil
}

// AuditAppend writes audit rows after the instance's last seq, without a
// lease, and changes nothing else; ErrNotFound when there is no such
// instance.
func (s *Store) AuditAppend(
	ctx context.Context, instanceID string, now time.Time, events ...store.AuditEvent,
) error {
	if len(events) == 0 {
		return nil
	}

	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		return w.appendAudit(ctx, instanceID, now, events...)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("appending audit rows of %s: %w", instanceID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("appending audit rows of %s: %w", instanceID, err)
	}

	return nil
}
