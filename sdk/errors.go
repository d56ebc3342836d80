package sdk

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code classifies a backend error. The codes travel as gRPC status codes, so a plugin
// written in any language can produce them.
type Code int

// The error taxonomy. The host retries only CodeUnavailable.
const (
	CodeInternal           Code = iota // a bug or an unclassified failure
	CodeNotFound                       // the reference or object does not exist
	CodePermissionDenied               // authentication or authorisation failed
	CodeUnavailable                    // transient: the service is down or timed out; retried
	CodeInvalidArgument                // a bad CSR, profile or reference; never retried
	CodeFailedPrecondition             // the backend is not ready for this (unconfigured, no CA)
	CodeUnimplemented                  // a capability the backend lacks
)

var codeNames = map[Code]string{
	CodeInternal:           "internal",
	CodeNotFound:           "not found",
	CodePermissionDenied:   "permission denied",
	CodeUnavailable:        "unavailable",
	CodeInvalidArgument:    "invalid argument",
	CodeFailedPrecondition: "failed precondition",
	CodeUnimplemented:      "unimplemented",
}

var codeToGRPC = map[Code]codes.Code{
	CodeInternal:           codes.Internal,
	CodeNotFound:           codes.NotFound,
	CodePermissionDenied:   codes.PermissionDenied,
	CodeUnavailable:        codes.Unavailable,
	CodeInvalidArgument:    codes.InvalidArgument,
	CodeFailedPrecondition: codes.FailedPrecondition,
	CodeUnimplemented:      codes.Unimplemented,
}

func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is a classified backend error. Ref names what it concerns: a unit, a secret
// reference, a file.
type Error struct {
	Code Code
	Ref  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Ref == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Code, e.Ref, e.Msg)
}

// Errorf builds a classified error about ref.
func Errorf(code Code, ref, format string, args ...any) error {
	return &Error{Code: code, Ref: ref, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, the code of a gRPC status
// error, or CodeInternal. A nil error has no code; CodeOf(nil) is CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if s, ok := status.FromError(err); ok {
		return fromGRPC(s.Code())
	}
	return CodeInternal
}

// IsCode reports whether err is classified as code.
func IsCode(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// Retryable reports whether the host should try again later.
func Retryable(err error) bool { return IsCode(err, CodeUnavailable) }

func fromGRPC(c codes.Code) Code {
	switch c {
	case codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Aborted:
		return CodeUnavailable
	case codes.Unauthenticated:
		return CodePermissionDenied
	}
	for code, g := range codeToGRPC {
		if g == c {
			return code
		}
	}
	return CodeInternal
}

// errorDomain marks the ErrorInfo detail that carries an *Error across the wire.
const errorDomain = "tlsrelay.backend.v1"

// toStatus turns a backend error into a gRPC status error for the wire. The code, the
// reference and the message travel in an ErrorInfo detail, so the host rebuilds the
// same *Error; a plugin in another language that sends a bare status still works.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		if _, ok := status.FromError(err); ok {
			return err
		}
		e = &Error{Code: CodeInternal, Msg: err.Error()}
	}
	s := status.New(codeToGRPC[e.Code], err.Error())
	if detailed, derr := s.WithDetails(&errdetails.ErrorInfo{
		Reason:   e.Code.String(),
		Domain:   errorDomain,
		Metadata: map[string]string{"ref": e.Ref, "msg": e.Msg},
	}); derr == nil {
		s = detailed
	}
	return s.Err()
}

// fromStatus turns an error received by the host back into an *Error.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return &Error{Code: CodeUnavailable, Msg: err.Error()}
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return &Error{Code: fromGRPC(s.Code()), Ref: info.Metadata["ref"], Msg: info.Metadata["msg"]}
		}
	}
	return &Error{Code: fromGRPC(s.Code()), Msg: s.Message()}
}
