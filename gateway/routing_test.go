package gateway

import (
	"context"
	"net/netip"
	"reflect"
	"testing"

	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/sip"
)

// The trunk policy: a DID from the trunk rings its user; a number dialed
// by a local user goes out through the trunk of its rule; anything from an
// anonymous caller, or a number from a trunk, is not routed to a trunk —
// the gateway is no toll-fraud relay.
func TestTrunkRouting(t *testing.T) {
	trunks := []trunk.Trunk{{
		Name: "carrier", Host: "198.51.100.7", Port: 5060, Transport: sip.UDP,
		TrustedSources: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		DIDs:           []trunk.DID{{Number: "+15551230001", User: "alice"}},
	}}
	routes := []trunk.Route{{Pattern: `9(\d+)`, Strip: 1, Trunk: "carrier"}}
	r, err := newTrunkRouting("example.com", trunks, routes)
	if err != nil {
		t.Fatal(err)
	}
	table := newRoutingTable(r)
	src := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.9:5060")}
	if name, ok := table.Trusted(src); !ok || name != "carrier" {
		t.Fatalf("Trusted(%v) = %q, %v", src, name, ok)
	}
	stranger := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.9:5060")}
	if _, ok := table.Trusted(stranger); ok {
		t.Fatal("a stranger is trusted")
	}

	for _, tc := range []struct {
		name    string
		ruri    string
		caller  proxy.Caller
		handled bool
		want    string // the target's URI
	}{
		{"did from the trunk", "sip:+15551230001@example.com", proxy.Caller{Trunk: "carrier"}, true, "sip:alice@example.com"},
		{"unknown did from the trunk", "sip:+15559999999@example.com", proxy.Caller{Trunk: "carrier"}, false, ""},
		{"number from a user", "sip:9123456@example.com", proxy.Caller{User: "alice"}, true, "sip:123456@198.51.100.7:5060;transport=udp"},
		{"number from a stranger", "sip:9123456@example.com", proxy.Caller{}, false, ""},
		{"number from the trunk", "sip:9123456@example.com", proxy.Caller{Trunk: "carrier"}, false, ""},
		{"did from a stranger", "sip:+15551230001@example.com", proxy.Caller{}, false, ""},
		{"no rule", "sip:bob@example.com", proxy.Caller{User: "alice"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := sip.ParseURI(tc.ruri)
			if err != nil {
				t.Fatal(err)
			}
			ts, handled := table.Route(context.Background(), sip.NewRequest(sip.MethodInvite, u), tc.caller)
			if handled != tc.handled {
				t.Fatalf("handled %v, want %v", handled, tc.handled)
			}
			got := ""
			if len(ts) == 1 {
				got = ts[0].URI.String()
			}
			if got != tc.want {
				t.Errorf("target %q, want %q", got, tc.want)
			}
		})
	}

	// A reload swaps the whole table: the route is gone at once.
	empty, err := newTrunkRouting("example.com", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	table.cur.Store(empty)
	u, _ := sip.ParseURI("sip:9123456@example.com")
	if _, handled := table.Route(context.Background(), sip.NewRequest(sip.MethodInvite, u), proxy.Caller{User: "alice"}); handled {
		t.Error("a route of the old table is still in force")
	}
}

// A call that crosses to or from a trunk follows that trunk's codecs:
// the dial rule's target names its trunk, and a trusted caller is one;
// everyone else gets the gateway's policy (nil).
func TestTrunkCodecs(t *testing.T) {
	pcma, err := trunk.ParseCodecs([]string{"PCMA"})
	if err != nil {
		t.Fatal(err)
	}
	trunks := []trunk.Trunk{
		{Name: "narrow", Host: "198.51.100.7", Transport: sip.UDP, Codecs: pcma,
			DIDs: []trunk.DID{{Number: "+15551230001", User: "alice"}}},
		{Name: "open", Host: "198.51.100.8", Transport: sip.UDP},
	}
	routes := []trunk.Route{{Pattern: `9(\d+)`, Strip: 1, Trunk: "narrow"}, {Pattern: `8(\d+)`, Strip: 1, Trunk: "open"}}
	r, err := newTrunkRouting("example.com", trunks, routes)
	if err != nil {
		t.Fatal(err)
	}
	table := newRoutingTable(r)
	route := func(ruri string, caller proxy.Caller) proxy.Target {
		t.Helper()
		u, err := sip.ParseURI(ruri)
		if err != nil {
			t.Fatal(err)
		}
		ts, _ := table.Route(context.Background(), sip.NewRequest(sip.MethodInvite, u), caller)
		if len(ts) != 1 {
			t.Fatalf("%s routes to %d targets", ruri, len(ts))
		}
		return ts[0]
	}
	out := route("sip:9123@example.com", proxy.Caller{User: "alice"})
	if out.Trunk != "narrow" {
		t.Fatalf("the dial rule's target names trunk %q", out.Trunk)
	}
	if got := table.codecs(proxy.Caller{User: "alice"}, out); !reflect.DeepEqual(got, pcma) {
		t.Errorf("a call out through the trunk: codecs %v, want %v", trunk.CodecNames(got), trunk.CodecNames(pcma))
	}
	in := route("sip:+15551230001@example.com", proxy.Caller{Trunk: "narrow"})
	if got := table.codecs(proxy.Caller{Trunk: "narrow"}, in); !reflect.DeepEqual(got, pcma) {
		t.Errorf("a call in from the trunk: codecs %v", trunk.CodecNames(got))
	}
	if got := table.codecs(proxy.Caller{User: "alice"}, route("sip:8123@example.com", proxy.Caller{User: "alice"})); got != nil {
		t.Errorf("a trunk without codecs: %v, want the gateway's (nil)", trunk.CodecNames(got))
	}
	if got := table.codecs(proxy.Caller{User: "alice"}, proxy.Target{User: "bob"}); got != nil {
		t.Errorf("a call between users: %v, want the gateway's (nil)", trunk.CodecNames(got))
	}
}

// The weight of a source in the transaction layer's fair shares: a
// trusted trunk's own, or trunk.DefaultWeight when it names none; 1 for
// any other address, and for everyone once no trunk is configured.
func TestSourceWeight(t *testing.T) {
	trunks := []trunk.Trunk{
		{Name: "big", Host: "198.51.100.7", Port: 5060, Transport: sip.UDP, Weight: 50,
			TrustedSources: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
		{Name: "plain", Host: "203.0.113.7", Port: 5060, Transport: sip.UDP,
			TrustedSources: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
	}
	r, err := newTrunkRouting("example.com", trunks, nil)
	if err != nil {
		t.Fatal(err)
	}
	table := newRoutingTable(r)
	for src, want := range map[string]int{"198.51.100.9": 50, "203.0.113.9": trunk.DefaultWeight, "192.0.2.1": 1} {
		if got := table.weight(netip.MustParseAddr(src)); got != want {
			t.Errorf("weight(%s) = %d, want %d", src, got, want)
		}
	}
	empty, err := newTrunkRouting("example.com", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	table.cur.Store(empty)
	if got := table.weight(netip.MustParseAddr("198.51.100.9")); got != 1 {
		t.Errorf("without trunks: weight %d, want 1", got)
	}
}
