package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// TestKindSequence runs nested sequences: every step runs once, in
// order, and each sequence completes after its last step.
func TestKindSequence(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: seq
version: 1
steps:
  - id: outer
    type: sequence
    steps:
      - {id: a, type: task, service: rec, action: span, input: "'a'"}
      - id: inner
        type: sequence
        steps:
          - {id: b, type: task, service: rec, action: span, input: "'b'"}
          - {id: c, type: task, service: rec, action: span, input: "'c'"}
  - {id: d, type: task, service: rec, action: span, input: "'d'"}
`)
	var rec recorder
	h.e.Handle("rec", "span", spanHandler(&rec))
	h.run()

	id := begin(h, "seq", `{}`)
	wantCompleted(t, h.wait(id))

	want := []string{
		"start:a", "end:a", "start:b", "end:b", "start:c", "end:c", "start:d", "end:d",
	}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	for _, sid := range []string{"outer", "inner"} {
		if s, _ := h.step(id, sid); s.Status != store.StepCompleted {
			t.Fatalf("step %s is %s, want completed", sid, s.Status)
		}
	}
}

// TestKindParallel runs three branches, one holding a nested parallel:
// all four leaves run at once, the nested join waits for its two, and
// the outer join runs once, after everything.
func TestKindParallel(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: par
version: 1
defaults: {retry: {max_attempts: 1}}
steps:
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: p1, type: task, service: par, action: leaf, input: "'p1'", output: p1}
      - steps:
          - {id: p2, type: task, service: par, action: leaf, input: "'p2'", output: p2}
      - steps:
          - id: inner
            type: parallel
            branches:
              - steps:
                  - {id: n1, type: task, service: par, action: leaf, input: "'n1'", output: n1}
              - steps:
                  - {id: n2, type: task, service: par, action: leaf, input: "'n2'", output: n2}
          - {id: tail, type: task, service: par, action: note, input: "[data.n1, data.n2]",
             output: tail}
  - {id: join, type: task, service: par, action: note, input: "[data.p1, data.p2, data.tail]"}
`)
	var rec recorder
	g := newGate(4)
	h.e.Handle("par", "leaf", func(ctx context.Context, task engine.Task) (any, error) {
		rec.add(inputText(task.Input))
		if err := g.arrive(ctx); err != nil {
			return nil, err
		}
		return json.RawMessage(task.Input), nil
	})
	h.e.Handle("par", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "par", `{}`)
	wantCompleted(t, h.wait(id))

	calls := rec.list()
	leaves := slices.Clone(calls[:4])
	slices.Sort(leaves)
	if !slices.Equal(leaves, []string{"n1", "n2", "p1", "p2"}) {
		t.Fatalf("first four calls = %v, want the four leaves", calls[:4])
	}
	want := []string{`["n1","n2"]`, `["p1","p2",["n1","n2"]]`}
	if !slices.Equal(calls[4:], want) {
		t.Fatalf("calls after the leaves = %v, want %v", calls[4:], want)
	}
	for _, sid := range []string{"fan", "inner"} {
		if s, _ := h.step(id, sid); s.Status != store.StepCompleted {
			t.Fatalf("step %s is %s, want completed", sid, s.Status)
		}
	}
}

// TestKindForeachSequential runs the items in order, each iteration's
// body to its end before the next iteration starts, with item and index
// in expressions.
func TestKindForeachSequential(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: each-seq
version: 1
steps:
  - id: loop
    type: foreach
    items: input.items
    steps:
      - {id: first, type: task, service: rec, action: span,
         input: "'first:' + item + string(index)"}
      - {id: second, type: task, service: rec, action: span, input: "'second:' + item"}
  - {id: after, type: task, service: rec, action: span, input: "'after'"}
`)
	var rec recorder
	h.e.Handle("rec", "span", spanHandler(&rec))
	h.run()

	id := begin(h, "each-seq", `{"items": ["a", "b", "c"]}`)
	wantCompleted(t, h.wait(id))

	var want []string
	for i, item := range []string{"a", "b", "c"} {
		first := fmt.Sprintf("first:%s%d", item, i)
		want = append(want, "start:"+first, "end:"+first,
			"start:second:"+item, "end:second:"+item)
	}
	want = append(want, "start:after", "end:after")
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls =\n%v\nwant\n%v", got, want)
	}
}

// TestKindForeachParallelCap runs eight items with max_concurrency 2:
// the handler never sees more than two at once, and does see two.
func TestKindForeachParallelCap(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: each-cap
version: 1
steps:
  - id: loop
    type: foreach
    items: input.items
    parallel: true
    max_concurrency: 2
    steps:
      - {id: busy, type: task, service: cap, action: busy, input: item}
`)
	var cur, peak, calls atomic.Int32
	h.e.Handle("cap", "busy", func(ctx context.Context, _ engine.Task) (any, error) {
		calls.Add(1)
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return nil, sleepCtx(ctx, 25*time.Millisecond)
	})
	h.run()

	id := begin(h, "each-cap", `{"items": [1, 2, 3, 4, 5, 6, 7, 8]}`)
	wantCompleted(t, h.wait(id))

	if got := calls.Load(); got != 8 {
		t.Fatalf("handler ran %d times, want 8", got)
	}
	if got := peak.Load(); got != 2 {
		t.Fatalf("peak concurrency = %d, want 2", got)
	}
}

