package flow_test

import (
	"fmt"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/flow"
)

// A definition built in Go gives the canonical JSON that
// Engine.RegisterDefinition takes, the same as its YAML form would.
func ExampleNew() {
	src, err := flow.New("greet", 1).
		Steps(
			flow.Task("hello", "greeter", "hello").Input("input.name").Output("greeting"),
			flow.Delay("pause", "1s"),
			flow.Task("bye", "greeter", "bye").Input("data.greeting"),
		).
		Source()
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(string(src))
	// Output:
	// {"name":"greet","version":1,"steps":[{"id":"hello","type":"task","service":"greeter","action":"hello","input":"input.name","output":"greeting"},{"id":"pause","type":"delay","duration":"1s"},{"id":"bye","type":"task","service":"greeter","action":"bye","input":"data.greeting"}]}
}

// A saga whose steps carry their compensations; when the payment fails,
// the reservation is released and the saga is tried again.
func ExampleSaga() {
	g, err := flow.New("checkout", 1).
		Steps(
			flow.Saga("pay",
				flow.Task("reserve", "stock", "reserve").Output("reservation").
					Compensate(flow.Task("release", "stock", "release").
						Input("steps.reserve.output")),
				flow.Task("charge", "pay", "charge").Input("data.total"),
			).Then(definition.SagaRetry).Retry(definition.RetryPolicy{MaxAttempts: 3}),
		).
		Graph()
	if err != nil {
		fmt.Println(err)
		return
	}

	saga := g.Nodes["pay"]
	fmt.Println(saga.Kind, saga.Then, saga.Retry.MaxAttempts)
	fmt.Println("charge on failure:", g.Nodes["charge"].OnFailure)
	fmt.Println("reserve compensates:", g.Nodes["reserve"].Compensates)
	// Output:
	// saga retry 3
	// charge on failure: compensate
	// reserve compensates: true
}

// Build reports every fault with its path, as registration does.
func ExampleBuilder_Build() {
	_, err := flow.New("broken", 1).
		Steps(
			flow.Foreach("each", "input.items"),
			flow.Goto("back", "missing"),
		).
		Build()

	fmt.Println(err)
	// Output:
	// building definition broken v1: steps[0].steps: a foreach step needs at least one step
	// steps[1].next: no step "missing"
}

// Outcome branches: every branch whose value matches the outcome runs.
func ExampleStep_When() {
	g, err := flow.New("review", 1).
		Steps(
			flow.Task("review", "editor", "review").Outcome("result.verdicts").
				When("publish", flow.Task("publish", "site", "publish")).
				When("translate", flow.Task("translate", "lang", "translate")).
				Always(flow.Task("archive", "store", "archive")),
		).
		Graph()
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(g.Nodes["review"].Outcomes, "branches")
	// Output:
	// 3 branches
}
