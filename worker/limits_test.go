package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/worker"
)

// TestRegistryConcurrencyAcrossWorkers runs three pull workers of four
// handlers each for a service the registry caps at three attempts at
// once: the handlers, counting themselves, never see more than three.
func TestRegistryConcurrencyAcrossWorkers(t *testing.T) {
	x := serveWeft(t, 0)
	_, err := x.eng.RegisterService(context.Background(), store.Service{
		Name: "svc", Mode: store.ServicePull, Concurrency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}

	var now, peak, calls atomic.Int32
	for range 3 {
		w := newWorker(t, x, worker.Options{Concurrency: 4, PollWait: 200 * time.Millisecond})
		w.Handle("do", func(context.Context, worker.Task) (any, error) {
			calls.Add(1)
			n := now.Add(1)
			defer now.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(50 * time.Millisecond)
			return nil, nil
		})
		runWorker(t, w)
	}

	inst := x.wait(t, x.start(t, manyTasks, `{"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}`))

	if inst.Status != store.InstanceCompleted || calls.Load() != 12 {
		t.Fatalf("instance %s (error %s) after %d calls, want completed after 12",
			inst.Status, inst.Error, calls.Load())
	}
	if peak.Load() > 3 || peak.Load() < 2 {
		t.Fatalf("%d handlers ran at once, want at most the registry's 3", peak.Load())
	}
}
