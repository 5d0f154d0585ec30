package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// ErrUnavailable means the database could not be reached: the store
// wraps it around a failure that says so in other words, such as a
// connection attempt that ran out of time (which looks like a deadline).
var ErrUnavailable = errors.New("database unavailable")

// IsUnavailable reports whether err says that the database could not be
// reached or went away (connection refused, reset or closed, the server
// shutting down or out of connections): a condition that passes, so that
// the same call may succeed later. A write that failed this way may still
// have committed when its COMMIT was under way. The caller's own
// cancellation or deadline is not unavailability, unless the store marked
// it with ErrUnavailable.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}

	if errors.Is(err, ErrUnavailable) {
		return true
	}

	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}

	for _, target := range []error{
		driver.ErrBadConn, sql.ErrConnDone, io.ErrUnexpectedEOF,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
	} {
		if errors.Is(err, target) {
			return true
		}
	}

	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}

	// Drivers that know a statement never reached the server say so
	// (pgx's "conn closed", a failed connect).
	var retry interface{ SafeToRetry() bool }
	if errors.As(err, &retry) && retry.SafeToRetry() {
		return true
	}

	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return unavailableState(coded.SQLState())
	}

	unavailableMu.RLock()
	defer unavailableMu.RUnlock()
	for _, f := range unavailableTests {
		if f(err) {
			return true
		}
	}

	return false
}

var (
	unavailableMu    sync.RWMutex
	unavailableTests []func(error) bool
)

// RegisterUnavailable adds a test for errors of a driver that mean the
// database went away in words only that driver knows (pgx's "conn
// closed", say); IsUnavailable then counts them too. Stores call it from
// an init function.
func RegisterUnavailable(f func(error) bool) {
	unavailableMu.Lock()
	defer unavailableMu.Unlock()

	unavailableTests = append(unavailableTests, f)
}

// unavailableState says whether an SQLSTATE is a connection failure
// (class 08), the server shutting down or starting (57P01 to 57P03) or
// out of connections (53300).
func unavailableState(state string) bool {
	if len(state) == 5 && state[:2] == "08" {
		return true
	}

	switch state {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}

	return false
}
