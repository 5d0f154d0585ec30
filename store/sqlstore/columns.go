package sqlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// ms turns a time into unix milliseconds.
func ms(t time.Time) int64 {
	return t.UnixMilli()
}

// nullMS turns a time into unix milliseconds, or NULL when it is zero.
func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}

	return t.UnixMilli()
}

// fromMS turns unix milliseconds into a UTC time.
func fromMS(v int64) time.Time {
	return time.UnixMilli(v).UTC()
}

// text binds JSON bytes as TEXT, or NULL when there are none. Binding a
// string, not bytes, keeps SQLite from storing a BLOB its JSON functions
// would read as JSONB.
func text(b []byte) any {
	if len(b) == 0 {
		return nil
	}

	return string(b)
}

// boolInt binds a bool as 0 or 1, which both dialects store as an integer.
func boolInt(b bool) int {
	if b {
		return 1
	}

	return 0
}

// timeCol scans a nullable unix-milliseconds column into a time, zero for
// NULL.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = fromMS(v)
	default:
		return fmt.Errorf("scanning time: unexpected %T", src)
	}

	return nil
}

// jsonCol scans a nullable TEXT column into raw JSON, nil for NULL. The
// bytes are copied, so they stay valid after the row moves on.
type jsonCol struct{ b *json.RawMessage }

// Scan implements sql.Scanner.
func (c jsonCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.b = nil
	case string:
		*c.b = json.RawMessage(v)
	case []byte:
		*c.b = append(json.RawMessage(nil), v...)
	default:
		return fmt.Errorf("scanning json: unexpected %T", src)
	}

	return nil
}

// boolCol scans an integer column into a bool.
type boolCol struct{ b *bool }

// Scan implements sql.Scanner.
func (c boolCol) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*c.b = v != 0
	case bool:
		*c.b = v
	default:
		return fmt.Errorf("scanning bool: unexpected %T", src)
	}

	return nil
}
