package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Feed checks the lifecycle feed (store.FeedReader): the audit rows of
// every instance, each once, in growing positions to resume from, and
// positions that go on growing after a purge emptied the audit log.
func Feed(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("OrderAndResume", func(t *testing.T) {
		e := newEnv(t, open)
		feed := feedOf(t, e.s)
		first, second := e.create(), e.create()
		ok(t, e.s.AuditAppend(e.ctx, first.ID, e.now, store.AuditEvent{Type: "note"}))

		got := feedUntil(t, feed, 0, 3)
		equal(t, "feed", feedKeys(got), []string{
			first.ID + "/1/instance_started", second.ID + "/1/instance_started", first.ID + "/2/note",
		})
		rest := readFeed(t, feed, got[0].Position, 1)
		equal(t, "feed after the first row, limit 1", feedKeys(rest), feedKeys(got[1:2]))
		equal(t, "feed after the last row", len(readFeed(t, feed, got[2].Position, 0)), 0)
	})

	t.Run("PositionsGrowAfterPurge", func(t *testing.T) {
		e := newEnv(t, open)
		feed := feedOf(t, e.s)
		id := e.finished(store.InstanceCompleted, e.at(-48*time.Hour), "")
		before := feedUntil(t, feed, 0, len(allKeys(t, e.s, id)))
		last := before[len(before)-1].Position

		n, err := e.s.InstancePurge(e.ctx, store.InstancePurgeParams{Before: e.at(-time.Hour)})
		ok(t, err)
		equal(t, "purged", n, 1)
		equal(t, "feed after the purge", len(readFeed(t, feed, 0, 0)), 0)

		inst := e.create()
		got := feedUntil(t, feed, last, 1)
		equal(t, "feed after the purge, from the last position", feedKeys(got),
			[]string{inst.ID + "/1/instance_started"})
	})
}

// HoldInstance takes an instance's row from outside the store, as a
// slow transaction of another node would, so that a store transaction
// writing it waits, open. blocked reports whether a transaction waits
// for the hold; release lets it go.
type HoldInstance func(t *testing.T, instanceID string) (blocked func() bool, release func())

// FeedNodes checks the lifecycle feed while two stores on one database
// write at once: a reader that resumes from its last position sees every
// row once. With hold (databases that run transactions at once), the
// writer that began first is held until the other has committed, and
// commits last: the reader must not skip its row. A store that serves one
// node passes nil, since its one writer commits in the order it begins.
func FeedNodes(t *testing.T, open OpenNodes, hold HoldInstance) {
	t.Run("ConcurrentWriters", func(t *testing.T) { feedConcurrent(t, open) })
	if hold != nil {
		t.Run("FirstBegunCommitsLast", func(t *testing.T) { feedHeld(t, open, hold) })
	}
}

// feedConcurrent runs writers on both stores while a reader follows the
// feed, and checks that it saw every audit row once.
func feedConcurrent(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	feed := feedOf(t, e.s)
	const writers, appends = 4, 25
	ids := make([]string, writers)
	for i := range ids {
		ids[i] = e.create().ID
	}

	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, id := range ids {
		s := []store.Store{e.s, b}[i%2]
		wg.Go(func() {
			for k := range appends {
				err := s.AuditAppend(e.ctx, id, e.now, store.AuditEvent{Type: fmt.Sprintf("note-%d", k)})
				if err != nil {
					errs[i] = err
					return
				}
			}
		})
	}

	r := &follower{t: t, feed: feed, seen: map[string]bool{}}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	for running := true; running; {
		select {
		case <-stop:
			running = false
		default:
		}
		r.read()
	}
	for _, err := range errs {
		ok(t, err)
	}

	r.until(allKeys(t, e.s, ids...))
}

