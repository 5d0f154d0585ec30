package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

const waitsForever = `
name: waits
version: 1
steps:
  - {id: hold, type: wait, event: never, key: '"k"'}
`

// TestPurgeDeletesFinishedPastRetention: the purge loop deletes the
// instances that finished more than Retention ago, in batches, and
// leaves running ones alone.
func TestPurgeDeletesFinishedPastRetention(t *testing.T) {
	opts := fastOptions()
	opts.Retention = 3 * time.Second
	opts.PurgeInterval = 20 * time.Millisecond
	opts.PurgeBatch = 2
	h := newHarnessAt(t, filepath.Join(t.TempDir(), "weft.db"), opts)
	h.e.Handle("nodes", "work", func(context.Context, engine.Task) (any, error) { return 1, nil })
	h.register(oneStep)
	h.register(waitsForever)
	h.run()

	waiting := h.start("waits", `{}`)
	var done []string
	for range 5 {
		id := h.start("one", `{}`)
		inst := h.wait(id)
		if inst.Status != store.InstanceCompleted {
			t.Fatalf("instance %s is %s", id, inst.Status)
		}

		done = append(done, id)
	}

	h.waitFor("purge", func() bool { return h.e.Counters().Purged.Load() == 5 })
	for _, id := range done {
		if _, err := h.st.InstanceGet(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("purged instance %s: error = %v, want ErrNotFound", id, err)
		}
	}

	inst, err := h.st.InstanceGet(h.ctx, waiting)
	if err != nil || inst.Status != store.InstanceRunning {
		t.Fatalf("waiting instance: %v, status %s; want it kept running", err, inst.Status)
	}
}
