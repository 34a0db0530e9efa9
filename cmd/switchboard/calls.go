package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/locate"
)

// startCalls builds the media engine and the B2BUA that carries calls
// crossing between browsers and phones.
func startCalls(cfg Config, tx *transaction.Layer, tl *transport.Layer, ident *identity.Identity, logger *slog.Logger) (*media.Engine, *b2bua.B2BUA, error) {
	opts := media.Options{
		RTPPorts: [2]int{int(cfg.RTPPorts.Start), int(cfg.RTPPorts.End)},
		Logger:   logger.With("component", "media"),
	}
	var guessed bool
	var err error
	opts.BindIP, opts.PublicIP, guessed, err = mediaAddrs(cfg)
	if err != nil {
		return nil, nil, err
	}
	if guessed {
		logger.Warn("media: SWITCHBOARD_PUBLIC_IP is not set; announcing the address of the default route in SDP and ICE. Set it to the address peers reach the gateway on",
			"address", opts.PublicIP)
	}
	engine, err := media.NewEngine(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("media engine: %w", err)
	}
	b, err := b2bua.New(b2bua.Options{
		Engine:       engine,
		Transactions: tx,
		Sender:       tl,
		Identity:     ident,
		UserAgent:    "Switchboard " + version,
		Logger:       logger.With("component", "b2bua"),
	})
	if err != nil {
		engine.Close()
		return nil, nil, fmt.Errorf("b2bua: %w", err)
	}
	return engine, b, nil
}

// mediaAddrs returns where media binds — where SIP listens: loopback for
// the defaults, the operator's address otherwise, every interface for an
// empty host — and the address announced in SDP: SWITCHBOARD_PUBLIC_IP,
// or, when media binds to every interface and that is not set, the
// address of the default route (guessed), as a quick start in a container
// needs. Zero addresses leave the media defaults.
func mediaAddrs(cfg Config) (bind, public netip.Addr, guessed bool, err error) {
	if ip, err := netip.ParseAddr(cfg.PublicIP); err == nil {
		public = ip
	}
	for _, a := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.HTTP} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if host == "" {
			bind = netip.IPv4Unspecified()
			break
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			bind = ip
			break
		}
	}
	if bind.IsUnspecified() && !public.IsValid() {
		public, err = defaultRouteAddr(bind.Is6())
		if err != nil {
			return bind, public, false, fmt.Errorf("media: listening on %s, so set SWITCHBOARD_PUBLIC_IP to the address peers send media to (could not guess one: %w)", bind, err)
		}
		guessed = true
	}
	return bind, public, guessed, nil
}

// defaultRouteAddr returns the local address the system would send from
// to a global address. Connecting a UDP socket sends nothing: it only
// picks the route.
func defaultRouteAddr(v6 bool) (netip.Addr, error) {
	network, probe := "udp4", "192.0.2.1:9" // TEST-NET-1 (RFC 5737): never sent to
	if v6 {
		network, probe = "udp6", "[2001:db8::1]:9" // documentation prefix (RFC 3849)
	}
	c, err := net.Dial(network, probe)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no default route: %w", err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// bridge is the proxy's Bridge: it has the B2BUA run each branch of an
// INVITE whose target is of the other kind than the caller — a browser
// for a phone's or trunk's call, a phone or trunk for a browser's — and
// leaves the branches between two of a kind to the proxy. The proxy forks
// to every target at once, so a user with browsers and phones has them
// all ring, whoever calls.
//
// Even a call to a single target of the other kind goes this way rather
// than through B2BUA.Call: the bridged branch is the same call, and the
// proxy's response context (Timer C, the caller's CANCEL, the 2xx and its
// retransmissions) then serves every call alike.
func bridge(b *b2bua.B2BUA, dns *locate.Locator, logger *slog.Logger) func(context.Context, *sip.Request, proxy.Target) (proxy.BridgedBranch, bool) {
	return func(ctx context.Context, req *sip.Request, t proxy.Target) (proxy.BridgedBranch, bool) {
		web := targetWeb(t)
		if web == b2bua.IsWebRTC(req) {
			return nil, false
		}
		target := b2bua.Target{URI: t.URI, Dst: t.Dest, WebRTC: web}
		for _, p := range t.Path {
			if a, err := sip.ParseAddress(p); err == nil {
				target.Route = append(target.Route, a)
			}
		}
		if !target.Dst.IsValid() {
			// Loose routing: the first Route, else the Request-URI, names
			// the next hop.
			hop := t.URI
			if len(target.Route) > 0 {
				hop = target.Route[0].URI
			}
			addrs, err := dns.Resolve(ctx, hop)
			if err != nil || len(addrs) == 0 {
				// Not forwarded unbridged: the target could not use the
				// caller's SDP.
				logger.Info("crossing branch: callee not reachable", "uri", t.URI.String(), "hop", hop.String(), "err", err)
				return failedBranch(req, 503), true
			}
			target.Dst = addrs[0]
		}
		return b.Branch(ctx, req, target), true
	}
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
