package engine

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/weftworks/weft/store"
)

// Log attribute keys, defined once.
const (
	keyNode     = "node"
	keyInstance = "instance_id"
	keyStep     = "step_id"
	keyAttempt  = "attempt"
	keyService  = "service"
	keyErr      = "err"
	keyCount    = "count"
	keyHook     = "hook"
	keyMode     = "mode"
	keyBackoff  = "backoff"
)

// Errors the engine returns; the API edge maps them to status codes.
// Store sentinels (store.ErrNotFound, ...) pass through wrapped.
var (
	// ErrInvalid wraps every refusal of bad input: it names the field.
	ErrInvalid = errors.New("invalid argument")
	// ErrFinished means the instance has ended and takes no command.
	ErrFinished = errors.New("instance finished")
	// ErrWrongStatus means the command does not apply to the instance's
	// current status (resume of a running instance, say).
	ErrWrongStatus = errors.New("wrong status")
	// ErrBusy means the instance stayed leased by another node for the
	// whole time a command waited.
	ErrBusy = errors.New("instance busy")
	// ErrTooLarge means a payload is over the configured limit.
	ErrTooLarge = errors.New("payload too large")
	// ErrLate means a report came for an attempt that is no longer
	// current, or for a finished step or instance.
	ErrLate = errors.New("late report")
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Error is the failure a handler returns to control retries; any other
// error counts as retryable with code "error".
type Error struct {
	Code      string
	Message   string
	Retryable bool
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}

	return e.Code + ": " + e.Message
}

// Limits on a failure report: a longer code or message is cut to the
// limit before it is stored, with a note of the size it had.
const (
	// MaxErrorCodeBytes bounds an error code.
	MaxErrorCodeBytes = 128
	// MaxErrorMessageBytes bounds an error message.
	MaxErrorMessageBytes = 8 << 10
)

// boundedError returns the store's form of a reported error, its code
// and message cut to their limits.
func boundedError(e *Error) *store.StepError {
	return &store.StepError{
		Code:      cut(e.Code, MaxErrorCodeBytes),
		Message:   cut(e.Message, MaxErrorMessageBytes),
		Retryable: e.Retryable,
	}
}

// cut shortens s to at most limit bytes, on a rune boundary, saying how
// long it was.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}

	note := fmt.Sprintf(" (cut from %d bytes)", len(s))
	end := max(limit-len(note), 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}

	return s[:end] + note
}

// NonRetryable returns a handler error that fails the step at once.
func NonRetryable(code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Retryable returns a handler error that the retry policy may retry.
func Retryable(code, message string) *Error {
	return &Error{Code: code, Message: message, Retryable: true}
}

func stepError(err error) *store.StepError {
	var he *Error
	if errors.As(err, &he) {
		return &store.StepError{Code: he.Code, Message: he.Message, Retryable: he.Retryable}
	}

	return &store.StepError{Code: "error", Message: err.Error(), Retryable: true}
}
