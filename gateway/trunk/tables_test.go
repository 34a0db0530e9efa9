package trunk

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestDialPlan(t *testing.T) {
	// As the config file's [[route]]s would give them.
	routes := []Route{
		{Pattern: `9(\d{10})`, Strip: 1, Prefix: "+1", Trunk: "pstn"},  // national, out as E.164
		{Pattern: `011\d{7,15}`, Strip: 3, Prefix: "+", Trunk: "intl"}, // international, out as E.164
		{Pattern: `\+1\d{10}`, Trunk: "pstn"},                          // already E.164, US
		{Pattern: `\+\d{7,15}`, Trunk: "intl"},                         // already E.164, elsewhere
		{Pattern: `[2-8]\d{2}|9\d{2}`, Trunk: "pbx"},                   // extensions; also what 9... does not catch
		{Pattern: `\*\d*`, Strip: 3, Trunk: "pbx"},                     // strip longer than some matches
	}
	p, err := NewDialPlan(routes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		number, trunk, dialed string
	}{
		{"95551230001", "pstn", "+15551230001"},
		{"9 (555) 123-0001", "pstn", "+15551230001"},
		{"9555123000", "", ""},   // 9 digits after the 9: nothing
		{"955512300011", "", ""}, // 11: nothing (anchored)
		{"01144207946000", "intl", "+44207946000"},
		{"+15551230001", "pstn", "+15551230001"},
		{"+1 555 123 0001", "pstn", "+15551230001"},
		{"+442079460000", "intl", "+442079460000"},
		{"200", "pbx", "200"},
		{"911", "pbx", "911"}, // first match wins: route 1 needs 10 digits
		{"*6712", "pbx", "12"},
		{"*6", "", ""},    // matches, but strip 3 > len
		{"*67", "", ""},   // nothing left to dial
		{"1+555", "", ""}, // '+' only in front
		{"alice", "", ""},
		{"", "", ""},
		{"+", "", ""},
		{"200;phone-context=x", "", ""},
	}
	for _, tt := range tests {
		trunk, dialed, ok := p.Match(tt.number)
		if trunk != tt.trunk || dialed != tt.dialed || ok != (tt.trunk != "") {
			t.Errorf("Match(%q) = %q, %q, %v; want %q, %q", tt.number, trunk, dialed, ok, tt.trunk, tt.dialed)
		}
	}

	if _, err := NewDialPlan([]Route{{Pattern: "(", Trunk: "x"}}); err == nil {
		t.Error("a bad pattern compiled")
	}
	if _, err := NewDialPlan([]Route{{Pattern: "1", Strip: -1, Trunk: "x"}}); err == nil {
		t.Error("a negative strip was accepted")
	}
	empty, err := NewDialPlan(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := empty.Match("123"); ok {
		t.Error("an empty plan matched")
	}
}

func TestDIDMap(t *testing.T) {
	// As the config file's [[trunk]]s would give them: numbers as written.
	trunks := []Trunk{
		{Name: "a", Host: "a.example", DIDs: []DID{{"+15551230001", "alice"}, {"+1 (555) 123-0002", "bob"}}},
		{Name: "b", Host: "b.example", DIDs: []DID{{"15551230001", "alice"}, {"100", "reception"}}},
	}
	all, err := NewDIDMap(trunks...)
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := NewDIDMap(trunks[0])
	if err != nil {
		t.Fatal(err)
	}
	if all.Len() != 3 || onlyA.Len() != 2 {
		t.Errorf("Len = %d, %d", all.Len(), onlyA.Len())
	}
	tests := []struct {
		m            *DIDMap
		number, user string
	}{
		{all, "+15551230001", "alice"},
		{all, "15551230001", "alice"},
		{all, "+1-555-123-0001", "alice"},
		{all, "+15551230001;npdi;rn=+15550000000", "alice"},
		{all, "15551230002", "bob"},
		{all, "100", "reception"},
		{all, "+100", "reception"},
		{all, "5551230001", ""}, // national form is another number
		{all, "1555123000", ""},
		{all, "alice", ""},
		{all, "", ""},
		{onlyA, "100", ""},
		{onlyA, "+15551230002", "bob"},
	}
	for _, tt := range tests {
		user, ok := tt.m.Lookup(tt.number)
		if user != tt.user || ok != (tt.user != "") {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.number, user, ok, tt.user)
		}
	}

	conflict := []Trunk{
		{Name: "a", DIDs: []DID{{Number: "+1555", User: "x"}}},
		{Name: "b", DIDs: []DID{{Number: "1555", User: "y"}}},
	}
	if _, err := NewDIDMap(conflict...); err == nil {
		t.Error("conflicting DIDs were accepted")
	}
	if _, err := NewDIDMap(Trunk{Name: "a", DIDs: []DID{{Number: "abc", User: "x"}}}); err == nil {
		t.Error("a DID that is no number was accepted")
	}
}

