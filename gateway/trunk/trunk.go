package trunk

import "errors"

// Errors that callers branch on with errors.Is.
var (
	// ErrNoTarget means a trunk's host resolved to no address.
	ErrNoTarget = errors.New("no address for trunk host")
	// ErrAuthFailed means the provider refused the trunk's credentials
	// (a second challenge that is not stale, or 403), or challenged a
	// trunk that has none, or sent no challenge that can be answered.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrRejected means the provider answered a REGISTER with a final
	// response that is neither a success nor about credentials, or
	// granted no time.
	ErrRejected = errors.New("registration rejected")
	// ErrRunning means Run was called on a Registration that is running.
	ErrRunning = errors.New("registration already running")
)
