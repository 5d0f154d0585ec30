package flow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/flow"
)

// orderYAML is the order workflow written in YAML; orderBuilder writes
// the same workflow with the builder.
const orderYAML = `
name: order
version: 3
description: Take an order from payment to delivery.
deadline: 72h
output: data.receipt
compensate_on_cancel: true
defaults:
  retry: {max_attempts: 4, initial_interval: 2s}
  on_failure: suspend
steps:
  - id: book
    type: saga
    then: retry
    retry: {max_attempts: 2, initial_interval: 1m}
    steps:
      - id: reserve
        type: task
        service: stock
        action: reserve
        input: {items: data.items, order: input.id}
        output: reservation
        compensate:
          - {id: release, type: task, service: stock, action: release, input: steps.reserve.output}
      - id: charge
        type: task
        service: pay
        action: charge
        input: data.total
        output: receipt
        timeouts: {start_to_close: 30s}
        compensate:
          - {id: refund, type: task, service: pay, action: refund, input: data.receipt}
  - id: check
    type: task
    service: fraud
    action: score
    outcome: result.flags
    on_outcome:
      - value: review
        steps:
          - {id: review, type: wait, event: reviewed, key: input.id, timeout: 1h,
             on_timeout: [{id: escalate, type: task, service: mail, action: escalate}]}
      - steps:
          - {id: log, type: task, service: audit, action: log}
  - id: pack
    type: foreach
    items: data.items
    parallel: true
    max_concurrency: 4
    result: steps.box.output
    output: boxes
    steps:
      - {id: box, type: workflow, workflow: boxing, version: 2, input: {item: item}}
  - id: size
    type: switch
    cases:
      - when: len(data.boxes) > 3
        steps: [{id: truck, type: task, service: post, action: truck}]
    default: [{id: van, type: task, service: post, action: van}]
  - id: remind
    type: schedule
    duration: 24h
    steps: [{id: nudge, type: task, service: mail, action: nudge}]
  - id: track
    type: recur
    interval: 30m
    cancel_if: data.delivered == true
    max_iterations: 200
    steps: [{id: status, type: task, service: post, action: status, output: status}]
  - id: fan
    type: parallel
    branches:
      - name: mail
        steps: [{id: confirm, type: task, service: mail, action: confirm}]
      - steps:
          - id: poll
            type: while
            condition: data.status != "out"
            max_iterations: 50
            steps:
              - {id: nap, type: delay, duration: 10m}
              - id: gone
                type: if
                condition: data.status == "lost"
                steps: [{id: stop, type: end}]
                else: [{id: again, type: goto, next: nap}]
  - {id: arrive, type: wait, event: delivered, key: input.id, output: delivered,
     cancel_if: data.cancelled == true, cancel_continue: true}
on_cancel:
  - {id: tidy, type: task, service: stock, action: tidy, retry: {max_attempts: 5}}
`

func orderBuilder() *flow.Builder {
	return flow.New("order", 3).
		Description("Take an order from payment to delivery.").
		Deadline("72h").
		Output("data.receipt").
		CompensateOnCancel().
		Defaults(&definition.RetryPolicy{MaxAttempts: 4, InitialInterval: "2s"}, nil,
			definition.SuspendInstance).
		Steps(
			flow.Saga("book",
				flow.Task("reserve", "stock", "reserve").
					Input(map[string]any{"items": "data.items", "order": "input.id"}).
					Output("reservation").
					Compensate(flow.Task("release", "stock", "release").Input("steps.reserve.output")),
				flow.Task("charge", "pay", "charge").Input("data.total").Output("receipt").
					Timeouts(definition.Timeouts{StartToClose: "30s"}).
					Compensate(flow.Task("refund", "pay", "refund").Input("data.receipt")),
			).Then(definition.SagaRetry).
				Retry(definition.RetryPolicy{MaxAttempts: 2, InitialInterval: "1m"}),
			flow.Task("check", "fraud", "score").Outcome("result.flags").
				When("review", flow.Wait("review", "reviewed", "input.id").
					Timeout("1h", flow.Task("escalate", "mail", "escalate"))).
				Always(flow.Task("log", "audit", "log")),
			flow.Foreach("pack", "data.items",
				flow.Workflow("box", "boxing").Version(2).Input(map[string]any{"item": "item"}),
			).Parallel(4).Collect("steps.box.output", "boxes"),
			flow.Switch("size").
				Case("len(data.boxes) > 3", flow.Task("truck", "post", "truck")).
				Default(flow.Task("van", "post", "van")),
			flow.Schedule("remind", "24h", flow.Task("nudge", "mail", "nudge")),
			flow.Recur("track", "30m", "data.delivered == true",
				flow.Task("status", "post", "status").Output("status")).MaxIterations(200),
			flow.Parallel("fan",
				flow.NewBranch(flow.Task("confirm", "mail", "confirm")).Named("mail"),
				flow.NewBranch(
					flow.While("poll", `data.status != "out"`,
						flow.Delay("nap", "10m"),
						flow.If("gone", `data.status == "lost"`, flow.End("stop")).
							Else(flow.Goto("again", "nap")),
					).MaxIterations(50),
				),
			),
			flow.Wait("arrive", "delivered", "input.id").Output("delivered").
				CancelIf("data.cancelled == true", true),
		).
		OnCancel(flow.Task("tidy", "stock", "tidy").Attempts(5))
}

// TestBuilderMatchesYAML compiles the order workflow from YAML and from
// the builder: the graphs are the same, node by node, and so are their
// canonical sources.
func TestBuilderMatchesYAML(t *testing.T) {
	parsed, err := definition.Parse([]byte(orderYAML))
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	fromYAML, err := definition.Compile(parsed)
	if err != nil {
		t.Fatalf("compiling the YAML form: %v", err)
	}

	fromGo, err := orderBuilder().Graph()
	if err != nil {
		t.Fatalf("compiling the builder form: %v", err)
	}

	if a, b := definition.Digest(fromYAML), definition.Digest(fromGo); a != b {
		t.Fatalf("graphs differ\nyaml:\n%s\nbuilder:\n%s", a, b)
	}
	if len(fromGo.Nodes) != len(fromYAML.Nodes) || len(fromGo.Nodes) < 25 {
		t.Fatalf("nodes: builder %d, yaml %d", len(fromGo.Nodes), len(fromYAML.Nodes))
	}

	canonYAML, err := definition.Canonical(parsed)
	if err != nil {
		t.Fatal(err)
	}
	canonGo, err := orderBuilder().Source()
	if err != nil {
		t.Fatal(err)
	}
	if string(canonYAML) != string(canonGo) {
		t.Fatalf("sources differ\nyaml:    %s\nbuilder: %s", canonYAML, canonGo)
	}
}

// TestBuilderRefusesFaults reports a builder's faults with their paths,
// as registration reports them for YAML.
func TestBuilderRefusesFaults(t *testing.T) {
	_, err := flow.New("bad", 1).Steps(
		flow.Task("a", "svc", ""),
		flow.Goto("jump", "nowhere"),
	).Build()

	var verr *definition.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error = %v, want a validation error", err)
	}
	msg := err.Error()
	for _, want := range []string{`steps[0].action: required`, `steps[1].next: no step "nowhere"`} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not name %q", msg, want)
		}
	}
}
