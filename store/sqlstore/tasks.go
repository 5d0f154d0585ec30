package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weftworks/weft/store"
)

const taskColumns = `id, instance_id, pointer_id, step_id, attempt, service, action, input,
	idempotency_key, token, visible_at, claimed_by, claim_expires, claims, start_to_close,
	heartbeat, deadline, created_at`

func scanTask(r rowScanner) (store.Task, error) {
	var t store.Task
	var startToClose, heartbeat int64
	err := r.Scan(&t.ID, &t.InstanceID, &t.PointerID, &t.StepID, &t.Attempt, &t.Service,
		&t.Action, jsonCol{&t.Input}, &t.IdempotencyKey, &t.Token, timeCol{&t.VisibleAt},
		&t.ClaimedBy, timeCol{&t.ClaimExpires}, &t.Claims, &startToClose, &heartbeat,
		timeCol{&t.Deadline}, timeCol{&t.CreatedAt})
	t.StartToClose = time.Duration(startToClose) * time.Millisecond
	t.Heartbeat = time.Duration(heartbeat) * time.Millisecond

	return t, err
}

// insertTasks writes new, unclaimed task rows and sets their IDs. A zero
// VisibleAt or CreatedAt means now.
func (w *writer) insertTasks(ctx context.Context, instanceID string, tasks []store.Task, now time.Time) error {
	for i := range tasks {
		t := &tasks[i]
		if t.VisibleAt.IsZero() {
			t.VisibleAt = now
		}

		if t.CreatedAt.IsZero() {
			t.CreatedAt = now
		}

		t.InstanceID = instanceID
		args := []any{instanceID, t.PointerID, t.StepID, t.Attempt, t.Service, t.Action,
			text(t.Input), t.IdempotencyKey, t.Token, ms(t.VisibleAt),
			t.StartToClose.Milliseconds(), t.Heartbeat.Milliseconds(), nullMS(t.Deadline),
			ms(t.CreatedAt)}
		err := w.queryRow(ctx, `INSERT INTO dispatch_tasks (instance_id, pointer_id, step_id,
			attempt, service, action, input, idempotency_key, token, visible_at,
			start_to_close, heartbeat, deadline, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, args...).Scan(&t.ID)
		if err != nil {
			return fmt.Errorf("inserting task of step %d: %w", t.PointerID, err)
		}

		w.wrote(1, args)
		w.readyTasks()
	}

	return nil
}

// deleteTasks removes every task of these pointers.
func (w *writer) deleteTasks(ctx context.Context, instanceID string, pointers []int64) error {
	for _, p := range pointers {
		_, err := w.exec(ctx, `DELETE FROM dispatch_tasks WHERE instance_id = ? AND pointer_id = ?`,
			instanceID, p)
		if err != nil {
			return fmt.Errorf("deleting tasks of step %d: %w", p, err)
		}
	}

	return nil
}

// TaskClaim hands up to Limit (at least one) visible tasks of the given
// services to a worker, oldest first: visible, and unclaimed or with an
// expired claim. A claim moves VisibleAt to the claim's expiry, so the
// task shows again when the claim runs out. The first claim of an
// attempt also starts its step: see startStep.
//
// A service whose registry entry has a concurrency cap or a rate is
// claimed within its allowance (see allowance), and its token bucket is
// charged in the same write; its row is locked meanwhile where the
// database locks rows, so that claims on other nodes wait for this one.
func (s *Store) TaskClaim(ctx context.Context, p store.TaskClaimParams) ([]store.Task, error) {
	services := slices.Compact(slices.Sorted(slices.Values(p.Services)))
	if len(services) == 0 {
		return []store.Task{}, nil
	}

	limit := max(p.Limit, 1)

	var claimed []store.Task
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		limits, err := w.serviceLimits(ctx, services, limit, p.Now)
		if err != nil {
			return err
		}

		claimed, err = w.claimable(ctx, services, limits, limit, p.Now)
		if err != nil {
			return err
		}

		taken := make(map[string]int, len(limits))
		for i := range claimed {
			if err := w.claimTask(ctx, &claimed[i], p); err != nil {
				return err
			}

			taken[claimed[i].Service]++
		}

		for _, l := range limits {
			if err := w.spendTokens(ctx, l, taken[l.name]); err != nil {
				return err
			}
		}

		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}

	return claimed, nil
}

// claimable selects, and where the database locks rows locks, up to limit
// claimable tasks of the services, oldest first: those of unlimited
// services together, each limited service's within its allowance.
func (w *writer) claimable(ctx context.Context, services []string,
	limits map[string]*serviceLimit, limit int, now time.Time,
) ([]store.Task, error) {
	var free []string
	var tasks []store.Task
	for _, svc := range services {
		l, ok := limits[svc]
		if !ok {
			free = append(free, svc)

			continue
		}

		got, err := w.selectTasks(ctx, []string{svc}, l.allow, now)
		if err != nil {
			return nil, err
		}

		tasks = append(tasks, got...)
	}

	got, err := w.selectTasks(ctx, free, limit, now)
	if err != nil {
		return nil, err
	}

	tasks = append(tasks, got...)
	slices.SortFunc(tasks, func(a, b store.Task) int {
		if c := a.VisibleAt.Compare(b.VisibleAt); c != 0 {
			return c
		}

		return cmp.Compare(a.ID, b.ID)
	})

	return tasks[:min(len(tasks), limit)], nil
}

// selectTasks selects up to limit claimable tasks of the services, oldest
// first.
func (w *writer) selectTasks(
	ctx context.Context, services []string, limit int, now time.Time,
) ([]store.Task, error) {
	if len(services) == 0 || limit <= 0 {
		return nil, nil
	}

	args := []any{ms(now), ms(now)}
	for _, svc := range services {
		args = append(args, svc)
	}

	args = append(args, limit)
	rows, err := w.query(ctx, `SELECT `+taskColumns+` FROM dispatch_tasks
		WHERE visible_at <= ? AND (claimed_by = '' OR claim_expires <= ?)
		AND service IN (`+placeholders(len(services))+`)
		ORDER BY visible_at, id LIMIT ?`+w.s.dialect.SkipLocked, args...)
	if err != nil {
		return nil, fmt.Errorf("selecting tasks: %w", err)
	}

	tasks, err := collect(rows, scanTask)
	if err != nil {
		return nil, fmt.Errorf("selecting tasks: %w", err)
	}

	return tasks, nil
}

// claimTask gives one task to the worker, and starts its step when this
// is the attempt's first claim.
func (w *writer) claimTask(ctx context.Context, t *store.Task, p store.TaskClaimParams) error {
	st, err := w.getStep(ctx, t.InstanceID, t.PointerID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}

	first := err == nil && st.Status == store.StepDispatched && st.Attempt == t.Attempt &&
		!p.NoStart
	if first && t.StartToClose > 0 {
		t.Deadline = p.Now.Add(t.StartToClose)
	}

	t.ClaimedBy = p.Worker
	t.ClaimExpires = p.Now.Add(p.LeaseTTL)
	t.VisibleAt = t.ClaimExpires
	t.Claims++
	_, err = w.exec(ctx, `UPDATE dispatch_tasks SET claimed_by = ?, claim_expires = ?,
		visible_at = ?, claims = claims + 1, deadline = ? WHERE id = ?`,
		t.ClaimedBy, ms(t.ClaimExpires), ms(t.VisibleAt), nullMS(t.Deadline), t.ID)
	if err != nil {
		return fmt.Errorf("claiming task %d: %w", t.ID, err)
	}

	if first {
		return w.startStep(ctx, t, st, p)
	}

	if p.NoStart && err == nil && st.Status == store.StepDispatched && st.Attempt == t.Attempt {
		// The step does not start yet, but a transition that read it
		// unclaimed (a cancel withdrawing it) must conflict and look again.
		_, err = w.exec(ctx, `UPDATE workflow_steps SET rev = rev + 1 WHERE instance_id = ? AND id = ?`,
			t.InstanceID, st.ID)
		if err != nil {
			return fmt.Errorf("marking step %d claimed: %w", st.ID, err)
		}
	}

	return nil
}

// TaskStart starts the step of a task claimed with NoStart: see
// store.Store.
func (s *Store) TaskStart(ctx context.Context, p store.TaskStartParams) (store.Task, error) {
	var t store.Task
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		var err error
		t, err = scanTask(w.queryRow(ctx, `SELECT `+taskColumns+` FROM dispatch_tasks
			WHERE id = ? AND claimed_by = ?`, p.ID, p.Worker))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("task %d held by %s: %w", p.ID, p.Worker, store.ErrNotFound)
		}
		if err != nil {
			return err
		}

		st, err := w.getStep(ctx, t.InstanceID, t.PointerID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || st.Status != store.StepDispatched || st.Attempt != t.Attempt {
			return err
		}

		if t.StartToClose > 0 {
			t.Deadline = p.Now.Add(t.StartToClose)
			if _, err := w.exec(ctx, `UPDATE dispatch_tasks SET deadline = ? WHERE id = ?`,
				ms(t.Deadline), t.ID); err != nil {
				return err
			}
		}

		return w.startStep(ctx, &t, st, store.TaskClaimParams{Worker: p.Worker, Now: p.Now})
	})
	if err != nil {
		return store.Task{}, fmt.Errorf("starting task %d: %w", p.ID, err)
	}

	return t, nil
}

// startStep marks a task's step running, sets the attempt's
// start-to-close and heartbeat timers (both fire while paused), drops
// its schedule-to-start timer, audits step_started and pulls the
// instance's due time forward to the new timers.
func (w *writer) startStep(ctx context.Context, t *store.Task, st store.Step, p store.TaskClaimParams) error {
	_, err := w.exec(ctx, `UPDATE workflow_steps SET status = ?, started_at = ?, rev = rev + 1
		WHERE instance_id = ? AND id = ?`, string(store.StepRunning), ms(p.Now), t.InstanceID, st.ID)
	if err != nil {
		return fmt.Errorf("starting step %d: %w", st.ID, err)
	}

	var timers []store.Timer
	if !t.Deadline.IsZero() {
		timers = append(timers, attemptTimer(t, store.TimerStartToClose, t.Deadline))
	}

	if t.Heartbeat > 0 {
		timers = append(timers, attemptTimer(t, store.TimerHeartbeat, heartbeatAt(t, p.Now)))
	}

	if err := w.upsertTimers(ctx, t.InstanceID, timers); err != nil {
		return err
	}

	err = w.deleteTimers(ctx, t.InstanceID,
		[]store.TimerKey{{PointerID: t.PointerID, Kind: store.TimerScheduleToStart}})
	if err != nil {
		return err
	}

	data, _ := json.Marshal(map[string]string{"worker": p.Worker})
	err = w.appendAudit(ctx, t.InstanceID, p.Now, store.AuditEvent{
		Type: "step_started", StepID: st.StepID, PointerID: st.ID, Attempt: t.Attempt, Data: data,
	})
	if err != nil || len(timers) == 0 {
		return err
	}

	return w.lowerDue(ctx, t.InstanceID, earliest(timers))
}

// attemptTimer is a timer of the task's attempt that fires while paused.
func attemptTimer(t *store.Task, kind store.TimerKind, at time.Time) store.Timer {
	return store.Timer{
		InstanceID: t.InstanceID, PointerID: t.PointerID, Kind: kind, Attempt: t.Attempt,
		FireAt: at, WhilePaused: true,
	}
}

// heartbeatAt is when the task's next heartbeat is due, never past its
// start-to-close deadline.
func heartbeatAt(t *store.Task, now time.Time) time.Time {
	at := now.Add(t.Heartbeat)
	if !t.Deadline.IsZero() && t.Deadline.Before(at) {
		return t.Deadline
	}

	return at
}

// earliest returns the earliest FireAt of timers, which must not be empty.
func earliest(timers []store.Timer) time.Time {
	at := timers[0].FireAt
	for _, t := range timers[1:] {
		if t.FireAt.Before(at) {
			at = t.FireAt
		}
	}

	return at
}

// TaskExtend moves the claim expiry (and so the visibility) of tasks the
// worker holds. The tasks it still holds are extended; ErrNotFound says
// that some of ids are no longer its own.
func (s *Store) TaskExtend(ctx context.Context, worker string, ids []int64, until time.Time) error {
	if len(ids) == 0 {
		return nil
	}

	args := []any{ms(until), ms(until), worker}
	for _, id := range ids {
		args = append(args, id)
	}

	var n int64
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		var err error
		n, err = w.exec(ctx, `UPDATE dispatch_tasks SET claim_expires = ?, visible_at = ?
			WHERE claimed_by = ? AND id IN (`+placeholders(len(ids))+`)`, args...)

		return err
	})
	if err != nil {
		return fmt.Errorf("extending tasks: %w", err)
	}

	if n < int64(len(ids)) {
		return fmt.Errorf("extending tasks: %d of %d not held by %s: %w",
			int64(len(ids))-n, len(ids), worker, store.ErrNotFound)
	}

	return nil
}

// TaskRelease gives a claimed task back, visible again at VisibleAt, its
// claim uncounted when Unsent; ErrNotFound when the worker does not hold
// it.
func (s *Store) TaskRelease(ctx context.Context, p store.TaskReleaseParams) error {
	unsent := 0
	if p.Unsent {
		unsent = 1
	}

	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		n, err := w.exec(ctx, `UPDATE dispatch_tasks SET claimed_by = '', claim_expires = NULL,
			visible_at = ?, claims = claims - ? WHERE id = ? AND claimed_by = ?`,
			ms(p.VisibleAt), unsent, p.ID, p.Worker)
		if err == nil && n == 0 {
			err = store.ErrNotFound
		}

		w.readyTasks()

		return err
	})
	if err != nil {
		return fmt.Errorf("releasing task %d: %w", p.ID, err)
	}

	return nil
}

// TaskList lists tasks by id, of one instance when instanceID is set.
func (s *Store) TaskList(ctx context.Context, instanceID string) ([]store.Task, error) {
	query := `SELECT ` + taskColumns + ` FROM dispatch_tasks`
	var args []any
	if instanceID != "" {
		query += ` WHERE instance_id = ?`
		args = append(args, instanceID)
	}

	rows, err := s.readQuery(ctx, query+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}

	tasks, err := collect(rows, scanTask)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}

	return tasks, nil
}