// resolverMap answers from a table of host → addresses, counting lookups.
type resolverMap struct {
	addrs map[string][]sip.Addr
	errs  map[string]error
	asked []string
}

func (r *resolverMap) Resolve(_ context.Context, u sip.URI) ([]sip.Addr, error) {
	r.asked = append(r.asked, u.String())
	if err := r.errs[u.Host]; err != nil {
		return nil, err
	}
	return r.addrs[u.Host], nil
}

func udpAddr(s string) sip.Addr {
	return sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort(s)}
}

func TestTrustedSources(t *testing.T) {
	// As the config file's [[trunk]]s would give them: single addresses as
	// /32 prefixes, UDP by default.
	trunks := []Trunk{
		{Name: "carrier", Host: "sip.carrier.example", Transport: sip.UDP, TrustedSources: []netip.Prefix{
			netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}},
		// One host of the carrier's range is another trunk.
		{Name: "carrier-edge", Host: "edge.carrier.example", Transport: sip.UDP, TrustedSources: []netip.Prefix{
			netip.MustParsePrefix("203.0.113.77/32")}},
		{Name: "dns", Host: "sip.dns.example", Transport: sip.TCP, Port: 5080},
		{Name: "ip", Host: "198.51.100.20", Transport: sip.UDP},
		{Name: "broken", Host: "sip.broken.example", Transport: sip.UDP},
	}
	ts, err := NewTrustedSources(trunks)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, tests map[string]string) {
		t.Helper()
		for addr, want := range tests {
			got, ok := ts.Trusted(netip.MustParseAddr(addr))
			if got != want || ok != (want != "") {
				t.Errorf("%s: Trusted(%s) = %q, %v; want %q", when, addr, got, ok, want)
			}
		}
	}
	check("before Resolve", map[string]string{
		"203.0.113.1":          "carrier",
		"::ffff:203.0.113.1":   "carrier",
		"203.0.113.77":         "carrier-edge", // most specific wins
		"2001:db8:1:2::3":      "carrier",
		"2001:db8:2::3":        "",
		"203.0.114.1":          "",
		"198.51.100.20":        "ip",
		"198.51.100.21":        "",
		"192.0.2.53":           "", // dns: not resolved yet
		"fe80::1%eth0":         "",
		"::ffff:198.51.100.20": "ip",
	})

	r := &resolverMap{
		addrs: map[string][]sip.Addr{"sip.dns.example": {udpAddr("192.0.2.53:5080"), udpAddr("192.0.2.54:5080"), udpAddr("192.0.2.53:5081")}},
		errs:  map[string]error{"sip.broken.example": errors.New("servfail")},
	}
	err = ts.Resolve(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), `trunk "broken"`) || strings.Contains(err.Error(), `"dns"`) {
		t.Errorf("Resolve error = %v", err)
	}
	wantAsked := "sip:sip.dns.example:5080;transport=tcp sip:sip.broken.example;transport=udp"
	if got := strings.Join(r.asked, " "); got != wantAsked {
		t.Errorf("asked %s, want %s", got, wantAsked)
	}
	check("after Resolve", map[string]string{
		"192.0.2.53":  "dns",
		"192.0.2.54":  "dns",
		"192.0.2.55":  "",
		"203.0.113.1": "carrier",
	})

	// A failed lookup keeps the last good answer; an empty one is an
	// error too.
	r.errs = map[string]error{"sip.dns.example": errors.New("timeout")}
	r.addrs["sip.broken.example"] = []sip.Addr{udpAddr("192.0.2.99:5060")}
	if err := ts.Resolve(context.Background(), r); err == nil {
		t.Error("no error for the failed lookup")
	}
	check("after a failed lookup", map[string]string{"192.0.2.53": "dns", "192.0.2.99": "broken"})
	r.errs = nil
	r.addrs["sip.dns.example"] = nil
	if err := ts.Resolve(context.Background(), r); !errors.Is(err, ErrNoTarget) {
		t.Errorf("empty answer: %v", err)
	}
	check("after an empty answer", map[string]string{"192.0.2.53": "dns"})

	if _, err := NewTrustedSources([]Trunk{{Host: "x"}}); err == nil {
		t.Error("a trunk without a name was accepted")
	}
}

func TestNextHop(t *testing.T) {
	for _, tt := range []struct {
		trunk Trunk
		want  string
	}{
		{Trunk{Host: "sip.example", Transport: sip.UDP}, "sip:sip.example;transport=udp"},
		{Trunk{Host: "sip.example", Port: 5061, Transport: sip.TLS}, "sip:sip.example:5061;transport=tls"},
		{Trunk{Host: "2001:db8::1", Transport: sip.TCP}, "sip:[2001:db8::1];transport=tcp"},
	} {
		u := NextHop(tt.trunk)
		if got := u.String(); got != tt.want {
			t.Errorf("NextHop = %s, want %s", got, tt.want)
		}
	}
}
