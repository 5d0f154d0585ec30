package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/weftworks/weft/store"
)

const (
	eventColumns        = `id, name, key, data, time, instance_id, published_at`
	subscriptionColumns = `instance_id, pointer_id, name, key, as_of, created_at`
)

func scanEvent(r rowScanner) (store.Event, error) {
	var e store.Event
	err := r.Scan(&e.ID, &e.Name, &e.Key, jsonCol{&e.Data}, timeCol{&e.Time}, &e.InstanceID,
		timeCol{&e.PublishedAt})

	return e, err
}

func scanSubscription(r rowScanner) (store.Subscription, error) {
	var s store.Subscription
	err := r.Scan(&s.InstanceID, &s.PointerID, &s.Name, &s.Key, timeCol{&s.AsOf},
		timeCol{&s.CreatedAt})

	return s, err
}

// EventPublish stores an event. PublishedAt defaults to the current time
// and Time to PublishedAt. ErrNotFound when the event is for an instance
// that does not exist. When its time has come the event is delivered at
// once to every matching subscription, oldest subscription first, and
// marked matched; a future event waits for EventSweep.
func (s *Store) EventPublish(ctx context.Context, e store.Event) (store.Event, error) {
	if e.PublishedAt.IsZero() {
		e.PublishedAt = time.Now()
	}

	if e.Time.IsZero() {
		e.Time = e.PublishedAt
	}

	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		if e.InstanceID != "" {
			if _, err := w.instanceStatus(ctx, e.InstanceID); err != nil {
				return err
			}
		}

		args := []any{e.Name, e.Key, text(e.Data), ms(e.Time), e.InstanceID, ms(e.PublishedAt)}
		err := w.queryRow(ctx, `INSERT INTO published_events
			(name, key, data, time, instance_id, published_at) VALUES (?, ?, ?, ?, ?, ?)
			RETURNING id`, args...).Scan(&e.ID)
		if err != nil {
			return err
		}

		w.wrote(1, args)
		if e.Time.After(e.PublishedAt) {
			return nil
		}

		_, err = w.deliverEvent(ctx, e, e.PublishedAt)

		return err
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("publishing event %s (key %q): %w", e.Name, e.Key, err)
	}

	return e, nil
}

// EventSweep delivers the unmatched events whose time is at or before
// now, by time then id, and marks them matched; it returns how many
// deliveries it made.
func (s *Store) EventSweep(ctx context.Context, now time.Time) (int, error) {
	var delivered int
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		delivered = 0
		rows, err := w.query(ctx, `SELECT `+eventColumns+` FROM published_events
			WHERE matched = 0 AND time <= ? ORDER BY time, id`, ms(now))
		if err != nil {
			return err
		}

		events, err := collect(rows, scanEvent)
		if err != nil {
			return err
		}

		for _, e := range events {
			n, err := w.deliverEvent(ctx, e, now)
			if err != nil {
				return err
			}

			delivered += n
		}

		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping events: %w", err)
	}

	return delivered, nil
}

// deliverEvent delivers e to each matching subscription, by creation
// then instance and pointer, and marks it matched.
func (w *writer) deliverEvent(ctx context.Context, e store.Event, now time.Time) (int, error) {
	if err := w.lock(ctx, eventLockKey(e.Name, e.Key)); err != nil {
		return 0, err
	}

	query := `SELECT ` + subscriptionColumns + ` FROM event_subscriptions
		WHERE name = ? AND key = ? AND as_of <= ?`
	args := []any{e.Name, e.Key, ms(e.Time)}
	if e.InstanceID != "" {
		query += ` AND instance_id = ?`
		args = append(args, e.InstanceID)
	}

	rows, err := w.query(ctx, query+` ORDER BY created_at, instance_id, pointer_id`, args...)
	if err != nil {
		return 0, fmt.Errorf("matching subscriptions: %w", err)
	}

	subs, err := collect(rows, scanSubscription)
	if err != nil {
		return 0, fmt.Errorf("matching subscriptions: %w", err)
	}

	n := 0
	for _, sub := range subs {
		ok, err := w.deliver(ctx, e, sub, now)
		if err != nil {
			return 0, err
		}

		if ok {
			n++
		}
	}

	_, err = w.exec(ctx, `UPDATE published_events SET matched = 1 WHERE id = ?`, e.ID)
	if err != nil {
		return 0, fmt.Errorf("marking event %d matched: %w", e.ID, err)
	}

	return n, nil
}

