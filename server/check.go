package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxNameBytes bounds ids, names, keys and reasons in requests.
const maxNameBytes = 1024

// required refuses an empty or oversized string field.
func required(field, v string) error {
	if v == "" {
		return invalidField(field, "required")
	}

	return name(field, v)
}

// name refuses an oversized or non-UTF-8 string field; empty passes.
func name(field, v string) error {
	if len(v) > maxNameBytes {
		return invalidField(field, "%d bytes, over the limit of %d", len(v), maxNameBytes)
	}
	if !utf8.ValidString(v) {
		return invalidField(field, "not valid UTF-8")
	}

	return nil
}

// positive refuses a number below 1.
func positive(field string, v int64) error {
	if v < 1 {
		return invalidField(field, "must be at least 1, got %d", v)
	}

	return nil
}

// payload checks a JSON field against the size limit and for syntax;
// empty passes as nil.
func (s *Server) payload(field, v string) (json.RawMessage, error) {
	if len(v) > s.opts.MaxPayloadBytes {
		return nil, invalidField(field, "%d bytes, over the %d byte limit (payload too large)",
			len(v), s.opts.MaxPayloadBytes)
	}
	if len(bytes.TrimSpace([]byte(v))) == 0 {
		return nil, nil
	}
	if !json.Valid([]byte(v)) {
		return nil, invalidField(field, "malformed JSON")
	}

	return json.RawMessage(v), nil
}

// dataPath checks a dotted path into instance data.
func dataPath(field, v string) error {
	for _, part := range strings.Split(v, ".") {
		if part == "" || strings.ContainsAny(part, `"\[]`) {
			return invalidField(field, "%q is not a dotted path such as order.id", v)
		}
	}

	return nil
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}

	return nil
}
