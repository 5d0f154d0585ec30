package definition

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileFormatSchema compiles schema.json, which also checks it against
// the draft 2020-12 metaschema.
func compileFormatSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()

	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSONSchema()))
	if err != nil {
		t.Fatalf("reading schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatalf("adding schema.json: %v", err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("compiling schema.json: %v", err)
	}

	return s
}

// plainSource reads a definition file as plain JSON values.
func plainSource(t *testing.T, file string) any {
	t.Helper()

	src := readFile(t, file)
	var fs faults
	var v any
	if isJSON(src) {
		v = readJSON(src, &fs)
	} else {
		v = readYAML(src, &fs)
	}
	if err := fs.err(); err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}

	return v
}

func TestSchemaAcceptsValidExamples(t *testing.T) {
	s := compileFormatSchema(t)
	for _, file := range sources(t, "valid") {
		if err := s.Validate(plainSource(t, file)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

func TestSchemaRefusesInvalidExamples(t *testing.T) {
	s := compileFormatSchema(t)
	for _, name := range []string{
		"bad_jitter", "bad_name", "bad_on_failure", "bad_version", "cancel_continue_without_cancel_if",
		"delay_with_duration_and_until", "delay_without_duration_or_until", "empty_body",
		"empty_branch", "field_not_for_kind", "foreach_without_items", "max_attempts_over_limit",
		"max_attempts_zero", "missing_id", "missing_name", "missing_type", "no_steps",
		"on_timeout_without_timeout", "parallel_without_branches", "reserved_id",
		"switch_without_cases", "task_without_service", "unknown_field", "unknown_type",
		"wait_without_event_or_key", "while_without_condition", "wrong_value_type",
		"user_task_empty_options", "user_task_duplicate_options", "escalate_to_without_timeout",
	} {
		file := filepath.Join("testdata", "invalid", name+".yaml")
		if err := s.Validate(plainSource(t, file)); err == nil {
			t.Errorf("%s: accepted by the schema", file)
		}
	}
}

func TestSchemaDocumentsEveryField(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	defs := schema["$defs"].(map[string]any)

	types := map[string]any{
		"Definition":  schema,
		"Defaults":    defs["defaults"],
		"RetryPolicy": defs["retry"],
		"Timeouts":    defs["timeouts"],
		"Step":        defs["step"],
		"Branch":      defs["branch"],
		"Case":        defs["case"],
		"Outcome":     defs["outcome_branch"],
	}
	goTypes := map[string]reflect.Type{
		"Definition":  reflect.TypeFor[Definition](),
		"Defaults":    reflect.TypeFor[Defaults](),
		"RetryPolicy": reflect.TypeFor[RetryPolicy](),
		"Timeouts":    reflect.TypeFor[Timeouts](),
		"Step":        reflect.TypeFor[Step](),
		"Branch":      reflect.TypeFor[Branch](),
		"Case":        reflect.TypeFor[Case](),
		"Outcome":     reflect.TypeFor[OutcomeBranch](),
	}

	for name, obj := range types {
		props := obj.(map[string]any)["properties"].(map[string]any)
		fields := jsonFields(goTypes[name])
		for field := range fields {
			prop, ok := props[field].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: missing from schema.json", name, field)
				continue
			}
			if desc, _ := prop["description"].(string); desc == "" {
				t.Errorf("%s.%s: no description in schema.json", name, field)
			}
		}
		for field := range props {
			if _, ok := fields[field]; !ok {
				t.Errorf("%s.%s: in schema.json but not in the Go type", name, field)
			}
		}
	}
}

func TestSchemaListsEveryKind(t *testing.T) {
	var schema struct {
		Defs struct {
			Step struct {
				Properties struct {
					Type struct {
						Enum []string `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"step"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}

	var want []string
	for k := range kindFields {
		want = append(want, string(k))
	}
	got := schema.Defs.Step.Properties.Type.Enum
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema kinds %v, compiler kinds %v", got, want)
	}
}
