package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/locate"
)

// startCalls builds the media engine and the B2BUA that carries calls
// crossing between browsers and phones.
func startCalls(cfg Config, tx *transaction.Layer, tl *transport.Layer, eps []proxy.Endpoint, logger *slog.Logger) (*media.Engine, *b2bua.B2BUA, error) {
	opts := media.Options{
		RTPPorts: [2]int{int(cfg.RTPPorts.Start), int(cfg.RTPPorts.End)},
		Logger:   logger.With("component", "media"),
	}
	if ip, err := netip.ParseAddr(cfg.PublicIP); err == nil {
		opts.PublicIP = ip
	}
	// Media binds where SIP listens: loopback for the defaults, the
	// operator's address otherwise.
	for _, a := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.HTTP} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil {
				opts.BindIP = ip
				break
			}
		}
	}
	engine, err := media.NewEngine(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("media engine: %w", err)
	}
	b, err := b2bua.New(b2bua.Options{
		Engine:       engine,
		Transactions: tx,
		Sender:       tl,
		StampVia:     tl.StampVia,
		Contact:      contactFor(eps),
		UserAgent:    "Switchboard " + version,
		Logger:       logger.With("component", "b2bua"),
	})
	if err != nil {
		engine.Close()
		return nil, nil, fmt.Errorf("b2bua: %w", err)
	}
	return engine, b, nil
}

// contactFor returns the gateway's Contact on the transport of dst.
func contactFor(eps []proxy.Endpoint) func(dst sip.Addr) sip.Address {
	return func(dst sip.Addr) sip.Address {
		want := dst.Transport
		if want == sip.WSS {
			want = sip.WS
		}
		ep := eps[0]
		for _, e := range eps {
			if e.Transport == want {
				ep = e
				break
			}
		}
		u := sip.URI{Scheme: "sip", User: "switchboard", Host: ep.Host, Port: ep.Port}
		if ep.Transport != sip.UDP {
			u.Params = sip.Params(";transport=" + strings.ToLower(ep.Transport))
		}
		return sip.Address{URI: u}
	}
}

// crossing hands the proxy's INVITEs that cross between a browser and
// phones to the B2BUA: when every target is of the other kind than the
// caller, the B2BUA calls the best one. Calls between two of a kind, and
// users with both kinds of contacts, stay with the proxy.
func crossing(b *b2bua.B2BUA, dns *locate.Locator, logger *slog.Logger) func(*transaction.ServerTx, *sip.Request, []proxy.Target, proxy.Caller) bool {
	return func(tx *transaction.ServerTx, req *sip.Request, targets []proxy.Target, _ proxy.Caller) bool {
		if len(targets) == 0 {
			return false
		}
		callerWeb := b2bua.IsWebRTC(req)
		for _, t := range targets {
			if targetWeb(t) == callerWeb {
				return false
			}
		}
		t := targets[0]
		for _, c := range targets[1:] {
			if c.Q > t.Q {
				t = c
			}
		}
		dst := t.Dest
		if !dst.IsValid() {
			addrs, err := dns.Locate(context.Background(), t.URI)
			if err != nil || len(addrs) == 0 {
				logger.Info("crossing call: callee not reachable", "uri", t.URI.String(), "err", err)
				return false
			}
			dst = addrs[0]
		}
		target := b2bua.Target{URI: t.URI, Dst: dst, WebRTC: targetWeb(t)}
		for _, p := range t.Path {
			if a, err := sip.ParseAddress(p); err == nil {
				target.Route = append(target.Route, a)
			}
		}
		b.Call(tx, req, target)
		return true
	}
}

// targetWeb reports whether a target is a browser: it registered over a
// WebSocket.
func targetWeb(t proxy.Target) bool {
	if tr, ok := t.URI.Params.Get("transport"); ok && (strings.EqualFold(tr, "ws") || strings.EqualFold(tr, "wss")) {
		return true
	}
	return t.Dest.Transport == sip.WS || t.Dest.Transport == sip.WSS
}