// TestKindForeachResults collects each iteration's result in item order
// although the iterations finish in reverse order, and shows that
// steps.<id>.output inside an iteration is that iteration's own.
func TestKindForeachResults(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: each-result
version: 1
steps:
  - id: loop
    type: foreach
    items: input.items
    parallel: true
    result: "{'index': index, 'item': item, 'y': steps.y.output}"
    output: results.all
    steps:
      - {id: x, type: task, service: calc, action: x, input: item}
      - {id: y, type: task, service: calc, action: y, input: "{'own': steps.x.output, 'item': item}"}
`)
	h.e.Handle("calc", "x", func(ctx context.Context, task engine.Task) (any, error) {
		var n int
		if err := json.Unmarshal(task.Input, &n); err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, time.Duration(5-n)*15*time.Millisecond); err != nil {
			return nil, err
		}
		return n * 10, nil
	})
	h.e.Handle("calc", "y", func(ctx context.Context, task engine.Task) (any, error) {
		var in struct{ Own, Item int }
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, err
		}
		if in.Own != in.Item*10 {
			return nil, engine.NonRetryable("scope", fmt.Sprintf("item %d saw x = %d", in.Item, in.Own))
		}
		return in.Own + in.Item, nil
	})
	h.run()

	id := begin(h, "each-result", `{"items": [1, 2, 3, 4]}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	wantJSON(t, "data", inst.Data, `{"items":[1,2,3,4],"results":{"all":[
		{"index":0,"item":1,"y":11},{"index":1,"item":2,"y":22},
		{"index":2,"item":3,"y":33},{"index":3,"item":4,"y":44}]}}`)
}

