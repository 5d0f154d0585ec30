package engine

import (
	"context"
	"errors"
	"time"

	"github.com/weftworks/weft/store"
)

// scheduleLoop claims runnable instances and hands them to the workers.
// It sleeps until the earliest due instance, a wake-up, or the poll
// interval, whichever comes first.
func (e *Engine) scheduleLoop(ctx context.Context) {
	jobs := make(chan claim, e.opts.ClaimBatch)
	for range e.opts.Workers {
		e.runLoop(ctx, func(ctx context.Context) { e.work(ctx, jobs) })
	}
	defer close(jobs)

	var backoff time.Duration
	for ctx.Err() == nil {
		insts, err := e.store.InstanceClaim(ctx, store.InstanceClaimParams{
			Owner: e.opts.NodeID,
			Limit: min(e.opts.ClaimBatch, cap(jobs)-len(jobs)+1),
			TTL:   e.opts.LeaseTTL,
			Now:   e.clock.Now(),
		})
		if err != nil && ctx.Err() == nil {
			backoff = e.failureBackoff(backoff)
			e.log.Warn("claiming instances failed", keyErr, err, keyBackoff, backoff)
			_ = sleep(ctx, backoff)
			continue
		}
		backoff = 0

		e.counters.Claims.Add(int64(len(insts)))
		at := time.Now()
		for _, inst := range insts {
			select {
			case jobs <- claim{inst: inst, at: at}:
			case <-ctx.Done():
				return
			}
		}
		if len(insts) > 0 {
			continue
		}

		e.idle(ctx, e.wakeSched, e.nextDue(ctx))
	}
}

// maxFailureBackoff bounds the wait of a loop whose store calls keep
// failing (the database is away): it retries at the poll interval, then
// doubles its wait up to this, so that an outage costs a few calls and
// log lines, not one per poll.
const maxFailureBackoff = 5 * time.Second

// failureBackoff is a failing loop's next wait after d: see
// FailureBackoff.
func (e *Engine) failureBackoff(d time.Duration) time.Duration {
	return FailureBackoff(d, e.opts.PollInterval)
}

// FailureBackoff is the next wait of a loop whose store calls keep
// failing, after it waited last: the poll interval first, then twice the
// last wait, up to 5s (or the poll interval when that is longer). The
// engine's loops and the push dispatcher's share it.
func FailureBackoff(last, poll time.Duration) time.Duration {
	return min(max(2*last, poll), max(maxFailureBackoff, poll))
}

// nextDue is how long the scheduler may sleep.
func (e *Engine) nextDue(ctx context.Context) time.Duration {
	due, ok, err := e.store.InstanceNextDue(ctx)
	if err != nil || !ok {
		return e.opts.PollInterval
	}

	return min(max(due.Sub(e.clock.Now()), time.Millisecond), e.opts.PollInterval)
}

// idle waits for a wake-up or d.
func (e *Engine) idle(ctx context.Context, wake chan struct{}, d time.Duration) {
	e.counters.IdlePolls.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

// claim is an instance the scheduler leased, and when.
type claim struct {
	inst store.Instance
	at   time.Time
}

// work advances the instances the scheduler claimed.
func (e *Engine) work(ctx context.Context, jobs <-chan claim) {
	for c := range jobs {
		if ctx.Err() != nil {
			return
		}
		e.advance(context.WithoutCancel(ctx), c)
	}
}

// maxLeaseHold is how many lease TTLs one advance may keep extending its
// lease: past that a stuck node lets the instance go to another.
const maxLeaseHold = 10

// keepLease extends a claimed instance's lease every third of the lease
// TTL, counted from the claim, until the returned stop is called, the
// lease is lost, or maxLeaseHold TTLs have passed: a transition that
// takes long (a wide fan-out on a busy machine) is not fenced off midway
// and redone forever, while one that hangs still loses the instance.
func (e *Engine) keepLease(ctx context.Context, c claim) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	every := e.opts.LeaseTTL / 3
	until := c.at.Add(maxLeaseHold * e.opts.LeaseTTL)

	go func() {
		defer close(done)

		next := c.at.Add(every)
		for next.Before(until) {
			t := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}

			err := e.store.InstanceExtend(ctx, store.InstanceExtendParams{
				InstanceID: c.inst.ID, Owner: e.opts.NodeID, Epoch: c.inst.LeaseEpoch,
				TTL: e.opts.LeaseTTL,
			})
			if err != nil {
				return
			}
			e.counters.LeaseExtends.Add(1)
			next = time.Now().Add(every)
		}
	}()

	return func() {
		cancel()
		<-done
	}
}

