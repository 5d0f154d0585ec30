package definition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxValueDepth bounds the nesting of objects and arrays in a source. It
// is far above what MaxDepth steps need, and keeps the readers' recursion
// small.
const maxValueDepth = 512

// jsonReader turns JSON text into plain values: objects, arrays, strings,
// booleans, nil, and json.Number for every number, so that no digit is
// lost. Unlike encoding/json it refuses duplicate keys.
type jsonReader struct {
	src []byte
	dec *json.Decoder
	fs  *faults
}

// readJSON reads src as one JSON value, recording faults in fs.
func readJSON(src []byte, fs *faults) any {
	r := &jsonReader{src: src, dec: json.NewDecoder(bytes.NewReader(src)), fs: fs}
	r.dec.UseNumber()

	v, err := r.value("", 0)
	if err != nil {
		fs.add("", "%s", r.describe(err))
		return nil
	}

	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		fs.add("", "json: unexpected data after the definition at %s", r.position())
		return nil
	}

	return v
}

// value reads the next value; path names it in faults.
func (r *jsonReader) value(path string, depth int) (any, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("nested deeper than %d levels at %s", maxValueDepth, path)
	}

	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}

	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return r.object(path, depth)
		}
		return r.array(path, depth)
	case json.Number, string, bool, nil:
		return t, nil
	}

	return nil, fmt.Errorf("unexpected token %v", tok)
}

// object reads the members of an object whose '{' was read.
func (r *jsonReader) object(path string, depth int) (any, error) {
	obj := map[string]any{}
	for r.dec.More() {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		at := fieldPath(path, key)

		v, err := r.value(at, depth+1)
		if err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			r.fs.add(at, "duplicate key")
			continue
		}
		obj[key] = v
	}

	if _, err := r.dec.Token(); err != nil {
		return nil, err
	}

	return obj, nil
}

// array reads the elements of an array whose '[' was read.
func (r *jsonReader) array(path string, depth int) (any, error) {
	arr := []any{}
	for r.dec.More() {
		v, err := r.value(indexPath(path, len(arr)), depth+1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}

	if _, err := r.dec.Token(); err != nil {
		return nil, err
	}

	return arr, nil
}

// describe renders a reading error with the line and column it stopped at.
func (r *jsonReader) describe(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("json: %s at %s (a source that starts with '{' is read as JSON)",
			syn.Error(), lineColumn(r.src, syn.Offset))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "json: unexpected end of input"
	}

	return fmt.Sprintf("json: %s", err.Error())
}

// position renders where the decoder stands.
func (r *jsonReader) position() string {
	return lineColumn(r.src, r.dec.InputOffset())
}

// lineColumn renders a byte offset of src as "line L, column C".
func lineColumn(src []byte, offset int64) string {
	offset = min(max(offset, 0), int64(len(src)))
	before := src[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')

	return fmt.Sprintf("line %d, column %d", line, col)
}