// TestKindForeachNested runs a sequential foreach inside a parallel one:
// each inner iteration sees its own item and index and the outer
// iteration's step output.
func TestKindForeachNested(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: each-nested
version: 1
steps:
  - id: outer
    type: foreach
    items: input.outer
    parallel: true
    steps:
      - {id: pick, type: task, service: rec, action: pick, input: item}
      - id: inner
        type: foreach
        items: input.inner
        steps:
          - {id: pair, type: task, service: rec, action: note,
             input: "string(steps.pick.output) + item + string(index)"}
`)
	var rec recorder
	h.e.Handle("rec", "pick", func(ctx context.Context, task engine.Task) (any, error) {
		if string(task.Input) == "1" {
			if err := sleepCtx(ctx, 30*time.Millisecond); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(task.Input), nil
	})
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "each-nested", `{"outer": [1, 2], "inner": ["a", "b"]}`)
	wantCompleted(t, h.wait(id))

	var ones, twos []string
	for _, c := range rec.list() {
		if strings.HasPrefix(c, "1") {
			ones = append(ones, c)
		} else {
			twos = append(twos, c)
		}
	}
	if !slices.Equal(ones, []string{"1a0", "1b1"}) || !slices.Equal(twos, []string{"2a0", "2b1"}) {
		t.Fatalf("calls = %v, want 1a0 before 1b1 and 2a0 before 2b1", rec.list())
	}
}

// TestKindIf evaluates several if steps in a row, each on its own when
// it is reached: a later condition sees data an earlier branch wrote.
func TestKindIf(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: ifs
version: 1
steps:
  - id: first
    type: if
    condition: input.n > 0
    steps:
      - {id: pos, type: task, service: rec, action: note, input: "'pos'", output: flag}
    else:
      - {id: nonpos, type: task, service: rec, action: note, input: "'nonpos'"}
  - id: second
    type: if
    condition: data.flag == 'pos'
    steps:
      - {id: flagged, type: task, service: rec, action: note, input: "'flagged'"}
  - id: third
    type: if
    condition: input.n > 10
    steps:
      - {id: big, type: task, service: rec, action: note, input: "'big'"}
    else:
      - {id: small, type: task, service: rec, action: note, input: "'small'"}
  - {id: last, type: task, service: rec, action: note, input: "'last'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	tests := []struct {
		n    int
		want []string
	}{
		{5, []string{"pos", "flagged", "small", "last"}},
		{20, []string{"pos", "flagged", "big", "last"}},
		{-1, []string{"nonpos", "small", "last"}},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, "ifs", fmt.Sprintf(`{"n": %d}`, tt.n))
		wantCompleted(t, h.wait(id))

		if got := rec.list()[before:]; !slices.Equal(got, tt.want) {
			t.Fatalf("n=%d: calls = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// TestKindSwitch takes the first case that holds, else the default; a
// switch with no match and no default runs nothing and completes.
func TestKindSwitch(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: switch
version: 1
steps:
  - id: route
    type: switch
    cases:
      - when: input.n > 10
        steps: [{id: big, type: task, service: rec, action: note, input: "'big'"}]
      - when: input.n > 0
        steps: [{id: pos, type: task, service: rec, action: note, input: "'pos'"}]
    default:
      - {id: other, type: task, service: rec, action: note, input: "'other'"}
  - id: strict
    type: switch
    cases:
      - when: input.n == 42
        steps: [{id: answer, type: task, service: rec, action: note, input: "'answer'"}]
  - {id: last, type: task, service: rec, action: note, input: "'last'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	tests := []struct {
		n    int
		want []string
	}{
		{20, []string{"big", "last"}},
		{5, []string{"pos", "last"}},
		{-3, []string{"other", "last"}},
		{42, []string{"big", "answer", "last"}},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, "switch", fmt.Sprintf(`{"n": %d}`, tt.n))
		wantCompleted(t, h.wait(id))

		if got := rec.list()[before:]; !slices.Equal(got, tt.want) {
			t.Fatalf("n=%d: calls = %v, want %v", tt.n, got, tt.want)
		}
		if s, _ := h.step(id, "strict"); s.Status != store.StepCompleted {
			t.Fatalf("n=%d: strict switch is %s, want completed", tt.n, s.Status)
		}
	}
}

// TestKindWhile repeats while the data the body writes keeps the
// condition true, with iteration visible in the body.
func TestKindWhile(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: loop
version: 1
steps:
  - id: loop
    type: while
    condition: data.count < 3
    steps:
      - {id: inc, type: task, service: rec, action: inc, input: {n: data.count, it: iteration},
         output: count}
  - {id: last, type: task, service: rec, action: note, input: "'count=' + string(data.count)"}
`)
	var rec recorder
	h.e.Handle("rec", "inc", func(_ context.Context, task engine.Task) (any, error) {
		var in struct{ N, It int }
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, err
		}
		rec.add(fmt.Sprintf("it=%d n=%d", in.It, in.N))
		return in.N + 1, nil
	})
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "loop", `{"count": 0}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	want := []string{"it=0 n=0", "it=1 n=1", "it=2 n=2", "count=3"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if got := dataOf(t, inst.Data)["count"]; got != 3.0 {
		t.Fatalf("data.count = %v, want 3", got)
	}
}

// TestKindWhileMaxIterations fails the instance with a clear error when
// the loop would pass its cap; the body ran exactly max_iterations times.
func TestKindWhileMaxIterations(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: spin
version: 1
steps:
  - id: spin
    type: while
    condition: "true"
    max_iterations: 3
    steps:
      - {id: body, type: task, service: rec, action: note, input: "'body'"}
  - {id: never, type: task, service: rec, action: note, input: "'never'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "spin", `{}`)
	inst := h.wait(id)

	if inst.Status != store.InstanceFailed || inst.Reason != "max_iterations" {
		t.Fatalf("instance = %s (%s), want failed (max_iterations)", inst.Status, inst.Reason)
	}
	if got := rec.list(); !slices.Equal(got, []string{"body", "body", "body"}) {
		t.Fatalf("calls = %v, want the body three times", got)
	}
	e := dataOf(t, inst.Error)
	if e["code"] != "max_iterations" || e["step_id"] != "spin" ||
		!strings.Contains(fmt.Sprint(e["message"]), "3 iterations") {
		t.Fatalf("error = %v, want code max_iterations at spin naming 3 iterations", e)
	}
}

// TestKindDelay sleeps for a duration literal, a duration from an
// expression (text or seconds), and until an instant from an expression.
func TestKindDelay(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: delay-literal
version: 1
steps:
  - {id: before, type: task, service: clock, action: mark}
  - {id: nap, type: delay, duration: 60ms}
  - {id: after, type: task, service: clock, action: mark}
`)
	h.register(`
name: delay-expr
version: 1
steps:
  - {id: before, type: task, service: clock, action: mark}
  - {id: nap, type: delay, duration: input.wait}
  - {id: after, type: task, service: clock, action: mark}
`)
	h.register(`
name: delay-until
version: 1
steps:
  - {id: before, type: task, service: clock, action: mark}
  - {id: nap, type: delay, until: input.at}
  - {id: after, type: task, service: clock, action: mark}
`)
	var mu sync.Mutex
	marks := map[string]map[string]time.Time{}
	h.e.Handle("clock", "mark", func(_ context.Context, task engine.Task) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if marks[task.InstanceID] == nil {
			marks[task.InstanceID] = map[string]time.Time{}
		}
		marks[task.InstanceID][task.StepID] = time.Now()
		return nil, nil
	})
	h.run()

	tests := []struct {
		name, def, input string
		gap              time.Duration
	}{
		{"literal", "delay-literal", `{}`, 60 * time.Millisecond},
		{"expression text", "delay-expr", `{"wait": "70ms"}`, 70 * time.Millisecond},
		{"expression seconds", "delay-expr", `{"wait": 0.05}`, 50 * time.Millisecond},
		{"until", "delay-until", `{"at": %q}`, 0},
	}
	for _, tt := range tests {
		at := time.Now().Add(120 * time.Millisecond)
		input := tt.input
		if tt.gap == 0 {
			input = fmt.Sprintf(tt.input, at.Format(time.RFC3339Nano))
		}
		id := begin(h, tt.def, input)
		wantCompleted(t, h.wait(id))

		mu.Lock()
		before, after := marks[id]["before"], marks[id]["after"]
		mu.Unlock()
		if tt.gap > 0 && after.Sub(before) < tt.gap-2*time.Millisecond {
			t.Fatalf("%s: after ran %v after before, want at least %v",
				tt.name, after.Sub(before), tt.gap)
		}
		if tt.gap == 0 && after.Before(at.Add(-2*time.Millisecond)) {
			t.Fatalf("%s: after ran at %v, want not before %v", tt.name, after, at)
		}
		if got := auditTypes(h.audit(id), "nap"); !slices.Equal(got, []string{"delay_started"}) {
			t.Fatalf("%s: nap audit = %v, want [delay_started]", tt.name, got)
		}
	}
}

