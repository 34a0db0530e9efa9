package proxy

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/locate"
)

// forwardAck forwards the ACK of a 2xx, which is a transaction of its own
// that ends where it is sent: statelessly (§16.11), by its Route. Only an
// ACK routed by a Record-Route entry this proxy wrote for its dialog, and
// going to that dialog's party, is forwarded; anything else is dropped,
// as an ACK cannot be answered.
func (p *Proxy) forwardAck(ctx context.Context, req *sip.Request) {
	r := req.Clone()
	if !r.URI.IsSIP() {
		return
	}
	mf, ok := r.MaxForwards()
	if ok && mf == 0 {
		return
	}
	if !ok {
		mf = 71
	}
	hash := loopHash(r)
	if p.looped(r, hash) {
		return
	}
	top, _ := r.TopVia()
	rt, err := p.preprocessRoutes(r)
	if err != nil || !rt.stamped {
		p.log.Debug("proxy: dropping ack not routed by this proxy", "call_id", r.CallID(), "err", err)
		return
	}
	dst, _, ok := p.dialogs.route(r, &rt, p.clk.Now(), p.follow)
	if !ok {
		p.log.Info("proxy: dropping ack that does not match its dialog", "call_id", r.CallID(),
			"uri", r.URI.String(), "source", r.Source.String())
		return
	}
	p.consumeCredentials(r)
	if !dst.IsValid() {
		hop, err := nextHop(r)
		var addrs []sip.Addr
		if err == nil {
			addrs, err = p.resolver.Resolve(ctx, hop)
		}
		if err != nil || len(addrs) == 0 {
			p.log.Debug("proxy: no address for ack", "uri", hop.String(), "err", err)
			return
		}
		dst = addrs[0]
	}
	r.Set("Max-Forwards", strconv.Itoa(mf-1))
	inTok := ""
	if r.Source.Flow != 0 {
		inTok = p.tokens.Encode(r.Source)
	}
	r.PrependVia(p.via(dst, statelessBranch(hash, top.Branch()), inTok))
	if err := p.sender.Send(context.WithoutCancel(ctx), r, dst); err != nil {
		p.log.Debug("proxy: forwarding ack", "dst", dst, "err", err)
	}
}

// ForwardResponse forwards a response that matched no client transaction,
// as a stateless proxy does (§16.7, §16.11): a retransmitted 2xx whose
// INVITE transaction has ended, say. Its top Via must be one of the
// proxy's; it is removed, and the response goes where the next Via says
// (received, rport, sent-by; RFC 3261 §18.2.2, RFC 3581), or over the
// connection the request came from when the proxy's Via recorded one.
// Other responses are dropped. It is the transaction layer's
// Config.OnStrayResponse.
func (p *Proxy) ForwardResponse(ctx context.Context, res *sip.Response) {
	vias := res.Via()
	if len(vias) < 2 {
		return
	}
	ours := vias[0]
	if !strings.HasPrefix(ours.Branch(), branchPrefix) || !p.id.IsLocalHost(ours.Host) {
		p.log.Debug("proxy: dropping stray response not sent through this proxy", "status", res.StatusCode)
		return
	}
	// A Via sent-by that is a name has no address here: the Sender routes
	// by the Via itself (RFC 3263 §5).
	dst, _ := transport.ResponseAddr(vias[1])
	if tok, ok := ours.Params.Get(viaFlowParam); ok {
		if f, err := p.tokens.Decode(tok); err == nil {
			dst = p.follow(f)
		}
	}
	up := res.Clone()
	up.PopVia()
	p.strayAnswer(up, res.Source)
	if err := p.sender.Send(ctx, up, dst); err != nil {
		p.log.Debug("proxy: forwarding stray response", "status", res.StatusCode, "dst", dst, "err", err)
	}
}

// redirectResponse is the 302 of redirect mode: the targets as Contacts,
// best first, with their q and the seconds left before they expire.
func (p *Proxy) redirectResponse(r *sip.Request, ts []Target) *sip.Response {
	res := sip.NewResponse(r, 302, "")
	res.SetToTag(sip.NewTag())
	ts = slices.Clone(ts)
	slices.SortStableFunc(ts, func(a, b Target) int { return cmp.Compare(b.Q, a.Q) })
	if len(ts) > p.maxTargets {
		ts = ts[:p.maxTargets]
	}
	now := p.clk.Now()
	for _, t := range ts {
		a := sip.Address{URI: t.URI, Params: sip.Params(";q=" + formatQ(t.Q))}
		if !t.Expires.IsZero() {
			if left := t.Expires.Sub(now); left > 0 {
				a.Params += sip.Params(";expires=" + strconv.Itoa(int(math.Ceil(left.Seconds()))))
			}
		}
		res.Add("Contact", a.String())
	}
	return res
}

// resolveLiteral is the Resolver of a Proxy without one: it resolves URIs
// whose host is an IP address, with the transport of their transport
// parameter (UDP by default, TLS for sips) and the transport's default
// port.
func resolveLiteral(_ context.Context, u sip.URI) ([]sip.Addr, error) {
	if !u.IsSIP() {
		return nil, fmt.Errorf("%w: scheme %s", ErrUnresolvable, u.Scheme)
	}
	ip, err := netip.ParseAddr(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an ip address", ErrUnresolvable, u.Host)
	}
	tr := sip.UDP
	if u.Scheme == "sips" {
		tr = sip.TLS
	}
	if t, ok := u.Params.Get("transport"); ok && t != "" {
		tr = strings.ToUpper(t)
	}
	port := u.Port
	if port == 0 {
		port = locate.DefaultPort(tr)
	}
	return []sip.Addr{{Transport: tr, AddrPort: netip.AddrPortFrom(ip.Unmap(), uint16(port))}}, nil
}

// strayAnswer does for up, a stray response on its way to the caller, what
// the response context does for the responses of its branches: a
// retransmitted 2xx (or reliable 1xx) that establishes a dialog gets the
// caller's Record-Route, and the callee's side is recorded again, in case
// the first copy was lost before the caller built its route set from it.
// src is where the response came from: the callee's connection, if any.
func (p *Proxy) strayAnswer(up *sip.Response, src sip.Addr) {
	code := up.StatusCode
	if code <= 100 || code >= 300 || !createsDialog(up.CSeq().Method) || up.To().Tag() == "" {
		return
	}
	in, ok := up.TopVia()
	if !ok {
		return
	}
	var callee sip.Addr
	if src.Flow != 0 {
		callee = src
	}
	next, ok := p.rewriteRecordRoute(up, in.Transport, callee)
	if !ok {
		return
	}
	now := p.clk.Now()
	key := dialogKey{up.CallID(), up.From().Tag()}
	p.dialogs.answered(key, up.To().Tag(), side{target: contactOf(&up.Headers), flow: callee, route: hop(next)},
		code >= 200, now, now)
}
