package gateway

import (
	"context"
	"net/netip"
	"reflect"
	"sync/atomic"

	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
)

// trunkRouting is the proxy's Router and TrustedSources, built from the
// trunks and routes in force: the gateway's policy for calls to and from
// trunks.
type trunkRouting struct {
	domain  string
	trunks  map[string]trunk.Trunk
	plan    *trunk.DialPlan
	dids    *trunk.DIDMap
	trusted *trunk.TrustedSources
}

func newTrunkRouting(domain string, trunks []trunk.Trunk, routes []trunk.Route) (*trunkRouting, error) {
	r := &trunkRouting{domain: domain, trunks: make(map[string]trunk.Trunk)}
	for _, t := range trunks {
		r.trunks[t.Name] = t
	}
	var err error
	if r.plan, err = trunk.NewDialPlan(routes); err != nil {
		return nil, err
	}
	if r.dids, err = trunk.NewDIDMap(trunks...); err != nil {
		return nil, err
	}
	if r.trusted, err = trunk.NewTrustedSources(trunks); err != nil {
		return nil, err
	}
	return r, nil
}

// Trusted names the trunk a source address belongs to.
func (r *trunkRouting) Trusted(src sip.Addr) (string, bool) {
	if r.trusted == nil {
		return "", false
	}
	return r.trusted.Trusted(src.AddrPort.Addr())
}

// Route sends a DID from a trunk to its local user, and a number dialed by a
// local user out through the trunk its dial rule names. Anonymous callers
// are never routed to a trunk: that would be an open toll-fraud relay.
func (r *trunkRouting) Route(_ context.Context, req *sip.Request, caller proxy.Caller) ([]proxy.Target, bool) {
	number := req.URI.User
	switch {
	case r.dids != nil && caller.Trunk != "":
		user, ok := r.dids.Lookup(number)
		if !ok {
			return nil, false
		}
		return []proxy.Target{{URI: sip.URI{Scheme: "sip", User: user, Host: r.domain}, Q: 1000}}, true
	case r.plan != nil && caller.User != "":
		name, dialed, ok := r.plan.Match(number)
		if !ok {
			return nil, false
		}
		t, ok := r.trunks[name]
		if !ok {
			return nil, true // answered 404: the rule names no trunk
		}
		uri := trunk.NextHop(t)
		uri.User = dialed
		return []proxy.Target{{URI: uri, Q: 1000, Trunk: t.Name}}, true
	}
	return nil, false
}

// codecs is the codec policy of the named trunk; nil (the gateway's) for
// "" or a trunk that names none.
func (r *trunkRouting) codecs(name string) []media.Codec {
	if name == "" {
		return nil
	}
	return r.trunks[name].Codecs
}

// resolveTrusted puts the addresses of trunks named by host in force.
func (r *trunkRouting) resolveTrusted(ctx context.Context, res locate.Resolver) error {
	if r.trusted == nil {
		return nil
	}
	return r.trusted.Resolve(ctx, res)
}

// routingTable is the proxy's Router and TrustedSources: the trunk routing
// in force, which a reload swaps whole, so that a request never sees half
// of an old table and half of a new one.
type routingTable struct {
	cur atomic.Pointer[trunkRouting]
}

func newRoutingTable(r *trunkRouting) *routingTable {
	t := &routingTable{}
	t.cur.Store(r)
	return t
}

// codecs is the codec policy of a call that crosses between a browser
// and a trunk: that trunk's, whichever side it is on (a call crosses, so
// at most one side is a trunk); nil, the gateway's, for anyone else.
func (t *routingTable) codecs(caller proxy.Caller, target proxy.Target) []media.Codec {
	r := t.cur.Load()
	if cs := r.codecs(target.Trunk); cs != nil {
		return cs
	}
	return r.codecs(caller.Trunk)
}

// Trusted names the trunk a source address belongs to.
func (t *routingTable) Trusted(src sip.Addr) (string, bool) { return t.cur.Load().Trusted(src) }

// weight is the transaction layer's SourceWeight: a trusted trunk's
// Weight (trunk.DefaultWeight when it names none), 1 for any other
// address.
func (t *routingTable) weight(src netip.Addr) int {
	r := t.cur.Load()
	if r.trusted == nil {
		return 1
	}
	name, ok := r.trusted.Trusted(src)
	if !ok {
		return 1
	}
	if w := r.trunks[name].Weight; w > 0 {
		return w
	}
	return trunk.DefaultWeight
}

// Route routes by the table in force.
func (t *routingTable) Route(ctx context.Context, req *sip.Request, caller proxy.Caller) ([]proxy.Target, bool) {
	return t.cur.Load().Route(ctx, req, caller)
}

// sameRegistrations reports whether two trunk lists ask for the same
// registrations with providers.
func sameRegistrations(a, b []trunk.Trunk) bool {
	var ra, rb []trunk.Trunk
	for _, t := range a {
		if t.Register {
			ra = append(ra, t)
		}
	}
	for _, t := range b {
		if t.Register {
			rb = append(rb, t)
		}
	}
	return reflect.DeepEqual(ra, rb)
}
