package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/weftest"
)

// harness is an engine on a real SQLite file with fast test settings.
type harness struct {
	t    *testing.T
	e    *engine.Engine
	st   store.Store
	path string
	ctx  context.Context
}

// testServices are the services this package's definitions name; every
// engine a test makes registers them (pull mode), since a definition may
// name only known services.
var testServices = []string{
	"bench", "big", "calc", "cap", "clock", "crash", "fin", "greeter", "grow", "hb", "local",
	"math", "no", "nobody", "nodes", "noisy", "num", "outside", "p", "par", "payments", "re",
	"rec", "remote", "renderer", "retry", "scale", "shop", "slow", "storage", "sus", "svc",
	"t", "trip", "wide", "work",
}

// registerServices registers testServices in e's registry.
func registerServices(t testing.TB, ctx context.Context, e *engine.Engine) {
	t.Helper()
	weftest.RegisterServices(t, ctx, e, testServices...)
}

// fastOptions are engine options scaled down for tests.
func fastOptions() engine.Options {
	return engine.Options{
		PollInterval: 20 * time.Millisecond,
		LeaseTTL:     5 * time.Second,
		TaskLeaseTTL: 2 * time.Second,
		CancelGrace:  5 * time.Second,
	}
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), fastOptions())
}

// opener opens the store a harness runs on; each call opens a new
// handle on the same database, as a restarted process would.
type opener func(ctx context.Context) (store.Store, error)

// sqliteAt opens the SQLite file at path.
func sqliteAt(path string) opener {
	return func(ctx context.Context) (store.Store, error) { return sqlite.Open(ctx, path) }
}

// postgresAt opens a fresh PostgreSQL schema of the test's (it skips
// the test when there is no server).
func postgresAt(t *testing.T) opener {
	url, schema := pgtest.Schema(t)

	return func(ctx context.Context) (store.Store, error) {
		return postgres.Open(ctx, url, postgres.WithSchema(schema))
	}
}

// bothStores makes, per store a case runs on, an opener for one
// subtest.
var bothStores = map[string]func(t *testing.T) opener{
	"sqlite": func(t *testing.T) opener {
		return sqliteAt(filepath.Join(t.TempDir(), "weft.db"))
	},
	"postgres": postgresAt,
}

func newHarnessAt(t *testing.T, path string, opts engine.Options) *harness {
	t.Helper()

	h := newHarnessOn(t, sqliteAt(path), opts)
	h.path = path

	return h
}

func newHarnessOn(t *testing.T, open opener, opts engine.Options) *harness {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	st, err := open(ctx)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}

	e := engine.New(st, opts)
	registerServices(t, ctx, e)
	h := &harness{t: t, e: e, st: st, ctx: ctx}
	t.Cleanup(func() {
		h.stop()
		cancel()
	})

	return h
}

// run starts the engine's loops.
func (h *harness) run() {
	h.t.Helper()
	if err := h.e.Start(h.ctx); err != nil {
		h.t.Fatalf("starting engine: %v", err)
	}
}

var stopOnce sync.Map

func (h *harness) stop() {
	if _, done := stopOnce.LoadOrStore(h, true); done {
		return
	}
	h.e.Stop()
	_ = h.st.Close()
}

func (h *harness) register(src string) {
	h.t.Helper()
	if _, err := h.e.RegisterDefinition(h.ctx, []byte(src)); err != nil {
		h.t.Fatalf("registering definition: %v", err)
	}
}

func (h *harness) start(def string, input string) string {
	h.t.Helper()
	inst, _, err := h.e.StartInstance(h.ctx, engine.StartParams{
		Definition: def, Input: json.RawMessage(input),
	})
	if err != nil {
		h.t.Fatalf("starting %s: %v", def, err)
	}

	return inst.ID
}

// wait blocks until the instance is final and returns it.
func (h *harness) wait(id string) store.Instance {
	h.t.Helper()
	return h.waitWithin(id, time.Minute)
}

// waitWithin waits for the instance to end, failing the test after d:
// long runs on a loaded machine ask for more than wait gives.
func (h *harness) waitWithin(id string, d time.Duration) store.Instance {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, d)
	defer cancel()

	inst, err := h.e.Wait(ctx, id)
	if err != nil {
		h.t.Fatalf("waiting for %s: %v (status %s)", id, err, inst.Status)
	}

	return inst
}

// waitFor polls until cond holds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// step returns the newest step row of a definition step id.
func (h *harness) step(id, stepID string) (store.Step, bool) {
	h.t.Helper()
	steps, err := h.e.Steps(h.ctx, id)
	if err != nil {
		h.t.Fatalf("listing steps: %v", err)
	}

	var out store.Step
	found := false
	for _, s := range steps {
		if s.StepID == stepID {
			out, found = s, true
		}
	}

	return out, found
}

// audit returns the audit rows of an instance.
func (h *harness) audit(id string) []store.AuditEvent {
	h.t.Helper()
	evs, err := h.e.Audit(h.ctx, id, 0, 100000)
	if err != nil {
		h.t.Fatalf("listing audit: %v", err)
	}

	return evs
}

// auditTypes returns the audit types about one step, in order.
func auditTypes(evs []store.AuditEvent, stepID string) []string {
	var out []string
	for _, ev := range evs {
		if ev.StepID == stepID {
			out = append(out, ev.Type)
		}
	}

	return out
}

func dataOf(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}

	return m
}

// recorder records handler calls in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()

	return append([]string(nil), r.calls...)
}

func (r *recorder) count(s string) int {
	n := 0
	for _, c := range r.list() {
		if c == s {
			n++
		}
	}

	return n
}

// countHandler records "inc:<n>" and returns n+1 for an integer input.
func countHandler(rec *recorder) engine.HandlerFunc {
	return func(_ context.Context, task engine.Task) (any, error) {
		var n int
		if err := json.Unmarshal(task.Input, &n); err != nil {
			return nil, err
		}
		rec.add(fmt.Sprintf("inc:%d", n))
		return n + 1, nil
	}
}

// jsonUnmarshal decodes raw into v.
func jsonUnmarshal(raw json.RawMessage, v any) error {
	return json.Unmarshal(raw, v)
}
