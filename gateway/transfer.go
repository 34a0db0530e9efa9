package gateway

import (
	"context"

	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/sip"
)

// reachable is the transfer policy's Reachable: a target that a party who
// is not one of our users (a trunk, a stranger) may transfer its peer to.
// It must name a user of one of our domains, which anyone may call, and
// no dial rule may match it: otherwise one of our users, transferred
// there, would dial out through a trunk on the stranger's behalf.
func (g *Gateway) reachable(_ context.Context, u sip.URI) bool {
	if !u.IsSIP() || u.User == "" || !g.cfg.Identity.IsLocal(&u) {
		return false
	}
	if plan := g.routing.cur.Load().plan; plan != nil {
		if _, _, routedOut := plan.Match(u.User); routedOut {
			return false
		}
	}
	return true
}

// replaces is the proxy's Replaces: an INVITE that replaces a leg of a
// bridged call goes to the party across the call.
func (g *Gateway) replaces(r sip.Replaces) (proxy.Target, string, bool) {
	rt, ok := g.calls.Replaces(r)
	if !ok {
		return proxy.Target{}, "", false
	}
	t := proxy.Target{URI: rt.URI, Dest: rt.Dst, User: rt.User}
	for _, a := range rt.Route {
		t.Path = append(t.Path, a.String())
	}
	return t, rt.Replaces, true
}
