package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/weftworks/weft/store"
)

// GroupCommit checks that many concurrent writers are all acknowledged
// and visible, while sharing commits.
func GroupCommit(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("ConcurrentWritersShareCommits", func(t *testing.T) {
		e := newEnv(t, open)
		const writers, each = 16, 10
		insts := make([]store.Instance, writers)
		for i := range insts {
			insts[i] = e.create()
		}

		start := e.s.Stats()
		var wg sync.WaitGroup
		errs := make(chan error, writers*each*2)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					errs <- e.s.DefinitionCreate(e.ctx, store.Definition{
						Name: fmt.Sprintf("def-%d", w), Version: i + 1, Source: []byte(`{}`),
					})

					inst, err := e.s.InstanceLease(e.ctx, insts[w].ID, nodeA, leaseTTL)
					if err != nil {
						errs <- err

						continue
					}

					tr := e.transition(inst)
					tr.Audit = []store.AuditEvent{{Type: "tick"}}
					errs <- e.s.TransitionApply(e.ctx, []*store.Transition{tr})[0]
				}
			})
		}

		wg.Wait()
		close(errs)
		for err := range errs {
			ok(t, err)
		}

		defs, err := e.s.DefinitionList(e.ctx, "")
		ok(t, err)
		equal(t, "definitions", len(defs), writers*each)
		for _, inst := range insts {
			equal(t, "last seq", e.instance(inst.ID).LastSeq, int64(1+each))
		}

		stats := e.s.Stats()
		writes := int64(writers * each * 3)
		equal(t, "transitions", stats.Transitions-start.Transitions, int64(writers*each))
		if commits := stats.Commits - start.Commits; commits >= writes {
			t.Fatalf("commits = %d for %d writes, want fewer", commits, writes)
		}
	})

	t.Run("OneCallSharesOneCommit", func(t *testing.T) {
		e := newEnv(t, open)
		var trs []*store.Transition
		for range 50 {
			tr := e.transition(e.lease(e.create().ID))
			tr.Audit = []store.AuditEvent{{Type: "tick"}}
			trs = append(trs, tr)
		}

		start := e.s.Stats()
		for _, err := range e.s.TransitionApply(e.ctx, trs) {
			ok(t, err)
		}

		stats := e.s.Stats()
		equal(t, "transitions", stats.Transitions-start.Transitions, int64(50))
		if commits := stats.Commits - start.Commits; commits > 5 {
			t.Fatalf("commits = %d for 50 transitions in one call", commits)
		}
	})
}

// Stats checks the store's counters.
func Stats(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("CountWrites", func(t *testing.T) {
		e := newEnv(t, open)
		zero := e.s.Stats()
		e.create()
		after := e.s.Stats()
		equal(t, "commits", after.Commits-zero.Commits, int64(1))
		equal(t, "rows", after.RowsWritten-zero.RowsWritten >= 3, true)
		equal(t, "bytes", after.BytesWritten-zero.BytesWritten > 0, true)

		inst := e.lease(e.create().ID)
		stale := e.transition(inst)
		stale.Epoch++
		isErr(t, e.apply(stale), store.ErrLeaseLost)
		ok(t, e.apply(e.transition(inst)))
		equal(t, "transitions", e.s.Stats().Transitions-zero.Transitions, int64(1))
	})

	t.Run("CountLoadedRows", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create(func(p *store.InstanceCreateParams) {
			for id := int64(2); id <= 4; id++ {
				p.Steps = append(p.Steps, store.Step{
					ID: id, StepID: "done", ParentID: rootID, Status: store.StepCompleted,
				})
			}
			p.Instance.NextPointer = 5
		})

		zero := e.s.Stats()
		ld, err := e.s.InstanceLoad(e.ctx, store.InstanceLoadParams{InstanceID: inst.ID, Now: e.now})
		ok(t, err)
		equal(t, "steps", len(ld.Steps), 1)
		equal(t, "rows loaded", e.s.Stats().RowsLoaded-zero.RowsLoaded, int64(2))
	})
}
