package storetest

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// pushService is a valid push-mode registry entry.
func pushService(name string) store.Service {
	return store.Service{
		Name: name, Mode: store.ServicePush, Addresses: []string{"10.0.0.1:7000", "b.local:7001"},
		TLS: store.ServiceTLS{
			Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "x",
		},
		Concurrency: 4, Rate: 2.5, Burst: 3, DispatchTimeout: 3 * time.Second, DispatchLimit: 7,
	}
}

// putService registers a pull service of the suite's service name with
// the limits.
func (e *env) putService(concurrency int, rate float64, burst int) {
	e.t.Helper()

	_, err := e.s.ServicePut(e.ctx, store.Service{
		Name: service, Mode: store.ServicePull, Concurrency: concurrency, Rate: rate, Burst: burst,
	}, e.now)
	ok(e.t, err)
}

// Services checks the service registry and the limits TaskClaim holds
// registered services to.
func Services(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("PutGetListDelete", func(t *testing.T) { serviceCRUD(t, open) })
	t.Run("PutRefusesInvalid", func(t *testing.T) { serviceInvalid(t, open) })
	t.Run("DeleteRefusedWhileTasksQueued", func(t *testing.T) { serviceInUse(t, open) })
	t.Run("ConcurrencyCapsClaims", func(t *testing.T) { serviceConcurrency(t, open) })
	t.Run("ConcurrentClaimersKeepCap", func(t *testing.T) { serviceConcurrentClaimers(t, open) })
	t.Run("RateLimitsClaims", func(t *testing.T) { serviceRate(t, open) })
	t.Run("UnregisteredServiceIsUnlimited", func(t *testing.T) {
		e := newEnv(t, open)
		e.putService(1, 0, 0)
		for range 3 {
			e.dispatch(e.create(), taskOptions{service: "other"})
		}

		got, err := e.s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: "w1", Services: []string{"other", service}, Limit: 10, LeaseTTL: time.Minute,
			Now: e.now,
		})
		ok(t, err)
		equal(t, "claimed", len(got), 3)
	})
}

func serviceCRUD(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	put, err := e.s.ServicePut(e.ctx, pushService("zeta"), e.now)
	ok(t, err)
	sameTime(t, "created at", put.CreatedAt, e.now)
	sameTime(t, "updated at", put.UpdatedAt, e.now)

	got, err := e.s.ServiceGet(e.ctx, "zeta")
	ok(t, err)
	want := pushService("zeta")
	sameTime(t, "stored created at", got.CreatedAt, e.now)
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.UpdatedAt
	equal(t, "stored", got, want)

	pull := store.Service{Name: "alpha", Mode: store.ServicePull}
	_, err = e.s.ServicePut(e.ctx, pull, e.now)
	ok(t, err)

	replaced := pushService("zeta")
	replaced.Addresses = []string{"[::1]:9000"}
	replaced.Concurrency = 0
	put, err = e.s.ServicePut(e.ctx, replaced, e.at(time.Hour))
	ok(t, err)
	sameTime(t, "created at kept", put.CreatedAt, e.now)
	sameTime(t, "updated at moved", put.UpdatedAt, e.at(time.Hour))

	list, err := e.s.ServiceList(e.ctx)
	ok(t, err)
	equal(t, "listed", len(list), 2)
	equal(t, "order", []string{list[0].Name, list[1].Name}, []string{"alpha", "zeta"})
	equal(t, "pull addresses", len(list[0].Addresses), 0)
	equal(t, "replaced addresses", list[1].Addresses, []string{"[::1]:9000"})
	equal(t, "replaced concurrency", list[1].Concurrency, 0)
	sameTime(t, "listed created at", list[1].CreatedAt, e.now)

	ok(t, e.s.ServiceDelete(e.ctx, "zeta"))
	_, err = e.s.ServiceGet(e.ctx, "zeta")
	isErr(t, err, store.ErrNotFound)
	isErr(t, e.s.ServiceDelete(e.ctx, "zeta"), store.ErrNotFound)
}

func serviceInvalid(t *testing.T, open func(*testing.T) store.Store) {
	tests := []struct {
		field string
		mod   func(*store.Service)
	}{
		{"name", func(s *store.Service) { s.Name = "" }},
		{"name", func(s *store.Service) { s.Name = "9lives" }},
		{"name", func(s *store.Service) { s.Name = "a b" }},
		{"mode", func(s *store.Service) { s.Mode = "" }},
		{"mode", func(s *store.Service) { s.Mode = "poll" }},
		{"addresses", func(s *store.Service) { s.Addresses = nil }},
		{"addresses", func(s *store.Service) {
			*s = store.Service{Name: s.Name, Mode: store.ServicePull, Addresses: []string{"h:1"}}
		}},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = "nohost" }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = ":80" }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = "h:http" }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = "h:70000" }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = s.Addresses[0] }},
		{"concurrency", func(s *store.Service) { s.Concurrency = -1 }},
		{"rate", func(s *store.Service) { s.Rate = -0.5 }},
		{"rate", func(s *store.Service) { s.Rate = math.NaN() }},
		{"burst", func(s *store.Service) { s.Burst = -1 }},
		{"dispatch_timeout", func(s *store.Service) { s.DispatchTimeout = -time.Second }},
		{"dispatch_limit", func(s *store.Service) { s.DispatchLimit = -1 }},
		{"dispatch_limit", func(s *store.Service) { s.DispatchLimit = 1 << 30 }},
		{"dispatch_timeout", func(s *store.Service) { s.DispatchTimeout = time.Microsecond }},
		{"dispatch_timeout", func(s *store.Service) { s.DispatchTimeout = 48 * time.Hour }},
		{"rate", func(s *store.Service) { s.Rate = 1e-300 }},
		{"rate", func(s *store.Service) { s.Rate = 1e308 }},
		{"burst", func(s *store.Service) { s.Burst = 1 << 30 }},
		{"concurrency", func(s *store.Service) { s.Concurrency = 1 << 30 }},
		{"burst", func(s *store.Service) { s.Rate, s.Burst = 0, 3 }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = "a b:80" }},
		{"addresses[1]", func(s *store.Service) { s.Addresses[1] = "h:080" }},
		{"tls.key_file", func(s *store.Service) { s.TLS.KeyFile = "" }},
		{"tls.cert_file", func(s *store.Service) { s.TLS.CertFile = "" }},
		{"tls.enabled", func(s *store.Service) { s.TLS.Enabled = false }},
		{"tls", func(s *store.Service) {
			*s = store.Service{Name: s.Name, Mode: store.ServicePull, TLS: s.TLS}
		}},
	}

	e := newEnv(t, open)
	for _, tt := range tests {
		svc := pushService("bad")
		tt.mod(&svc)
		_, err := e.s.ServicePut(e.ctx, svc, e.now)
		isErr(t, err, store.ErrInvalid)

		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Fatalf("ServicePut(%+v) = %v, want a fault on %s", svc, err, tt.field)
		}

		equal(t, "validate", svc.Validate() != nil, true)
	}

	list, err := e.s.ServiceList(e.ctx)
	ok(t, err)
	equal(t, "nothing stored", len(list), 0)
}

