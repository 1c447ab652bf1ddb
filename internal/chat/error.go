package chat

import (
	"errors"
	"fmt"
)

// Error codes. The strings are part of API v1: they appear as
// {"error":{"code":…}} over HTTP and {"type":"error","code":…} over WebSocket.
// The transport maps each code to an HTTP status and a close code in one place.
const (
	EInvalid      = "invalid"      // malformed or out-of-range input
	EUnauthorized = "unauthorized" // no valid session
	EForbidden    = "forbidden"    // authenticated, but not a member
	ENotFound     = "not_found"    // no such user, room or era
	EConflict     = "conflict"     // state forbids it (e.g. duplicate)
	ETooLarge     = "too_large"    // a size limit was passed
	ERateLimited  = "rate_limited" // a rate limit was passed
	EUnavailable  = "unavailable"  // a dependency (store, Redis) is down; retry later
	EInternal     = "internal"     // a bug or unexpected failure; details are logged, not shown
)

// Error is the one error type that crosses package boundaries with a code a
// client may see. Any other error is reported to clients as EInternal.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, "" for nil
// and EInternal for any other error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err: the message of its
// *Error, or a generic text for anything else (whose details stay in logs).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
