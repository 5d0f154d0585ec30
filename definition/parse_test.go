package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseYAMLAndJSONAgree(t *testing.T) {
	yamlSrc := `
name: flow
version: 2
input_schema: {type: object, properties: {n: {type: integer, maximum: 10}}}
defaults:
  retry: {max_attempts: 4, backoff_coefficient: 1.5}
steps:
  - id: a
    type: task
    service: svc
    action: act
    input: {big: 12345678901234567890.123, n: 7, list: [1, "x", true, null], e: 1e400}
    output: out
  - id: p
    type: parallel
    branches:
      - steps: [{id: b, type: delay, duration: 1s}]
`
	jsonSrc := `{
  "name": "flow", "version": 2,
  "input_schema": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}},
  "defaults": {"retry": {"max_attempts": 4, "backoff_coefficient": 1.5}},
  "steps": [
    {"id": "a", "type": "task", "service": "svc", "action": "act",
     "input": {"big": 12345678901234567890.123, "n": 7, "list": [1, "x", true, null],
               "e": 1e400},
     "output": "out"},
    {"id": "p", "type": "parallel", "branches": [
      {"steps": [{"id": "b", "type": "delay", "duration": "1s"}]}]}
  ]
}`
	fromYAML, err := Parse([]byte(yamlSrc))
	if err != nil {
		t.Fatalf("parsing YAML: %v", err)
	}
	fromJSON, err := Parse([]byte(jsonSrc))
	if err != nil {
		t.Fatalf("parsing JSON: %v", err)
	}

	if !reflect.DeepEqual(fromYAML, fromJSON) {
		a, _ := Canonical(fromYAML)
		b, _ := Canonical(fromJSON)
		t.Fatalf("YAML and JSON differ:\n%s\n%s", a, b)
	}

	input := fromYAML.Steps[0].Input.(map[string]any)
	if got := input["big"]; got != json.Number("12345678901234567890.123") {
		t.Errorf("big number: got %#v", got)
	}
	if got := input["e"]; got != json.Number("1e400") {
		t.Errorf("huge exponent: got %#v", got)
	}
}

func TestParseYAMLScalars(t *testing.T) {
	tests := []struct {
		src  string
		want any
	}{
		{"12345678901234567890.123", json.Number("12345678901234567890.123")},
		{"123456789012345678901234567890", json.Number("123456789012345678901234567890")},
		{"0x10", json.Number("16")},
		{"0o17", json.Number("15")},
		{"0b101", json.Number("5")},
		{"+5", json.Number("5")},
		{"1_000", json.Number("1000")},
		{"-0", json.Number("-0")},
		{".5", json.Number("0.5")},
		{"+1.5", json.Number("1.5")},
		{"1.", json.Number("1")},
		{"-.25e3", json.Number("-0.25e3")},
		{"1e3", json.Number("1e3")},
		{"~", nil},
		{"null", nil},
		{"true", true},
		{"False", false},
		{"yes", "yes"},
		{"'0x10'", "0x10"},
		{"2024-01-02", "2024-01-02"},
	}
	for _, tt := range tests {
		src := "name: f\nversion: 1\nsteps:\n- {id: a, type: task, input: {v: " + tt.src + "}}\n"
		d, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		got := d.Steps[0].Input.(map[string]any)["v"]
		if got != tt.want {
			t.Errorf("%s: got %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "unknown field path",
			src:  "name: f\nversion: 1\nsteps:\n- {id: a, type: task}\n- {id: b, servce: x}\n",
			want: "steps[1].servce: unknown field",
		},
		{
			name: "unknown nested field",
			src:  `{"name": "f", "steps": [{"retry": {"max_atempts": 2}}]}`,
			want: "steps[0].retry.max_atempts: unknown field",
		},
		{
			name: "odd key quoted in path",
			src:  "name: f\n\"a b\": 1\n",
			want: `["a b"]: unknown field`,
		},
		{
			name: "infinity",
			src:  "name: f\nsteps: [{input: -.inf}]\n",
			want: `steps[0].input: "-.inf" is not a JSON number`,
		},
		{
			name: "self alias",
			src:  "a: &x [*x]\n",
			want: "refers to itself",
		},
		{
			name: "trailing empty document is fine, a second one is not",
			src:  "name: f\n---\n---\nname: g\n",
			want: "more than one YAML document",
		},
		{
			name: "YAML flow mapping read as JSON",
			src:  "{name: f}",
			want: "is read as JSON",
		},
		{
			name: "two documents",
			src:  "name: a\n---\nname: b\n",
			want: "more than one YAML document",
		},
		{
			name: "empty",
			src:  "  \n",
			want: "the definition is empty",
		},
		{
			name: "trailing JSON",
			src:  `{"name": "f"} {}`,
			want: "unexpected data after the definition",
		},
		{
			name: "null step",
			src:  "name: f\nsteps: [null]\n",
			want: "steps[0]: want an object, got null",
		},
		{
			name: "non-string key",
			src:  "name: f\n? [a]\n: 1\n",
			want: "is not a string",
		},
		{
			name: "fraction where an integer goes",
			src:  `{"version": 1.5}`,
			want: "version: want an integer, got 1.5",
		},
		{
			name: "integer out of range",
			src:  `{"version": 1e30}`,
			want: "version: want an integer, got 1e30",
		},
		{
			name: "schema of the wrong type",
			src:  `{"input_schema": "object"}`,
			want: "input_schema: want an object or a boolean, got a string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseAliasesExpand(t *testing.T) {
	src := `
name: f
version: 1
task: &task {type: task, service: svc, action: act}
`
	_, err := Parse([]byte(src))
	if err == nil || !strings.Contains(err.Error(), "task: unknown field") {
		t.Fatalf("got %v, want the anchor's field refused as unknown", err)
	}

	src = `
name: f
version: 1
steps:
  - {id: a, type: task, service: svc, action: act, input: &in {x: data.x, n: 5}}
  - {id: b, type: task, service: svc, action: act, input: *in}
`
	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Steps[0].Input, d.Steps[1].Input) {
		t.Errorf("alias not expanded: %#v", d.Steps[1].Input)
	}
}

func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}

	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Fatalf("got %v, want the expansion refused", err)
	}
}

