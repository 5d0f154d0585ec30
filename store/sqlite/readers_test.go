package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// TestInstanceLoadWithOneReader loads an instance, both ways, through a
// read pool of a single connection. The load's read transaction holds
// that connection, so a statement the load meets for the first time must
// not wait for a second one from the pool: when every connection is held
// so, nothing frees one and the engine stops.
func TestInstanceLoadWithOneReader(t *testing.T) {
	s := openTemp(t, sqlite.WithReaders(1))
	now := time.Now().UTC().Truncate(time.Millisecond)
	_, _, err := s.InstanceCreate(t.Context(), store.InstanceCreateParams{
		Instance: store.Instance{
			ID: "inst-1", DefinitionName: "def", DefinitionVersion: 1,
			Status: store.InstanceRunning, Input: []byte(`{}`), Data: []byte(`{}`),
			NextPointer: 2, CreatedAt: now,
		},
		Steps: []store.Step{{ID: 1, StepID: "$root", Status: store.StepPending, Work: true}},
		Now:   now,
	})
	if err != nil {
		t.Fatalf("creating instance: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	for _, all := range []bool{false, true, false} {
		ld, err := s.InstanceLoad(ctx, store.InstanceLoadParams{InstanceID: "inst-1", Now: now, All: all})
		if err != nil {
			t.Fatalf("loading instance (all %v): %v", all, err)
		}

		if len(ld.Steps) != 1 {
			t.Fatalf("loading instance (all %v): %d steps, want 1", all, len(ld.Steps))
		}
	}
}
