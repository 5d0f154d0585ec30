package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// OpenNodes opens two stores on one fresh, empty database, as two weft
// nodes would, and arranges for both to be closed when the test ends. A
// store that serves one node (SQLite) returns the same store twice.
type OpenNodes func(t *testing.T) (a, b store.Store)

// Nodes checks what several nodes sharing one database rely on: claims
// that never overlap, leases fenced by the database clock, and reports
// racing the lease holder's writes with exactly one winner.
func Nodes(t *testing.T, open OpenNodes) {
	t.Run("InstanceClaimsDoNotOverlap", func(t *testing.T) { claimsDoNotOverlap(t, open) })
	t.Run("TaskClaimsDoNotOverlap", func(t *testing.T) { taskClaimsDoNotOverlap(t, open) })
	t.Run("ServiceLimitsHoldAcrossNodes", func(t *testing.T) { serviceLimitsAcrossNodes(t, open) })
	t.Run("LeaseExpiryUsesDatabaseClock", func(t *testing.T) { leaseUsesDatabaseClock(t, open) })
	t.Run("ExpiredLeaseFencesOldOwner", func(t *testing.T) { expiredLeaseFences(t, open) })
	t.Run("ReportRacesTransition", func(t *testing.T) { reportRacesTransition(t, open) })
	t.Run("DuplicateReportsFromTwoNodes", func(t *testing.T) { duplicateReports(t, open) })
}

// newNodes opens the two stores, with an env on the first.
func newNodes(t *testing.T, open OpenNodes) (*env, store.Store) {
	t.Helper()
	t.Parallel()

	a, b := open(t)

	return &env{t: t, s: a, ctx: t.Context(), now: time.Now().UTC().Truncate(time.Millisecond)}, b
}

// claimers runs n claimers at once, alternating between the stores,
// until every one of them finds nothing more, and returns what each
// claim returned by claimer.
func claimers[T any](t *testing.T, stores []store.Store, n int,
	claim func(s store.Store, who string) ([]T, error),
) [][]T {
	t.Helper()

	got := make([][]T, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			who := fmt.Sprintf("node-%d", i)
			for {
				items, err := claim(stores[i%len(stores)], who)
				if err != nil || len(items) == 0 {
					errs[i] = err

					return
				}

				got[i] = append(got[i], items...)
			}
		})
	}

	wg.Wait()
	ok(t, errors.Join(errs...))

	return got
}

func claimsDoNotOverlap(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	const total = 60
	for range total {
		e.create()
	}

	got := claimers(t, []store.Store{e.s, b}, 4, func(s store.Store, who string) ([]store.Instance, error) {
		return s.InstanceClaim(e.ctx, store.InstanceClaimParams{
			Owner: who, Limit: 3, TTL: leaseTTL, Now: e.at(time.Second),
		})
	})

	seen := map[string]string{}
	for _, claims := range got {
		for _, inst := range claims {
			if other, dup := seen[inst.ID]; dup {
				t.Fatalf("instance %s claimed by %s and %s", inst.ID, other, inst.LeaseOwner)
			}

			seen[inst.ID] = inst.LeaseOwner
			equal(t, "epoch of "+inst.ID, inst.LeaseEpoch, int64(1))
		}
	}

	equal(t, "claimed", len(seen), total)
}

func taskClaimsDoNotOverlap(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	const total = 30
	for range total {
		e.dispatch(e.create(), taskOptions{})
	}

	got := claimers(t, []store.Store{e.s, b}, 4, func(s store.Store, who string) ([]store.Task, error) {
		return s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: who, Services: []string{service}, Limit: 2, LeaseTTL: time.Minute,
			Now: e.at(time.Second),
		})
	})

	seen := map[int64]bool{}
	for _, claims := range got {
		for _, task := range claims {
			equal(t, fmt.Sprintf("task %d claimed twice", task.ID), seen[task.ID], false)
			seen[task.ID] = true
			equal(t, "claims", task.Claims, 1)
		}
	}

	equal(t, "claimed", len(seen), total)

	audit, err := e.s.AuditList(e.ctx, "inst-001", 0, 0)
	ok(t, err)
	for i, ev := range audit {
		equal(t, "audit seq", ev.Seq, int64(i+1))
	}

	equal(t, "last audit row", audit[len(audit)-1].Type, "step_started")
}

// serviceLimitsAcrossNodes: claimers on two nodes together take no more
// than a service's concurrency cap, nor more than its token bucket holds.
func serviceLimitsAcrossNodes(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	_, err := e.s.ServicePut(e.ctx, store.Service{
		Name: service, Mode: store.ServicePull, Concurrency: 5,
	}, e.now)
	ok(t, err)
	_, err = e.s.ServicePut(e.ctx, store.Service{
		Name: "other", Mode: store.ServicePull, Rate: 1, Burst: 3,
	}, e.now)
	ok(t, err)
	for range 12 {
		e.dispatch(e.create(), taskOptions{})
		e.dispatch(e.create(), taskOptions{service: "other"})
	}

	claim := func(s store.Store, who string) ([]store.Task, error) {
		return s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: who, Services: []string{service, "other"}, Limit: 2, LeaseTTL: time.Minute,
			Now: e.now,
		})
	}
	got := claimers(t, []store.Store{e.s, b}, 6, claim)

	per := map[string]int{}
	for _, claims := range got {
		for _, task := range claims {
			per[task.Service]++
		}
	}

	equal(t, "claimed per service", per, map[string]int{service: 5, "other": 3})
}

