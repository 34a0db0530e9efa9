package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
)

// flowDown is the state of a leg whose connection (a browser's WebSocket,
// a phone's TCP flow) has closed, while the call waits for its user agent
// to come back over a new one.
type flowDown struct {
	flow  sip.Addr  // the connection that closed
	since time.Time // when
	timer clock.Timer
	// back is closed when the wait is over: a new connection reaches the
	// leg, the grace ran out, or the B2BUA closes. Requests for the leg
	// wait on it.
	back chan struct{}
}

// FlowClosed tells the B2BUA that flow, a connection, has closed. The
// legs reached over it wait Options.FlowGrace for their user agent to
// register again over a new connection (FlowMoved): meanwhile their
// calls go on — the media travels its own way, over ICE or RTP — and the
// requests the gateway has for such a leg (a BYE from the other side, a
// relayed INFO, a session refresh) wait for the new connection. When the
// grace runs out, the call ends with ErrFlowLost: BYE on the other leg.
// Legs of calls that end meanwhile still get their BYE once a new
// connection comes in time.
//
// The gateway calls it when a transport reports a closed connection;
// flows without a connection (Flow 0) are ignored.
func (b *B2BUA) FlowClosed(flow sip.Addr) {
	if flow.Flow == 0 {
		return
	}
	for _, l := range b.legsOver(flow, false) {
		l.flowClosed(flow)
	}
}

// FlowMoved tells the B2BUA that the user agent reached over from has
// registered again over to (RFC 5626: the same +sip.instance and reg-id
// over a new connection): the legs reached over from are reached over to
// from now on, and those waiting for their connection stop waiting. The
// gateway calls it for registrations only, which the user authenticated:
// an in-dialog request from another connection moves nothing.
func (b *B2BUA) FlowMoved(from, to sip.Addr) {
	if from.Flow == 0 || from == to || !to.IsValid() {
		return
	}
	for _, l := range b.legsOver(from, true) {
		l.moveTo(from, to)
	}
}

