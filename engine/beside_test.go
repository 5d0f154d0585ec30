package engine_test

import (
	"slices"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// newClockHarness is a harness whose engine runs on a clock the test
// moves.
func newClockHarness(t *testing.T) (*harness, *manualClock) {
	t.Helper()
	clock := newManualClock()
	opts := fastOptions()
	opts.Clock = clock

	return newHarnessAt(t, t.TempDir()+"/weft.db", opts), clock
}

// TestScheduleRunsBesideMainPath runs a block an hour after the
// schedule step, beside the main path: the main path goes on at once,
// the block has not run before the clock moves an hour, it runs once
// after, and only then does the instance complete.
func TestScheduleRunsBesideMainPath(t *testing.T) {
	h, clock := newClockHarness(t)
	h.register(`
name: remind
version: 1
steps:
  - {id: first, type: task, service: rec, action: note, input: "'first'"}
  - id: later
    type: schedule
    duration: 1h
    steps:
      - {id: nudge, type: task, service: rec, action: note, input: "'nudge:' + string(data.n)"}
  - {id: main, type: task, service: rec, action: note, input: "'main'"}
  - {id: count, type: task, service: rec, action: inc, input: data.n, output: n}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.e.Handle("rec", "inc", countHandler(&rec))
	h.run()

	id := begin(h, "remind", `{"n": 0}`)
	waitStepStatus(h, id, "count", store.StepCompleted)
	waitStepStatus(h, id, "later", store.StepSleeping)
	time.Sleep(50 * time.Millisecond)
	checkStatus(t, instanceNow(h, id), store.InstanceRunning)
	if got := rec.list(); !slices.Equal(got, []string{"first", "main", "inc:0"}) {
		t.Fatalf("calls before the hour = %v", got)
	}

	clock.add(59 * time.Minute)
	time.Sleep(50 * time.Millisecond)
	if rec.count("nudge:1") != 0 {
		t.Fatal("the block ran before its hour")
	}
	clock.add(time.Minute)
	wantCompleted(t, h.wait(id))

	want := []string{"first", "main", "inc:0", "nudge:1"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
}

// TestRecurUntilCondition runs a block every ten minutes beside a wait:
// two runs happen as the clock moves, then the event makes the stop
// condition hold, which drops the pending run, and the instance
// completes without a third.
func TestRecurUntilCondition(t *testing.T) {
	h, clock := newClockHarness(t)
	h.register(`
name: ping
version: 1
steps:
  - id: tick
    type: recur
    interval: 10m
    cancel_if: data.done == true
    steps:
      - {id: ping, type: task, service: rec, action: note, input: "'ping:' + string(iteration)"}
  - {id: finish, type: wait, event: finish, key: "'k'", output: done}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "ping", `{}`)
	recurWaiting := func() bool {
		return slices.ContainsFunc(stepRows(h, id, "tick"), func(s store.Step) bool {
			return s.Status == store.StepWaiting
		})
	}
	for run := 1; run <= 2; run++ {
		h.waitFor("the recur to wait", recurWaiting)
		clock.add(10 * time.Minute)
		h.waitFor("a ping", func() bool { return len(rec.list()) == run })
	}
	h.waitFor("the recur to wait", recurWaiting)
	publish(h, "finish", "k", `true`)
	wantCompleted(t, h.wait(id))

	clock.add(time.Hour)
	time.Sleep(50 * time.Millisecond)
	if got := rec.list(); !slices.Equal(got, []string{"ping:0", "ping:1"}) {
		t.Fatalf("calls = %v, want two pings", got)
	}
	if got := len(seqsOf(h.audit(id), "tick", "recur_stopped")); got != 1 {
		t.Fatalf("recur_stopped rows = %d, want 1", got)
	}
	if timers, _ := h.st.TimerList(h.ctx, id); len(timers) != 0 {
		t.Fatalf("timers left: %+v", timers)
	}
}

// TestScheduleInForeachSeesItem arms a schedule in each foreach
// iteration: each block runs after the delay with its own item, after
// the loop and the main path have gone on.
func TestScheduleInForeachSeesItem(t *testing.T) {
	h, clock := newClockHarness(t)
	h.register(`
name: each-later
version: 1
steps:
  - id: each
    type: foreach
    items: "['a', 'b']"
    steps:
      - id: later
        type: schedule
        duration: 30m
        steps:
          - {id: nudge, type: task, service: rec, action: note, input: "'nudge:' + item"}
  - {id: main, type: task, service: rec, action: note, input: "'main'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "each-later", `{}`)
	waitStepStatus(h, id, "main", store.StepCompleted)
	h.waitFor("both schedules to sleep", func() bool {
		n := 0
		for _, s := range stepRows(h, id, "later") {
			if s.Status == store.StepSleeping {
				n++
			}
		}
		return n == 2
	})
	clock.add(30 * time.Minute)
	wantCompleted(t, h.wait(id))

	got := rec.list()
	if len(got) != 3 || got[0] != "main" {
		t.Fatalf("calls = %v, want main then the two nudges", got)
	}
	nudges := slices.Clone(got[1:])
	slices.Sort(nudges)
	if !slices.Equal(nudges, []string{"nudge:a", "nudge:b"}) {
		t.Fatalf("nudges = %v, want one per item", nudges)
	}
}

// TestEndStopsBesideBlocks ends the instance while a schedule is
// pending: the instance completes at once and the block never runs.
func TestEndStopsBesideBlocks(t *testing.T) {
	h, clock := newClockHarness(t)
	h.register(`
name: end-beside
version: 1
steps:
  - id: later
    type: schedule
    duration: 1h
    steps:
      - {id: nudge, type: task, service: rec, action: note, input: "'nudge'"}
  - {id: main, type: task, service: rec, action: note, input: "'main'"}
  - {id: stop, type: end}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "end-beside", `{}`)
	wantCompleted(t, h.wait(id))
	clock.add(2 * time.Hour)
	time.Sleep(50 * time.Millisecond)

	if got := rec.list(); !slices.Equal(got, []string{"main"}) {
		t.Fatalf("calls = %v, want only main", got)
	}
	if timers, _ := h.st.TimerList(h.ctx, id); len(timers) != 0 {
		t.Fatalf("timers left: %+v", timers)
	}
}
