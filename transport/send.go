package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// Send sends msg to dst through the transport that serves dst.Transport
// and the address family of dst.
//
// A request must already carry its own top Via: the caller (the client
// transaction, which keys on the branch) writes it, normally with
// StampVia. With dst.Flow set the request goes over that connection only,
// and fails with ErrFlowClosed when it is gone (RFC 5626: the caller
// answers 430 or drops the binding). A request for UDP that is larger than
// Config.MTU goes over TCP to the same address and port when a TCP
// transport exists (RFC 3261 §18.1.1), as a copy whose top Via says TCP
// with the TCP transport's sent-by, same branch; if TCP fails, it goes
// over UDP after all, since many UDP-only phones listen on no TCP port.
//
// Send only reads msg, so several goroutines may send one message at once
// (a retransmission and the answer to a retransmitted request), as the
// transaction layer does.
//
// A response goes back over the request's connection, dst.Flow (pass the
// request's Source as dst), while it is open. Otherwise, and always for
// UDP, its top Via says where (see ResponseAddr): received and rport, or
// the sent-by, resolved by RFC 3263 §5 when it is a name. Responses are
// never moved to TCP: RFC 3261 §18.2.1 leaves that to the sender of the
// request. Send fails with ErrNoRoute when nothing tells where to go.
func (l *Layer) Send(ctx context.Context, msg sip.Message, dst sip.Addr) error {
	var err error
	switch m := msg.(type) {
	case *sip.Request:
		err = l.sendRequest(ctx, m, dst)
	case *sip.Response:
		err = l.sendResponse(ctx, m, dst)
	default:
		return fmt.Errorf("transport: send %T: not a request or response", msg)
	}
	if l.cfg.Trace {
		l.trace(ctx, "sent", msg, dst, err)
	}
	return err
}

// StampVia puts a new top Via on req for sending to dst:
// "SIP/2.0/<transport> <sent-by>;branch=<new branch>;rport" (RFC 3261
// §18.1.1, §8.1.1.7; rport per RFC 3581 §3, so that answers find their way
// back through NATs). The transport is the one Send will use for dst, and
// the sent-by is Config.ViaHost, or its listening address. It returns the
// Via, whose branch keys the client transaction.
func (l *Layer) StampVia(req *sip.Request, dst sip.Addr) (sip.Via, error) {
	t, err := l.pick(dst.Transport, dst.AddrPort.Addr())
	if err != nil {
		return sip.Via{}, err
	}
	host, port, err := l.sentBy(t, dst.AddrPort.Addr())
	if err != nil {
		return sip.Via{}, err
	}
	v := sip.Via{
		Transport: strings.ToUpper(t.Network()),
		Host:      host,
		Port:      port,
		Params:    sip.Params(";branch=" + sip.NewBranch() + ";rport"),
	}
	req.PrependVia(v)
	return v, nil
}

// sentBy returns the host and port of t for a Via.
func (l *Layer) sentBy(t Transport, dst netip.Addr) (string, int, error) {
	la := t.LocalAddr().AddrPort
	if l.cfg.ViaHost != "" {
		return l.cfg.ViaHost, int(la.Port()), nil
	}
	ip := la.Addr().Unmap().WithZone("")
	if !ip.IsValid() || ip.IsUnspecified() {
		var err error
		if ip, err = localIPFor(dst); err != nil {
			return "", 0, fmt.Errorf("transport: sent-by of %s %s: %w", t.Network(), la, err)
		}
	}
	return ip.String(), int(la.Port()), nil
}

