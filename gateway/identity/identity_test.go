package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func testIdentity(t *testing.T) *Identity {
	t.Helper()
	id, err := New(Config{
		Domains: []string{"Example.com", "other.example"},
		Aliases: []string{"lb.example.com", "[2001:db8::5]", "::ffff:192.0.2.77"},
		Endpoints: []Endpoint{
			{Transport: "udp", Host: "192.0.2.10", Port: 5060},
			{Transport: sip.TCP, Host: "192.0.2.10", Port: 5060},
			{Transport: sip.WS, Host: "gw.example.com", Port: 8080},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func uri(t *testing.T, s string) *sip.URI {
	t.Helper()
	u, err := sip.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return &u
}

// One answer to "is this URI ours", with IP addresses compared as
// addresses and names without case.
func TestIsLocalAndSelf(t *testing.T) {
	id := testIdentity(t)
	for s, want := range map[string][2]bool{ // IsLocal, IsSelf
		"sip:alice@example.com":            {true, true},
		"sip:alice@EXAMPLE.COM:5099":       {true, true},
		"sips:other.example":               {true, true},
		"sip:192.0.2.10":                   {true, true},
		"sip:192.0.2.10:5060;lr":           {true, true},
		"sip:192.0.2.10:5999;lr":           {true, false},
		"sip:gw.example.com:8080":          {true, true},
		"sip:lb.example.com":               {true, true},
		"sip:[2001:db8:0::5]":              {true, true},
		"sip:192.0.2.77":                   {true, true},
		"sip:alice@elsewhere.example":      {false, false},
		"sip:192.0.2.11":                   {false, false},
		"tel:+15551234":                    {false, false},
		"sip:example.com.evil.example":     {false, false},
		"sip:alice@192.0.2.10:5060;user=x": {true, true},
		"sip:alice@Other.Example":          {true, true},
	} {
		u := uri(t, s)
		if got := [2]bool{id.IsLocal(u), id.IsSelf(u)}; got != want {
			t.Errorf("%s: IsLocal, IsSelf = %v, want %v", s, got, want)
		}
	}
}

// TestIsDomain: names compare in ASCII case only, and only letters fold.
func TestIsDomain(t *testing.T) {
	id := testIdentity(t)
	for host, want := range map[string]bool{
		"example.com":    true,
		"EXAMPLE.COM":    true,
		"eXaMpLe.CoM":    true,
		"[example.com]":  true,
		"example.co":     false,
		"example.com.":   false,
		"example\x0ecom": false, // 0x0E | 0x20 is '.': no bit tricks
		"example.c\xcfm": false, // 0xCF - 0x20 is 'o'
		"\u212axample":   false, // the Kelvin sign folds to k in Unicode
		"":               false,
	} {
		if got := id.IsDomain(host); got != want {
			t.Errorf("IsDomain(%q) = %v, want %v", host, got, want)
		}
	}
	if got := id.DomainOf(uri(t, "sip:a@OTHER.EXAMPLE")); got != "other.example" {
		t.Errorf("DomainOf = %q, want the configured other.example", got)
	}
	if n := testing.AllocsPerRun(100, func() { id.IsDomain("Other.Example") }); n != 0 {
		t.Errorf("IsDomain allocates %v times", n)
	}
}

func TestAOR(t *testing.T) {
	id := testIdentity(t)
	for s, want := range map[string]string{
		"sip:alice@example.com:5070;transport=tcp": "sip:alice@example.com",
		"sip:bob@OTHER.example":                    "sip:bob@other.example",
		"sip:carol@192.0.2.10":                     "sip:carol@example.com",
	} {
		if got := id.AOR(uri(t, s)); got != want {
			t.Errorf("AOR(%s) = %s, want %s", s, got, want)
		}
	}
}

// The gateway's Via, Contact and Record-Route name the endpoint of the
// transport they face.
func TestHeaders(t *testing.T) {
	id := testIdentity(t)
	if v := id.Via(sip.TCP, ";branch=z9hG4bK1"); v.String() != "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK1" {
		t.Errorf("Via %s", v.String())
	}
	if v := id.Via(sip.WSS, ";branch=z9hG4bK1"); v.Host != "gw.example.com" || v.Transport != sip.WSS {
		t.Errorf("Via for WSS %s: the WS endpoint serves", v.String())
	}
	if c := id.Contact("switchboard", sip.WS); c.String() != "<sip:switchboard@gw.example.com:8080;transport=ws>" {
		t.Errorf("Contact %s", c.String())
	}
	if c := id.Contact("", sip.UDP); c.String() != "<sip:192.0.2.10:5060>" {
		t.Errorf("Contact %s", c.String())
	}
	if rr := id.RecordRoute(sip.TCP, "tok", ";x=1"); rr != "<sip:tok@192.0.2.10:5060;transport=tcp;lr;x=1>" {
		t.Errorf("Record-Route %s", rr)
	}
	if ep := id.Endpoint(sip.TLS); ep.Transport != sip.UDP {
		t.Errorf("a transport without endpoint gets the first: %+v", ep)
	}
	if !id.Serves("tcp") || id.Serves(sip.TLS) {
		t.Error("Serves")
	}
}

// With both a WS and a WSS endpoint (HTTP and HTTPS), a WSS flow's Via,
// Contact and Record-Route name the WSS endpoint, with transport=wss, and
// a Record-Route on that port is ours.
func TestWSSEndpoint(t *testing.T) {
	id, err := New(Config{Domains: []string{"example.com"}, Endpoints: []Endpoint{
		{Transport: sip.UDP, Host: "192.0.2.10", Port: 5060},
		{Transport: sip.WS, Host: "192.0.2.10", Port: 8080},
		{Transport: sip.WSS, Host: "192.0.2.10", Port: 8443},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if v := id.Via(sip.WSS, ";branch=z9hG4bK1"); v.String() != "SIP/2.0/WSS 192.0.2.10:8443;branch=z9hG4bK1" {
		t.Errorf("Via %s", v.String())
	}
	if v := id.Via(sip.WS, ";branch=z9hG4bK1"); v.String() != "SIP/2.0/WS 192.0.2.10:8080;branch=z9hG4bK1" {
		t.Errorf("Via %s", v.String())
	}
	if rr := id.RecordRoute(sip.WSS, "tok", ";x=1"); rr != "<sip:tok@192.0.2.10:8443;transport=wss;lr;x=1>" {
		t.Errorf("Record-Route %s", rr)
	}
	if c := id.Contact("", sip.WSS); c.String() != "<sip:192.0.2.10:8443;transport=wss>" {
		t.Errorf("Contact %s", c.String())
	}
	if !id.IsSelf(uri(t, "sip:tok@192.0.2.10:8443;transport=wss;lr")) {
		t.Error("a Record-Route on the WSS port is not ours")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{Endpoints: []Endpoint{{Transport: sip.UDP, Host: "h"}}},
		{Domains: []string{"d"}},
		{Domains: []string{"d"}, Endpoints: []Endpoint{{Transport: sip.UDP}}},
		{Domains: []string{"d", ""}, Endpoints: []Endpoint{{Transport: sip.UDP, Host: "h"}}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

// One OPTIONS answer, whose Allow and Supported are the lists the
// gateway checks requests against.
func TestOptionsResponse(t *testing.T) {
	m, err := sip.ParseMessage([]byte("OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK7\r\n" +
		"To: <sip:example.com>\r\nFrom: <sip:a@b.example>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	res := OptionsResponse(req)
	if res.StatusCode != 200 || res.Get("Allow") != Allow || res.Get("Supported") != Supported() || res.To().Tag() == "" {
		t.Errorf("OPTIONS answer:\n%s", res)
	}
	for _, m := range strings.Split(Allow, ", ") {
		if !IsAllowed(m) || !sip.IsKnownMethod(m) {
			t.Errorf("Allow lists %q", m)
		}
	}
	for _, m := range []string{sip.MethodSubscribe, "PUBLISH"} {
		if IsAllowed(m) {
			t.Errorf("Allow lists %s, which the gateway answers with 405", m)
		}
	}
	if got := Unsupported([]string{"timer", "Path", "100rel", "replaces", "norefersub", "join"}); strings.Join(got, ",") != "100rel,join" {
		t.Errorf("Unsupported = %q", got)
	}
	req.Method = "SUBSCRIBE"
	if res := MethodNotAllowed(req); res.StatusCode != 405 || res.Get("Allow") != Allow {
		t.Errorf("SUBSCRIBE: %d, Allow %q", res.StatusCode, res.Get("Allow"))
	}
	if got, want := CallSupported(true, true), "100rel, timer, replaces, norefersub"; got != want {
		t.Errorf("CallSupported(invite, timers) = %q, want %q", got, want)
	}
	if got, want := CallSupported(false, false), "replaces, norefersub"; got != want {
		t.Errorf("CallSupported() = %q, want %q", got, want)
	}
	req.Method = "FOO"
	if res := MethodNotAllowed(req); res.StatusCode != 501 || res.Has("Allow") {
		t.Errorf("FOO: %d", res.StatusCode)
	}
}