// TestKindWaitEvent takes the event with the wait's name and key, writes
// its data to the output path, and leaves no subscription behind.
func TestKindWaitEvent(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: wait-event
version: 1
steps:
  - {id: w, type: wait, event: order.paid, key: input.order, output: payment.info}
  - {id: after, type: task, service: rec, action: note, input: data.payment.info.amount}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	id := begin(h, "wait-event", `{"order": "o-1"}`)
	waitStepStatus(h, id, "w", store.StepWaiting)
	subs := subscriptions(h, id)
	if len(subs) != 1 || subs[0].Name != "order.paid" || subs[0].Key != "o-1" {
		t.Fatalf("subscriptions = %+v, want one for order.paid/o-1", subs)
	}

	publish(h, "order.paid", "o-2", `{"amount": 1}`)
	publish(h, "order.cancelled", "o-1", `{"amount": 2}`)
	publish(h, "order.paid", "o-1", `{"amount": 12}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	wantJSON(t, "data", inst.Data, `{"order":"o-1","payment":{"info":{"amount":12}}}`)
	if got := rec.list(); !slices.Equal(got, []string{"12"}) {
		t.Fatalf("calls = %v, want [12]", got)
	}
	if got := auditTypes(h.audit(id), "w"); !slices.Equal(got,
		[]string{"wait_started", "event_received", "step_completed"}) {
		t.Fatalf("wait audit = %v, want wait_started, event_received, step_completed", got)
	}
	wantNoSubscriptions(h, id)
}

// TestKindWaitTimeout ends a wait at its timeout: with an on_timeout
// branch the branch runs, without one the instance goes on; either way
// the output path stays unwritten and the subscription is gone.
func TestKindWaitTimeout(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: wait-branch
version: 1
steps:
  - id: w
    type: wait
    event: never
    key: "'k'"
    timeout: 50ms
    output: got
    on_timeout:
      - {id: escalate, type: task, service: rec, action: note, input: "'escalate'"}
  - {id: after, type: task, service: rec, action: note, input: "'after'"}
`)
	h.register(`
name: wait-plain
version: 1
steps:
  - {id: w, type: wait, event: never, key: "'k'", timeout: input.patience, output: got}
  - {id: after, type: task, service: rec, action: note, input: "'after'"}
`)
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.run()

	tests := []struct {
		def, input string
		want       []string
	}{
		{"wait-branch", `{}`, []string{"escalate", "after"}},
		{"wait-plain", `{"patience": "40ms"}`, []string{"after"}},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, tt.def, tt.input)
		inst := h.wait(id)
		wantCompleted(t, inst)

		if got := rec.list()[before:]; !slices.Equal(got, tt.want) {
			t.Fatalf("%s: calls = %v, want %v", tt.def, got, tt.want)
		}
		if _, ok := dataOf(t, inst.Data)["got"]; ok {
			t.Fatalf("%s: data = %s, want no got after a timeout", tt.def, inst.Data)
		}
		if n := count(auditTypes(h.audit(id), "w"), "wait_timed_out"); n != 1 {
			t.Fatalf("%s: %d wait_timed_out rows, want 1", tt.def, n)
		}
		wantNoSubscriptions(h, id)
	}
}

