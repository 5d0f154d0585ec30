package weftest_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/weftest"
)

const reminder = `
name: reminder
version: 1
steps:
  - {id: ask, type: task, service: mail, action: send, input: "'please reply'"}
  - {id: wait-a-day, type: delay, duration: 24h}
  - {id: remind, type: task, service: mail, action: send, input: "'a reminder'",
     retry: {max_attempts: 3, initial_interval: 1h, max_interval: 2h}, output: sent}
`

// TestKitMovesTheClock runs a definition with a day-long delay and an
// hour-long retry interval by moving the clock: nothing happens before
// the clock reaches each time, and the instance completes after.
func TestKitMovesTheClock(t *testing.T) {
	kit := weftest.New(t)
	// The mail service runs elsewhere in production: register it.
	kit.Services("mail")
	kit.Register([]byte(reminder))
	failures := 1
	kit.Handle("mail", "send", func(_ context.Context, task engine.Task) (any, error) {
		if task.StepID == "remind" && failures > 0 {
			failures--
			return nil, engine.Retryable("busy", "mail server busy")
		}
		return "ok", nil
	})
	id := kit.Start("reminder", `{}`)
	kit.WaitStep(id, "wait-a-day", store.StepSleeping)
	kit.Advance(23 * time.Hour)
	time.Sleep(30 * time.Millisecond)
	if n := len(kit.Calls("mail", "send")); n != 1 {
		t.Fatalf("calls before a day passed = %d, want 1", n)
	}

	kit.Advance(time.Hour)
	kit.WaitStep(id, "remind", store.StepSleeping)
	kit.Advance(time.Hour)
	inst := kit.Wait(id)

	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status = %s, want completed", inst.Status)
	}
	if got := kit.Data(inst)["sent"]; got != "ok" {
		t.Fatalf("data.sent = %v, want ok", got)
	}
	if calls := kit.Calls("mail", "send"); len(calls) != 3 || calls[2].Attempt != 2 {
		t.Fatalf("calls = %d, want 3 with the last at attempt 2", len(calls))
	}
	if took := inst.EndedAt.Sub(inst.CreatedAt); took < 25*time.Hour {
		t.Fatalf("the instance ended %v after the start on the kit's clock, want 25h", took)
	}
}

// TestKitStubs answers with stubbed outputs and errors.
func TestKitStubs(t *testing.T) {
	kit := weftest.New(t)
	// Stubs are Go handlers: they make their service known.
	kit.Stub("db", "find", map[string]any{"id": 7})
	kit.StubError("db", "save", engine.NonRetryable("read_only", "the database is read-only"))
	kit.Register([]byte(`
name: lookup
version: 1
steps:
  - {id: find, type: task, service: db, action: find, output: row}
  - {id: save, type: task, service: db, action: save, input: data.row, retry: {max_attempts: 1}}
`))

	inst := kit.Wait(kit.Start("lookup", `{}`))

	if inst.Status != store.InstanceFailed {
		t.Fatalf("status = %s, want failed", inst.Status)
	}
	calls := kit.Calls("db", "save")
	if len(calls) != 1 || string(calls[0].Input) != `{"id":7}` {
		t.Fatalf("save calls = %v, want one with the found row", calls)
	}
}
