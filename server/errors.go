package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/engine"
	"github.com/weftworks/weft/store"
)

var (
	// errOverloaded refuses a call when MaxInFlight calls are being served.
	errOverloaded = errors.New("server overloaded")
	// errNotInEngine answers a command this build's engine cannot do yet.
	errNotInEngine = errors.New("not supported by this engine")
	// errPushMode refuses a poll for a service weft pushes tasks to.
	errPushMode = errors.New("not a pull service")
	// errNotRegistered refuses a poll for a service the registry does not
	// have (a misspelt name, most often).
	errNotRegistered = errors.New("service not registered")
	// errNoStep answers a report for a pointer the instance does not have.
	errNoStep = fmt.Errorf("no such step: %w", store.ErrNotFound)
)

// retryHint is the backoff a refused caller is told to wait.
const retryHint = time.Second

// fieldError ties an error to the request field it is about, so the
// status names the field. A refusal of the field itself carries
// engine.ErrInvalid as its sentinel.
type fieldError struct {
	field    string
	err      error
	sentinel error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }

func (e *fieldError) Unwrap() []error { return []error{e.err, e.sentinel} }

// invalidField refuses a request field.
func invalidField(field, format string, args ...any) error {
	return &fieldError{field: field, err: fmt.Errorf(format, args...), sentinel: engine.ErrInvalid}
}

// onField ties an engine or store error to the field it is about; nil
// stays nil, and so does an engine refusal that names its own field.
func onField(field string, err error) error {
	var verr *definition.ValidationError
	if err == nil || errors.Is(err, engine.ErrInvalid) && !errors.As(err, &verr) {
		return err
	}

	return &fieldError{field: field, err: err}
}

// status is the one place where errors become gRPC statuses. Expected
// errors keep their message and get the details a client needs; anything
// else is INTERNAL with a generic message, and logged in full.
func (s *Server) status(method string, err error) error {
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}

	st := classify(err)
	if st == nil {
		s.log.Error("request failed unexpectedly", keyMethod, method, keyErr, err)
		return status.Error(codes.Internal, "internal error; the server log has the details")
	}

	if c := st.Code(); c == codes.Unauthenticated || c == codes.PermissionDenied {
		s.log.Warn("request refused", keyMethod, method, keyCode, c.String(), keyErr, err)
	} else {
		s.log.Debug("request refused", keyMethod, method, keyCode, c.String(), keyErr, err)
	}

	return st.Err()
}

// classify maps the sentinel errors of the engine, the store and this
// package to statuses; nil means the error is unexpected.
func classify(err error) *status.Status {
	var verr *definition.ValidationError
	field := fieldOf(err)

	switch {
	case store.IsUnavailable(err):
		// First, since a connect timeout may look like a deadline. The
		// cause names the database's address: it stays in the log.
		return withDetails(codes.Unavailable, "database unavailable; retry later",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(retryHint)})
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.As(err, &verr):
		return withDetails(codes.InvalidArgument, err.Error(), faultViolations(verr))
	case errors.Is(err, engine.ErrInvalid), errors.Is(err, engine.ErrTooLarge),
		errors.Is(err, store.ErrInvalid),
		errors.Is(err, store.ErrInvalidPageToken):
		return withDetails(codes.InvalidArgument, err.Error(), &errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: field, Description: err.Error()},
			},
		})
	case errors.Is(err, store.ErrNotFound):
		return status.New(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrAlreadyExists):
		return status.New(codes.AlreadyExists, err.Error())
	case errors.Is(err, errOverloaded):
		return withDetails(codes.ResourceExhausted, "server overloaded; retry later",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(retryHint)})
	case errors.Is(err, engine.ErrBusy), errors.Is(err, store.ErrLocked):
		return withDetails(codes.Unavailable, err.Error(),
			&errdetails.RetryInfo{RetryDelay: durationpb.New(retryHint)})
	case errors.Is(err, errUnauthenticated):
		return status.New(codes.Unauthenticated, err.Error())
	case errors.Is(err, errPermissionDenied):
		return status.New(codes.PermissionDenied, err.Error())
	case errors.Is(err, errNotInEngine):
		return status.New(codes.Unimplemented, err.Error())
	}

	if reason := preconditionReason(err); reason != "" {
		return withDetails(codes.FailedPrecondition, err.Error(), &errdetails.PreconditionFailure{
			Violations: []*errdetails.PreconditionFailure_Violation{
				{Type: reason, Subject: field, Description: err.Error()},
			},
		})
	}

	return nil
}

// preconditionReason names the precondition err says is not met, or ""
// when it is no precondition error.
func preconditionReason(err error) string {
	reasons := []struct {
		err    error
		reason string
	}{
		{store.ErrInUse, "IN_USE"},
		{store.ErrDeprecated, "DEPRECATED"},
		{engine.ErrFinished, "INSTANCE_FINISHED"},
		{engine.ErrWrongStatus, "WRONG_STATUS"},
		{engine.ErrLate, "LATE_REPORT"},
		{errPushMode, "PUSH_MODE"},
		{errNotRegistered, "NOT_REGISTERED"},
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}

	return ""
}

// fieldOf finds the request field an error is about: the one a
// fieldError names, else the one an engine refusal starts with.
func fieldOf(err error) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field
	}

	_, rest, ok := strings.Cut(err.Error(), engine.ErrInvalid.Error()+": ")
	if !ok {
		return ""
	}
	field, _, _ := strings.Cut(rest, ":")

	return field
}

func faultViolations(verr *definition.ValidationError) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, f := range verr.Faults {
		field := "source"
		if f.Path != "" {
			field += "." + f.Path
		}
		br.FieldViolations = append(br.FieldViolations,
			&errdetails.BadRequest_FieldViolation{Field: field, Description: f.Message})
	}

	return br
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) *status.Status {
	st := status.New(c, msg)
	for _, d := range details {
		if with, err := st.WithDetails(d); err == nil {
			st = with
		}
	}

	return st
}
