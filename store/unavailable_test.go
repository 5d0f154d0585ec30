package store_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/weftworks/weft/store"
)

// sqlStateError is an error carrying an SQLSTATE, as drivers report a
// server's refusal.
type sqlStateError string

func (e sqlStateError) Error() string    { return "server said " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

func TestIsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, refused := net.Dial("tcp", addr)

	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("reading: %w", refused), true},
		{fmt.Errorf("committing: %w", driver.ErrBadConn), true},
		{fmt.Errorf("reading: %w", store.ErrUnavailable), true},
		{sqlStateError("08006"), true},
		{sqlStateError("57P01"), true},
		{sqlStateError("53300"), true},
		{sqlStateError("23505"), false},
		{sqlStateError("40001"), false},
		{fmt.Errorf("getting: %w", store.ErrNotFound), false},
		{context.DeadlineExceeded, false},
		{errors.New("disk on fire"), false},
	}
	for _, tt := range tests {
		if got := store.IsUnavailable(tt.err); got != tt.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
