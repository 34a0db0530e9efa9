package forwarded

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// fuzzProxies are the trusted proxies of the fuzz targets: the proxy is at
// 10.0.0.1, the client at 198.51.100.x.
var fuzzProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

// FuzzForwarded feeds what a client may write in Forwarded, followed by
// the element a trusted proxy appends — in the same field value or on a
// line of its own. Nothing may panic, and whatever the client wrote, the
// client is the address the proxy named, with the scheme it named.
func FuzzForwarded(f *testing.F) {
	for _, seed := range []string{
		"", "for=1.2.3.4", `for="1.2.3.4`, `for="[2001:db8::1]:80";proto=https`, `"`, `\"`, `for="a\"`,
		`for=1.2.3.4;for=5.6.7.8`, ",,,", `for=10.0.0.2`, `proto=https`, "for=unknown", `x="\\\"", for=1.2.3.4`,
	} {
		f.Add(seed, byte(7), false)
	}
	trust := Trust{Proxies: fuzzProxies, Header: Forwarded}
	f.Fuzz(func(t *testing.T, client string, last byte, sameLine bool) {
		ParseForwarded([]string{client}) // must not panic on its own either
		want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, last}), 0)
		appended := `for="` + want.Addr().String() + `";proto=https`
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:4000"
		if sameLine {
			r.Header.Add("Forwarded", client+", "+appended)
		} else {
			r.Header.Add("Forwarded", client)
			r.Header.Add("Forwarded", appended)
		}
		c, err := trust.Client(r)
		if err != nil || c.Addr != want || !c.TLS || !c.Proxied {
			t.Fatalf("client wrote %q: Client = %+v, %v; want %v over TLS", client, c, err, want)
		}
	})
}

// FuzzXForwardedFor does the same for X-Forwarded-For and
// X-Forwarded-Proto, as nginx writes them: the client's X-Forwarded-For
// with ", <peer>" appended, and X-Forwarded-Proto replaced.
func FuzzXForwardedFor(f *testing.F) {
	for _, seed := range []string{"", "1.2.3.4", "1.2.3.4, 10.0.0.9", "unknown", ",", "[::1]:80", strings.Repeat("10.0.0.1,", 40)} {
		f.Add(seed, "https", byte(7))
	}
	trust := Trust{Proxies: fuzzProxies}
	f.Fuzz(func(t *testing.T, client, proto string, last byte) {
		ParseXForwardedFor([]string{client}, []string{proto})
		want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, last}), 0)
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:4000"
		if client == "" {
			r.Header.Set("X-Forwarded-For", want.Addr().String())
		} else {
			r.Header.Set("X-Forwarded-For", client+", "+want.Addr().String())
		}
		r.Header.Set("X-Forwarded-Proto", "https")
		c, err := trust.Client(r)
		if err != nil || c.Addr != want || !c.TLS || !c.Proxied {
			t.Fatalf("client wrote %q: Client = %+v, %v; want %v over TLS", client, c, err, want)
		}
	})
}