// leaseUsesDatabaseClock: a lease taken with a caller clock far ahead is
// still held by the database clock, so another node cannot take it.
func leaseUsesDatabaseClock(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	inst := e.create()

	skewed := e.at(24 * time.Hour)
	claimed, err := e.s.InstanceClaim(e.ctx, store.InstanceClaimParams{
		Owner: nodeA, Limit: 1, TTL: time.Minute, Now: skewed,
	})
	ok(t, err)
	equal(t, "claimed", len(claimed), 1)

	again, err := b.InstanceClaim(e.ctx, store.InstanceClaimParams{
		Owner: nodeB, Limit: 1, TTL: time.Minute, Now: skewed.Add(time.Hour),
	})
	ok(t, err)
	equal(t, "claimed by the other node", len(again), 0)

	_, err = b.InstanceLease(e.ctx, inst.ID, nodeB, time.Minute)
	isErr(t, err, store.ErrLeaseLost)

	tr := e.transition(claimed[0])
	tr.Now = skewed
	ok(t, e.apply(tr))
}

// expiredLeaseFences: once a lease runs out by the database clock the
// other node takes it with a new epoch, and the old owner's write is
// refused with ErrLeaseLost and changes nothing.
func expiredLeaseFences(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	inst := e.create()

	old, err := e.s.InstanceLease(e.ctx, inst.ID, nodeA, 50*time.Millisecond)
	ok(t, err)

	var taken store.Instance
	for deadline := time.Now().Add(10 * time.Second); ; {
		taken, err = b.InstanceLease(e.ctx, inst.ID, nodeB, time.Minute)
		if err == nil || !errors.Is(err, store.ErrLeaseLost) || time.Now().After(deadline) {
			break
		}

		time.Sleep(10 * time.Millisecond)
	}

	ok(t, err)
	equal(t, "new epoch", taken.LeaseEpoch, old.LeaseEpoch+1)

	stale := e.transition(old)
	stale.Instance.Reason = "stale"
	stale.Audit = []store.AuditEvent{{Type: "stale_write"}}
	isErr(t, e.apply(stale), store.ErrLeaseLost)

	got := e.instance(inst.ID)
	equal(t, "reason", got.Reason, "")
	equal(t, "last seq", got.LastSeq, inst.LastSeq)
	equal(t, "owner", got.LeaseOwner, nodeB)

	fresh := e.transition(taken)
	fresh.Instance.Reason = "fresh"
	errs := b.TransitionApply(e.ctx, []*store.Transition{fresh})
	ok(t, errs[0])
	equal(t, "reason", e.instance(inst.ID).Reason, "fresh")
}

// reportRacesTransition: a report from one node and the lease holder's
// new attempt on the other race on many instances at once; on each,
// exactly one of them wins.
func reportRacesTransition(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	const n = 20
	leased := make([]store.Instance, n)
	for i := range leased {
		inst := e.dispatch(e.create(), taskOptions{})
		leased[i] = e.lease(inst.ID)
	}

	steps := make([]store.Step, n)
	for i, inst := range leased {
		steps[i] = e.step(inst.ID, taskID)
	}

	reports := make([]store.ReportResult, n)
	applied := make([]error, n)
	var wg sync.WaitGroup
	for i, inst := range leased {
		wg.Go(func() {
			res, err := b.StepReport(e.ctx, store.StepReportParams{
				InstanceID: inst.ID, PointerID: taskID, Attempt: 1, Token: token,
				Kind: store.ReportCompleted, Output: []byte(`1`), Now: e.at(time.Second),
			})
			if err != nil {
				t.Errorf("reporting: %v", err)
			}

			reports[i] = res
		})
		wg.Go(func() {
			tr := e.transition(inst)
			retry := steps[i]
			retry.Attempt, retry.Token = 2, "token-2"
			tr.Steps = []store.Step{retry}
			applied[i] = e.s.TransitionApply(e.ctx, []*store.Transition{tr})[0]
		})
	}

	wg.Wait()
	for i, inst := range leased {
		accepted := reports[i].Outcome == store.ReportAccepted
		won := applied[i] == nil
		if accepted == won {
			t.Fatalf("instance %s: report %s, transition error %v: want exactly one winner",
				inst.ID, reports[i].Outcome, applied[i])
		}

		st := e.step(inst.ID, taskID)
		if won {
			equal(t, "report outcome", reports[i].Outcome, store.ReportLate)
			equal(t, "attempt", st.Attempt, 2)
			equal(t, "no report", st.Report == nil, true)

			continue
		}

		isErr(t, applied[i], store.ErrConflict)
		equal(t, "attempt", st.Attempt, 1)
		equal(t, "report attempt", st.Report.Attempt, 1)
	}
}

// duplicateReports: the same report sent to both nodes at once is
// accepted once and answered as a duplicate once.
func duplicateReports(t *testing.T, open OpenNodes) {
	e, b := newNodes(t, open)
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.dispatch(e.create(), taskOptions{}).ID
	}

	outcomes := make([][2]store.ReportOutcome, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		for j, s := range []store.Store{e.s, b} {
			wg.Go(func() {
				res, err := s.StepReport(e.ctx, store.StepReportParams{
					InstanceID: id, PointerID: taskID, Attempt: 1, Token: token,
					Kind: store.ReportCompleted, Output: []byte(`1`), Now: e.at(time.Second),
				})
				if err != nil {
					t.Errorf("reporting: %v", err)
				}

				outcomes[i][j] = res.Outcome
			})
		}
	}

	wg.Wait()
	for i, id := range ids {
		got := map[store.ReportOutcome]int{outcomes[i][0]: 1}
		got[outcomes[i][1]]++
		equal(t, "outcomes of "+id, got, map[store.ReportOutcome]int{
			store.ReportAccepted: 1, store.ReportDuplicate: 1,
		})
		equal(t, "wake of "+id, e.instance(id).Wake, int64(1))
	}
}
