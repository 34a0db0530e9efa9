package location

import (
	"context"
	"errors"

	"github.com/switchboard/switchboard/sip"
)

// Errors that callers branch on with errors.Is.
var (
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("location store closed")
	// ErrTooManyBindings means storing a binding would give its AOR more
	// bindings than the store allows. The registrar answers 503 with
	// Retry-After: bindings expire, and the user agent may try again.
	ErrTooManyBindings = errors.New("too many bindings for address of record")
	// ErrInvalidBinding means a binding lacks its AOR or Contact URI, or
	// has already expired.
	ErrInvalidBinding = errors.New("invalid binding")
	// ErrOutOfOrder means an Update would change a binding made under the
	// same Call-ID with a CSeq that is not higher than the binding's (RFC
	// 3261 §10.3 step 7): a retransmission, a replay or a REGISTER
	// overtaken by a later one. Nothing changed.
	ErrOutOfOrder = errors.New("register out of order")
	// ErrUnavailable means a shared store cannot be reached for now: the
	// change was not made, and the caller may try again later. The
	// registrar answers 503 with Retry-After.
	ErrUnavailable = errors.New("location store unavailable")
)

// Store is the location service. Implementations are safe for concurrent
// use. Methods return bindings by value: changing one changes nothing
// stored.
//
// A change is durable when its method returns nil: Put, Delete, DeleteAOR
// and DeleteFlow return only once the change would survive a crash of the
// process or of the host (for a database: once it is committed), so that
// the registrar can acknowledge a REGISTER as soon as Put returns. A
// binding that can be reached only over its connection
// ([Binding.NeedsFlow] from a reliable transport) dies with the process
// anyway, and a store may keep it in memory only. When a method returns an
// error the change may or may not have been applied and kept; ctx bounds
// the wait for durability, not the change itself. Get and All may show a
// change whose call has not returned yet.
//
// Update is the registrar's one call per REGISTER: it reads, checks and
// writes the bindings of an AOR as one atomic step, so that two REGISTERs
// for the same AOR — on one gateway or on two sharing the store — cannot
// interleave and lose a binding. Put, Delete and DeleteAOR are atomic each
// but do not check the order of REGISTERs.
type Store interface {
	// Get returns the unexpired bindings of aor, highest q first and, for
	// equal q, most recently refreshed first. No bindings is not an error.
	Get(ctx context.Context, aor string) ([]Binding, error)
	// Put stores b, replacing the binding of b.AOR that b matches (see
	// Binding.Matches). It fails with ErrTooManyBindings when b would be
	// one binding too many for its AOR, and ErrInvalidBinding when b has
	// no AOR or Contact URI or has already expired.
	Put(ctx context.Context, b Binding) error
	// Delete removes the binding of b.AOR that b matches, if any.
	Delete(ctx context.Context, b Binding) error
	// DeleteAOR removes every binding of aor.
	DeleteAOR(ctx context.Context, aor string) error
	// Update applies what one REGISTER asks of u.AOR (see Update), all of
	// it or nothing, and returns the bindings of the AOR after it, as Get
	// orders them. When it fails with ErrTooManyBindings it returns the
	// bindings as they stay, so that the caller can tell when the first
	// one lapses.
	Update(ctx context.Context, u Update) ([]Binding, error)
	// DeleteFlow removes the bindings that came over flow and can be
	// reached over it only (Binding.NeedsFlow), and returns them; a
	// transport calls it when a connection closes (RFC 5626 §5.3).
	// Bindings that can be reached at their Contact stay.
	DeleteFlow(ctx context.Context, flow sip.Addr) (removed []Binding, err error)
	// All returns every unexpired binding, by AOR and then as Get orders
	// them, for the admin API.
	All(ctx context.Context) ([]Binding, error)
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}
