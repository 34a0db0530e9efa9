package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// parseRequest parses a request line and headers, completed with the
// headers every request needs.
func parseRequest(t *testing.T, lines ...string) *sip.Request {
	t.Helper()
	method, _, _ := strings.Cut(lines[0], " ")
	text := strings.Join(lines, "\r\n") + "\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.31;branch=z9hG4bK1\r\nTo: <sip:bob@switchboard.test>\r\n" +
		"From: <sip:dave@elsewhere.test>;tag=1\r\nCall-ID: cid1\r\nCSeq: 1 " + method + "\r\nMax-Forwards: 70\r\n" +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// Route pre-processing (§16.4) and what the removed Routes say.
func TestPreprocessRoutes(t *testing.T) {
	p := newFixture(t, nil).proxy
	stamp := p.stamp(toCallee, "cid1", "1", "")
	other := sip.Addr{Transport: sip.WS, AddrPort: mustAddr(sip.WS, "198.51.100.20:51000").AddrPort, Flow: 9}
	token := p.tokens.Encode(other)
	tests := []struct {
		name    string
		lines   []string
		source  uint64 // flow of the request's source
		uri     string
		routes  string
		stamped bool
		flow    uint64
	}{
		{name: "our loose route", lines: []string{"BYE sip:bob@192.0.2.22 SIP/2.0",
			"Route: <sip:192.0.2.10;lr;sbdlg=" + stamp + ">, <sip:198.51.100.7;lr>"},
			uri: "sip:bob@192.0.2.22", routes: "<sip:198.51.100.7;lr>", stamped: true},
		{name: "our domain", lines: []string{"BYE sip:bob@192.0.2.22 SIP/2.0", "Route: <sip:switchboard.test;lr>"},
			uri: "sip:bob@192.0.2.22"},
		{name: "our host on another port", lines: []string{"BYE sip:bob@192.0.2.22 SIP/2.0", "Route: <sip:192.0.2.10:5999;lr>"},
			uri: "sip:bob@192.0.2.22", routes: "<sip:192.0.2.10:5999;lr>"},
		{name: "strict router upstream", lines: []string{"BYE sip:192.0.2.10;lr;sbdlg=" + stamp + " SIP/2.0",
			"Route: <sip:198.51.100.7;lr>", "Route: <sip:bob@192.0.2.22>"},
			uri: "sip:bob@192.0.2.22", routes: "<sip:198.51.100.7;lr>", stamped: true},
		{name: "flow token of the other side", lines: []string{"BYE sip:alice@a.invalid;transport=ws SIP/2.0",
			"Route: <sip:192.0.2.10;lr;sbdlg=" + stamp + ">",
			"Route: <sip:" + token + "@192.0.2.10:8080;transport=ws;lr;sbdlg=" + stamp + ">"},
			source: 3, uri: "sip:alice@a.invalid;transport=ws", stamped: true, flow: 9},
		{name: "flow token of the source", lines: []string{"BYE sip:bob@192.0.2.22 SIP/2.0",
			"Route: <sip:" + token + "@192.0.2.10:8080;transport=ws;lr;sbdlg=" + stamp + ">", "Route: <sip:192.0.2.10;lr;sbdlg=" + stamp + ">"},
			source: 9, uri: "sip:bob@192.0.2.22", stamped: true},
		{name: "forged stamp and token", lines: []string{"BYE sip:bob@192.0.2.22 SIP/2.0",
			"Route: <sip:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@192.0.2.10;lr;sbdlg=AAAAAAAAAAAA>"},
			uri: "sip:bob@192.0.2.22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := parseRequest(t, tt.lines...)
			r.Source = sip.Addr{Transport: sip.WS, AddrPort: other.AddrPort, Flow: tt.source}
			rt, err := p.preprocessRoutes(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.URI.String(); got != tt.uri {
				t.Errorf("Request-URI %q, want %q", got, tt.uri)
			}
			if got := strings.Join(r.Values("Route"), ", "); got != tt.routes {
				t.Errorf("Route %q, want %q", got, tt.routes)
			}
			if rt.stamped != tt.stamped || rt.flow.Flow != tt.flow {
				t.Errorf("stamped %v flow %d, want %v %d", rt.stamped, rt.flow.Flow, tt.stamped, tt.flow)
			}
		})
	}
}

// A strict router as next hop gets the Request-URI at the end of the Route
// set (§16.6 step 7).
func TestNextHopStrict(t *testing.T) {
	r := parseRequest(t, "BYE sip:bob@192.0.2.22 SIP/2.0", "Route: <sip:198.51.100.7>, <sip:198.51.100.8;lr>")
	hop, err := nextHop(r)
	if err != nil {
		t.Fatal(err)
	}
	if hop.String() != "sip:198.51.100.7" || r.URI.String() != "sip:198.51.100.7" {
		t.Errorf("next hop %s, Request-URI %s", hop.String(), r.URI.String())
	}
	if got := strings.Join(r.Values("Route"), ", "); got != "<sip:198.51.100.8;lr>, <sip:bob@192.0.2.22>" {
		t.Errorf("Route %q", got)
	}
	r = parseRequest(t, "BYE sip:bob@192.0.2.22 SIP/2.0")
	if hop, _ := nextHop(r); hop.String() != "sip:bob@192.0.2.22" {
		t.Errorf("without Route: next hop %s", hop.String())
	}
}

func TestBestResponseRules(t *testing.T) {
	req := parseRequest(t, "INVITE sip:bob@switchboard.test SIP/2.0")
	tests := []struct {
		codes []int
		want  int
	}{
		{[]int{404, 486}, 486},
		{[]int{486, 480, 404}, 486},
		{[]int{408, 487, 404}, 404},
		{[]int{420, 486}, 420},
		{[]int{401, 407}, 407},
		{[]int{500, 503}, 500},
		{[]int{503}, 500},
		{[]int{302, 404, 500}, 302},
		{[]int{486, 603, 600}, 603},
		{[]int{408}, 408},
	}
	for _, tt := range tests {
		var finals []*sip.Response
		for _, c := range tt.codes {
			finals = append(finals, sip.NewResponse(req, c, ""))
		}
		if got := bestResponse(finals, nil); got.StatusCode != tt.want {
			t.Errorf("best of %v = %d, want %d", tt.codes, got.StatusCode, tt.want)
		}
	}
	if bestResponse(nil, nil) != nil {
		t.Error("best of nothing")
	}
	// The gateway's own 503 (a bridged branch at the call cap) stays a
	// 503, with its Retry-After, unless a better response came.
	busy := sip.NewResponse(req, 503, "")
	busy.Set("Retry-After", "5")
	if got := bestResponse([]*sip.Response{busy}, []*sip.Response{busy}); got.StatusCode != 503 || got.Get("Retry-After") != "5" {
		t.Errorf("busy bridge: %d with Retry-After %q, want 503 with 5", got.StatusCode, got.Get("Retry-After"))
	}
	if got := bestResponse([]*sip.Response{busy, sip.NewResponse(req, 486, "")}, []*sip.Response{busy}); got.StatusCode != 486 {
		t.Errorf("busy bridge and 486: %d, want 486", got.StatusCode)
	}
}

func TestResolveLiteral(t *testing.T) {
	tests := []struct {
		uri  string
		want string
		err  error
	}{
		{"sip:bob@192.0.2.22", "UDP 192.0.2.22:5060", nil},
		{"sips:bob@192.0.2.22", "TLS 192.0.2.22:5061", nil},
		{"sip:bob@192.0.2.22;transport=tcp", "TCP 192.0.2.22:5060", nil},
		{"sip:192.0.2.22;transport=ws", "WS 192.0.2.22:80", nil},
		{"sip:192.0.2.22:8443;transport=wss", "WSS 192.0.2.22:8443", nil},
		{"sip:[2001:db8::1]", "UDP [2001:db8::1]:5060", nil},
		{"sip:bob@example.com", "", ErrUnresolvable},
		{"tel:+15551234", "", ErrUnresolvable},
	}
	for _, tt := range tests {
		addrs, err := resolveLiteral(context.Background(), mustURI(tt.uri))
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: error %v, want %v", tt.uri, err, tt.err)
			continue
		}
		if err == nil && (len(addrs) != 1 || addrs[0].String() != tt.want) {
			t.Errorf("%s: %v, want %s", tt.uri, addrs, tt.want)
		}
	}
}

func TestIsForMe(t *testing.T) {
	p := newFixture(t, nil).proxy
	for ruri, want := range map[string]bool{
		"sip:switchboard.test":     true,
		"sip:192.0.2.10:5060":      true,
		"sip:bob@switchboard.test": false,
		"sip:elsewhere.test":       false,
		"tel:+1555":                false,
	} {
		r := sip.NewRequest(sip.MethodOptions, mustURI(ruri))
		if got := p.IsForMe(r); got != want {
			t.Errorf("IsForMe(%s) = %v, want %v", ruri, got, want)
		}
	}
	r := sip.NewRequest(sip.MethodOptions, mustURI("sip:switchboard.test"))
	r.Add("Route", "<sip:198.51.100.7;lr>")
	if p.IsForMe(r) {
		t.Error("a request routed elsewhere is not for the gateway")
	}
}
