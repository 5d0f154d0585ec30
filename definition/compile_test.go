package definition

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustCompile parses and compiles src or stops the test.
func mustCompile(t *testing.T, src string) *Graph {
	t.Helper()

	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	g, err := Compile(d)
	if err != nil {
		t.Fatalf("compiling: %v", err)
	}

	return g
}

func TestCompileGraphShape(t *testing.T) {
	g := mustCompile(t, string(readFile(t, "testdata/valid/image_pipeline.yaml")))

	if g.Root.ID != RootID || g.Root.Kind != KindSequence || g.Root.Parent != nil {
		t.Errorf("root: %+v", g.Root)
	}
	if g.Cancel.ID != CancelID || g.Cancel.Kind != KindSequence {
		t.Errorf("cancel: %+v", g.Cancel)
	}
	if g.Nodes[RootID] != g.Root || g.Nodes[CancelID] != g.Cancel {
		t.Error("Nodes does not hold Root and Cancel")
	}
	if got := ids(g.Root.Block(BlockSteps)); got != "fetch variants faces publish" {
		t.Errorf("root steps: %s", got)
	}
	if got := ids(g.Cancel.Block(BlockSteps)); got != "cleanup" {
		t.Errorf("cancel steps: %s", got)
	}
	if g.Deadline != time.Hour || g.Output == nil || g.Schema == nil {
		t.Errorf("header: deadline %v, output %v, schema %v", g.Deadline, g.Output, g.Schema)
	}

	par := g.Nodes["variants"]
	if par.Branches != 2 || par.Parent != g.Root || par.Path != "steps[1]" {
		t.Errorf("parallel: branches %d, path %q", par.Branches, par.Path)
	}
	thumb := g.Nodes["thumb"]
	if got := ids(par.Block(BranchBlock(0))); got != "thumb" {
		t.Errorf("branch 0: %s", got)
	}
	if thumb.Parent != par || thumb.Path != "steps[1].branches[0].steps[0]" {
		t.Errorf("thumb: parent %v, path %q", thumb.Parent.ID, thumb.Path)
	}
	if g.Nodes["cleanup"].Parent != g.Cancel || g.Nodes["cleanup"].Path != "on_cancel[0]" {
		t.Errorf("cleanup: path %q", g.Nodes["cleanup"].Path)
	}

	each := g.Nodes["faces"]
	if each.Items == nil || !each.Parallel || each.MaxConcurrency != 8 || each.Result == nil ||
		each.Output.String() != "faces" {
		t.Errorf("foreach: %+v", each)
	}
	if len(g.Nodes) != 10 {
		t.Errorf("got %d nodes, want 10", len(g.Nodes))
	}
}

func TestCompileBlocks(t *testing.T) {
	g := mustCompile(t, string(readFile(t, "testdata/valid/approval.yaml")))

	wait := g.Nodes["answer"]
	if wait.Event != "approval.decided" || wait.Key == nil || wait.AsOf == nil ||
		wait.Timeout == nil || wait.Timeout.Literal != 72*time.Hour ||
		wait.CancelIf == nil || !wait.CancelContinue || wait.Output.String() != "decision" {
		t.Errorf("wait: %+v", wait)
	}
	if got := ids(wait.Block(BlockOnTimeout)); got != "escalate" {
		t.Errorf("on_timeout: %s", got)
	}

	cond := g.Nodes["large"]
	got := ids(cond.Block(BlockSteps)) + "/" + ids(cond.Block(BlockElse))
	if got != "second-opinion/note" {
		t.Errorf("if blocks: %s", got)
	}

	sw := g.Nodes["route"]
	if sw.Cases != 2 || len(sw.When) != 2 {
		t.Errorf("switch: %d cases, %d conditions", sw.Cases, len(sw.When))
	}
	got = ids(sw.Block(CaseBlock(0))) + "/" + ids(sw.Block(CaseBlock(1))) + "/" +
		ids(sw.Block(BlockDefault))
	if got != "pay/tell/park" {
		t.Errorf("switch blocks: %s", got)
	}
	if g.Nodes["pay"].Path != "steps[3].cases[0].steps[0]" {
		t.Errorf("case step path: %s", g.Nodes["pay"].Path)
	}
	if g.Cancel == nil || len(g.Cancel.Block(BlockSteps)) != 0 {
		t.Error("cancel node missing or not empty")
	}
}

func TestCompileLoopsAndDelays(t *testing.T) {
	g := mustCompile(t, string(readFile(t, "testdata/valid/polling.yaml")))

	loop := g.Nodes["poll"]
	if loop.Condition == nil || loop.MaxIterations != 100 {
		t.Errorf("while: %+v", loop)
	}
	if pause := g.Nodes["pause"]; pause.Duration == nil || pause.Duration.Expr == nil {
		t.Errorf("delay expression: %+v", pause.Duration)
	}
	if cool := g.Nodes["cool-down"]; cool.Duration.Literal != time.Minute {
		t.Errorf("delay literal: %+v", cool.Duration)
	}
	if until := g.Nodes["until-morning"]; until.Until == nil || until.Duration != nil {
		t.Errorf("delay until: %+v", until)
	}

	loop = mustCompile(t, `
name: f
version: 1
steps: [{id: w, type: while, condition: "true", steps: [{id: d, type: delay, duration: 1s}]}]
`).Nodes["w"]
	if loop.MaxIterations != DefaultMaxIterations {
		t.Errorf("default max_iterations: got %d", loop.MaxIterations)
	}
}