// TestKindWaitCancelIf abandons a wait once its cancel condition holds
// over the data: with cancel_continue the instance goes on, without it
// the instance fails; the condition may already hold when the wait
// starts. No subscription is left behind.
func TestKindWaitCancelIf(t *testing.T) {
	h := newHarness(t)
	for _, cont := range []bool{true, false} {
		h.register(fmt.Sprintf(`
name: abandon-%t
version: 1
steps:
  - id: both
    type: parallel
    branches:
      - steps:
          - {id: w, type: wait, event: reply, key: "'k'", cancel_if: data.withdrawn == true,
             cancel_continue: %t, output: reply}
      - steps:
          - {id: withdraw, type: task, service: rec, action: withdraw, input: data.go,
             output: withdrawn}
  - {id: after, type: task, service: rec, action: note, input: "'after'"}
`, cont, cont))
	}
	var rec recorder
	h.e.Handle("rec", "note", noteHandler(&rec))
	h.e.Handle("rec", "withdraw", func(ctx context.Context, task engine.Task) (any, error) {
		return json.RawMessage(task.Input), nil
	})
	h.run()

	tests := []struct {
		name   string
		cont   bool
		input  string
		status store.InstanceStatus
	}{
		{"continue", true, `{"go": true}`, store.InstanceCompleted},
		{"fail", false, `{"go": true}`, store.InstanceFailed},
		{"continue at once", true, `{"go": false, "withdrawn": true}`, store.InstanceCompleted},
		{"fail at once", false, `{"go": false, "withdrawn": true}`, store.InstanceFailed},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, fmt.Sprintf("abandon-%t", tt.cont), tt.input)
		inst := h.wait(id)

		if inst.Status != tt.status {
			t.Fatalf("%s: status = %s (%s), want %s", tt.name, inst.Status, inst.Reason, tt.status)
		}
		ran := slices.Contains(rec.list()[before:], "after")
		if ran != tt.cont {
			t.Fatalf("%s: after ran = %t, want %t", tt.name, ran, tt.cont)
		}
		if !tt.cont && inst.Reason != "wait_abandoned: w" {
			t.Fatalf("%s: reason = %q, want %q", tt.name, inst.Reason, "wait_abandoned: w")
		}
		if n := count(auditTypes(h.audit(id), "w"), "wait_abandoned"); n != 1 {
			t.Fatalf("%s: %d wait_abandoned rows, want 1", tt.name, n)
		}
		wantNoSubscriptions(h, id)
	}
}

