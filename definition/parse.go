package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// utf8BOM is the byte order mark some editors write at the start of a file.
var utf8BOM = []byte("\xef\xbb\xbf")

// Parse reads a definition written in JSON (when its first non-space byte
// is '{') or else in YAML. Numbers keep every digit: in Input they are
// json.Number values. Unknown fields, values of the wrong type, duplicate
// keys, and YAML that has no JSON equivalent (merge keys, .inf, custom
// tags) are refused. Every fault of the source is reported at once, in a
// *ValidationError naming the path of each, as in
// "steps[1].servce: unknown field".
//
// Parse checks the shape of the source only; Compile checks its meaning.
func Parse(src []byte) (*Definition, error) {
	if len(src) > MaxDefinitionBytes {
		fault := Fault{Message: fmt.Sprintf("the definition is %d bytes, over the limit of %d",
			len(src), MaxDefinitionBytes)}
		return nil, &ValidationError{Faults: []Fault{fault}}
	}

	src = bytes.TrimPrefix(src, utf8BOM)

	var fs faults
	var plain any
	if isJSON(src) {
		plain = readJSON(src, &fs)
	} else {
		plain = readYAML(src, &fs)
	}
	if err := fs.err(); err != nil {
		return nil, err
	}

	obj, ok := plain.(map[string]any)
	if !ok {
		fs.add("", "want an object at the top of the definition, got %s", jsonKind(plain))
		return nil, fs.err()
	}

	def := new(Definition)
	d := &decoder{fs: &fs}
	d.object("", obj, reflect.ValueOf(def).Elem())
	if err := fs.err(); err != nil {
		return nil, err
	}

	return def, nil
}

// isJSON reports whether src starts, after white space, with '{'.
func isJSON(src []byte) bool {
	trimmed := bytes.TrimLeft(src, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// Canonical renders a definition as compact JSON: fields in declaration
// order, empty fields left out, object keys of input and input_schema
// sorted, numbers exactly as written, no HTML escapes. Parsing the result
// gives the same definition again.
func Canonical(d *Definition) ([]byte, error) {
	if d == nil {
		return nil, errors.New("encoding definition: nil definition")
	}

	c := *d
	if len(d.InputSchema) > 0 {
		schema, err := canonicalJSON(d.InputSchema)
		if err != nil {
			return nil, fmt.Errorf("encoding input_schema: %w", err)
		}
		c.InputSchema = schema
	}

	out, err := marshalPlain(&c)
	if err != nil {
		return nil, fmt.Errorf("encoding definition: %w", err)
	}

	return out, nil
}

// canonicalJSON rewrites a JSON document with sorted keys and exact
// numbers.
func canonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()

	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}

	return marshalPlain(v)
}
