package gateway

import (
	"context"
	"net/netip"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/sip"
)

// locator adapts the location store to the proxy. A binding reached over
// its connection is sent over it when this instance holds it; in a
// cluster, one that another live instance holds is sent there on a peer
// route, which names the connection for that instance, and one whose
// instance is gone is skipped: its connection died with it.
type locator struct{ g *Gateway }

func (l locator) Lookup(ctx context.Context, aor string) ([]proxy.Target, error) {
	bindings, err := l.g.cfg.Location.Get(ctx, aor)
	if err != nil {
		return nil, err
	}
	cluster := l.g.cfg.Cluster
	out := make([]proxy.Target, 0, len(bindings))
	for i := range bindings {
		b := &bindings[i]
		t := proxy.Target{URI: b.Contact.URI, Q: b.Q, Path: b.Path, Expires: b.Expires}
		switch {
		case !b.NeedsFlow():
		case cluster == nil || b.Node == l.g.node:
			t.Dest = b.Source
		case !cluster.Alive(b.Node, b.Received):
			continue
		default:
			node, err := sip.ParseURI(b.Node)
			if err != nil {
				l.g.log.Warn("binding names an instance that is no SIP URI", "aor", aor, "node", b.Node)
				continue
			}
			t.Path = append([]string{l.g.proxy.PeerRoute(node, b.Source, b.Expires)}, b.Path...)
			t.Peer = true
		}
		out = append(out, t)
	}
	return out, nil
}

// credentials adapts the account store to the proxy.
type credentials struct{ store *accounts.Store }

func (c credentials) HA1(user, algorithm string) (string, bool) {
	a, ok := c.store.Lookup(user)
	if !ok {
		return "", false
	}
	return a.HA1(algorithm)
}

// proxyThrottle adapts the gateway's throttle to the proxy: its failures
// and its probes count under their own origins.
type proxyThrottle struct{ *accounts.Throttle }

func (t proxyThrottle) Failure(ip netip.Addr, user string) bool {
	return t.Throttle.Failure(accounts.OriginProxy, ip, user)
}

func (t proxyThrottle) Probe(ip netip.Addr) bool {
	return t.Throttle.Failure(accounts.OriginProbe, ip, "")
}
