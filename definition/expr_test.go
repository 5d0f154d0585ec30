package definition

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		src  string
		want Path
		err  string
	}{
		{src: "a", want: Path{"a"}},
		{src: "a.b.c", want: Path{"a", "b", "c"}},
		{src: `a["b.c"].d`, want: Path{"a", "b.c", "d"}},
		{src: `["x y"]`, want: Path{"x y"}},
		{src: "", err: "empty"},
		{src: "a..b", err: "empty key"},
		{src: `a["b`, err: "unclosed ["},
		{src: "a[b]", err: "not a quoted string"},
	}
	for _, tt := range tests {
		got, err := ParsePath(tt.src)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePath(%q): got error %v, want %q", tt.src, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePath(%q) = %v, %v; want %v", tt.src, got, err, tt.want)
		}
	}
}

func TestPathStringRoundTrip(t *testing.T) {
	for _, p := range []Path{{"a"}, {"a", "b"}, {"a.b", "c"}, {"x", `q"uote`}, {"a", "[b]"}} {
		back, err := ParsePath(p.String())
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Errorf("%#v renders %q, which reads back as %#v (%v)", p, p.String(), back, err)
		}
	}
}

func TestPathOverlaps(t *testing.T) {
	tests := []struct {
		a, b Path
		want bool
	}{
		{Path{"a"}, Path{"a"}, true},
		{Path{"a"}, Path{"a", "b"}, true},
		{Path{"a", "b"}, Path{"a"}, true},
		{Path{"a", "b"}, Path{"a", "c"}, false},
		{Path{"a"}, Path{"b"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Overlaps(tt.b); got != tt.want {
			t.Errorf("%v overlaps %v: got %v", tt.a, tt.b, got)
		}
	}
}

func TestPathSet(t *testing.T) {
	data := map[string]any{"a": "scalar"}
	Path{"a", "b"}.Set(data, 1)
	Path{"c"}.Set(data, 2)

	want := map[string]any{"a": map[string]any{"b": 1}, "c": 2}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("got %v, want %v", data, want)
	}
}

func TestMapping(t *testing.T) {
	src := map[string]any{
		"name":  "item.name",
		"n":     json.Number("12345678901234567890.123"),
		"list":  []any{"index + 1", true, nil},
		"inner": map[string]any{"x": "data.x"},
	}
	m, err := CompileMapping(src, "input")
	if err != nil {
		t.Fatal(err)
	}

	got, err := m.Eval(Env{
		"item": map[string]any{"name": "photo"}, "index": 2,
		"data": map[string]any{"x": "y"}, "input": map[string]any{}, "steps": map[string]any{},
		"iteration": 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name":  "photo",
		"n":     json.Number("12345678901234567890.123"),
		"list":  []any{3, true, nil},
		"inner": map[string]any{"x": "y"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}

	_, err = CompileMapping(map[string]any{"a": []any{"1 +"}}, "input")
	if err == nil || !strings.HasPrefix(err.Error(), "input.a[0]: compiling") {
		t.Errorf("got %v, want the fault's path", err)
	}
}

func TestCompileDuration(t *testing.T) {
	tests := []struct {
		src     string
		literal time.Duration
		expr    bool
		err     string
	}{
		{src: "90s", literal: 90 * time.Second},
		{src: " 1h30m ", literal: 90 * time.Minute},
		{src: "0s", literal: 0},
		{src: "-1s", err: "negative duration"},
		{src: "data.wait", expr: true},
		{src: "ten minutes", err: "not a duration and compiling"},
		{src: "", err: "empty expression"},
	}
	for _, tt := range tests {
		d, err := CompileDuration(tt.src)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("CompileDuration(%q): got %v, want %q", tt.src, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("CompileDuration(%q): %v", tt.src, err)
			continue
		}
		if (d.Expr != nil) != tt.expr || d.Literal != tt.literal {
			t.Errorf("CompileDuration(%q) = %+v", tt.src, d)
		}
	}
}

func TestDurationEval(t *testing.T) {
	tests := []struct {
		src  string
		data any
		want time.Duration
	}{
		{src: "data.v", data: "2m", want: 2 * time.Minute},
		{src: "data.v", data: 1.5, want: 1500 * time.Millisecond},
		{src: "data.v", data: json.Number("3"), want: 3 * time.Second},
		{src: "data.v", data: -4, want: 0},
		{src: "duration('5s')", want: 5 * time.Second},
	}
	for _, tt := range tests {
		d, err := CompileDuration(tt.src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Eval(Env{"data": map[string]any{"v": tt.data}})
		if err != nil || got != tt.want {
			t.Errorf("%s over %v: got %v, %v; want %v", tt.src, tt.data, got, err, tt.want)
		}
	}
}

func TestExprSeesItemFields(t *testing.T) {
	e, err := CompileExpr("item.name + '-' + string(index)")
	if err != nil {
		t.Fatalf("compiling an expression over the foreach item: %v", err)
	}

	got, err := e.EvalString(Env{"item": map[string]any{"name": "a"}, "index": 1})
	if err != nil || got != "a-1" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestCompileSchemaRefusesExternalRefs(t *testing.T) {
	for _, doc := range []string{
		`{"$ref": "file:///etc/passwd"}`,
		`{"$ref": "other.json"}`,
		`{"$ref": "https://example.com/schema.json"}`,
	} {
		if _, err := CompileSchema([]byte(doc)); err == nil {
			t.Errorf("%s: compiled", doc)
		}
	}

	s, err := CompileSchema([]byte(`{"type": "object", "required": ["url"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`{"url": "x"}`)); err != nil {
		t.Errorf("valid input refused: %v", err)
	}
	if err := s.Validate([]byte(`{}`)); err == nil {
		t.Error("invalid input accepted")
	}
}

// TestCompileExprRefusesDeepSources is the regression test of a crash:
// 400 000 nested brackets in one expression overflowed the parser's stack
// and killed the process. Such sources are refused before parsing.
func TestCompileExprRefusesDeepSources(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"brackets", strings.Repeat("[", 400000) + strings.Repeat("]", 400000), "over the limit"},
		{"parentheses", strings.Repeat("(", 65) + "1" + strings.Repeat(")", 65), "deeper than 64"},
		{"negations", strings.Repeat("!", 1000000) + "true", "over the limit"},
		{"brackets in a string", `"` + strings.Repeat("[", 100) + `" == input.s`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileExpr(tt.src)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestCompileExprReadsHyphenatedStepIDs lets steps.<id> name a step whose
// id holds hyphens, as ids may; a minus with spaces stays a minus.
func TestCompileExprReadsHyphenatedStepIDs(t *testing.T) {
	env := Env{
		"steps": map[string]any{
			"pack-one": map[string]any{"output": map[string]any{"n": 5}},
			"a":        map[string]any{"output": map[string]any{"n": 2}},
		},
		"data": map[string]any{"s": "steps.pack-one"},
	}
	tests := []struct {
		src  string
		want any
		refs []string
	}{
		{"steps.pack-one.output.n", 5, []string{"pack-one"}},
		{`steps["pack-one"].output.n`, 5, []string{"pack-one"}},
		{"steps.pack-one.output.n - steps.a.output.n", 3, []string{"a", "pack-one"}},
		{`data.s == "steps.pack-one"`, true, nil},
	}
	for _, tt := range tests {
		e, err := CompileExpr(tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		got, err := e.Eval(env)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("%s = %v (%v), want %v", tt.src, got, err, tt.want)
		}
		if refs := e.StepRefs(); !reflect.DeepEqual(refs, tt.refs) {
			t.Fatalf("%s reads steps %v, want %v", tt.src, refs, tt.refs)
		}
	}
}
