package trunk

import (
	"context"
	"errors"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

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

// Requester starts client transactions; *transaction.Layer is one. The
// request carries its top Via with a fresh branch, and must not be changed
// afterwards.
type Requester interface {
	Request(ctx context.Context, req *sip.Request, dst sip.Addr) (*transaction.ClientTx, error)
}

// Resolver finds the addresses of a SIP URI, most preferred first, as RFC
// 3263 says; the binary adapts transport/locate's Locator.Locate with
// ResolverFunc.
type Resolver interface {
	Resolve(ctx context.Context, uri sip.URI) ([]sip.Addr, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, uri sip.URI) ([]sip.Addr, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, uri sip.URI) ([]sip.Addr, error) {
	return f(ctx, uri)
}

// The gateway's transaction layer is the Requester.
var _ Requester = (*transaction.Layer)(nil)