func TestParseLimits(t *testing.T) {
	big := bytes.Repeat([]byte(" "), MaxDefinitionBytes+1)
	_, err := Parse(big)
	if err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("oversized source: got %v", err)
	}

	deep := strings.Repeat("[", maxValueDepth+2) + strings.Repeat("]", maxValueDepth+2)
	_, err = Parse([]byte(`{"input": ` + deep + `}`))
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep JSON: got %v", err)
	}
	_, err = Parse([]byte("input: " + deep))
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep YAML: got %v", err)
	}
}

func TestParseTrailingEmptyDocument(t *testing.T) {
	d, err := Parse([]byte("name: f\nversion: 1\n---\n"))
	if err != nil || d.Name != "f" {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestParseBOM(t *testing.T) {
	src := append([]byte("\xef\xbb\xbf"), []byte(`{"name": "f", "version": 1}`)...)
	d, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "f" {
		t.Errorf("got name %q", d.Name)
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	for _, file := range sources(t, "valid") {
		src := readFile(t, file)
		d, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}

		first, err := Canonical(d)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		again, err := Parse(first)
		if err != nil {
			t.Fatalf("%s: parsing canonical form: %v\n%s", file, err, first)
		}
		second, err := Canonical(again)
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(first, second) {
			t.Errorf("%s: canonical form not stable:\n%s\n%s", file, first, second)
		}
		g1, err := Compile(d)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		g2, err := Compile(again)
		if err != nil {
			t.Fatalf("%s: canonical form does not compile: %v", file, err)
		}
		if a, b := Digest(g1), Digest(g2); a != b {
			t.Errorf("%s: canonical form compiles to another graph:\n%s\n%s", file, a, b)
		}
	}
}

func TestCanonicalKeepsOverridingZeros(t *testing.T) {
	src := `
name: f
version: 1
defaults:
  retry: {jitter: 0.5, non_retryable: [A]}
steps:
  - {id: a, type: task, service: s, action: x, retry: {jitter: 0, non_retryable: []}}
`
	d, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	canon, err := Canonical(d)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(canon)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Compile(again)
	if err != nil {
		t.Fatal(err)
	}

	r := g.Nodes["a"].Retry
	if r.Jitter != 0 || len(r.NonRetryable) != 0 {
		t.Errorf("after a canonical round trip: %+v\n%s", r, canon)
	}
}

func TestCanonicalKeepsNumbers(t *testing.T) {
	d, err := Parse([]byte(`{"name": "f", "version": 1, "input_schema": {"maximum": 1e2,
		"type": "number"}, "steps": [{"id": "a", "type": "task",
		"input": {"n": 12345678901234567890.123, "s": "a < b"}}]}`))
	if err != nil {
		t.Fatal(err)
	}

	got, err := Canonical(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"f","version":1,"input_schema":{"maximum":1e2,"type":"number"},` +
		`"steps":[{"id":"a","type":"task","input":{"n":12345678901234567890.123,"s":"a < b"}}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