// TestKindWaitInLoop takes a new event on every iteration of a loop,
// oldest first, never the same one twice.
func TestKindWaitInLoop(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: wait-loop
version: 1
steps:
  - id: loop
    type: while
    condition: data.n < 3
    steps:
      - {id: w, type: wait, event: tick, key: input.key, output: last}
      - {id: count, type: task, service: rec, action: count, input: {n: data.n, got: data.last},
         output: n}
`)
	var rec recorder
	h.e.Handle("rec", "count", func(_ context.Context, task engine.Task) (any, error) {
		var in struct {
			N   int
			Got json.RawMessage
		}
		if err := json.Unmarshal(task.Input, &in); err != nil {
			return nil, err
		}
		rec.add(string(in.Got))
		return in.N + 1, nil
	})
	h.run()

	id := begin(h, "wait-loop", `{"n": 0, "key": "k1"}`)
	waitStepStatus(h, id, "w", store.StepWaiting)
	for i := 1; i <= 3; i++ {
		publish(h, "tick", "k1", fmt.Sprintf(`{"i": %d}`, i))
	}
	wantCompleted(t, h.wait(id))

	want := []string{`{"i":1}`, `{"i":2}`, `{"i":3}`}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Fatalf("events taken = %v, want %v", got, want)
	}
	seen := map[string]bool{}
	for _, ev := range h.audit(id) {
		if ev.Type == "event_received" {
			seen[string(ev.Data)] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("distinct events received = %d, want 3", len(seen))
	}
	wantNoSubscriptions(h, id)
}

// TestKindWaitSeveralInstances delivers one event to every instance
// waiting on its name and key.
func TestKindWaitSeveralInstances(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: wait-many
version: 1
steps:
  - {id: w, type: wait, event: go, key: input.key, output: got}
`)
	h.run()

	var ids []string
	for range 3 {
		id := begin(h, "wait-many", `{"key": "shared"}`)
		waitStepStatus(h, id, "w", store.StepWaiting)
		ids = append(ids, id)
	}
	publish(h, "go", "shared", `"now"`)

	for _, id := range ids {
		inst := h.wait(id)
		wantCompleted(t, inst)
		if got := dataOf(t, inst.Data)["got"]; got != "now" {
			t.Fatalf("instance %s: data.got = %v, want now", id, got)
		}
		wantNoSubscriptions(h, id)
	}
}

// TestKindWaitFutureEvent hides an event until its time, then delivers
// it once.
func TestKindWaitFutureEvent(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: wait-future
version: 1
steps:
  - {id: w, type: wait, event: later, key: "'k'", output: got}
`)
	h.run()

	id := begin(h, "wait-future", `{}`)
	waitStepStatus(h, id, "w", store.StepWaiting)
	due := time.Now().Add(200 * time.Millisecond)
	if _, err := h.e.PublishEvent(h.ctx, engine.PublishParams{
		Name: "later", Key: "k", Data: json.RawMessage(`1`), Time: due,
	}); err != nil {
		t.Fatalf("publishing: %v", err)
	}

	time.Sleep(80 * time.Millisecond)
	if s, _ := h.step(id, "w"); s.Status != store.StepWaiting {
		t.Fatalf("before the event's time the wait is %s, want waiting", s.Status)
	}
	inst := h.wait(id)
	wantCompleted(t, inst)

	var got []store.AuditEvent
	for _, ev := range h.audit(id) {
		if ev.Type == "event_received" {
			got = append(got, ev)
		}
	}
	if len(got) != 1 {
		t.Fatalf("event_received rows = %d, want 1", len(got))
	}
	if got[0].At.Before(due.Truncate(time.Millisecond)) {
		t.Fatalf("event received at %v, want not before %v", got[0].At, due)
	}
}

// TestKindOnCancel runs the on_cancel steps in order after a cancel of a
// waiting instance; a cleanup that spends its attempts fails the
// instance with reason cleanup_failed.
func TestKindOnCancel(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: cleanup
version: 1
steps:
  - {id: w, type: wait, event: never, key: "'k'"}
on_cancel:
  - {id: undo1, type: task, service: rec, action: undo, input: "'undo1'", output: undone}
  - {id: undo2, type: task, service: rec, action: undo,
     input: "data.broken == true ? 'broken' : data.undone + '+undo2'",
     retry: {max_attempts: 2, initial_interval: 1ms}}
`)
	var rec recorder
	h.e.Handle("rec", "undo", func(_ context.Context, task engine.Task) (any, error) {
		in := inputText(task.Input)
		rec.add(in)
		if in == "broken" {
			return nil, engine.Retryable("undo_failed", "cannot undo")
		}
		return in, nil
	})
	h.run()

	tests := []struct {
		name, input string
		status      store.InstanceStatus
		reason      string
		want        []string
	}{
		{"ok", `{}`, store.InstanceCancelled, "user asked", []string{"undo1", "undo1+undo2"}},
		{"failing", `{"broken": true}`, store.InstanceFailed, "cleanup_failed",
			[]string{"undo1", "broken", "broken"}},
	}
	for _, tt := range tests {
		before := len(rec.list())
		id := begin(h, "cleanup", tt.input)
		waitStepStatus(h, id, "w", store.StepWaiting)
		if err := h.e.Cancel(h.ctx, id, "user asked"); err != nil {
			t.Fatalf("%s: cancel: %v", tt.name, err)
		}
		inst := h.wait(id)

		if inst.Status != tt.status || inst.Reason != tt.reason {
			t.Fatalf("%s: instance = %s (%s), want %s (%s)",
				tt.name, inst.Status, inst.Reason, tt.status, tt.reason)
		}
		if got := rec.list()[before:]; !slices.Equal(got, tt.want) {
			t.Fatalf("%s: cleanup calls = %v, want %v", tt.name, got, tt.want)
		}
		if s, _ := h.step(id, "w"); s.Status != store.StepCancelled {
			t.Fatalf("%s: wait is %s, want cancelled", tt.name, s.Status)
		}
		wantNoSubscriptions(h, id)
	}
}

