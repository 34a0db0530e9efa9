package sip

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is. A *ParseError wraps
// one of them, so a transport can both answer the sender and count the cause.
var (
	// ErrMalformed means the bytes do not follow the RFC 3261 grammar.
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge means a configured limit (message, line, URI, header
	// count) was exceeded.
	ErrTooLarge = errors.New("limit exceeded")
	// ErrIncomplete means a stream buffer does not yet hold a whole message.
	ErrIncomplete = errors.New("incomplete message")
	// ErrVersion means the SIP-Version is not SIP/2.0.
	ErrVersion = errors.New("unsupported sip version")
	// ErrMissingHeader means a header that every message must carry is absent.
	ErrMissingHeader = errors.New("missing mandatory header")
	// ErrUnknownMethod means a request names a method this stack does not
	// implement in a place where that matters (see mismatch02 of RFC 4475).
	ErrUnknownMethod = errors.New("unknown method")
)

// ParseError is the error of a message that cannot be accepted. It carries
// the status and reason phrase to answer with, so that a transport can reply
// statelessly (e.g. "400 Malformed Via") without knowing the grammar.
type ParseError struct {
	// Status is the response code to send for a request: 400, 413, 414,
	// 501, 505 or 513.
	Status int
	// Reason is a reason phrase naming the fault, e.g. "Malformed Via".
	Reason string
	// Err is the sentinel or underlying cause.
	Err error
}

func (e *ParseError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("sip: %d %s: %v", e.Status, e.Reason, e.Err)
	}
	return fmt.Sprintf("sip: %d %s", e.Status, e.Reason)
}

func (e *ParseError) Unwrap() error { return e.Err }

func malformed(reason string) *ParseError {
	return &ParseError{Status: 400, Reason: reason, Err: ErrMalformed}
}

// malformedHeader names the header in the reason phrase, which is what a
// sender needs to find its bug.
func malformedHeader(name string, cause error) *ParseError {
	return &ParseError{Status: 400, Reason: "Malformed " + name, Err: wrapMalformed(cause)}
}

func wrapMalformed(cause error) error {
	if cause == nil || errors.Is(cause, ErrMalformed) {
		if cause == nil {
			return ErrMalformed
		}
		return cause
	}
	return fmt.Errorf("%w: %w", ErrMalformed, cause)
}

// syntaxError is the cheap error of the low-level scanners; the parser turns
// it into a *ParseError naming the header it was scanning.
type syntaxError string

func (e syntaxError) Error() string { return string(e) }

func (e syntaxError) Is(target error) bool { return target == ErrMalformed }