func serviceInUse(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	e.putService(0, 0, 0)
	inst := e.dispatch(e.create(), taskOptions{})
	isErr(t, e.s.ServiceDelete(e.ctx, service), store.ErrInUse)

	tr := e.transition(e.lease(inst.ID))
	tr.TasksDelete = []int64{taskID}
	ok(t, e.apply(tr))
	ok(t, e.s.ServiceDelete(e.ctx, service))
}

// serviceConcurrency checks that claims stop at the cap, and that a
// report or an expired claim frees a slot.
func serviceConcurrency(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	e.putService(3, 0, 0)
	var ids []string
	for range 6 {
		ids = append(ids, e.dispatch(e.create(), taskOptions{}).ID)
	}

	first := e.claimTasks("w1", 10, 0)
	equal(t, "up to the cap", len(first), 3)
	equal(t, "none past the cap", len(e.claimTasks("w2", 10, time.Second)), 0)

	res, err := e.s.StepReport(e.ctx, store.StepReportParams{
		InstanceID: first[0].InstanceID, PointerID: taskID, Attempt: 1, Token: token,
		Kind: store.ReportCompleted, Output: []byte(`{}`), Now: e.at(2 * time.Second),
	})
	ok(t, err)
	equal(t, "report", res.Outcome, store.ReportAccepted)
	equal(t, "report frees a slot", len(e.claimTasks("w2", 10, 3*time.Second)), 1)
	equal(t, "full again", len(e.claimTasks("w2", 10, 4*time.Second)), 0)

	// Every claim ran out (TTL one minute); the two tasks never claimed
	// are the oldest visible, then the expired ones.
	again := e.claimTasks("w3", 10, 2*time.Minute)
	equal(t, "expired claims free slots", len(again), 3)
	equal(t, "never claimed first", []string{again[0].InstanceID, again[1].InstanceID},
		[]string{ids[4], ids[5]})
}

// serviceConcurrentClaimers checks the cap against claimers racing.
func serviceConcurrentClaimers(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	e.putService(4, 0, 0)
	for range 12 {
		e.dispatch(e.create(), taskOptions{})
	}

	got := claimers(t, []store.Store{e.s}, 6, func(s store.Store, who string) ([]store.Task, error) {
		return s.TaskClaim(e.ctx, store.TaskClaimParams{
			Worker: who, Services: []string{service}, Limit: 3, LeaseTTL: time.Minute, Now: e.now,
		})
	})
	total := 0
	for _, tasks := range got {
		total += len(tasks)
	}

	equal(t, "claimed exactly the cap", total, 4)
}

// serviceRate checks the token bucket with the claim's clock: at 10 per
// second with a burst of one, ten seconds allow at most 1 + 100 claims.
func serviceRate(t *testing.T, open func(*testing.T) store.Store) {
	e := newEnv(t, open)
	e.putService(0, 10, 1)
	for range 130 {
		e.dispatch(e.create(), taskOptions{})
	}

	equal(t, "burst", len(e.claimTasks("w1", 10, 0)), 1)
	equal(t, "bucket empty", len(e.claimTasks("w1", 10, 0)), 0)
	equal(t, "a tenth of a second fills one", len(e.claimTasks("w1", 10, 100*time.Millisecond)), 1)

	// Polled every 50 ms the bucket never overflows: each poll adds half
	// a token.
	total := 2
	for d := 150 * time.Millisecond; d <= 10*time.Second; d += 50 * time.Millisecond {
		total += len(e.claimTasks("w1", 10, d))
	}

	if total > 101 || total < 95 {
		t.Fatalf("claimed %d over ten seconds at 10/s, want 95 to 101", total)
	}

	equal(t, "a clock going back adds nothing", len(e.claimTasks("w1", 10, time.Second)), 0)
	_, err := e.s.ServicePut(e.ctx, store.Service{
		Name: service, Mode: store.ServicePull, Rate: 10, Burst: 5,
	}, e.at(10*time.Second))
	ok(t, err)
	equal(t, "a new burst refills", len(e.claimTasks("w1", 10, 10*time.Second)), 5)
}