// legsOver returns the legs whose requests go to flow: those of the calls
// in progress and, with waiting set, those of ended calls still waiting
// for their connection to send a BYE.
func (b *B2BUA) legsOver(flow sip.Addr, waiting bool) []*leg {
	b.mu.Lock()
	candidates := make([]*leg, 0, 2*len(b.calls)+len(b.down))
	for _, c := range b.calls {
		candidates = append(candidates, c.caller, c.callee)
	}
	if waiting {
		for l := range b.down {
			candidates = append(candidates, l)
		}
	}
	b.mu.Unlock()
	var out []*leg
	seen := make(map[*leg]bool, len(candidates))
	for _, l := range candidates {
		if !seen[l] && l.dest() == flow {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// flowClosed starts the leg's wait for a new connection, if flow is still
// the one it is reached over.
func (l *leg) flowClosed(flow sip.Addr) {
	c, b := l.c, l.c.b
	grace := b.opts.FlowGrace
	l.mu.Lock()
	if l.dst != flow || l.down != nil {
		l.mu.Unlock()
		return
	}
	d := &flowDown{flow: flow, since: b.clock.Now(), back: make(chan struct{})}
	l.down = d
	if grace > 0 {
		d.timer = b.clock.AfterFunc(grace, func() { l.graceOver(d) })
	}
	l.mu.Unlock()
	b.mu.Lock()
	b.down[l] = struct{}{}
	b.mu.Unlock()
	if grace <= 0 {
		l.graceOver(d)
		return
	}
	c.log.Info("connection closed: the call waits for its user agent to come back over a new one",
		"leg", l.role, "flow", flow.String(), "grace", grace)
}

// graceOver ends the wait d of a leg whose user agent did not come back in
// time, and the call with it.
func (l *leg) graceOver(d *flowDown) {
	c, b := l.c, l.c.b
	if !l.endWait(d) {
		return // it came back meanwhile
	}
	cause := fmt.Errorf("%w: the %s's connection %s closed and none replaced it within %v",
		ErrFlowLost, l.role, d.flow.String(), b.opts.FlowGrace)
	if c.ctx.Err() != nil {
		return // the call had ended: its BYE for this leg fails now
	}
	c.hangup(cause, l)
	if errors.Is(context.Cause(c.ctx), ErrFlowLost) {
		b.flowLost.Add(1)
		c.log.Warn("call lost: the connection did not come back", "leg", l.role, "flow", d.flow.String(), "grace", b.opts.FlowGrace)
	}
}

// endWait ends the leg's wait d, if it is still the current one: requests
// waiting for the connection go on (and fail over the closed one).
func (l *leg) endWait(d *flowDown) bool {
	l.mu.Lock()
	if l.down != d {
		l.mu.Unlock()
		return false
	}
	l.down = nil
	l.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
	close(d.back)
	b := l.c.b
	b.mu.Lock()
	delete(b.down, l)
	b.mu.Unlock()
	return true
}

// moveTo makes to the connection of a leg reached over from.
func (l *leg) moveTo(from, to sip.Addr) {
	c, b := l.c, l.c.b
	l.mu.Lock()
	if l.dst != from {
		l.mu.Unlock()
		return
	}
	l.dst = to
	d := l.down
	l.mu.Unlock()
	var waited time.Duration
	if d != nil && l.endWait(d) {
		waited = b.clock.Now().Sub(d.since)
	}
	if c.ctx.Err() != nil {
		return
	}
	b.reconnects.Add(1)
	c.log.Info("the call follows its user agent to a new connection", "leg", l.role,
		"from", from.String(), "to", to.String(), "down_for", waited)
}

// waitFlow returns where the leg's requests go, after waiting while the
// connection that reaches the peer is down: until a new one replaces it,
// the grace runs out (the closed one is returned, and the request fails
// over it), or ctx ends.
func (l *leg) waitFlow(ctx context.Context) (sip.Addr, error) {
	for {
		l.mu.Lock()
		dst, d := l.dst, l.down
		l.mu.Unlock()
		if d == nil {
			return dst, nil
		}
		select {
		case <-d.back:
		case <-ctx.Done():
			return dst, context.Cause(ctx)
		}
	}
}

// releaseWaits ends every wait for a connection: the B2BUA is closing,
// and the BYEs it sends must not wait for user agents to come back.
func (b *B2BUA) releaseWaits() {
	b.mu.Lock()
	legs := make([]*leg, 0, len(b.down))
	for l := range b.down {
		legs = append(legs, l)
	}
	b.mu.Unlock()
	for _, l := range legs {
		l.mu.Lock()
		d := l.down
		l.mu.Unlock()
		if d != nil {
			l.endWait(d)
		}
	}
}

// retarget follows a phone that moved: after a target refresh (re-INVITE,
// UPDATE) in which its Contact changed, the leg's requests go to the
// phone's new place, as a new registration of it would say (see
// location.Binding.NeedsFlow): the new Contact when it is an address the
// gateway can reach, else where the request came from (a new connection,
// a phone behind NAT). A leg with a route set keeps sending to the first
// proxy of it. before is the remote target before req.
func (l *leg) retarget(req *sip.Request, before sip.URI) {
	d := l.dialog()
	if d == nil || len(d.RouteSet()) > 0 {
		return
	}
	after := d.RemoteTarget()
	if after.Equal(&before) || !req.Source.IsValid() {
		return
	}
	dst := req.Source
	b := location.Binding{Contact: sip.Address{URI: after}, Source: req.Source}
	if ap, ok := literalAddr(&after); ok && req.Source.Flow == 0 && !b.NeedsFlow() {
		dst = sip.Addr{Transport: req.Source.Transport, AddrPort: ap}
	}
	l.mu.Lock()
	old := l.dst
	l.dst = dst
	l.mu.Unlock()
	if old != dst {
		l.c.tellRTPPeer()
		l.c.log.Info("the peer moved: its requests go to its new address", "leg", l.role,
			"contact", after.String(), "from", old.String(), "to", dst.String())
	}
}

// literalAddr returns the address of a URI whose host is an IP address,
// with the default port of its scheme.
func literalAddr(u *sip.URI) (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(u.Scheme, "sips") {
			port = 5061
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}
