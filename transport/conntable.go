package transport

import (
	"container/list"
	"errors"
	"iter"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Errors of ConnTable.Admit.
var (
	// ErrTooManyFromIP means that the connection's IPv4 address or IPv6
	// /64 (its PeerGroup) has ConnLimits.MaxConnsPerIP connections
	// already.
	ErrTooManyFromIP = errors.New("transport: too many connections from one address")
	// ErrTooManyConns means that the transport has ConnLimits.MaxConns
	// connections and none it may evict.
	ErrTooManyConns = errors.New("transport: too many connections")
)

// ConnLimits are the caps a ConnTable holds a transport's connections to.
type ConnLimits struct {
	// MaxConns caps the connections, accepted and dialed, together with
	// the places Admit took for connections not added yet. 0: no cap.
	MaxConns int
	// MaxConnsPerIP caps the accepted connections from one IPv4 address
	// or IPv6 /64 (PeerGroup). 0: no cap.
	MaxConnsPerIP int
	// IdleTimeout is how long a connection that is not a stranger may go
	// without traffic. 0: for ever.
	IdleTimeout time.Duration
	// StrangerIdleTimeout is how long a stranger may go without traffic.
	// 0: for ever.
	StrangerIdleTimeout time.Duration
}

// ConnTable keeps the books of a connection-oriented transport (siptcp,
// sipws): its connections by flow id, how many come from each address
// (PeerGroup: an IPv4 address or IPv6 /64), which
// carry a registration and how long each has been silent; and it holds
// them to ConnLimits. An accepted connection is a stranger until
// MarkRegistered says that it carries a registration: at MaxConns the
// oldest stranger makes room for a newcomer, and strangers go silent for
// a shorter time before Idle names them. A connection the transport
// dialed (to a trunk, say) is no stranger, counts toward MaxConns only,
// and is never evicted.
//
// C is the transport's connection type. A ConnTable does no locking: the
// transport calls it under the lock that guards its own state, so that
// both change together. Only the ConnEntry methods and CountClosedIdle
// may be called without that lock. Make it with NewConnTable.
type ConnTable[C any] struct {
	limits ConnLimits
	clock  clock.Clock

	entries    map[uint64]*ConnEntry[C] // by flow id
	perIP      map[netip.Prefix]int     // places held by accepted connections, by PeerGroup
	places     int                      // places held in all
	strangers  list.List                // of *ConnEntry[C], oldest first
	registered int

	accepted, refusedPerIP, refusedTotal, evicted, closedIdle atomic.Uint64
}

// ConnEntry is a connection's line in a ConnTable.
type ConnEntry[C any] struct {
	table *ConnTable[C]
	conn  C
	flow  uint64
	group netip.Prefix // not valid for a dialed connection

	// Under the transport's lock.
	registered, removed bool
	stranger            *list.Element // in table.strangers while a stranger

	active atomic.Int64 // clock time of the last traffic, Unix nanoseconds
}

// NewConnTable returns an empty table that holds connections to limits
// and times their silence with clk (nil: the system clock).
func NewConnTable[C any](limits ConnLimits, clk clock.Clock) *ConnTable[C] {
	return &ConnTable[C]{
		limits:  limits,
		clock:   clock.Or(clk),
		entries: make(map[uint64]*ConnEntry[C]),
		perIP:   make(map[netip.Prefix]int),
	}
}

// Admit takes a place for a connection accepted from group (the
// PeerGroup of its address), to be filled with Add or given back with
// Cancel. It fails with ErrTooManyFromIP when group holds MaxConnsPerIP
// places, and with
// ErrTooManyConns when MaxConns are held and there is no stranger to
// evict; both count in Stats. At MaxConns the oldest stranger is evicted:
// it is returned, out of the table already, for the transport to forget
// and to close once its lock is released; otherwise victim is the zero C.
func (t *ConnTable[C]) Admit(group netip.Prefix) (victim C, err error) {
	if t.limits.MaxConnsPerIP > 0 && t.perIP[group] >= t.limits.MaxConnsPerIP {
		t.refusedPerIP.Add(1)
		return victim, ErrTooManyFromIP
	}
	if victim, err = t.makeRoom(); err != nil {
		t.refusedTotal.Add(1)
		return victim, err
	}
	t.places++
	t.perIP[group]++
	return victim, nil
}

// AdmitDialed takes a place for a connection the transport dialed, to be
// filled with Add(c, flow, netip.Prefix{}). It evicts as Admit does, and
// fails with ErrTooManyConns, not counted in Stats: the failed dial is
// the caller's to report.
func (t *ConnTable[C]) AdmitDialed() (victim C, err error) {
	if victim, err = t.makeRoom(); err == nil {
		t.places++
	}
	return victim, err
}

// makeRoom evicts the oldest stranger when MaxConns places are held.
func (t *ConnTable[C]) makeRoom() (victim C, err error) {
	if t.limits.MaxConns <= 0 || t.places < t.limits.MaxConns {
		return victim, nil
	}
	oldest := t.strangers.Front()
	if oldest == nil {
		return victim, ErrTooManyConns
	}
	e := oldest.Value.(*ConnEntry[C])
	t.Remove(e)
	t.evicted.Add(1)
	return e.conn, nil
}

// Cancel gives back a place that Admit took for a connection from group
// (the zero Prefix: AdmitDialed) that will not be added, one whose
// handshake failed, say.
func (t *ConnTable[C]) Cancel(group netip.Prefix) {
	t.places--
	if group.IsValid() {
		if t.perIP[group]--; t.perIP[group] <= 0 {
			delete(t.perIP, group)
		}
	}
}

// Add enters c, the connection of flow, in the place that Admit(group) or
// AdmitDialed (group is then the zero Prefix) took for it, and returns its
// entry. The connection counts as active now; an accepted one is the
// newest stranger, and counts in Stats.Accepted.
func (t *ConnTable[C]) Add(c C, flow uint64, group netip.Prefix) *ConnEntry[C] {
	e := &ConnEntry[C]{table: t, conn: c, flow: flow, group: group}
	e.Touch()
	t.entries[flow] = e
	if group.IsValid() {
		e.stranger = t.strangers.PushBack(e)
		t.accepted.Add(1)
	}
	return e
}

// Remove takes e out of the table and gives back its place, once, and
// reports whether this call did: an evicted connection is out before its
// reader ends and removes it again.
func (t *ConnTable[C]) Remove(e *ConnEntry[C]) bool {
	if e.removed {
		return false
	}
	e.removed = true
	delete(t.entries, e.flow)
	if e.registered {
		t.registered--
	}
	if e.stranger != nil {
		t.strangers.Remove(e.stranger)
		e.stranger = nil
	}
	t.Cancel(e.group)
	return true
}

// Conn returns the connection of flow.
func (t *ConnTable[C]) Conn(flow uint64) (C, bool) {
	e, ok := t.entries[flow]
	if !ok {
		var zero C
		return zero, false
	}
	return e.conn, true
}

// Len returns the number of connections in the table.
func (t *ConnTable[C]) Len() int { return len(t.entries) }

// Conns returns the connections in the table, in no order.
func (t *ConnTable[C]) Conns() []C {
	cs := make([]C, 0, len(t.entries))
	for _, e := range t.entries {
		cs = append(cs, e.conn)
	}
	return cs
}

// MarkRegistered says whether the connection of flow carries a
// registration (see RegistrationMarker); an unknown flow is ignored. An
// accepted connection that stops carrying one becomes the newest
// stranger, silent since its last traffic; a dialed one stays no
// stranger.
func (t *ConnTable[C]) MarkRegistered(flow uint64, registered bool) {
	e := t.entries[flow]
	if e == nil || e.registered == registered {
		return
	}
	e.registered = registered
	if registered {
		t.registered++
		if e.stranger != nil {
			t.strangers.Remove(e.stranger)
			e.stranger = nil
		}
		return
	}
	t.registered--
	if e.group.IsValid() {
		e.stranger = t.strangers.PushBack(e)
	}
}

// Idle yields the connections silent for at least their idle timeout
// (IdleTimeout, or StrangerIdleTimeout for a stranger), with that
// timeout. The transport closes them once its lock is released, and
// counts each it did close with CountClosedIdle.
func (t *ConnTable[C]) Idle() iter.Seq2[C, time.Duration] {
	now := t.clock.Now()
	return func(yield func(C, time.Duration) bool) {
		for _, e := range t.entries {
			limit := t.limits.IdleTimeout
			if e.stranger != nil {
				limit = t.limits.StrangerIdleTimeout
			}
			if limit > 0 && now.Sub(e.LastActive()) >= limit && !yield(e.conn, limit) {
				return
			}
		}
	}
}

// SweepInterval is how often a transport should look for Idle
// connections: a quarter of the shorter idle timeout, so that a
// connection closes at most a quarter late, and at least a millisecond;
// 0 when no timeout is set.
func (t *ConnTable[C]) SweepInterval() time.Duration {
	shortest := time.Duration(0)
	for _, d := range []time.Duration{t.limits.IdleTimeout, t.limits.StrangerIdleTimeout} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return max(shortest/4, time.Millisecond)
}

// CountClosedIdle counts a connection closed for its silence in Stats.
func (t *ConnTable[C]) CountClosedIdle() { t.closedIdle.Add(1) }

// ConnStats counts a ConnTable's connections.
type ConnStats struct {
	// Open is the number of connections in the table. Registered of them
	// carry a registration; Unregistered are the strangers; the rest were
	// dialed.
	Open, Registered, Unregistered int
	// Accepted counts the accepted connections added.
	Accepted uint64
	// RefusedPerIP counts the connections Admit refused because their
	// address (IPv4, or IPv6 /64) held MaxConnsPerIP places;
	// RefusedTotal those refused at MaxConns with no stranger to evict.
	RefusedPerIP, RefusedTotal uint64
	// Evicted counts the strangers evicted to make room at MaxConns.
	Evicted uint64
	// ClosedIdle counts the connections closed for being idle
	// (CountClosedIdle).
	ClosedIdle uint64
}

// Stats returns the table's counts.
func (t *ConnTable[C]) Stats() ConnStats {
	return ConnStats{
		Open:         len(t.entries),
		Registered:   t.registered,
		Unregistered: t.strangers.Len(),
		Accepted:     t.accepted.Load(),
		RefusedPerIP: t.refusedPerIP.Load(),
		RefusedTotal: t.refusedTotal.Load(),
		Evicted:      t.evicted.Load(),
		ClosedIdle:   t.closedIdle.Load(),
	}
}

// Touch records traffic on the connection now. It may be called without
// the transport's lock.
func (e *ConnEntry[C]) Touch() { e.active.Store(e.table.clock.Now().UnixNano()) }

// LastActive returns when Touch was last called (Add calls it). It may
// be called without the transport's lock.
func (e *ConnEntry[C]) LastActive() time.Time { return time.Unix(0, e.active.Load()) }
