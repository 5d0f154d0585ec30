package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Leases checks claiming runnable instances, leasing for commands and
// fencing writes with the lease epoch.
func Leases(t *testing.T, open func(*testing.T) store.Store) {
	claim := func(e *env, owner string, limit int, now time.Time) []store.Instance {
		e.t.Helper()

		got, err := e.s.InstanceClaim(e.ctx, store.InstanceClaimParams{
			Owner: owner, Limit: limit, TTL: leaseTTL, Now: now,
		})
		ok(e.t, err)

		return got
	}

	t.Run("ClaimTakesDueInstancesByDueTime", func(t *testing.T) {
		e := newEnv(t, open)
		late := e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(2 * time.Second) })
		early := e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(time.Second) })
		e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(time.Hour) })

		got := claim(e, nodeA, 10, e.at(time.Minute))
		equal(t, "claimed", len(got), 2)
		equal(t, "order", []string{got[0].ID, got[1].ID}, []string{early.ID, late.ID})
		equal(t, "owner", got[0].LeaseOwner, nodeA)
		equal(t, "epoch", got[0].LeaseEpoch, int64(1))
		equal(t, "expiry ahead", got[0].LeaseExpires.After(time.Now().Add(leaseTTL/2)), true)

		equal(t, "claimed again", len(claim(e, nodeB, 10, e.at(time.Minute))), 0)
	})

	t.Run("ClaimRespectsLimit", func(t *testing.T) {
		e := newEnv(t, open)
		for range 3 {
			e.create()
		}

		equal(t, "first", len(claim(e, nodeA, 2, e.now)), 2)
		equal(t, "second", len(claim(e, nodeB, 2, e.now)), 1)
	})

	t.Run("ClaimSkipsFinalInstances", func(t *testing.T) {
		e := newEnv(t, open)
		e.create(func(p *store.InstanceCreateParams) { p.Instance.Status = store.InstanceCompleted })
		equal(t, "claimed", len(claim(e, nodeA, 10, e.now)), 0)
	})

	t.Run("ExpiredLeaseIsClaimedAgain", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		_, err := e.s.InstanceClaim(e.ctx, store.InstanceClaimParams{
			Owner: nodeA, Limit: 1, TTL: time.Millisecond, Now: e.now,
		})
		ok(t, err)
		time.Sleep(5 * time.Millisecond)

		got := claim(e, nodeB, 1, e.now)
		equal(t, "claimed", len(got), 1)
		equal(t, "id", got[0].ID, inst.ID)
		equal(t, "owner", got[0].LeaseOwner, nodeB)
		equal(t, "epoch", got[0].LeaseEpoch, int64(2))
	})

	t.Run("LeaseHeldByOtherIsLeaseLost", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		first := e.lease(inst.ID)
		_, err := e.s.InstanceLease(e.ctx, inst.ID, nodeB, leaseTTL)
		isErr(t, err, store.ErrLeaseLost)

		again := e.lease(inst.ID)
		equal(t, "same owner re-leases with new epoch", again.LeaseEpoch, first.LeaseEpoch+1)
		_, err = e.s.InstanceLease(e.ctx, "nope", nodeA, leaseTTL)
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("LeaseIgnoresDueTime", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(time.Hour) })
		equal(t, "epoch", e.lease(inst.ID).LeaseEpoch, int64(1))
	})

	t.Run("StaleEpochIsFenced", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		old := e.lease(inst.ID)
		cur := e.lease(inst.ID)

		tr := e.transition(old)
		tr.Audit = []store.AuditEvent{{Type: "x"}}
		isErr(t, e.apply(tr), store.ErrLeaseLost)
		equal(t, "last seq unchanged", e.instance(inst.ID).LastSeq, int64(1))

		ok(t, e.apply(e.transition(cur)))
		isErr(t, e.apply(e.transition(cur)), store.ErrLeaseLost)
	})

	t.Run("ExpiredLeaseIsFenced", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		leased, err := e.s.InstanceLease(e.ctx, inst.ID, nodeA, time.Millisecond)
		ok(t, err)
		time.Sleep(5 * time.Millisecond)
		isErr(t, e.apply(e.transition(leased)), store.ErrLeaseLost)
	})

	t.Run("ExtendKeepsEpochAndMovesExpiry", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		// The extend must come within the first lease, so it gets a
		// second even on a loaded machine; the sleep outlives it.
		leased, err := e.s.InstanceLease(e.ctx, inst.ID, nodeA, time.Second)
		ok(t, err)

		ext := store.InstanceExtendParams{
			InstanceID: inst.ID, Owner: nodeA, Epoch: leased.LeaseEpoch, TTL: leaseTTL,
		}
		ok(t, e.s.InstanceExtend(e.ctx, ext))
		time.Sleep(1200 * time.Millisecond)

		got := e.instance(inst.ID)
		equal(t, "epoch kept", got.LeaseEpoch, leased.LeaseEpoch)
		equal(t, "expiry moved", got.LeaseExpires.After(time.Now().Add(leaseTTL/2)), true)
		equal(t, "claimed by another", len(claim(e, nodeB, 1, e.now)), 0)
		ok(t, e.apply(e.transition(leased)))
	})

	t.Run("ExtendAfterLossIsLeaseLost", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create()
		short, err := e.s.InstanceLease(e.ctx, inst.ID, nodeA, time.Millisecond)
		ok(t, err)
		time.Sleep(5 * time.Millisecond)

		ext := store.InstanceExtendParams{
			InstanceID: inst.ID, Owner: nodeA, Epoch: short.LeaseEpoch, TTL: leaseTTL,
		}
		isErr(t, e.s.InstanceExtend(e.ctx, ext), store.ErrLeaseLost)

		cur := e.lease(inst.ID)
		isErr(t, e.s.InstanceExtend(e.ctx, ext), store.ErrLeaseLost)
		ext.Owner = nodeB
		ext.Epoch = cur.LeaseEpoch
		isErr(t, e.s.InstanceExtend(e.ctx, ext), store.ErrLeaseLost)
	})

	t.Run("KeepLeaseKeepsIt", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.lease(e.create().ID)
		tr := e.transition(inst)
		tr.KeepLease = true
		ok(t, e.apply(tr))
		ok(t, e.apply(e.transition(inst)))
		equal(t, "owner released", e.instance(inst.ID).LeaseOwner, "")
		equal(t, "epoch kept", e.instance(inst.ID).LeaseEpoch, inst.LeaseEpoch)
	})

	t.Run("NextDue", func(t *testing.T) {
		e := newEnv(t, open)
		_, found, err := e.s.InstanceNextDue(e.ctx)
		ok(t, err)
		equal(t, "found on empty", found, false)

		first := e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(time.Second) })
		e.create(func(p *store.InstanceCreateParams) { p.Now = e.at(time.Minute) })
		e.create(func(p *store.InstanceCreateParams) {
			p.Now = e.at(time.Millisecond)
			p.Instance.Status = store.InstanceFailed
		})

		due, found, err := e.s.InstanceNextDue(e.ctx)
		ok(t, err)
		equal(t, "found", found, true)
		sameTime(t, "due", due, e.at(time.Second))

		e.lease(first.ID)
		due, _, err = e.s.InstanceNextDue(e.ctx)
		ok(t, err)
		sameTime(t, "due without leased", due, e.at(time.Minute))
	})
}
