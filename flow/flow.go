// Package flow builds weft workflow definitions in Go, as a fluent
// alternative to writing them in YAML or JSON. A builder makes the same
// definition.Definition the parser makes from text, so both forms
// compile to the same graph and register the same way:
//
//	def, err := flow.New("order", 1).
//		Steps(
//			flow.Task("charge", "pay", "charge").Input("data.total").Output("receipt"),
//			flow.Delay("cool-off", "1h"),
//			flow.Task("ship", "post", "ship").Input("data.receipt"),
//		).
//		Build()
//
// Build validates the definition as registration would and returns
// every fault with its path; Source returns the canonical JSON that
// Engine.RegisterDefinition takes.
package flow

import (
	"fmt"

	"github.com/weftworks/weft/definition"
)

// Builder builds one definition.
type Builder struct {
	def *definition.Definition
}

// New starts a definition with a name and a version.
func New(name string, version int) *Builder {
	return &Builder{def: &definition.Definition{Name: name, Version: version}}
}

// Description sets the definition's description.
func (b *Builder) Description(text string) *Builder {
	b.def.Description = text
	return b
}

// InputSchema sets the JSON Schema every start input must meet.
func (b *Builder) InputSchema(schema string) *Builder {
	b.def.InputSchema = []byte(schema)
	return b
}

// Defaults sets the retry policy, timeouts and failure action that task
// steps inherit; nil leaves a part unset.
func (b *Builder) Defaults(retry *definition.RetryPolicy, timeouts *definition.Timeouts,
	onFailure definition.FailureAction) *Builder {
	b.def.Defaults = &definition.Defaults{Retry: retry, Timeouts: timeouts, OnFailure: onFailure}
	return b
}

// Deadline sets the instance's overall deadline, a Go duration.
func (b *Builder) Deadline(d string) *Builder {
	b.def.Deadline = d
	return b
}

// Output sets the expression whose value becomes the instance output.
func (b *Builder) Output(expr string) *Builder {
	b.def.Output = expr
	return b
}

// CompensateOnCancel runs compensations when the instance is cancelled.
func (b *Builder) CompensateOnCancel() *Builder {
	b.def.CompensateOnCancel = true
	return b
}

// Steps appends the steps run when the instance starts.
func (b *Builder) Steps(steps ...*Step) *Builder {
	b.def.Steps = append(b.def.Steps, raw(steps)...)
	return b
}

// OnCancel appends the cleanup steps run when the instance is cancelled.
func (b *Builder) OnCancel(steps ...*Step) *Builder {
	b.def.OnCancel = append(b.def.OnCancel, raw(steps)...)
	return b
}

// Definition returns the definition built so far, unchecked.
func (b *Builder) Definition() *definition.Definition {
	return b.def
}

// Build checks the definition as registration does and returns it; the
// error is a *definition.ValidationError listing every fault.
func (b *Builder) Build() (*definition.Definition, error) {
	if _, err := definition.Compile(b.def); err != nil {
		return nil, fmt.Errorf("building definition %s v%d: %w", b.def.Name, b.def.Version, err)
	}

	return b.def, nil
}

// Graph checks the definition and returns its compiled graph.
func (b *Builder) Graph() (*definition.Graph, error) {
	g, err := definition.Compile(b.def)
	if err != nil {
		return nil, fmt.Errorf("building definition %s v%d: %w", b.def.Name, b.def.Version, err)
	}

	return g, nil
}

// Source checks the definition and returns its canonical JSON, the text
// Engine.RegisterDefinition takes.
func (b *Builder) Source() ([]byte, error) {
	d, err := b.Build()
	if err != nil {
		return nil, err
	}

	src, err := definition.Canonical(d)
	if err != nil {
		return nil, fmt.Errorf("encoding definition %s v%d: %w", d.Name, d.Version, err)
	}

	return src, nil
}

// raw returns the definition steps of builders.
func raw(steps []*Step) []*definition.Step {
	out := make([]*definition.Step, len(steps))
	for i, s := range steps {
		out[i] = s.s
	}

	return out
}
