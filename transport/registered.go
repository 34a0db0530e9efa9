package transport

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// PeerGroup returns the unit that per-address connection caps count: an
// IPv4 address by itself (a /32), an IPv6 address by its /64. A /64 is
// what one subscriber, even one host, is given and may use whole (RFC
// 6177, SLAAC privacy addresses), so a cap per IPv6 address would give one
// host 2^64 shares.
func PeerGroup(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// RegistrationMarker is implemented by the connection-oriented transports
// (siptcp, sipws). They shed connections that hold no registration first:
// at their total cap they close the oldest such connection to make room
// for a new one, and they close such connections after a shorter idle
// time. Whether a connection holds a registration is the gateway's
// knowledge, not the transport's: the gateway says so with MarkRegistered
// (through FlowHolds and the Layer).
type RegistrationMarker interface {
	// MarkRegistered says whether flow carries a registration now. A flow
	// the transport does not have (closed, or another transport's) is
	// ignored. It must not block.
	MarkRegistered(flow sip.Addr, registered bool)
}

var _ RegistrationMarker = (*Layer)(nil)

// MarkRegistered passes the mark to the transport that owns flow, when it
// implements RegistrationMarker. Flows are known by the messages that came
// over them, as for Send.
func (l *Layer) MarkRegistered(flow sip.Addr, registered bool) {
	if flow.Flow == 0 {
		return
	}
	if v, ok := l.flows.Load(flow.Flow); ok {
		if m, ok := v.(flowEntry).t.(RegistrationMarker); ok {
			m.MarkRegistered(flow, registered)
			return
		}
	}
	// Learnt through HandleMessage, or closed: flow ids are unique across
	// transports, so telling every transport of the network is harmless.
	for _, t := range *l.transports.Load() {
		if m, ok := t.(RegistrationMarker); ok && strings.EqualFold(t.Network(), flow.Transport) {
			m.MarkRegistered(flow, registered)
		}
	}
}

// FlowHolds keeps track of which flows carry registrations and tells a
// RegistrationMarker when that changes. The gateway reports, after each
// REGISTER that may have changed an address of record's bindings, every
// connection the bindings were registered over and when each binding
// lapses (Set); and it reports closed connections (Drop). A flow is
// registered while some address of record holds a binding over it that
// has not lapsed.
//
// Set replaces what an owner held before, so a binding moved to another
// connection, or removed, stops holding its old one, and one account holds
// at most as many flows as it may have bindings. Create it with
// NewFlowHolds; its methods are safe for concurrent use.
type FlowHolds struct {
	marker RegistrationMarker
	clock  clock.Clock

	mu     sync.Mutex
	owners map[string]map[sip.Addr]time.Time // owner → flow → lapse
	flows  map[sip.Addr]*flowHold
}

// flowHold is what holds one flow.
type flowHold struct {
	owners map[string]time.Time // owner → lapse
	until  time.Time            // the latest lapse: when the timer fires
	timer  clock.Timer
}

// NewFlowHolds returns a FlowHolds that tells m; c times the lapses (nil:
// the system clock).
func NewFlowHolds(m RegistrationMarker, c clock.Clock) *FlowHolds {
	return &FlowHolds{
		marker: m,
		clock:  clock.Or(c),
		owners: make(map[string]map[sip.Addr]time.Time),
		flows:  make(map[sip.Addr]*flowHold),
	}
}

// Set records that owner (an address of record) holds exactly flows now,
// each until its time; flows it held before and does not name are let go.
// Flows that are not connections (Flow 0) and times already past are
// ignored. The marker hears of every flow that becomes registered or stops
// being so.
func (h *FlowHolds) Set(owner string, flows map[sip.Addr]time.Time) {
	now := h.clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var held map[sip.Addr]time.Time
	for f, until := range flows {
		if f.Flow == 0 || !until.After(now) {
			continue
		}
		if held == nil {
			held = make(map[sip.Addr]time.Time, len(flows))
		}
		held[f] = until
	}
	for f := range h.owners[owner] {
		if _, ok := held[f]; !ok {
			h.releaseLocked(f, owner)
		}
	}
	if held == nil {
		delete(h.owners, owner)
		return
	}
	h.owners[owner] = held
	for f, until := range held {
		fh := h.flows[f]
		if fh == nil {
			fh = &flowHold{owners: make(map[string]time.Time, 1)}
			h.flows[f] = fh
			h.marker.MarkRegistered(f, true)
		}
		fh.owners[owner] = until
		h.settleLocked(f, fh, now)
	}
}

// Drop forgets flow, which has closed; the marker is not told, since the
// transport has forgotten it too.
func (h *FlowHolds) Drop(flow sip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fh := h.flows[flow]
	if fh == nil {
		return
	}
	if fh.timer != nil {
		fh.timer.Stop()
	}
	delete(h.flows, flow)
	for owner := range fh.owners {
		h.forgetLocked(owner, flow)
	}
}

// Len returns the number of flows held now, for tests and metrics.
func (h *FlowHolds) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.flows)
}

// releaseLocked lets owner's hold on f go.
func (h *FlowHolds) releaseLocked(f sip.Addr, owner string) {
	h.forgetLocked(owner, f)
	if fh := h.flows[f]; fh != nil {
		delete(fh.owners, owner)
		h.settleLocked(f, fh, h.clock.Now())
	}
}

func (h *FlowHolds) forgetLocked(owner string, f sip.Addr) {
	if m := h.owners[owner]; m != nil {
		delete(m, f)
		if len(m) == 0 {
			delete(h.owners, owner)
		}
	}
}

// settleLocked lets the lapsed holds on f go, unmarks f when none is
// left, and otherwise sets its timer to the latest lapse.
func (h *FlowHolds) settleLocked(f sip.Addr, fh *flowHold, now time.Time) {
	var until time.Time
	for owner, u := range fh.owners {
		if !u.After(now) {
			delete(fh.owners, owner)
			h.forgetLocked(owner, f)
		} else if u.After(until) {
			until = u
		}
	}
	if len(fh.owners) == 0 {
		if fh.timer != nil {
			fh.timer.Stop()
		}
		delete(h.flows, f)
		h.marker.MarkRegistered(f, false)
		return
	}
	if fh.timer != nil && until.Equal(fh.until) {
		return
	}
	if fh.timer != nil {
		fh.timer.Stop()
	}
	fh.until = until
	fh.timer = h.clock.AfterFunc(until.Sub(now), func() { h.lapse(f, fh) })
}

// lapse runs when the latest hold on f lapses, unless a change came first.
func (h *FlowHolds) lapse(f sip.Addr, fh *flowHold) {
	now := h.clock.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flows[f] != fh {
		return // dropped, or let go and held anew since
	}
	fh.timer = nil // fired: schedule anew even if the latest lapse is the same
	h.settleLocked(f, fh, now)
}
