package forwarded

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestParseNode(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{"192.0.2.1", "192.0.2.1:0"},
		{"192.0.2.1:4711", "192.0.2.1:4711"},
		{"192.0.2.1:_hidden", "192.0.2.1:0"},
		{"[2001:db8::1]", "[2001:db8::1]:0"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"2001:db8::1", "[2001:db8::1]:0"},
		{"::ffff:192.0.2.1", "192.0.2.1:0"},
		{"unknown", ""},
		{"_gazonk", ""},
		{"", ""},
		{"192.0.2.1:", "192.0.2.1:0"},
		{"192.0.2.1:65536", ""},
		{"192.0.2.1:123456", ""},
		{"192.0.2.1:-1", ""},
		{"[2001:db8::1", ""},
		{"[2001:db8::1]x", ""},
		{"[fe80::1%eth0]", ""},
		{"example.com", ""},
		{"192.0.2.1 ", ""},
	}
	for _, tt := range tests {
		got, err := ParseNode(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParseNode(%q) = %v, want an error", tt.in, got)
		case tt.want != "" && (err != nil || got.String() != tt.want):
			t.Errorf("ParseNode(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// hopsString writes hops as "addr/proto" separated by spaces, "-" for an
// invalid address.
func hopsString(hops []Hop) string {
	var parts []string
	for _, h := range hops {
		a := "-"
		if h.Addr.IsValid() {
			a = h.Addr.String()
		}
		parts = append(parts, a+"/"+h.Proto)
	}
	return strings.Join(parts, " ")
}

func TestParseForwarded(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"RFC 7239 §4 examples", []string{`for="_gazonk"`, `For="[2001:db8:cafe::17]:4711"`, `for=192.0.2.60;proto=http;by=203.0.113.43`, `for=192.0.2.43, for=198.51.100.17`},
			"-/ [2001:db8:cafe::17]:4711/ 192.0.2.60:0/http 192.0.2.43:0/ 198.51.100.17:0/"},
		{"two elements in one value", []string{`for=192.0.2.1;proto=https, for=10.0.0.1;proto=http`}, "192.0.2.1:0/https 10.0.0.1:0/http"},
		{"spaces and case", []string{` FOR = 192.0.2.1 ; Proto = HTTPS `}, "192.0.2.1:0/https"},
		{"lenient unquoted port", []string{`for=192.0.2.1:4000`}, "192.0.2.1:4000/"},
		{"quoted comma", []string{`for=192.0.2.1;host="a,b", for=192.0.2.2`}, "192.0.2.1:0/ 192.0.2.2:0/"},
		{"escaped quote", []string{`for=192.0.2.1;ext="a\"b,c", for=192.0.2.2`}, "192.0.2.1:0/ 192.0.2.2:0/"},
		{"escaped backslash before quote", []string{`for=192.0.2.1;ext="a\\", for=192.0.2.2`}, "192.0.2.1:0/ 192.0.2.2:0/"},
		{"no for", []string{`proto=https;by=10.0.0.1`}, "-/"},
		{"unknown", []string{`for=unknown;proto=https`}, "-/"},
		{"twice the same parameter", []string{`for=192.0.2.1;for=192.0.2.2`}, "-/"},
		{"garbage", []string{`garbage`}, "-/"},
		{"empty element", []string{`for=192.0.2.1,,for=192.0.2.2`}, "192.0.2.1:0/ -/ 192.0.2.2:0/"},
		{"unclosed quote: a bad element, the ones right of it read", []string{`for="192.0.2.9, for=192.0.2.8;proto=http, for=192.0.2.1`}, "-/ 192.0.2.8:0/http 192.0.2.1:0/"},
		{"junk after a quoted value", []string{`for="192.0.2.1"x`}, "-/"},
		{"control character", []string{"for=\"192.0.2.1\x01\""}, "-/"},
		{"no name", []string{`=192.0.2.1`}, "-/"},
		{"bad name", []string{`f(r=192.0.2.1`}, "-/"},
		{"empty value", []string{`for=;proto=http`}, "-/"},
	}
	for _, tt := range tests {
		if got := hopsString(ParseForwarded(tt.values)); got != tt.want {
			t.Errorf("%s: ParseForwarded(%q) = %q, want %q", tt.name, tt.values, got, tt.want)
		}
	}
}

func TestParseXForwardedFor(t *testing.T) {
	tests := []struct {
		name        string
		fors, proto []string
		want        string
	}{
		{"one", []string{"192.0.2.1"}, []string{"https"}, "192.0.2.1:0/https"},
		{"list and lines", []string{"192.0.2.1, 198.51.100.2", "10.0.0.1"}, nil, "192.0.2.1:0/ 198.51.100.2:0/ 10.0.0.1:0/"},
		{"aligned schemes", []string{"192.0.2.1, 10.0.0.1"}, []string{"https, http"}, "192.0.2.1:0/https 10.0.0.1:0/http"},
		{"one scheme goes to the last hop", []string{"192.0.2.1, 10.0.0.1"}, []string{"HTTPS"}, "192.0.2.1:0/ 10.0.0.1:0/https"},
		{"ports and brackets", []string{"192.0.2.1:4000, [2001:db8::1]:443, 2001:db8::2"}, nil, "192.0.2.1:4000/ [2001:db8::1]:443/ [2001:db8::2]:0/"},
		{"bad entries", []string{"unknown, garbage,, 192.0.2.1"}, nil, "-/ -/ -/ 192.0.2.1:0/"},
		{"bad scheme", []string{"192.0.2.1"}, []string{"ht tp"}, "192.0.2.1:0/"},
		{"none", nil, []string{"https"}, ""},
	}
	for _, tt := range tests {
		if got := hopsString(ParseXForwardedFor(tt.fors, tt.proto)); got != tt.want {
			t.Errorf("%s: ParseXForwardedFor(%q, %q) = %q, want %q", tt.name, tt.fors, tt.proto, got, tt.want)
		}
	}
}

func TestMaxHops(t *testing.T) {
	var many []string
	for i := range MaxHops + 5 {
		many = append(many, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String())
	}
	line := strings.Join(many, ", ")
	for name, hops := range map[string][]Hop{
		"X-Forwarded-For, one line":   ParseXForwardedFor([]string{line}, nil),
		"X-Forwarded-For, many lines": ParseXForwardedFor(many, nil),
		"Forwarded":                   ParseForwarded([]string{"for=" + strings.Join(many, ", for=")}),
	} {
		if len(hops) != MaxHops+1 || hops[0].Addr.IsValid() || hops[1].Addr.String() != many[5]+":0" {
			t.Errorf("%s: %d hops, first %v then %v; want %d, an invalid one then %s", name, len(hops), hops[0], hops[1], MaxHops+1, many[5])
		}
	}
	// Exactly MaxHops: all read.
	if hops := ParseXForwardedFor(many[:MaxHops], nil); len(hops) != MaxHops || !hops[0].Addr.IsValid() {
		t.Errorf("MaxHops entries: %d hops, first %v", len(hops), hops[0])
	}
	// A chain of trusted proxies longer than MaxHops ends at the farthest
	// one read, never beyond it.
	trust := Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.1.1:80"
	r.Header.Set("X-Forwarded-For", line)
	c, err := trust.Client(r)
	if err != nil || c.Addr.String() != many[5]+":0" {
		t.Errorf("Client over %d trusted hops = %v, %v; want %s", len(many), c.Addr, err, many[5])
	}
}

func TestParseHeader(t *testing.T) {
	for in, want := range map[string]Header{"X-Forwarded-For": XForwardedFor, "x-forwarded-for": XForwardedFor, " Forwarded ": Forwarded} {
		if got, err := ParseHeader(in); err != nil || got != want {
			t.Errorf("ParseHeader(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "X-Real-IP", "X-Forwarded-Proto"} {
		if _, err := ParseHeader(in); err == nil {
			t.Errorf("ParseHeader(%q) accepted", in)
		}
	}
	if XForwardedFor.String() != "X-Forwarded-For" || Forwarded.String() != "Forwarded" {
		t.Error("Header.String")
	}
}

func TestClient(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	xff := Trust{Proxies: proxies}
	fwd := Trust{Proxies: proxies, Header: Forwarded}
	tests := []struct {
		name    string
		trust   Trust
		remote  string
		tls     bool
		headers map[string][]string
		want    string
		wantTLS bool
		proxied bool
	}{
		{"no trust, no header", Trust{}, "192.0.2.1:4000", false, nil, "192.0.2.1:4000", false, false},
		{"no trust: headers ignored", Trust{}, "192.0.2.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}}, "192.0.2.1:4000", false, false},
		{"untrusted peer: headers ignored", xff, "192.0.2.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}}, "192.0.2.1:4000", false, false},
		{"untrusted peer keeps its own TLS", xff, "192.0.2.1:4000", true,
			map[string][]string{"X-Forwarded-Proto": {"http"}}, "192.0.2.1:4000", true, false},
		{"trusted proxy", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}, "X-Forwarded-Proto": {"https"}}, "198.51.100.7:0", true, true},
		{"rightmost untrusted hop", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.2.2.2"}}, "198.51.100.7:0", false, true},
		{"over several lines", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}}, "198.51.100.7:0", false, true},
		{"trusted proxy, no header", xff, "10.1.1.1:4000", false, nil, "10.1.1.1:4000", false, false},
		{"garbage: the proxy itself", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"garbage"}}, "10.1.1.1:4000", false, false},
		{"garbage left of the client is not read", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"garbage, 198.51.100.7"}}, "198.51.100.7:0", false, true},
		{"unreadable hop behind a trusted one: the farthest read", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"unknown, 10.3.3.3"}}, "10.3.3.3:0", false, true},
		{"all trusted: the farthest", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"10.3.3.3"}}, "10.3.3.3:0", false, true},
		{"IPv6 proxy", xff, "[::1]:4000", false,
			map[string][]string{"X-Forwarded-For": {"2001:db8::1"}}, "[2001:db8::1]:0", false, true},
		{"mapped peer", xff, "[::ffff:10.1.1.1]:4000", false,
			map[string][]string{"X-Forwarded-For": {"192.0.2.1"}}, "192.0.2.1:0", false, true},
		{"TLS to the proxy, plain behind it", xff, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"192.0.2.1, 10.2.2.2"}, "X-Forwarded-Proto": {"https, http"}}, "192.0.2.1:0", true, true},
		{"X-Forwarded-For mode ignores Forwarded", xff, "10.1.1.1:4000", false,
			map[string][]string{"Forwarded": {"for=1.2.3.4;proto=https"}}, "10.1.1.1:4000", false, false},
		{"Forwarded", fwd, "10.1.1.1:4000", false,
			map[string][]string{"Forwarded": {`for="[2001:db8::7]:5000";proto=https`}}, "[2001:db8::7]:5000", true, true},
		{"Forwarded mode ignores X-Forwarded-For", fwd, "10.1.1.1:4000", false,
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "10.1.1.1:4000", false, false},
		{"Forwarded: the client's unclosed quote does not hide the proxy's element", fwd, "10.1.1.1:4000", false,
			map[string][]string{"Forwarded": {`for="1.2.3.4, for=192.0.2.1;proto=https`}}, "192.0.2.1:0", true, true},
		{"Forwarded: the client's own element is not believed", fwd, "10.1.1.1:4000", false,
			map[string][]string{"Forwarded": {`for=1.2.3.4;proto=http`, `for=192.0.2.1;proto=https`}}, "192.0.2.1:0", true, true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for k, vs := range tt.headers {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		c, err := tt.trust.Client(r)
		if err != nil || c.Addr.String() != tt.want || c.TLS != tt.wantTLS || c.Proxied != tt.proxied {
			t.Errorf("%s: Client = %+v, %v; want %s, TLS %v, proxied %v", tt.name, c, err, tt.want, tt.wantTLS, tt.proxied)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "@"
	if _, err := xff.Client(r); err == nil {
		t.Error("Client accepted a remote address that is not ip:port")
	}
}
