package transaction

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (with
// %w), so callers branch with errors.Is.
var (
	// ErrTimeout means a transaction timer ran out: Timer B or F for a
	// client transaction (which also delivers a synthesized 408), Timer H
	// for an INVITE server transaction whose non-2xx response was never
	// acknowledged.
	ErrTimeout = errors.New("transaction timed out")
	// ErrTransport means the Sender failed. A client transaction also
	// delivers a synthesized 503; a server transaction terminates.
	ErrTransport = errors.New("transport error")
	// ErrTooManyTransactions means a bound was reached. Request returns it
	// beyond Config.MaxClientTransactions. On the server side no call
	// returns it (the request is answered 503 statelessly): it is the
	// error logged with refused requests and dropped ACKs, which
	// Stats.Rejected counts.
	ErrTooManyTransactions = errors.New("too many transactions")
	// ErrTerminated means the transaction has already terminated.
	ErrTerminated = errors.New("transaction terminated")
	// ErrFinalSent means a server transaction already sent its final
	// response: only further 2xx responses to an INVITE may follow.
	ErrFinalSent = errors.New("final response already sent")
	// ErrClosed means the Layer was closed.
	ErrClosed = errors.New("transaction layer closed")
	// ErrMissingBranch means a request given to Layer.Request lacks a top
	// Via whose branch starts with the RFC 3261 magic cookie.
	ErrMissingBranch = errors.New("missing rfc 3261 via branch")
	// ErrTransactionExists means a client transaction with the same branch
	// and method is already running.
	ErrTransactionExists = errors.New("transaction already exists")
	// ErrInvalidRequest means a request cannot start a transaction (ACK,
	// CSeq method that differs from the method, invalid destination).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidResponse means a response given to ServerTx.Respond is nil
	// or has a status code outside 100-699, or Respond2xx was given a
	// response that is not a 2xx to an INVITE.
	ErrInvalidResponse = errors.New("invalid response")
)
