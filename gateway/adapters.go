package gateway

import (
	"context"
	"net/netip"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/proxy"
)

// locator adapts the location store to the proxy.
type locator struct{ store location.Store }

func (l locator) Lookup(ctx context.Context, aor string) ([]proxy.Target, error) {
	bindings, err := l.store.Get(ctx, aor)
	if err != nil {
		return nil, err
	}
	out := make([]proxy.Target, 0, len(bindings))
	for i := range bindings {
		b := &bindings[i]
		t := proxy.Target{URI: b.Contact.URI, Q: b.Q, Path: b.Path, Expires: b.Expires}
		if b.NeedsFlow() {
			t.Dest = b.Source
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