// localIPFor returns the source address the system would use to reach
// dst. Connecting a UDP socket only consults the routing table: nothing
// is sent.
func localIPFor(dst netip.Addr) (netip.Addr, error) {
	if !dst.IsValid() {
		return netip.Addr{}, errors.New("wildcard listener and no destination: set Config.ViaHost")
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().WithZone(""), nil
}

// pick returns the transport for network and a destination address: one
// of that network listening in the same address family, else a dual-stack
// ([::]) or address-less one.
func (l *Layer) pick(network string, dst netip.Addr) (Transport, error) {
	var fallback Transport
	dst = dst.Unmap()
	for _, t := range *l.transports.Load() {
		if !strings.EqualFold(t.Network(), network) {
			continue
		}
		la := t.LocalAddr().AddrPort.Addr()
		switch {
		case !dst.IsValid() || !la.IsValid():
			if fallback == nil {
				fallback = t
			}
		case la.Unmap().Is4() == dst.Is4():
			return t, nil
		case la.Is6() && la.IsUnspecified():
			fallback = t
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, fmt.Errorf("transport: %s to %s: %w", network, dst, ErrNoTransport)
}

// sendFlow sends over the connection dst.Flow.
func (l *Layer) sendFlow(ctx context.Context, msg sip.Message, dst sip.Addr) error {
	if v, ok := l.flows.Load(dst.Flow); ok {
		if t := v.(flowEntry).t; t != nil {
			return t.Send(ctx, msg, dst)
		}
	}
	// A flow not seen yet (an outbound connection before anything came
	// back on it) or learnt through HandleMessage: flow ids are unique
	// across transports (NextFlowID), so at most one transport has it.
	for _, t := range *l.transports.Load() {
		if !strings.EqualFold(t.Network(), dst.Transport) {
			continue
		}
		err := t.Send(ctx, msg, dst)
		if !errors.Is(err, ErrFlowClosed) {
			return err
		}
	}
	return fmt.Errorf("transport: %s: %w", dst, ErrFlowClosed)
}

func (l *Layer) sendRequest(ctx context.Context, req *sip.Request, dst sip.Addr) error {
	if dst.Flow != 0 {
		return l.sendFlow(ctx, req, dst)
	}
	if !dst.AddrPort.IsValid() {
		return fmt.Errorf("transport: send %s to %q: %w", req.Method, dst, ErrNoRoute)
	}
	if l.cfg.MTU > 0 && strings.EqualFold(dst.Transport, sip.UDP) {
		if sent, err := l.sendLarge(ctx, req, dst); sent {
			return err
		}
	}
	t, err := l.pick(dst.Transport, dst.AddrPort.Addr())
	if err != nil {
		return err
	}
	return t.Send(ctx, req, dst)
}

// sendLarge applies the MTU rule of RFC 3261 §18.1.1. sent is false when
// the request is to go over UDP after all. req is only read: callers share
// it between goroutines (the transaction layer retransmits it), so what goes
// over TCP is a copy whose top Via says TCP.
func (l *Layer) sendLarge(ctx context.Context, req *sip.Request, dst sip.Addr) (sent bool, err error) {
	tcp, err := l.pick(sip.TCP, dst.AddrPort.Addr())
	if err != nil {
		return false, nil
	}
	b := GetBuffer()
	*b = req.AppendTo(*b)
	size := len(*b)
	PutBuffer(b)
	if size <= l.cfg.MTU {
		return false, nil
	}
	out := req
	if v, ok := req.TopVia(); ok && strings.EqualFold(v.Transport, sip.UDP) {
		v.Transport = sip.TCP
		if host, port, err := l.sentBy(tcp, dst.AddrPort.Addr()); err == nil {
			v.Host, v.Port = host, port
		}
		out = req.Clone()
		out.SetTopVia(v)
	}
	err = tcp.Send(ctx, out, sip.Addr{Transport: sip.TCP, AddrPort: dst.AddrPort})
	if err == nil || ctx.Err() != nil {
		return true, err
	}
	l.log.Debug("large request over tcp failed, using udp", "dst", dst, "size", size, "err", err)
	return false, nil
}

func (l *Layer) sendResponse(ctx context.Context, res *sip.Response, dst sip.Addr) error {
	if dst.Flow != 0 {
		err := l.sendFlow(ctx, res, dst)
		if !errors.Is(err, ErrFlowClosed) {
			return err
		}
		l.log.Debug("response flow closed, routing by via", "flow", dst, "status", res.StatusCode)
	}
	via, ok := res.TopVia()
	if !ok {
		return fmt.Errorf("transport: send %d response without via: %w", res.StatusCode, ErrNoRoute)
	}
	// The Via names an address nearly always (received, or an IP sent-by):
	// that one target is sent to without a list of targets made for it.
	if a, ok := ResponseAddr(via); ok {
		return l.sendResponseTo(ctx, res, a)
	}
	targets, err := l.loc.SentBy(ctx, via.Transport, via.Host, via.Port)
	if err != nil {
		return fmt.Errorf("transport: response to %s: %w: %w", via.SentBy(), ErrNoRoute, err)
	}
	var last error
	for _, a := range targets {
		if last = l.sendResponseTo(ctx, res, a); last == nil || ctx.Err() != nil {
			break
		}
	}
	return last
}

// sendResponseTo sends res to a, through the transport for it.
func (l *Layer) sendResponseTo(ctx context.Context, res *sip.Response, a sip.Addr) error {
	t, err := l.pick(a.Transport, a.AddrPort.Addr())
	if err != nil {
		return err
	}
	return t.Send(ctx, res, a)
}
