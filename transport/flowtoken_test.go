package transport

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestFlowTokenRoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, a := range []sip.Addr{
		{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:40000"), Flow: 7},
		{Transport: sip.WSS, AddrPort: netip.MustParseAddrPort("[2001:db8::1]:443"), Flow: 1 << 60},
		{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.7:5060")},
	} {
		tok := EncodeFlowToken(secret, a)
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("token %q has %q, not valid in a URI user part", tok, c)
			}
		}
		// The token must survive a trip through a Path URI.
		u, err := sip.ParseURI("sip:" + tok + "@edge.example.com;lr;ob")
		if err != nil || u.User != tok {
			t.Fatalf("token in uri: %v %q", err, u.User)
		}
		got, err := DecodeFlowToken(secret, tok)
		if err != nil || got != a {
			t.Errorf("decode %v: got %v, %v", a, got, err)
		}
	}
}

func TestFlowTokenRejectsForgery(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	a := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:40000"), Flow: 7}
	tok := EncodeFlowToken(secret, a)
	// Flip each character in turn.
	for i := range tok {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if got, err := DecodeFlowToken(secret, string(b)); err == nil {
			// The last character may carry padding bits only.
			if got != a {
				t.Errorf("changed token %q decoded to %v", b, got)
			}
		} else if !errors.Is(err, ErrBadFlowToken) {
			t.Errorf("error %v does not wrap ErrBadFlowToken", err)
		}
	}
	if _, err := DecodeFlowToken([]byte("another secret"), tok); !errors.Is(err, ErrBadFlowToken) {
		t.Errorf("other secret: %v", err)
	}
	for _, bad := range []string{"", "!!!", tok[:10], strings.Repeat("A", 600), tok + "AA"} {
		if _, err := DecodeFlowToken(secret, bad); !errors.Is(err, ErrBadFlowToken) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzDecodeFlowToken(f *testing.F) {
	secret := []byte("fuzz secret")
	f.Add(EncodeFlowToken(secret, sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060"), Flow: 3}))
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		a, err := DecodeFlowToken(secret, tok)
		if err != nil {
			return
		}
		if again := EncodeFlowToken(secret, a); again != tok {
			// Base64 may carry ignored padding bits; decoding must still
			// agree.
			if b, err := DecodeFlowToken(secret, again); err != nil || b != a {
				t.Fatalf("token %q decodes to %v, which encodes to %q", tok, a, again)
			}
		}
	})
}
