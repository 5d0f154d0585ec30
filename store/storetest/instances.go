package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Instances checks creating and reading instances and idempotent starts.
func Instances(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("CreateStoresEverything", func(t *testing.T) {
		e := newEnv(t, open)
		input := `{"big": 12345678901234567890123, "f": 0.10, "s": "é"}`
		inst := e.create(func(p *store.InstanceCreateParams) {
			p.Instance.Input = []byte(input)
			p.Instance.State = []byte(`{"v":1}`)
			p.Timers = []store.Timer{{PointerID: 0, Kind: store.TimerDeadline, FireAt: e.at(time.Hour)}}
			p.Audit = append(p.Audit, store.AuditEvent{Type: "step_created", PointerID: rootID})
		})

		got := e.instance(inst.ID)
		equal(t, "input", string(got.Input), input)
		equal(t, "state", string(got.State), `{"v":1}`)
		equal(t, "status", got.Status, store.InstanceRunning)
		equal(t, "last seq", got.LastSeq, int64(2))
		equal(t, "next pointer", got.NextPointer, int64(2))
		equal(t, "lease owner", got.LeaseOwner, "")
		equal(t, "lease epoch", got.LeaseEpoch, int64(0))
		sameTime(t, "due at", got.DueAt, e.now)
		equal(t, "ended at zero", got.EndedAt.IsZero(), true)
		equal(t, "output nil", got.Output == nil, true)

		st := e.step(inst.ID, rootID)
		equal(t, "step rev", st.Rev, int64(1))
		equal(t, "step work", st.Work, true)
		equal(t, "step report", st.Report == nil, true)

		audit, err := e.s.AuditList(e.ctx, inst.ID, 0, 10)
		ok(t, err)
		equal(t, "audit rows", len(audit), 2)
		equal(t, "seqs", []int64{audit[0].Seq, audit[1].Seq}, []int64{1, 2})
		sameTime(t, "audit at defaults to now", audit[0].At, e.now)

		timers, err := e.s.TimerList(e.ctx, inst.ID)
		ok(t, err)
		equal(t, "timers", len(timers), 1)
		equal(t, "timer kind", timers[0].Kind, store.TimerDeadline)
	})

	t.Run("EmptyIDGetsOne", func(t *testing.T) {
		e := newEnv(t, open)
		inst := e.create(func(p *store.InstanceCreateParams) { p.Instance.ID = "" })
		equal(t, "id set", inst.ID != "", true)
		equal(t, "stored", e.instance(inst.ID).ID, inst.ID)
	})

	t.Run("DuplicateIDIsAlreadyExists", func(t *testing.T) {
		e := newEnv(t, open)
		p := e.createParams()
		_, _, err := e.s.InstanceCreate(e.ctx, p)
		ok(t, err)
		_, _, err = e.s.InstanceCreate(e.ctx, p)
		isErr(t, err, store.ErrAlreadyExists)
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		e := newEnv(t, open)
		_, err := e.s.InstanceGet(e.ctx, "nope")
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("StartKeySameInputReturnsExisting", func(t *testing.T) {
		e := newEnv(t, open)
		keyed := func(p *store.InstanceCreateParams) {
			p.StartKey, p.InputHash, p.KeyTTL = "k1", "h1", time.Hour
		}
		first := e.create(keyed)
		equal(t, "start key", first.StartKey, "k1")

		p := e.createParams()
		keyed(&p)
		got, created, err := e.s.InstanceCreate(e.ctx, p)
		ok(t, err)
		equal(t, "created", created, false)
		equal(t, "id", got.ID, first.ID)
		_, err = e.s.InstanceGet(e.ctx, p.Instance.ID)
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("StartKeyOtherInputIsAlreadyExists", func(t *testing.T) {
		e := newEnv(t, open)
		e.create(func(p *store.InstanceCreateParams) {
			p.StartKey, p.InputHash, p.KeyTTL = "k1", "h1", time.Hour
		})

		p := e.createParams()
		p.StartKey, p.InputHash, p.KeyTTL = "k1", "h2", time.Hour
		_, _, err := e.s.InstanceCreate(e.ctx, p)
		isErr(t, err, store.ErrAlreadyExists)
	})

	t.Run("StartKeyIsPerDefinition", func(t *testing.T) {
		e := newEnv(t, open)
		e.create(func(p *store.InstanceCreateParams) { p.StartKey, p.InputHash = "k1", "h1" })
		e.create(func(p *store.InstanceCreateParams) {
			p.Instance.DefinitionName = "other"
			p.StartKey, p.InputHash = "k1", "h2"
		})
	})

	t.Run("ExpiredStartKeyIsReplaced", func(t *testing.T) {
		e := newEnv(t, open)
		first := e.create(func(p *store.InstanceCreateParams) {
			p.StartKey, p.InputHash, p.KeyTTL = "k1", "h1", time.Minute
		})

		second := e.create(func(p *store.InstanceCreateParams) {
			p.StartKey, p.InputHash, p.KeyTTL = "k1", "h2", time.Minute
			p.Now = e.at(2 * time.Minute)
		})
		equal(t, "new instance", second.ID != first.ID, true)

		p := e.createParams()
		p.StartKey, p.InputHash, p.Now = "k1", "h2", e.at(150*time.Second)
		got, created, err := e.s.InstanceCreate(e.ctx, p)
		ok(t, err)
		equal(t, "created", created, false)
		equal(t, "id", got.ID, second.ID)
	})
}