// TestKindInputMapping builds a task's input from literals, expressions
// and nested objects and lists.
func TestKindInputMapping(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: mapping
version: 1
steps:
  - id: m
    type: task
    service: rec
    action: echo
    input:
      num: 7
      ratio: 2.5
      flag: true
      none: null
      text: "'hello'"
      from: input.name
      nested:
        list: [1, "input.n * 2", {deep: input.name}]
        obj: {lit: "'x'", sum: input.n + 1}
  - {id: whole, type: task, service: rec, action: echo, input: input}
  - {id: plain, type: task, service: rec, action: echo}
`)
	var mu sync.Mutex
	inputs := map[string]string{}
	h.e.Handle("rec", "echo", func(_ context.Context, task engine.Task) (any, error) {
		mu.Lock()
		inputs[task.StepID] = string(task.Input)
		mu.Unlock()
		return nil, nil
	})
	h.run()

	id := begin(h, "mapping", `{"name": "ann", "n": 3}`)
	wantCompleted(t, h.wait(id))

	mu.Lock()
	defer mu.Unlock()
	wantJSON(t, "input of m", json.RawMessage(inputs["m"]), `{"num":7,"ratio":2.5,"flag":true,
		"none":null,"text":"hello","from":"ann",
		"nested":{"list":[1,6,{"deep":"ann"}],"obj":{"lit":"x","sum":4}}}`)
	wantJSON(t, "input of whole", json.RawMessage(inputs["whole"]), `{"name":"ann","n":3}`)
	wantJSON(t, "input of plain", json.RawMessage(inputs["plain"]), `{"name":"ann","n":3}`)
}

// TestKindOutputPaths writes outputs to nested paths and to keys that
// hold dots, next to each other, and reads them back in expressions.
func TestKindOutputPaths(t *testing.T) {
	h := newHarness(t)
	h.register(`
name: paths
version: 1
steps:
  - {id: a, type: task, service: rec, action: echo, input: "'deep'", output: a.b.c}
  - {id: b, type: task, service: rec, action: echo, input: "'dotted'", output: 'a["b.c"]'}
  - {id: c, type: task, service: rec, action: echo, input: "'q'", output: 'x["y z"].w'}
  - {id: d, type: task, service: rec, action: echo, output: a.b.e,
     input: "[data.a.b.c, data.a['b.c'], data.x['y z'].w]"}
`)
	h.e.Handle("rec", "echo", func(_ context.Context, task engine.Task) (any, error) {
		return json.RawMessage(task.Input), nil
	})
	h.run()

	id := begin(h, "paths", `{"keep": 1}`)
	inst := h.wait(id)
	wantCompleted(t, inst)

	wantJSON(t, "data", json.RawMessage(inst.Data), `{"keep":1,
		"a":{"b":{"c":"deep","e":["deep","dotted","q"]},"b.c":"dotted"},
		"x":{"y z":{"w":"q"}}}`)
}

// The helpers below are shared by kinds_test.go and rules_test.go.

// begin starts an instance and checks, when the test ends, that its
// audit rows are numbered from 1 without gaps.
func begin(h *harness, def, input string) string {
	h.t.Helper()
	id := h.start(def, input)
	h.t.Cleanup(func() { assertAuditSeq(h.t, h, id) })

	return id
}

// assertAuditSeq checks that an instance's audit seq runs 1, 2, 3, ...
// up to at least the instance's last seq.
func assertAuditSeq(t *testing.T, h *harness, id string) {
	t.Helper()
	inst, err := h.e.Instance(h.ctx, id)
	if err != nil {
		t.Fatalf("reading instance %s: %v", id, err)
	}

	evs := h.audit(id)
	if len(evs) == 0 || int64(len(evs)) < inst.LastSeq {
		t.Fatalf("instance %s: %d audit rows, want at least last seq %d and one",
			id, len(evs), inst.LastSeq)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("instance %s: audit row %d has seq %d, want %d", id, i, ev.Seq, i+1)
		}
	}
}

func wantCompleted(t *testing.T, inst store.Instance) {
	t.Helper()
	if inst.Status != store.InstanceCompleted {
		t.Fatalf("status = %s (%s %s), want completed", inst.Status, inst.Reason, inst.Error)
	}
}

// wantJSON compares a value with JSON text by meaning.
func wantJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	raw, ok := got.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(got); err != nil {
			t.Fatalf("%s: encoding %v: %v", what, got, err)
		}
	}

	var g, w any
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("%s: decoding %s: %v", what, raw, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: decoding want %s: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %s, want %s", what, raw, want)
	}
}

// waitStepStatus waits until the newest pointer of a step has a status.
func waitStepStatus(h *harness, id, stepID string, want store.StepStatus) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("step %s to be %s", stepID, want), func() bool {
		s, ok := h.step(id, stepID)
		return ok && s.Status == want
	})
}

// waitInstanceStatus waits until the instance has a status.
func waitInstanceStatus(h *harness, id string, want store.InstanceStatus) store.Instance {
	h.t.Helper()
	var inst store.Instance
	h.waitFor(fmt.Sprintf("instance to be %s", want), func() bool {
		var err error
		inst, err = h.e.Instance(h.ctx, id)
		return err == nil && inst.Status == want
	})

	return inst
}

func subscriptions(h *harness, id string) []store.Subscription {
	h.t.Helper()
	subs, err := h.st.SubscriptionList(h.ctx, id)
	if err != nil {
		h.t.Fatalf("listing subscriptions: %v", err)
	}

	return subs
}

func wantNoSubscriptions(h *harness, id string) {
	h.t.Helper()
	if subs := subscriptions(h, id); len(subs) != 0 {
		h.t.Fatalf("subscriptions left = %+v, want none", subs)
	}
}

func publish(h *harness, name, key, data string) {
	h.t.Helper()
	_, err := h.e.PublishEvent(h.ctx, engine.PublishParams{
		Name: name, Key: key, Data: json.RawMessage(data),
	})
	if err != nil {
		h.t.Fatalf("publishing %s/%s: %v", name, key, err)
	}
}

// inputText is a task input as text: a JSON string unquoted, anything
// else as its JSON.
func inputText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}

	return string(raw)
}

// noteHandler records each input as text and returns the input.
func noteHandler(rec *recorder) engine.HandlerFunc {
	return func(_ context.Context, task engine.Task) (any, error) {
		rec.add(inputText(task.Input))
		return json.RawMessage(task.Input), nil
	}
}

// spanHandler records the start and the end of each call, with a short
// pause between, so that overlapping calls show in the record.
func spanHandler(rec *recorder) engine.HandlerFunc {
	return func(ctx context.Context, task engine.Task) (any, error) {
		in := inputText(task.Input)
		rec.add("start:" + in)
		err := sleepCtx(ctx, 5*time.Millisecond)
		rec.add("end:" + in)
		return nil, err
	}
}

// gate lets callers through once n of them have arrived.
type gate struct {
	arrived atomic.Int32
	n       int32
	open    chan struct{}
	once    sync.Once
}

func newGate(n int) *gate {
	return &gate{n: int32(n), open: make(chan struct{})}
}

func (g *gate) arrive(ctx context.Context) error {
	if g.arrived.Add(1) == g.n {
		g.once.Do(func() { close(g.open) })
	}

	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return engine.NonRetryable("no_overlap", "the other callers never arrived")
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