// feedHeld holds the first writer's transaction open after it wrote its
// audit row, commits a second writer's row meanwhile, and checks that a
// reader following the feed throughout sees both rows once.
func feedHeld(t *testing.T, open OpenNodes, hold HoldInstance) {
	e, b := newNodes(t, open)
	feed := feedOf(t, e.s)
	first, held, second := e.create(), e.create(), e.create()
	r := &follower{t: t, feed: feed, seen: map[string]bool{}}
	r.until(allKeys(t, e.s, first.ID, held.ID, second.ID))

	// The first writer writes its own instance and its audit row, then
	// reports to the held instance and waits there, its transaction open.
	blocked, release := hold(t, held.ID)
	tr := e.transition(e.lease(first.ID))
	tr.Audit = []store.AuditEvent{{Type: "first_begun"}}
	tr.Reports = []store.StepReportParams{{
		InstanceID: held.ID, PointerID: rootID, Attempt: 1, Token: "none",
		Kind: store.ReportCompleted, Now: e.now,
	}}
	done := make(chan error, 1)
	go func() { done <- e.apply(tr) }()
	for deadline := time.Now().Add(30 * time.Second); !blocked(); {
		if time.Now().After(deadline) {
			release()
			t.Fatal("the first writer never waited for the held instance")
		}
		time.Sleep(10 * time.Millisecond)
	}

	ok(t, b.AuditAppend(e.ctx, second.ID, e.now, store.AuditEvent{Type: "second_committed"}))
	r.read()
	release()
	ok(t, <-done)

	r.until(allKeys(t, e.s, first.ID, held.ID, second.ID))
}

// follower reads the feed from where it left off, checking that no row
// comes twice and positions only grow.
type follower struct {
	t     *testing.T
	feed  store.FeedReader
	after int64
	seen  map[string]bool
}

// read takes one batch of the feed.
func (f *follower) read() {
	f.t.Helper()

	for _, ev := range readFeed(f.t, f.feed, f.after, 10) {
		if ev.Position <= f.after {
			f.t.Fatalf("feed position %d after %d", ev.Position, f.after)
		}
		key := feedKey(ev.Event)
		if f.seen[key] {
			f.t.Fatalf("feed row %s came twice", key)
		}
		f.seen[key], f.after = true, ev.Position
	}
}

// until reads until the follower has seen every row of want and
// nothing else: a row the feed skipped never comes, and ends the test
// after 30 seconds.
func (f *follower) until(want []string) {
	f.t.Helper()

	deadline := time.Now().Add(30 * time.Second)
	for len(f.seen) < len(want) {
		if time.Now().After(deadline) {
			f.t.Fatalf("feed has %d of %d rows after 30s: a row was skipped", len(f.seen), len(want))
		}
		f.read()
		time.Sleep(time.Millisecond)
	}

	for _, k := range want {
		if !f.seen[k] {
			f.t.Fatalf("feed never had %s", k)
		}
	}
	equal(f.t, "feed rows", len(f.seen), len(want))
}

// feedOf is the store's feed; it fails the test when the store has none.
func feedOf(t *testing.T, s store.Store) store.FeedReader {
	t.Helper()

	feed, isFeed := s.(store.FeedReader)
	if !isFeed {
		t.Fatalf("%T does not implement store.FeedReader", s)
	}

	return feed
}

// readFeed reads the feed after a position, failing the test on errors.
func readFeed(t *testing.T, feed store.FeedReader, after int64, limit int) []store.FeedEvent {
	t.Helper()

	evs, err := feed.AuditFeed(t.Context(), after, limit)
	ok(t, err)

	return evs
}

// feedUntil reads the feed after a position until it has at least n
// rows. On a database where transactions run at once, rows committed
// already may wait for a transaction of another test that began before
// them; 30 seconds without them ends the test.
func feedUntil(t *testing.T, feed store.FeedReader, after int64, n int) []store.FeedEvent {
	t.Helper()

	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := readFeed(t, feed, after, 0)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("feed after %d has %d rows after 30s, want %d", after, len(evs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allKeys lists the keys of every audit row of the instances.
func allKeys(t *testing.T, s store.Store, ids ...string) []string {
	t.Helper()

	var keys []string
	for _, id := range ids {
		evs, err := s.AuditList(t.Context(), id, 0, 0)
		ok(t, err)
		for _, ev := range evs {
			keys = append(keys, feedKey(ev))
		}
	}

	return keys
}

func feedKeys(evs []store.FeedEvent) []string {
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = feedKey(ev.Event)
	}

	return keys
}

func feedKey(ev store.AuditEvent) string {
	return fmt.Sprintf("%s/%d/%s", ev.InstanceID, ev.Seq, ev.Type)
}
