package dialog

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// crlf turns the LF line ends of a literal message into CRLF and ends the
// header section.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.TrimLeft(s, "\n")
	s = strings.TrimRight(s, "\n") + "\n\n"
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func parseReq(t testing.TB, s string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(crlf(s)))
	if err != nil {
		t.Fatalf("parse request: %v\n%s", err, s)
	}
	r, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("not a request:\n%s", s)
	}
	return r
}

func parseRes(t testing.TB, s string) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage([]byte(crlf(s)))
	if err != nil {
		t.Fatalf("parse response: %v\n%s", err, s)
	}
	r, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("not a response:\n%s", s)
	}
	return r
}

// reparse adds a Via, as the sending side does, serialises a built
// request and parses it back: that checks it is well-formed and gives the
// typed view its receiver has.
func reparse(t testing.TB, r *sip.Request) *sip.Request {
	t.Helper()
	if r.Has("Via") {
		t.Fatalf("built request has a Via:\n%s", r)
	}
	c := r.Clone()
	c.PrependVia(sip.Via{Transport: sip.UDP, Host: "192.0.2.99", Port: 5060, Params: sip.Params(";branch=" + sip.NewBranch())})
	return parseReq(t, c.String())
}

func uriStrings(list []sip.Address) []string {
	out := make([]string, len(list))
	for i := range list {
		out[i] = list[i].URI.String()
	}
	return out
}

func routeURIs(t testing.TB, r *sip.Request) []string {
	t.Helper()
	routes, err := r.Routes()
	if err != nil {
		t.Fatalf("routes: %v", err)
	}
	return uriStrings(routes)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// The UAC side: Alice's gateway sends an INVITE to Bob through two
// record-routing proxies, atlanta's then biloxi's.

const aliceInvite = `
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKq7a0c1
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: "Alice A." <sip:alice@atlanta.example.com>;tag=a11ce01
Call-ID: 5c3f0e1a9b@gw.atlanta.example.com
CSeq: 4711 INVITE
Contact: <sip:alice@gw.atlanta.example.com;transport=tcp>
Content-Length: 0
`

// bobResponse is a response to aliceInvite as it reaches Alice: status line,
// To tag (none when empty), and the extra lines (Record-Route, Contact).
func bobResponse(t testing.TB, status, toTag string, extra ...string) *sip.Response {
	t.Helper()
	to := "To: Bob <sip:bob@biloxi.example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	s := "SIP/2.0 " + status + "\n" +
		"Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKq7a0c1;received=192.0.2.10\n" +
		to + "\n" +
		"From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=a11ce01\n" +
		"Call-ID: 5c3f0e1a9b@gw.atlanta.example.com\n" +
		"CSeq: 4711 INVITE\n"
	for _, e := range extra {
		s += e + "\n"
	}
	return parseRes(t, s+"Content-Length: 0\n")
}

// Record-Route as Alice sees it: Bob's side first.
const (
	rrBoth    = "Record-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>"
	rrThree   = "Record-Route: <sip:p3.biloxi.example.com;lr;ftag=x>\nRecord-Route: <sip:p2.biloxi.example.com;lr>, <sip:p1.atlanta.example.com;lr>"
	bobPhone  = "Contact: <sip:bob@192.0.2.4>"
	bobPhone2 = "Contact: <sip:bob@192.0.2.4:5062;transport=udp>"
)

func newUACDialog(t testing.TB, extra ...string) *Dialog {
	t.Helper()
	req := parseReq(t, aliceInvite)
	res := bobResponse(t, "200 OK", "b0b77", append([]string{rrBoth, bobPhone}, extra...)...)
	d, err := NewUAC(req, res)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The UAS side: Carol's phone calls the gateway through two proxies.

const carolInvite = `
INVITE sip:gw@switchboard.example.org SIP/2.0
Via: SIP/2.0/UDP p2.example.org;branch=z9hG4bKp2x81
Via: SIP/2.0/UDP p1.example.net;branch=z9hG4bKp1y72
Via: SIP/2.0/UDP phone.example.net:5070;branch=z9hG4bKc4r01
Record-Route: <sip:p2.example.org;lr>
Record-Route: <sip:p1.example.net;lr>
Max-Forwards: 68
To: <sip:gw@switchboard.example.org>
From: Carol <sip:carol@example.net>;tag=ca201
Call-ID: 77aa-31@phone.example.net
CSeq: 10 INVITE
Contact: <sip:carol@phone.example.net:5070>
Content-Length: 0
`

// newUASDialog answers carolInvite with status and returns the dialog.
func newUASDialog(t testing.TB, code int) (*Dialog, *sip.Request) {
	t.Helper()
	req := parseReq(t, carolInvite)
	res := sip.NewResponse(req, code, "")
	res.SetToTag("9w7")
	res.Add("Contact", "<sip:gw@198.51.100.7:5060>")
	d, err := NewUAS(req, res)
	if err != nil {
		t.Fatal(err)
	}
	return d, req
}

// carolRequest is a request from Carol in the dialog of carolInvite.
func carolRequest(t testing.TB, method string, cseq string, extra ...string) *sip.Request {
	t.Helper()
	s := method + " sip:gw@198.51.100.7:5060 SIP/2.0\n" +
		"Via: SIP/2.0/UDP p2.example.org;branch=z9hG4bKp2r" + cseq + "\n" +
		"Via: SIP/2.0/UDP phone.example.net:5070;branch=z9hG4bKc4r" + cseq + "\n" +
		"Max-Forwards: 69\n" +
		"To: <sip:gw@switchboard.example.org>;tag=9w7\n" +
		"From: Carol <sip:carol@example.net>;tag=ca201\n" +
		"Call-ID: 77aa-31@phone.example.net\n" +
		"CSeq: " + cseq + " " + method + "\n"
	for _, e := range extra {
		s += e + "\n"
	}
	return parseReq(t, s+"Content-Length: 0\n")
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// aliceSubscribe is a SUBSCRIBE that creates a subscription dialog.
const aliceSubscribe = `
SUBSCRIBE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKs1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=a11ce02
Call-ID: sub-1@gw.atlanta.example.com
CSeq: 7 SUBSCRIBE
Event: dialog
Contact: <sip:alice@gw.atlanta.example.com;transport=tcp>
Content-Length: 0
`

// subResponse is Bob's response to aliceSubscribe, with To tag tag.
func subResponse(status, tag string) string {
	return "SIP/2.0 " + status + "\n" +
		"Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKs1\n" +
		"To: <sip:bob@biloxi.example.com>;tag=" + tag + "\n" +
		"From: <sip:alice@atlanta.example.com>;tag=a11ce02\n" +
		"Call-ID: sub-1@gw.atlanta.example.com\n" +
		"CSeq: 7 SUBSCRIBE\n" +
		"Contact: <sip:bob@192.0.2.4>\n" +
		"Content-Length: 0\n"
}