func TestCompileTaskDefaults(t *testing.T) {
	tests := []struct {
		name     string
		defaults string
		step     string
		want     Retry
		limits   Limits
		action   FailureAction
	}{
		{
			name: "package defaults",
			want: Retry{MaxAttempts: DefaultMaxAttempts, InitialInterval: DefaultInitialInterval,
				BackoffCoefficient: DefaultBackoffCoefficient, MaxInterval: DefaultMaxInterval},
			action: FailInstance,
		},
		{
			name: "definition defaults",
			defaults: "{retry: {max_attempts: 7, jitter: 0.5}, timeouts: {heartbeat: 5s}, " +
				"on_failure: suspend}",
			want: Retry{MaxAttempts: 7, InitialInterval: DefaultInitialInterval,
				BackoffCoefficient: DefaultBackoffCoefficient, MaxInterval: DefaultMaxInterval,
				Jitter: 0.5},
			limits: Limits{Heartbeat: 5 * time.Second},
			action: SuspendInstance,
		},
		{
			name: "step over definition, field by field",
			defaults: "{retry: {max_attempts: 7, jitter: 0.5, non_retryable: [A]}, " +
				"timeouts: {heartbeat: 5s}}",
			step: ", retry: {max_attempts: 1, jitter: 0, initial_interval: 0s}, " +
				"timeouts: {start_to_close: 1m}, on_failure: terminate",
			want: Retry{MaxAttempts: 1, BackoffCoefficient: DefaultBackoffCoefficient,
				MaxInterval: DefaultMaxInterval, NonRetryable: []string{"A"}},
			limits: Limits{StartToClose: time.Minute, Heartbeat: 5 * time.Second},
			action: TerminateInstance,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "name: f\nversion: 1\n"
			if tt.defaults != "" {
				src += "defaults: " + tt.defaults + "\n"
			}
			src += "steps: [{id: a, type: task, service: s, action: x" + tt.step + "}]\n"

			n := mustCompile(t, src).Nodes["a"]
			if !reflect.DeepEqual(n.Retry, tt.want) {
				t.Errorf("retry: got %+v, want %+v", n.Retry, tt.want)
			}
			if n.Timeouts != tt.limits {
				t.Errorf("timeouts: got %+v, want %+v", n.Timeouts, tt.limits)
			}
			if n.OnFailure != tt.action {
				t.Errorf("on_failure: got %q, want %q", n.OnFailure, tt.action)
			}
			if n.Input != nil {
				t.Error("input mapping set without input")
			}
		})
	}
}

func TestCompileKnownService(t *testing.T) {
	d, err := Parse([]byte(`
name: f
version: 1
steps:
  - {id: a, type: task, service: imaging, action: resize}
  - {id: b, type: task, service: nowhere, action: x}
`))
	if err != nil {
		t.Fatal(err)
	}

	opts := CompileOptions{KnownService: func(name string) bool { return name == "imaging" }}
	_, err = CompileWith(d, opts)
	want := `steps[1].service: step "b" names unknown service "nowhere": register it first`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}

	if _, err := Compile(d); err != nil {
		t.Errorf("without a registry: %v", err)
	}
}

func TestCompileTooManySteps(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: f\nversion: 1\nsteps:\n")
	for i := range MaxSteps + 1 {
		fmt.Fprintf(&b, "- {id: s%d, type: delay, duration: 1s}\n", i)
	}

	_, err := parseAndCompile([]byte(b.String()))
	want := fmt.Sprintf("the definition has %d steps, over the limit of %d", MaxSteps+1, MaxSteps)
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestCompileGoDefinition(t *testing.T) {
	d := &Definition{
		Name:    "built",
		Version: 1,
		Steps: []*Step{
			{ID: "a", Type: KindTask, Service: "s", Action: "x", Items: "input.list"},
			nil,
		},
	}

	_, err := Compile(d)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	want := "steps[0].items: not allowed on a task step\nsteps[1]: want a step, got null"
	if err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err, want)
	}

	if _, err := Compile(nil); err == nil {
		t.Error("nil definition compiled")
	}
}

func TestLessPath(t *testing.T) {
	sorted := []string{"", "defaults.retry", "name", "steps", "steps[2]", "steps[2].id",
		"steps[10]", "steps[10].branches[2].id", "steps[10].branches[11].id", "version"}
	for i := range sorted {
		for j := range sorted {
			if got := lessPath(sorted[i], sorted[j]); got != (i < j) {
				t.Errorf("lessPath(%q, %q) = %v", sorted[i], sorted[j], got)
			}
		}
	}
}
