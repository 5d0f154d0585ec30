package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// Under the race detector the pure-Go SQLite runs about ten times
// slower (every memory access of the translated C is instrumented and
// pointer-checked), so the scale tests shrink there unless WEFT_SOAK=1
// asks for the full sizes.
func scaled(full, reduced int) int {
	if raceEnabled() && os.Getenv("WEFT_SOAK") != "1" {
		return reduced
	}

	return full
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}

	return false
}

const parkedDefinition = `
name: parked
version: 1
steps:
  - {id: park, type: wait, event: go, key: input.group, output: got}
`

// parkedGroups is how many event keys the parked instances share.
const parkedGroups = 100

// TestWaitingInstancesHoldNoGoroutinesNorMemory parks 1 000, then
// 10 000 instances in a wait step and checks that the goroutine count
// and the live heap do not grow with them: nothing is held per waiting
// instance. Then it publishes events for a tenth of them and checks that
// exactly those complete, so the others were really waiting. The test
// keeps no instance ids of its own while it measures.
func TestWaitingInstancesHoldNoGoroutinesNorMemory(t *testing.T) {
	small, large := scaled(1000, 500), scaled(10000, 3000)
	h := newHarness(t)
	h.register(parkedDefinition)
	h.run()

	began := time.Now()
	startParked(h, 0, small)
	waitParked(h, small)
	t.Logf("%d instances started and parked in %v", small, time.Since(began))
	g1, heap1, rss1 := settle()

	began = time.Now()
	startParked(h, small, large)
	waitParked(h, large)
	t.Logf("%d more instances started and parked in %v", large-small, time.Since(began))
	g2, heap2, rss2 := settle()

	t.Logf("goroutines %d -> %d; live heap %d -> %d KiB; resident %d -> %d MiB",
		g1, g2, heap1>>10, heap2>>10, rss1>>20, rss2>>20)
	if g2 > g1+5 {
		t.Fatalf("goroutines grew from %d to %d with %d more waiting instances",
			g1, g2, large-small)
	}

	// Between the two counts the live heap moved by less than 40 KiB
	// either way. The bound, 384 KiB, is 43 bytes per extra instance at
	// full size: less than any record kept per waiting instance would
	// cost (its 36-byte id with a string header already takes 52; a
	// timer or a goroutine takes far more).
	const bound = 384 << 10
	if heap2 > heap1 && heap2-heap1 > bound {
		t.Fatalf("live heap grew by %d bytes (%d per instance) with %d more waiting instances",
			heap2-heap1, (heap2-heap1)/uint64(large-small), large-small)
	}

	began = time.Now()
	completeParked(h, large)
	t.Logf("a tenth of the instances completed by their events in %v", time.Since(began))
}

// startParked starts the instances numbered from to upto of the parked
// definition, instance i in group i%parkedGroups, many at a time.
func startParked(h *harness, from, upto int) {
	h.t.Helper()
	errs := make(chan error, upto-from)
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i := from; i < upto; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			input := fmt.Sprintf(`{"group": "g%d"}`, i%parkedGroups)
			_, _, err := h.e.StartInstance(h.ctx, engine.StartParams{
				Definition: "parked", Input: json.RawMessage(input),
			})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()

	close(errs)
	for err := range errs {
		h.t.Fatalf("starting parked instances: %v", err)
	}
}