// deliver hands event e to subscription sub: it records the (instance,
// event) pair, stores the event as the step's report, removes the
// subscription and wakes the instance. It does nothing and returns false
// when the instance already had the event.
func (w *writer) deliver(ctx context.Context, e store.Event, sub store.Subscription, now time.Time) (bool, error) {
	n, err := w.exec(ctx, `INSERT INTO event_deliveries
		(instance_id, event_id, pointer_id, delivered_at) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, sub.InstanceID, e.ID, sub.PointerID, ms(now))
	if err != nil {
		return false, fmt.Errorf("recording delivery of event %d: %w", e.ID, err)
	}

	if n == 0 {
		return false, nil
	}

	var attempt int
	err = w.queryRow(ctx, `SELECT attempt FROM workflow_steps WHERE instance_id = ? AND id = ?`,
		sub.InstanceID, sub.PointerID).Scan(&attempt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("reading waiting step %d: %w", sub.PointerID, err)
	}

	rep := &store.Report{Kind: store.ReportEvent, Attempt: attempt, Output: e.Data, EventID: e.ID, At: now}
	if err := w.storeReport(ctx, sub.InstanceID, sub.PointerID, rep); err != nil {
		return false, err
	}

	err = w.deleteSubscriptions(ctx, sub.InstanceID, []int64{sub.PointerID})
	if err != nil {
		return false, err
	}

	return true, w.wake(ctx, sub.InstanceID, now)
}

// addSubscriptions writes subscriptions (replacing one the pointer had)
// and delivers to each at once the oldest visible event it may take.
func (w *writer) addSubscriptions(
	ctx context.Context, instanceID string, subs []store.Subscription, now time.Time,
) error {
	for _, sub := range subs {
		sub.InstanceID = instanceID
		if sub.CreatedAt.IsZero() {
			sub.CreatedAt = now
		}

		if err := w.lock(ctx, eventLockKey(sub.Name, sub.Key)); err != nil {
			return err
		}

		_, err := w.exec(ctx, `INSERT INTO event_subscriptions (`+subscriptionColumns+`)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (instance_id, pointer_id) DO UPDATE SET name = excluded.name,
			key = excluded.key, as_of = excluded.as_of, created_at = excluded.created_at`,
			instanceID, sub.PointerID, sub.Name, sub.Key, ms(sub.AsOf), ms(sub.CreatedAt))
		if err != nil {
			return fmt.Errorf("adding subscription of step %d: %w", sub.PointerID, err)
		}

		if err := w.matchSubscription(ctx, sub, now); err != nil {
			return err
		}
	}

	return nil
}

// matchSubscription delivers to a new subscription the oldest event with
// its name and key, at or after its as-of, visible by now, for any
// instance or this one, that the instance has not had yet.
func (w *writer) matchSubscription(ctx context.Context, sub store.Subscription, now time.Time) error {
	e, err := scanEvent(w.queryRow(ctx, `SELECT `+eventColumns+` FROM published_events e
		WHERE name = ? AND key = ? AND time >= ? AND time <= ?
		AND (instance_id = '' OR instance_id = ?)
		AND NOT EXISTS (SELECT 1 FROM event_deliveries d
			WHERE d.instance_id = ? AND d.event_id = e.id)
		ORDER BY time, id LIMIT 1`,
		sub.Name, sub.Key, ms(sub.AsOf), ms(now), sub.InstanceID, sub.InstanceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}

	if err != nil {
		return fmt.Errorf("matching subscription of step %d: %w", sub.PointerID, err)
	}

	_, err = w.deliver(ctx, e, sub, now)

	return err
}

// deleteSubscriptions removes the subscriptions of these pointers.
func (w *writer) deleteSubscriptions(ctx context.Context, instanceID string, pointers []int64) error {
	for _, p := range pointers {
		_, err := w.exec(ctx, `DELETE FROM event_subscriptions
			WHERE instance_id = ? AND pointer_id = ?`, instanceID, p)
		if err != nil {
			return fmt.Errorf("deleting subscription of step %d: %w", p, err)
		}
	}

	return nil
}

// SubscriptionList lists an instance's subscriptions by pointer.
func (s *Store) SubscriptionList(ctx context.Context, instanceID string) ([]store.Subscription, error) {
	rows, err := s.readQuery(ctx, `SELECT `+subscriptionColumns+`
		FROM event_subscriptions WHERE instance_id = ? ORDER BY pointer_id`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}

	subs, err := collect(rows, scanSubscription)
	if err != nil {
		return nil, fmt.Errorf("listing subscriptions: %w", err)
	}

	return subs, nil
}

// eventLockKey is the lock key of an event name and key; the length
// prefix keeps ("a/b", "c") and ("a", "b/c") apart.
func eventLockKey(name, key string) string {
	return strconv.Itoa(len(name)) + ":" + name + "/" + key
}
