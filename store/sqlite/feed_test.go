package sqlite_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// TestAuditFeed checks that the lifecycle feed lists the audit rows of
// every instance in commit order, with growing positions to resume from.
func TestAuditFeed(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	now := time.UnixMilli(1_700_000_000_000)

	for _, id := range []string{"i1", "i2"} {
		_, _, err := s.InstanceCreate(ctx, store.InstanceCreateParams{
			Instance: store.Instance{
				ID: id, DefinitionName: "d", DefinitionVersion: 1, Status: store.InstanceRunning,
				Input: json.RawMessage("{}"), Data: json.RawMessage("{}"), CreatedAt: now, UpdatedAt: now,
			},
			Audit: []store.AuditEvent{{Type: "instance_started"}, {Type: "note"}},
			Now:   now,
		})
		if err != nil {
			t.Fatalf("creating %s: %v", id, err)
		}
	}

	feed, err := s.AuditFeed(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, f := range feed {
		if i > 0 && f.Position <= feed[i-1].Position {
			t.Fatalf("position %d after %d", f.Position, feed[i-1].Position)
		}
		got = append(got, f.Event.InstanceID+":"+f.Event.Type)
	}
	want := []string{"i1:instance_started", "i1:note", "i2:instance_started", "i2:note"}
	if len(got) != len(want) {
		t.Fatalf("feed = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("feed = %v, want %v", got, want)
		}
	}

	rest, err := s.AuditFeed(ctx, feed[1].Position, 1)
	if err != nil || len(rest) != 1 || rest[0].Position != feed[2].Position {
		t.Fatalf("feed after %d, limit 1 = %v, %v; want the third row", feed[1].Position, rest, err)
	}
}
