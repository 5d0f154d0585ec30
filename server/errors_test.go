package server

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

// TestStatusMapping pins the one mapping of errors to status codes.
func TestStatusMapping(t *testing.T) {
	verr := &definition.ValidationError{Faults: []definition.Fault{{Path: "steps[0].type", Message: "unknown"}}}
	cases := []struct {
		err    error
		code   codes.Code
		inText string
	}{
		{invalidField("input", "malformed JSON"), codes.InvalidArgument, "input: malformed JSON"},
		{fmt.Errorf("%w: %w", engine.ErrInvalid, verr), codes.InvalidArgument, "steps[0].type"},
		{fmt.Errorf("input: %w", engine.ErrTooLarge), codes.InvalidArgument, "payload too large"},
		{onField("page_token", store.ErrInvalidPageToken), codes.InvalidArgument, "page_token"},
		{onField("instance_id", fmt.Errorf("getting x: %w", store.ErrNotFound)), codes.NotFound, "instance_id"},
		{fmt.Errorf("definition d v1: %w", store.ErrAlreadyExists), codes.AlreadyExists, "d v1"},
		{fmt.Errorf("deleting: %w", store.ErrInUse), codes.FailedPrecondition, "in use"},
		{fmt.Errorf("d v1: %w", store.ErrDeprecated), codes.FailedPrecondition, "deprecated"},
		{fmt.Errorf("instance x: %w", engine.ErrFinished), codes.FailedPrecondition, "finished"},
		{fmt.Errorf("resume: %w", engine.ErrWrongStatus), codes.FailedPrecondition, "wrong status"},
		{fmt.Errorf("attempt 1: superseded: %w", engine.ErrLate), codes.FailedPrecondition, "superseded"},
		{errOverloaded, codes.ResourceExhausted, "retry later"},
		{fmt.Errorf("instance x: %w", engine.ErrBusy), codes.Unavailable, "busy"},
		{fmt.Errorf("no token: %w", errUnauthenticated), codes.Unauthenticated, "no token"},
		{fmt.Errorf("bob: %w", errPermissionDenied), codes.PermissionDenied, "bob"},
		{fmt.Errorf("retry: %w", errNotInEngine), codes.Unimplemented, "retry"},
		{context.Canceled, codes.Canceled, "canceled"},
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, c := range cases {
		st := status.Convert(s.status("/m", c.err))
		if st.Code() != c.code || !strings.Contains(st.Message(), c.inText) {
			t.Errorf("%v: %v %q, want %v with %q", c.err, st.Code(), st.Message(), c.code, c.inText)
		}
	}
}

// TestStatusDetails checks the details clients act on: the field of a
// bad request, the reason of a precondition and the retry hint.
func TestStatusDetails(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}

	st := status.Convert(s.status("/m", invalidField("data_value", "malformed JSON")))
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	if !ok || br.GetFieldViolations()[0].GetField() != "data_value" {
		t.Fatalf("bad request details = %v, want the field data_value", st.Details())
	}

	st = status.Convert(s.status("/m", onField("instance_id", fmt.Errorf("x: %w", engine.ErrFinished))))
	pf, ok := st.Details()[0].(*errdetails.PreconditionFailure)
	if !ok || pf.GetViolations()[0].GetType() != "INSTANCE_FINISHED" || pf.GetViolations()[0].GetSubject() != "instance_id" {
		t.Fatalf("precondition details = %v", st.Details())
	}

	st = status.Convert(s.status("/m", errOverloaded))
	ri, ok := st.Details()[0].(*errdetails.RetryInfo)
	if !ok || ri.GetRetryDelay().AsDuration() != retryHint {
		t.Fatalf("overload details = %v, want a retry hint", st.Details())
	}
}

// TestStatusInternal checks that an unexpected error reaches the caller
// as a generic INTERNAL and the log in full.
func TestStatusInternal(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}

	st := status.Convert(s.status("/weft.v1.X/Y", errors.New("disk on fire at sector 7")))
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "sector") {
		t.Fatalf("unexpected error answered %v %q, want INTERNAL without the cause", st.Code(), st.Message())
	}
	if !strings.Contains(logs.String(), "disk on fire at sector 7") || !strings.Contains(logs.String(), "/weft.v1.X/Y") {
		t.Fatalf("log = %q, want the full error and the method", logs.String())
	}
}

// TestStatusDatabaseUnavailable checks that a database that cannot be
// reached is answered UNAVAILABLE with a retry hint, without the
// database's address, whether the driver says so with a network error
// or with driver.ErrBadConn.
func TestStatusDatabaseUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, refused := net.Dial("tcp", addr)
	if refused == nil {
		t.Fatalf("dialling %s after closing it succeeded", addr)
	}

	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, err := range []error{
		fmt.Errorf("getting instance x: %w", refused),
		fmt.Errorf("starting: rolling back write batch: %w", driver.ErrBadConn),
	} {
		st := status.Convert(s.status("/m", err))
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), addr) {
			t.Errorf("%v: %v %q, want UNAVAILABLE without the address", err, st.Code(), st.Message())
		}
		if len(st.Details()) != 1 {
			t.Errorf("%v: details %v, want a retry hint", err, st.Details())
		} else if _, ok := st.Details()[0].(*errdetails.RetryInfo); !ok {
			t.Errorf("%v: details %v, want a retry hint", err, st.Details())
		}
	}
}