// advance runs transitions on a claimed instance until one commits, the
// lease is lost, or the instance keeps conflicting.
func (e *Engine) advance(ctx context.Context, c claim) {
	claimed := c.inst
	unlock := e.locks.lock(claimed.ID)
	defer unlock()

	stop := e.keepLease(ctx, c)
	defer stop()

	for try := 0; try < 20; try++ {
		ld, err := e.store.InstanceLoad(ctx, store.InstanceLoadParams{
			InstanceID: claimed.ID, Now: e.clock.Now(),
		})
		if err != nil {
			e.log.Warn("loading instance failed", keyInstance, claimed.ID, keyErr, err)
			return
		}
		if ld.Instance.LeaseOwner != e.opts.NodeID || ld.Instance.LeaseEpoch != claimed.LeaseEpoch {
			e.counters.LeaseLost.Add(1)
			return
		}

		err = e.advanceOnce(ctx, ld)
		switch {
		case err == nil:
			return
		case errors.Is(err, store.ErrConflict):
			continue
		case errors.Is(err, store.ErrLeaseLost):
			e.log.Info("lease lost", keyInstance, claimed.ID)
			return
		case store.IsUnavailable(err):
			// The database is away: the instance goes on once it is back
			// and the lease has run out.
			e.log.Warn("advancing instance failed", keyInstance, claimed.ID, keyErr, err)
			return
		default:
			e.log.Error("advancing instance failed", keyInstance, claimed.ID, keyErr, err)
			return
		}
	}
	e.log.Warn("instance kept conflicting", keyInstance, claimed.ID)
}

func (e *Engine) advanceOnce(ctx context.Context, ld store.Loaded) error {
	r, err := e.newRun(ctx, ld, false)
	if err != nil {
		return err
	}

	r.process()
	if store.IsUnavailable(r.err) {
		// A read that failed for want of the database says nothing of
		// the instance: fail it as broken and it would stay failed.
		return r.err
	}
	if r.err != nil && !errors.Is(r.err, store.ErrConflict) {
		e.log.Error("instance cannot advance", keyInstance, ld.Instance.ID, keyErr, r.err)
		return e.failBroken(ctx, ld, r.err)
	}

	return e.commit(ctx, r)
}

// failBroken fails an instance whose state the engine cannot work with,
// so that it does not come back forever.
func (e *Engine) failBroken(ctx context.Context, ld store.Loaded, cause error) error {
	r, err := e.newRun(ctx, ld, false)
	if err != nil {
		return err
	}

	r.failInstance("engine_error", mustJSON(&store.StepError{Code: "engine_error", Message: cause.Error()}))

	return e.commit(ctx, r)
}

// noticeLoop wakes the schedule and dispatch loops on the notices other
// nodes send through the store, until the channel closes.
func (e *Engine) noticeLoop(notices <-chan store.Notice) {
	for n := range notices {
		e.counters.Notices.Add(1)
		switch n {
		case store.NoticeInstances:
			e.wake(e.wakeSched)
		case store.NoticeTasks:
			e.tasksReady()
		}
	}
}

// purgePause separates two purge batches, so that live writes get the
// writer in between.
const purgePause = 10 * time.Millisecond

// purgeLoop deletes finished instances past their retention, at start
// and then every PurgeInterval.
func (e *Engine) purgeLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.PurgeInterval)
	defer t.Stop()

	for {
		e.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purge deletes, batch after batch, the finished instances that ended
// more than Retention ago.
func (e *Engine) purge(ctx context.Context) {
	before := e.clock.Now().Add(-e.opts.Retention)
	total := 0
	for ctx.Err() == nil {
		n, err := e.store.InstancePurge(ctx, store.InstancePurgeParams{
			Before: before, Limit: e.opts.PurgeBatch,
		})
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("purging finished instances failed", keyErr, err)
			}

			break
		}

		total += n
		e.counters.Purged.Add(int64(n))
		if n < e.opts.PurgeBatch || sleep(ctx, purgePause) != nil {
			break
		}
	}

	if total > 0 {
		e.log.Info("purged finished instances", keyCount, total)
	}
}

// sweepLoop delivers events whose time has come.
func (e *Engine) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.PollInterval)
	defer t.Stop()

	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}

		n, err := e.store.EventSweep(ctx, e.clock.Now())
		if err != nil && ctx.Err() == nil {
			backoff = e.failureBackoff(backoff)
			e.log.Warn("sweeping events failed", keyErr, err, keyBackoff, backoff)
			_ = sleep(ctx, backoff)
			continue
		}
		backoff = 0
		if n > 0 {
			e.wake(e.wakeSched)
		}
	}
}
