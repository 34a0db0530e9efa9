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
// Store does not serialise a read-check-write across calls: the registrar
// holds its own per-AOR lock around Get and Put. A store shared between
// gateway instances must add that guarantee itself (a transaction or a
// conditional write on the AOR).
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
