package definition

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// decoder fills the definition types from the plain values the readers
// make. Unlike encoding/json it reports every unknown field and every
// value of the wrong type with its path, and it records which fields the
// source wrote, so that an explicit zero can be told from an absent field.
type decoder struct {
	fs *faults
}

// keyed is a type that keeps the set of fields its source wrote.
type keyed interface {
	setKeys(keys map[string]bool)
}

func (s *Step) setKeys(keys map[string]bool)        { s.keys = keys }
func (p *RetryPolicy) setKeys(keys map[string]bool) { p.keys = keys }

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	fieldCache     sync.Map // reflect.Type to map[string]int
)

// jsonFields maps the JSON names of a struct type's fields to their index.
func jsonFields(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}

	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldCache.Store(t, m)

	return m
}

// value stores src into dst; path names src in faults. A null leaves dst
// as it is, like an absent field.
func (d *decoder) value(path string, src any, dst reflect.Value) {
	if src == nil {
		return
	}

	t := dst.Type()
	switch {
	case t == rawMessageType:
		d.raw(path, src, dst)
	case t.Kind() == reflect.Interface:
		dst.Set(reflect.ValueOf(src))
	case t.Kind() == reflect.String:
		d.text(path, src, dst)
	case t.Kind() == reflect.Int:
		d.integer(path, src, dst)
	case t.Kind() == reflect.Float64:
		d.float(path, src, dst)
	case t.Kind() == reflect.Bool:
		b, ok := src.(bool)
		if !ok {
			d.fs.add(path, "want a boolean, got %s", jsonKind(src))
			return
		}
		dst.SetBool(b)
	case t.Kind() == reflect.Slice:
		d.slice(path, src, dst)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		obj, ok := src.(map[string]any)
		if !ok {
			d.fs.add(path, "want an object, got %s", jsonKind(src))
			return
		}
		dst.Set(reflect.New(t.Elem()))
		d.object(path, obj, dst.Elem())
	default:
		d.fs.add(path, "cannot decode into %s", t)
	}
}

// object stores the members of obj into the struct dst.
func (d *decoder) object(path string, obj map[string]any, dst reflect.Value) {
	fields := jsonFields(dst.Type())
	names := make([]string, 0, len(obj))
	for name := range obj {
		names = append(names, name)
	}
	sort.Strings(names)

	keys := make(map[string]bool, len(obj))
	for _, name := range names {
		i, ok := fields[name]
		if !ok {
			d.fs.add(fieldPath(path, name), "unknown field")
			continue
		}
		if obj[name] != nil {
			keys[name] = true
		}
		d.value(fieldPath(path, name), obj[name], dst.Field(i))
	}

	if k, ok := dst.Addr().Interface().(keyed); ok {
		k.setKeys(keys)
	}
}

// slice stores the elements of an array into dst.
func (d *decoder) slice(path string, src any, dst reflect.Value) {
	arr, ok := src.([]any)
	if !ok {
		d.fs.add(path, "want an array, got %s", jsonKind(src))
		return
	}

	out := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
	for i, elem := range arr {
		if elem == nil {
			d.fs.add(indexPath(path, i), "want %s, got null", kindName(dst.Type().Elem()))
			continue
		}
		d.value(indexPath(path, i), elem, out.Index(i))
	}
	dst.Set(out)
}

// text stores a string.
func (d *decoder) text(path string, src any, dst reflect.Value) {
	s, ok := src.(string)
	if !ok {
		d.fs.add(path, "want a string, got %s", jsonKind(src))
		return
	}

	dst.SetString(s)
}

// integer stores a whole number that fits in an int.
func (d *decoder) integer(path string, src any, dst reflect.Value) {
	n, ok := src.(json.Number)
	if !ok {
		d.fs.add(path, "want an integer, got %s", jsonKind(src))
		return
	}

	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		dst.SetInt(i)
		return
	}

	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		d.fs.add(path, "want an integer, got %s", n)
		return
	}
	dst.SetInt(int64(f))
}

// float stores a number.
func (d *decoder) float(path string, src any, dst reflect.Value) {
	n, ok := src.(json.Number)
	if !ok {
		d.fs.add(path, "want a number, got %s", jsonKind(src))
		return
	}

	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil {
		d.fs.add(path, "number %s is out of range", n)
		return
	}
	dst.SetFloat(f)
}

// raw stores an embedded JSON document (input_schema) as compact JSON
// with sorted keys.
func (d *decoder) raw(path string, src any, dst reflect.Value) {
	switch src.(type) {
	case map[string]any, bool:
	default:
		d.fs.add(path, "want an object or a boolean, got %s", jsonKind(src))
		return
	}

	doc, err := marshalPlain(src)
	if err != nil {
		d.fs.add(path, "%s", err.Error())
		return
	}
	dst.SetBytes(doc)
}

// marshalPlain writes v as compact JSON without HTML escapes.
func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}

	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonKind names the JSON type of a plain value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}

	return "an unknown value"
}

// kindName names the JSON type a Go type is read from.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Pointer:
		return "an object"
	}

	return "a value"
}

// MarshalJSON writes the policy. A zero jitter or an empty non_retryable
// list that the source wrote is kept, since it overrides the definition's
// defaults; a zero that was not written is left out like any empty field.
func (p *RetryPolicy) MarshalJSON() ([]byte, error) {
	type plain RetryPolicy
	out := struct {
		*plain
		Jitter       *float64  `json:"jitter,omitempty"`
		NonRetryable *[]string `json:"non_retryable,omitempty"`
	}{plain: (*plain)(p)}

	if p.written("jitter", p.Jitter != 0) {
		out.Jitter = &p.Jitter
	}
	if p.written("non_retryable", p.NonRetryable != nil) {
		list := p.NonRetryable
		if list == nil {
			list = []string{}
		}
		out.NonRetryable = &list
	}

	return marshalPlain(out)
}
