package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/sqlite"
)

const threeSteps = `
name: three
version: 1
steps:
  - {id: one, type: task, service: bench, action: noop}
  - {id: two, type: task, service: bench, action: noop}
  - {id: three, type: task, service: bench, action: noop}
`

// BenchmarkThreeStepInstance runs b.N instances of three trivial
// sequential steps end to end on SQLite with a full sync, all started at
// once, and reports instances per second and the p50/p99 time from
// start to end divided by the three steps.
func BenchmarkThreeStepInstance(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	e := engine.New(st, engine.Options{PollInterval: 50 * time.Millisecond})
	e.Handle("bench", "noop", func(context.Context, engine.Task) (any, error) { return 1, nil })
	if _, err := e.RegisterDefinition(ctx, []byte(threeSteps)); err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Stop()

	b.ResetTimer()
	began := time.Now()
	ids := startMany(b, e, b.N)
	per := waitMany(b, e, ids)
	elapsed := time.Since(began)
	b.StopTimer()

	slices.Sort(per)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "instances/s")
	b.ReportMetric(float64(per[len(per)/2].Microseconds())/1000, "p50-ms/step")
	b.ReportMetric(float64(per[len(per)*99/100].Microseconds())/1000, "p99-ms/step")
	stats := st.Stats()
	b.ReportMetric(float64(stats.Commits)/float64(b.N), "commits/instance")
}

func startMany(b *testing.B, e *engine.Engine, n int) []string {
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			inst, _, err := e.StartInstance(context.Background(), engine.StartParams{Definition: "three"})
			if err != nil {
				b.Error(err)
				return
			}
			ids[i] = inst.ID
		}()
	}
	wg.Wait()

	return ids
}

func waitMany(b *testing.B, e *engine.Engine, ids []string) []time.Duration {
	per := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		inst, err := e.Wait(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if inst.Status != store.InstanceCompleted {
			b.Fatalf("instance %s is %s", id, inst.Status)
		}
		per = append(per, inst.EndedAt.Sub(inst.CreatedAt)/3)
	}

	return per
}

// BenchmarkThreeStepInstancePostgres is BenchmarkThreeStepInstance on
// PostgreSQL, with one, two and three engines (each its own store handle
// and node id) sharing a fresh schema.
func BenchmarkThreeStepInstancePostgres(b *testing.B) {
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			benchPostgresNodes(b, nodes)
		})
	}
}

func benchPostgresNodes(b *testing.B, nodes int) {
	ctx := context.Background()
	url, schema := pgtest.Schema(b)
	engines := make([]*engine.Engine, nodes)
	for i := range engines {
		st := pgtest.OpenSchema(b, url, schema)
		e := engine.New(st, engine.Options{
			PollInterval: 50 * time.Millisecond, NodeID: fmt.Sprintf("node-%d", i+1),
		})
		e.Handle("bench", "noop", func(context.Context, engine.Task) (any, error) { return 1, nil })
		engines[i] = e
	}

	if _, err := engines[0].RegisterDefinition(ctx, []byte(threeSteps)); err != nil {
		b.Fatal(err)
	}

	for _, e := range engines {
		if err := e.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(e.Stop)
	}

	b.ResetTimer()
	began := time.Now()
	ids := startMany(b, engines[0], b.N)
	per := waitMany(b, engines[0], ids)
	elapsed := time.Since(began)
	b.StopTimer()

	slices.Sort(per)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "instances/s")
	b.ReportMetric(float64(per[len(per)/2].Microseconds())/1000, "p50-ms/step")
	b.ReportMetric(float64(per[len(per)*99/100].Microseconds())/1000, "p99-ms/step")
}
