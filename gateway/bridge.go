package gateway

import (
	"context"
	"strings"

	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/sip"
)

// bridge is the proxy's Bridge: it has the B2BUA run each branch of an
// INVITE whose target is of the other kind than the caller — a browser for
// a phone's or trunk's call, a phone or trunk for a browser's — and leaves
// the branches between two of a kind to the proxy. The proxy forks to
// every target at once, so a user with browsers and phones has them all
// ring, whoever calls.
//
// Even a call to a single target of the other kind goes this way rather
// than through B2BUA.Call: the bridged branch is the same call, and the
// proxy's response context (Timer C, the caller's CANCEL, the 2xx and its
// retransmissions) then serves every call alike.
//
// In a cluster, the instance that holds the browser's connection runs the
// B2BUA and relays the media: the browser's ICE and DTLS end where its
// signalling does. A browser on another instance (Target.Peer) is left to
// the proxy, which sends the INVITE there as it came; a browser here
// calling a phone that another instance holds is bridged here, its leg
// routed through that instance.
func (g *Gateway) bridge(ctx context.Context, req *sip.Request, caller proxy.Caller, t proxy.Target) (proxy.BridgedBranch, bool) {
	web := targetWeb(t)
	if web == b2bua.IsWebRTC(req) || web && t.Peer {
		return nil, false
	}
	target := b2bua.Target{URI: t.URI, Dst: t.Dest, WebRTC: web, User: t.User, CallerUser: caller.User}
	if g.routing != nil {
		target.Codecs = g.routing.codecs(caller, t)
	}
	for _, p := range t.Path {
		if a, err := sip.ParseAddress(p); err == nil {
			target.Route = append(target.Route, a)
		}
	}
	if !target.Dst.IsValid() {
		// Loose routing: the first Route, else the Request-URI, names the
		// next hop; its addresses are tried in turn (RFC 3263), as the
		// proxy tries those of its branches.
		hop := t.URI
		if len(target.Route) > 0 {
			hop = target.Route[0].URI
		}
		addrs, err := g.dns.Resolve(ctx, hop)
		if err != nil || len(addrs) == 0 {
			// Not forwarded unbridged: the target could not use the
			// caller's SDP.
			g.log.Info("crossing branch: callee not reachable", "uri", t.URI.String(), "hop", hop.String(), "err", err)
			return failedBranch(req, 503), true
		}
		target.Dst, target.Failover = addrs[0], addrs[1:]
	}
	if g.calls == nil {
		// No media relay: the target could not use the caller's SDP.
		return failedBranch(req, 488), true
	}
	return g.calls.Branch(ctx, req, target), true
}

// failedBranch is a bridged branch that ends at once with a response of
// the gateway's own.
func failedBranch(req *sip.Request, code int) proxy.BridgedBranch {
	res := sip.NewResponse(req, code, "")
	res.SetToTag(sip.NewTag())
	ch := make(chan *sip.Response, 1)
	ch <- res
	close(ch)
	return closedBranch(ch)
}

// closedBranch is a bridged branch whose responses are all on the channel
// already: there is nothing to cancel.
type closedBranch <-chan *sip.Response

func (c closedBranch) Responses() <-chan *sip.Response { return c }
func (closedBranch) CancelWithReason(string)           {}

// targetWeb reports whether a target is a browser: it registered over a
// WebSocket.
func targetWeb(t proxy.Target) bool {
	if tr, ok := t.URI.Params.Get("transport"); ok && (strings.EqualFold(tr, "ws") || strings.EqualFold(tr, "wss")) {
		return true
	}
	return t.Dest.Transport == sip.WS || t.Dest.Transport == sip.WSS
}
