package sqlite_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// benchParallelism is how many goroutines per processor the parallel
// benchmark runs, so that many transitions wait for each commit.
const benchParallelism = 32

// benchInstance is one leased instance whose root step a benchmark keeps
// rewriting.
type benchInstance struct {
	inst store.Instance
	root store.Step
}

// newBenchInstances creates n instances, each with a root step, and
// leases them for the whole benchmark.
func newBenchInstances(b *testing.B, s *sqlite.Store, n int) []*benchInstance {
	b.Helper()

	ctx := b.Context()
	now := time.Now()
	out := make([]*benchInstance, n)
	for i := range out {
		inst, _, err := s.InstanceCreate(ctx, store.InstanceCreateParams{
			Instance: store.Instance{
				ID: fmt.Sprintf("bench-%05d", i), DefinitionName: "bench", DefinitionVersion: 1,
				Status: store.InstanceRunning, Input: []byte(`{}`), Data: []byte(`{}`),
				NextPointer: 2,
			},
			Steps: []store.Step{{ID: 1, StepID: "$root", Status: store.StepRunning, Attempt: 1}},
			Now:   now,
		})
		if err != nil {
			b.Fatalf("creating instance: %v", err)
		}

		inst, err = s.InstanceLease(ctx, inst.ID, "bench", time.Hour)
		if err != nil {
			b.Fatalf("leasing instance: %v", err)
		}

		root := store.Step{ID: 1, StepID: "$root", Status: store.StepRunning, Attempt: 1, Rev: 1}
		out[i] = &benchInstance{inst: inst, root: root}
	}

	return out
}

// step applies one transition to bi: the instance's data, its root step
// and two audit rows, keeping the lease.
func (bi *benchInstance) step(b *testing.B, s *sqlite.Store, n int) {
	bi.root.State = fmt.Appendf(bi.root.State[:0], `{"n":%d}`, n)
	tr := &store.Transition{
		InstanceID: bi.inst.ID, Owner: bi.inst.LeaseOwner, Epoch: bi.inst.LeaseEpoch,
		Wake: bi.inst.Wake,
		Instance: store.InstanceUpdate{
			Status: store.InstanceRunning, Data: []byte(`{"step":"done"}`), NextPointer: 2,
		},
		Steps: []store.Step{bi.root},
		Audit: []store.AuditEvent{
			{Type: "step_completed", StepID: "$root", PointerID: 1, Attempt: 1},
			{Type: "step_started", StepID: "$root", PointerID: 1, Attempt: 1},
		},
		KeepLease: true,
		Now:       time.Now(),
	}
	if err := s.TransitionApply(b.Context(), []*store.Transition{tr})[0]; err != nil {
		b.Fatalf("applying transition: %v", err)
	}

	bi.root.Rev++
}

// report adds transitions per second and commits per transition.
func report(b *testing.B, s *sqlite.Store, start store.Stats) {
	stats := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transitions/s")
	b.ReportMetric(float64(stats.Commits-start.Commits)/float64(b.N), "commits/op")
}

func BenchmarkTransition(b *testing.B) {
	s := openTemp(b, sqlite.WithSynchronous(sqlite.SynchronousFull))
	insts := newBenchInstances(b, s, 100)
	start := s.Stats()

	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		insts[i%len(insts)].step(b, s, i)
	}

	report(b, s, start)
}

func BenchmarkTransitionParallel(b *testing.B) {
	s := openTemp(b, sqlite.WithSynchronous(sqlite.SynchronousFull))
	insts := newBenchInstances(b, s, runtime.GOMAXPROCS(0)*benchParallelism)
	var next atomic.Int64
	start := s.Stats()

	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		bi := insts[next.Add(1)-1]
		for i := 0; pb.Next(); i++ {
			bi.step(b, s, i)
		}
	})

	report(b, s, start)
}