// waitParked waits until n instances made a transition and none is due
// any more: each has run up to its wait and released its lease.
func waitParked(h *harness, n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if h.e.Counters().Transitions.Load() >= int64(n) {
			_, due, err := h.st.InstanceNextDue(h.ctx)
			if err != nil {
				h.t.Fatalf("reading the next due instance: %v", err)
			}
			if !due {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %d parked instances", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// completeParked checks that all n instances wait, publishes the events
// of the first tenth of the groups, and checks that exactly the
// instances of those groups complete, each with its group's event.
func completeParked(h *harness, n int) {
	h.t.Helper()
	if got := countStatus(h, store.InstanceRunning); got != n {
		h.t.Fatalf("%d instances running before any event, want %d", got, n)
	}

	const published = parkedGroups / 10
	groups := make([][]string, published)
	for g := range groups {
		groups[g] = groupIDs(h, g)
		if len(groups[g]) != n/parkedGroups {
			h.t.Fatalf("group %d has %d instances, want %d", g, len(groups[g]), n/parkedGroups)
		}
		if s, _ := h.step(groups[g][0], "park"); s.Status != store.StepWaiting {
			h.t.Fatalf("wait of an instance of group %d is %s, want waiting", g, s.Status)
		}
	}

	for g := range groups {
		publish(h, "go", fmt.Sprintf("g%d", g), fmt.Sprintf(`{"group": %d}`, g))
	}

	done := 0
	for g, ids := range groups {
		for _, id := range ids {
			inst := h.wait(id)
			wantCompleted(h.t, inst)
			got := dataOf(h.t, inst.Data)["got"]
			if want := fmt.Sprintf("map[group:%d]", g); fmt.Sprint(got) != want {
				h.t.Fatalf("instance of group %d got %v, want %s", g, got, want)
			}
			done++
		}
	}

	if got := countStatus(h, store.InstanceRunning); got != n-done {
		h.t.Fatalf("%d instances still running, want %d", got, n-done)
	}
}

// groupIDs returns the ids of the parked instances of group g.
func groupIDs(h *harness, g int) []string {
	h.t.Helper()
	f := store.InstanceFilter{
		DefinitionName: "parked", DataPath: "group",
		DataValue: json.RawMessage(fmt.Sprintf(`"g%d"`, g)), PageSize: 1000,
	}

	var ids []string
	for {
		page, err := h.e.ListInstances(h.ctx, f)
		if err != nil {
			h.t.Fatalf("listing group %d: %v", g, err)
		}
		for _, inst := range page.Instances {
			ids = append(ids, inst.ID)
		}
		if page.NextPageToken == "" {
			return ids
		}
		f.PageToken = page.NextPageToken
	}
}

// countStatus counts the instances with a status, a page at a time.
func countStatus(h *harness, status store.InstanceStatus) int {
	h.t.Helper()
	f := store.InstanceFilter{Status: []store.InstanceStatus{status}, PageSize: 1000}
	n := 0
	for {
		page, err := h.e.ListInstances(h.ctx, f)
		if err != nil {
			h.t.Fatalf("listing %s instances: %v", status, err)
		}
		n += len(page.Instances)
		if page.NextPageToken == "" {
			return n
		}
		f.PageToken = page.NextPageToken
	}
}

// settle lets the loops go idle, collects garbage and returns the
// goroutine count, the live heap and the resident set size.
func settle() (goroutines int, heap, rss uint64) {
	time.Sleep(200 * time.Millisecond)
	for range 3 {
		runtime.GC()
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	return runtime.NumGoroutine(), ms.HeapAlloc, residentBytes()
}

// residentBytes reads the process's resident set size on Linux, 0
// elsewhere.
func residentBytes() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}

	return 0
}

// loopSample is the store's counters when an iteration's task ran.
type loopSample struct {
	stats store.Stats
	at    time.Time
}

// TestLongWhileLoopCostsTheSamePerStepAtTheEnd runs a while loop of
// 10 000 iterations, each one Go handler task, and checks with the
// store's counters that a transition near the end writes the same rows
// and bytes, and loads the same rows, as one near the start: the engine
// reads and writes the active part of the instance, not its history.
func TestLongWhileLoopCostsTheSamePerStepAtTheEnd(t *testing.T) {
	iterations := scaled(10000, 1000)
	h := newHarnessNormalSync(t)
	h.register(`
name: counter
version: 1
steps:
  - id: loop
    type: while
    condition: data.n < input.upto
    steps:
      - {id: inc, type: task, service: scale, action: inc, input: data.n, output: n}
`)

	// The handler of iteration n runs once everything before it is
	// committed, so the counters it reads at two iterations bound
	// exactly the work of the iterations between them.
	window := min(500, iterations/5)
	marks := []int{100, 100 + window, iterations - 100 - window, iterations - 100}
	var mu sync.Mutex
	samples := map[int]loopSample{}
	h.e.Handle("scale", "inc", func(_ context.Context, task engine.Task) (any, error) {
		n, err := strconv.Atoi(string(task.Input))
		if err != nil {
			return nil, fmt.Errorf("reading the counter: %w", err)
		}
		if slices.Contains(marks, n) {
			mu.Lock()
			samples[n] = loopSample{stats: h.st.Stats(), at: time.Now()}
			mu.Unlock()
		}
		return n + 1, nil
	})
	h.run()

	began := time.Now()
	id := h.start("counter", fmt.Sprintf(`{"n": 0, "upto": %d}`, iterations))
	inst := h.waitWithin(id, 10*time.Minute)
	wantCompleted(t, inst)
	if n := dataOf(t, inst.Data)["n"]; fmt.Sprint(n) != strconv.Itoa(iterations) {
		t.Fatalf("counter = %v, want %d", n, iterations)
	}
	t.Logf("%d iterations in %v", iterations, time.Since(began))

	mu.Lock()
	defer mu.Unlock()
	first := perIteration(t, samples[marks[0]], samples[marks[1]], marks[1]-marks[0])
	last := perIteration(t, samples[marks[2]], samples[marks[3]], marks[3]-marks[2])
	t.Logf("iterations %d-%d: %s", marks[0], marks[1], first)
	t.Logf("iterations %d-%d: %s", marks[2], marks[3], last)

	for _, c := range []struct {
		what        string
		start, tail float64
	}{
		{"transitions per iteration", first.transitions, last.transitions},
		{"rows written per transition", first.rows, last.rows},
		{"bytes written per transition", first.bytes, last.bytes},
		{"rows loaded per transition", first.loaded, last.loaded},
	} {
		if c.start == 0 || math.Abs(c.tail-c.start) > 0.1*c.start {
			t.Errorf("%s: %.2f at the start, %.2f at the end, want equal within 10%%",
				c.what, c.start, c.tail)
		}
	}
}

// loopCost is what an iteration cost, per transition for the rows and
// bytes.
type loopCost struct {
	transitions, rows, bytes, loaded float64
	perIteration                     time.Duration
}

func (c loopCost) String() string {
	return fmt.Sprintf("%.2f transitions/iteration, %.2f rows, %.0f bytes written "+
		"and %.2f rows loaded per transition, %v per iteration",
		c.transitions, c.rows, c.bytes, c.loaded, c.perIteration)
}

// perIteration turns two samples n iterations apart into costs.
func perIteration(t *testing.T, from, to loopSample, n int) loopCost {
	t.Helper()
	if from.at.IsZero() || to.at.IsZero() {
		t.Fatalf("missing counter samples")
	}

	tr := float64(to.stats.Transitions - from.stats.Transitions)
	if tr == 0 {
		t.Fatalf("no transitions between the samples")
	}

	return loopCost{
		transitions:  tr / float64(n),
		rows:         float64(to.stats.RowsWritten-from.stats.RowsWritten) / tr,
		bytes:        float64(to.stats.BytesWritten-from.stats.BytesWritten) / tr,
		loaded:       float64(to.stats.RowsLoaded-from.stats.RowsLoaded) / tr,
		perIteration: to.at.Sub(from.at) / time.Duration(n),
	}
}

// newHarnessNormalSync is newHarness on a store that syncs at
// checkpoints only: the loop test counts rows and bytes, which the sync
// mode does not change, and runs its iterations one after the other.
func newHarnessNormalSync(t *testing.T) *harness {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	path := filepath.Join(t.TempDir(), "weft.db")
	st, err := sqlite.Open(ctx, path, sqlite.WithSynchronous(sqlite.SynchronousNormal))
	if err != nil {
		cancel()
		t.Fatalf("opening store: %v", err)
	}

	h := &harness{t: t, e: engine.New(st, fastOptions()), st: st, path: path, ctx: ctx}
	registerServices(t, ctx, h.e)
	t.Cleanup(func() {
		h.stop()
		cancel()
	})

	return h
}
