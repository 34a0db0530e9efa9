package dialog

import (
	"net/netip"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestUACEarlyThenConfirmed(t *testing.T) {
	req := parseReq(t, aliceInvite)
	ringing := bobResponse(t, "180 Ringing", "b0b77", rrBoth, bobPhone)
	d, err := NewUAC(req, ringing)
	if err != nil {
		t.Fatal(err)
	}
	wantID := ID{CallID: "5c3f0e1a9b@gw.atlanta.example.com", LocalTag: "a11ce01", RemoteTag: "b0b77"}
	if d.ID() != wantID {
		t.Errorf("ID = %v, want %v", d.ID(), wantID)
	}
	if !d.IsUAC() {
		t.Error("IsUAC false")
	}
	if got := d.State(); got != Early {
		t.Errorf("state after 180 = %v, want early", got)
	}
	// §12.1.2: the route set is the Record-Route list reversed.
	if got, want := uriStrings(d.RouteSet()), []string{"sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr"}; !equalStrings(got, want) {
		t.Errorf("route set after 180 = %q, want %q", got, want)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4" {
		t.Errorf("remote target = %s", got.String())
	}
	if local, remote := d.LocalURI(), d.RemoteURI(); local.String() != `"Alice A." <sip:alice@atlanta.example.com>` ||
		remote.String() != `"Bob" <sip:bob@biloxi.example.com>` {
		t.Errorf("local %s remote %s", local.String(), remote.String())
	}
	if seq, ok := d.LocalSeq(); !ok || seq != 4711 {
		t.Errorf("local seq = %d, %v; want 4711", seq, ok)
	}
	if _, ok := d.RemoteSeq(); ok {
		t.Error("remote seq set at the UAC before any request from the UAS")
	}
	if c, ok := d.LocalContact(); !ok || c.URI.String() != "sip:alice@gw.atlanta.example.com;transport=tcp" {
		t.Errorf("local contact = %s, %v", c.String(), ok)
	}

	// The 2xx confirms the same dialog and replaces its route set and
	// target (§13.2.2.4): here a third proxy record-routed the 2xx.
	ok200 := bobResponse(t, "200 OK", "b0b77", rrThree, bobPhone2)
	if err := d.ReceiveResponse(ok200); err != nil {
		t.Fatal(err)
	}
	if got := d.State(); got != Confirmed {
		t.Errorf("state after 200 = %v, want confirmed", got)
	}
	want := []string{"sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr", "sip:p3.biloxi.example.com;lr;ftag=x"}
	if got := uriStrings(d.RouteSet()); !equalStrings(got, want) {
		t.Errorf("route set after 200 = %q, want %q", got, want)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4:5062;transport=udp" {
		t.Errorf("remote target after 200 = %s", got.String())
	}

	// Once confirmed, the route set is fixed: a retransmitted 2xx with
	// other Record-Routes changes nothing.
	if err := d.ReceiveResponse(bobResponse(t, "200 OK", "b0b77", rrBoth, bobPhone)); err != nil {
		t.Fatal(err)
	}
	if got := uriStrings(d.RouteSet()); !equalStrings(got, want) {
		t.Errorf("route set changed by a retransmitted 200: %q", got)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4:5062;transport=udp" {
		t.Errorf("remote target changed by a retransmitted 200: %s", got.String())
	}
}

func TestUACProvisionalUpdates(t *testing.T) {
	req := parseReq(t, aliceInvite)
	// A 180 without Contact: the target falls back to the Request-URI.
	d, err := NewUAC(req, bobResponse(t, "180 Ringing", "b0b77", rrBoth))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@biloxi.example.com" {
		t.Errorf("target without contact = %s", got.String())
	}
	// A later 183 with Contact supplies it; the route set stays.
	if err := d.ReceiveResponse(bobResponse(t, "183 Session Progress", "b0b77", rrThree, bobPhone)); err != nil {
		t.Fatal(err)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4" {
		t.Errorf("target after 183 = %s", got.String())
	}
	if got := len(d.RouteSet()); got != 2 {
		t.Errorf("route set changed by a provisional response: %d routes", got)
	}
	// A 200 without Contact keeps the target it has.
	if err := d.ReceiveResponse(bobResponse(t, "200 OK", "b0b77", rrBoth)); err != nil {
		t.Fatal(err)
	}
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4" || d.State() != Confirmed {
		t.Errorf("after 200: target %s state %v", got.String(), d.State())
	}
}

func TestUACEarlyFailure(t *testing.T) {
	d, err := NewUAC(parseReq(t, aliceInvite), bobResponse(t, "180 Ringing", "b0b77", bobPhone))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ReceiveResponse(bobResponse(t, "486 Busy Here", "b0b77")); err != nil {
		t.Fatal(err)
	}
	if d.State() != Terminated {
		t.Errorf("state after 486 = %v", d.State())
	}
	_, err = d.NewAck(4711)
	wantErr(t, err, ErrTerminated)
	// A 2xx racing the failure cannot revive the dialog.
	wantErr(t, d.ReceiveResponse(bobResponse(t, "200 OK", "b0b77", bobPhone)), ErrTerminated)
	if d.State() != Terminated {
		t.Errorf("state after late 200 = %v", d.State())
	}
}

func TestResponsesAfterBye(t *testing.T) {
	d := newUACDialog(t)
	bye, err := d.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	// The 200 to the BYE arrives on the terminated dialog: fine.
	ok := parseRes(t, sip.NewResponse(reparse(t, bye), 200, "").String())
	if err := d.ReceiveResponse(ok); err != nil {
		t.Error(err)
	}
	// So does a retransmitted 2xx to the INVITE, which is ACKed again.
	if err := d.ReceiveResponse(bobResponse(t, "200 OK", "b0b77", rrBoth, bobPhone)); err != nil {
		t.Error(err)
	}
	if _, err := d.NewAck(4711); err != nil {
		t.Error(err)
	}
}

func TestNewUACErrors(t *testing.T) {
	tests := []struct {
		name      string
		req       string
		res       func(t testing.TB) *sip.Response
		want      error
		state     State
		remoteTag string
	}{
		{"200", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "200 OK", "b1", bobPhone) }, nil, Confirmed, "b1"},
		{"183", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "183 Session Progress", "b1", bobPhone) }, nil, Early, "b1"},
		{"100", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "100 Trying", "") }, ErrNoDialog, 0, ""},
		{"180 without tag", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "180 Ringing", "", bobPhone) }, ErrNoDialog, 0, ""},
		// RFC 2543 peers: a 2xx without To tag has a null remote tag.
		{"200 without tag", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "200 OK", "", bobPhone) }, nil, Confirmed, ""},
		{"486", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "486 Busy Here", "b1") }, ErrNoDialog, 0, ""},
		{"two contacts", aliceInvite, func(t testing.TB) *sip.Response {
			return bobResponse(t, "200 OK", "b1", "Contact: <sip:bob@192.0.2.4>, <sip:bob@192.0.2.5>")
		}, ErrMalformed, 0, ""},
		{"tel contact", aliceInvite, func(t testing.TB) *sip.Response { return bobResponse(t, "200 OK", "b1", "Contact: <tel:+15551234>") }, ErrMalformed, 0, ""},
		{"bad record-route", aliceInvite, func(t testing.TB) *sip.Response {
			// The parser rejects this on the wire; an application can still
			// set it on a response it builds.
			res := bobResponse(t, "200 OK", "b1", bobPhone)
			res.Set("Record-Route", "<sip:p1.example.com;lr")
			return res
		}, ErrMalformed, 0, ""},
		{"other call", aliceInvite, func(t testing.TB) *sip.Response { return parseRes(t, subResponse("200 OK", "b1")) }, ErrMismatch, 0, ""},
		{"subscribe 200", aliceSubscribe, func(t testing.TB) *sip.Response { return parseRes(t, subResponse("200 OK", "n1")) }, nil, Confirmed, "n1"},
		{"subscribe 202", aliceSubscribe, func(t testing.TB) *sip.Response { return parseRes(t, subResponse("202 Accepted", "n1")) }, nil, Confirmed, "n1"},
		// Only INVITE has early dialogs (RFC 3261 §12.1).
		{"subscribe 180", aliceSubscribe, func(t testing.TB) *sip.Response { return parseRes(t, subResponse("180 Ringing", "n1")) }, ErrNoDialog, 0, ""},
		{"options", `
OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKo1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=a11ce03
Call-ID: opt-1@gw.atlanta.example.com
CSeq: 1 OPTIONS
Content-Length: 0
`, func(t testing.TB) *sip.Response { return bobResponse(t, "200 OK", "b1") }, ErrNoDialog, 0, ""},
		{"no from tag", `
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKq7a0c1
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: "Alice A." <sip:alice@atlanta.example.com>
Call-ID: 5c3f0e1a9b@gw.atlanta.example.com
CSeq: 4711 INVITE
Content-Length: 0
`, func(t testing.TB) *sip.Response { return bobResponse(t, "200 OK", "b1") }, ErrMalformed, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewUAC(parseReq(t, tt.req), tt.res(t))
			wantErr(t, err, tt.want)
			if err != nil {
				if d != nil {
					t.Error("dialog returned with an error")
				}
				return
			}
			if d.State() != tt.state || d.ID().RemoteTag != tt.remoteTag {
				t.Errorf("state %v remote tag %q, want %v %q", d.State(), d.ID().RemoteTag, tt.state, tt.remoteTag)
			}
		})
	}
}

func TestUAS(t *testing.T) {
	d, req := newUASDialog(t, 180)
	wantID := ID{CallID: "77aa-31@phone.example.net", LocalTag: "9w7", RemoteTag: "ca201"}
	if d.ID() != wantID || d.IsUAC() {
		t.Errorf("ID = %v (uac %v), want %v", d.ID(), d.IsUAC(), wantID)
	}
	// The creating request has no To tag yet; the rest of its ID matches.
	if id := IDFromRequest(req, true); id != (ID{CallID: wantID.CallID, RemoteTag: wantID.RemoteTag}) {
		t.Errorf("IDFromRequest = %v", id)
	}
	if d.State() != Early {
		t.Errorf("state after 180 = %v", d.State())
	}
	// §12.1.1: the route set is the request's Record-Route list in order.
	if got, want := uriStrings(d.RouteSet()), []string{"sip:p2.example.org;lr", "sip:p1.example.net;lr"}; !equalStrings(got, want) {
		t.Errorf("route set = %q, want %q", got, want)
	}
	if got := d.RemoteTarget(); got.String() != "sip:carol@phone.example.net:5070" {
		t.Errorf("remote target = %s", got.String())
	}
	if local, remote := d.LocalURI(), d.RemoteURI(); local.String() != "<sip:gw@switchboard.example.org>" ||
		remote.String() != `"Carol" <sip:carol@example.net>` {
		t.Errorf("local %s remote %s", local.String(), remote.String())
	}
	if seq, ok := d.RemoteSeq(); !ok || seq != 10 {
		t.Errorf("remote seq = %d, %v; want 10", seq, ok)
	}
	if _, ok := d.LocalSeq(); ok {
		t.Error("local seq set at the UAS before its first request")
	}
	if c, ok := d.LocalContact(); !ok || c.URI.String() != "sip:gw@198.51.100.7:5060" {
		t.Errorf("local contact = %s, %v", c.String(), ok)
	}

	// The callee may not BYE or re-INVITE an early dialog.
	for _, m := range []string{sip.MethodBye, sip.MethodInvite} {
		_, err := d.NewRequest(m)
		wantErr(t, err, ErrNotConfirmed)
	}

	ok := sip.NewResponse(req, 200, "")
	ok.SetToTag("9w7")
	if err := d.SendResponse(ok); err != nil {
		t.Fatal(err)
	}
	if d.State() != Confirmed {
		t.Fatalf("state after sending 200 = %v", d.State())
	}
	bye, err := d.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	bye = reparse(t, bye)
	if to, from := bye.To(), bye.From(); to.String() != `"Carol" <sip:carol@example.net>;tag=ca201` ||
		from.String() != "<sip:gw@switchboard.example.org>;tag=9w7" {
		t.Errorf("BYE To %s From %s", to.String(), from.String())
	}
	if bye.URI.String() != "sip:carol@phone.example.net:5070" {
		t.Errorf("BYE Request-URI %s", bye.URI.String())
	}
	if got, want := routeURIs(t, bye), []string{"sip:p2.example.org;lr", "sip:p1.example.net;lr"}; !equalStrings(got, want) {
		t.Errorf("BYE routes %q, want %q", got, want)
	}
	// An initial local CSeq is chosen below 2^31 (§8.1.1.5).
	if c := bye.CSeq(); c.Method != sip.MethodBye || c.Seq == 0 || c.Seq >= 1<<31 {
		t.Errorf("BYE CSeq %v", c)
	}
	if seq, ok := d.LocalSeq(); !ok || seq != bye.CSeq().Seq {
		t.Errorf("local seq %d, %v after BYE %d", seq, ok, bye.CSeq().Seq)
	}
}

func TestUASFailureTerminates(t *testing.T) {
	d, req := newUASDialog(t, 183)
	busy := sip.NewResponse(req, 486, "")
	busy.SetToTag("9w7")
	if err := d.SendResponse(busy); err != nil {
		t.Fatal(err)
	}
	if d.State() != Terminated {
		t.Errorf("state after 486 = %v", d.State())
	}
}

func TestNewUASErrors(t *testing.T) {
	noContact := `
INVITE sip:gw@switchboard.example.org SIP/2.0
Via: SIP/2.0/UDP phone.example.net:5070;branch=z9hG4bKc4r02
Max-Forwards: 70
To: <sip:gw@switchboard.example.org>
From: Carol <sip:carol@example.net>;tag=ca202
Call-ID: 77aa-32@phone.example.net
CSeq: 1 INVITE
Content-Length: 0
`
	tests := []struct {
		name  string
		req   string
		code  int
		tag   string
		extra string
		want  error
	}{
		{"200", carolInvite, 200, "t1", "", nil},
		{"101", carolInvite, 101, "t1", "", nil},
		{"100", carolInvite, 100, "t1", "", ErrNoDialog},
		{"180 without tag", carolInvite, 180, "", "", ErrNoDialog},
		{"200 without tag", carolInvite, 200, "", "", ErrNoDialog},
		{"603", carolInvite, 603, "t1", "", ErrNoDialog},
		{"no contact", noContact, 200, "t1", "", ErrMalformed},
		{"wildcard response contact", carolInvite, 200, "t1", "*", ErrMalformed},
		{"in-dialog", carolRequest(t, sip.MethodInvite, "11", "Contact: <sip:carol@phone.example.net:5070>").String(), 200, "t1", "", ErrNoDialog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseReq(t, tt.req)
			res := sip.NewResponse(req, tt.code, "")
			if tt.tag != "" {
				res.SetToTag(tt.tag)
			}
			if tt.extra != "" {
				res.Add("Contact", tt.extra)
			}
			_, err := NewUAS(req, res)
			wantErr(t, err, tt.want)
		})
	}
	// A response to another request.
	req := parseReq(t, carolInvite)
	other := sip.NewResponse(parseReq(t, noContact), 200, "")
	other.SetToTag("t1")
	_, err := NewUAS(req, other)
	wantErr(t, err, ErrMismatch)
}

func TestSecure(t *testing.T) {
	uasInvite := func(ruri, via string) string {
		return "INVITE " + ruri + " SIP/2.0\n" +
			"Via: SIP/2.0/" + via + " phone.example.net:5061;branch=z9hG4bKs1\n" +
			"Max-Forwards: 70\n" +
			"To: <sip:gw@switchboard.example.org>\n" +
			"From: <sips:carol@example.net>;tag=s1\n" +
			"Call-ID: sec-1@phone.example.net\n" +
			"CSeq: 1 INVITE\n" +
			"Contact: <sips:carol@phone.example.net:5061>\n" +
			"Content-Length: 0\n"
	}
	tls := sip.Addr{Transport: sip.TLS, AddrPort: netip.MustParseAddrPort("192.0.2.8:5061")}
	udp := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.8:5060")}
	uas := []struct {
		name   string
		ruri   string
		via    string
		source sip.Addr
		want   bool
	}{
		{"sips over tls source", "sips:gw@switchboard.example.org", "TLS", tls, true},
		{"sips over udp source", "sips:gw@switchboard.example.org", "TLS", udp, false},
		{"sip over tls", "sip:gw@switchboard.example.org", "TLS", tls, false},
		{"sips, via tls", "sips:gw@switchboard.example.org", "TLS", sip.Addr{}, true},
		{"sips, via wss", "sips:gw@switchboard.example.org", "WSS", sip.Addr{}, true},
		{"sips, via udp", "sips:gw@switchboard.example.org", "UDP", sip.Addr{}, false},
	}
	for _, tt := range uas {
		t.Run("uas "+tt.name, func(t *testing.T) {
			req := parseReq(t, uasInvite(tt.ruri, tt.via))
			req.Source = tt.source
			res := sip.NewResponse(req, 200, "")
			res.SetToTag("g1")
			d, err := NewUAS(req, res)
			if err != nil {
				t.Fatal(err)
			}
			if d.Secure() != tt.want {
				t.Errorf("Secure = %v, want %v", d.Secure(), tt.want)
			}
			if tt.want {
				// The dialog's requests go to the sips Contact.
				bye, err := d.NewRequest(sip.MethodBye)
				if err != nil {
					t.Fatal(err)
				}
				if bye.URI.Scheme != "sips" {
					t.Errorf("BYE Request-URI %s", bye.URI.String())
				}
			}
		})
	}

	uacInvite := func(ruri, via string) string {
		return "INVITE " + ruri + " SIP/2.0\n" +
			"Via: SIP/2.0/" + via + " gw.atlanta.example.com;branch=z9hG4bKs2\n" +
			"Max-Forwards: 70\n" +
			"To: <sips:bob@biloxi.example.com>\n" +
			"From: <sips:alice@atlanta.example.com>;tag=s2\n" +
			"Call-ID: sec-2@gw.atlanta.example.com\n" +
			"CSeq: 1 INVITE\n" +
			"Contact: <sips:alice@gw.atlanta.example.com>\n" +
			"Content-Length: 0\n"
	}
	const ok = "SIP/2.0 200 OK\n" +
		"Via: SIP/2.0/TLS gw.atlanta.example.com;branch=z9hG4bKs2\n" +
		"To: <sips:bob@biloxi.example.com>;tag=s3\n" +
		"From: <sips:alice@atlanta.example.com>;tag=s2\n" +
		"Call-ID: sec-2@gw.atlanta.example.com\n" +
		"CSeq: 1 INVITE\n" +
		"Contact: <sips:bob@192.0.2.4>\n" +
		"Content-Length: 0\n"
	uac := []struct {
		name string
		ruri string
		via  string
		want bool
	}{
		{"sips over tls", "sips:bob@biloxi.example.com", "TLS", true},
		{"sips before sending", "sips:bob@biloxi.example.com", "none", true},
		{"sips over tcp", "sips:bob@biloxi.example.com", "TCP", false},
		{"sip over tls", "sip:bob@biloxi.example.com", "TLS", false},
	}
	for _, tt := range uac {
		t.Run("uac "+tt.name, func(t *testing.T) {
			req := parseReq(t, uacInvite(tt.ruri, tt.via))
			if tt.via == "none" {
				req.Del("Via") // as built, before the transaction layer adds one
			}
			d, err := NewUAC(req, parseRes(t, ok))
			if err != nil {
				t.Fatal(err)
			}
			if d.Secure() != tt.want {
				t.Errorf("Secure = %v, want %v", d.Secure(), tt.want)
			}
		})
	}
}

func TestIDFrom(t *testing.T) {
	req := carolRequest(t, sip.MethodInfo, "11")
	res := sip.NewResponse(req, 200, "")
	tests := []struct {
		name string
		got  ID
		want ID
	}{
		{"request at uas", IDFromRequest(req, true), ID{"77aa-31@phone.example.net", "9w7", "ca201"}},
		{"request at uac", IDFromRequest(req, false), ID{"77aa-31@phone.example.net", "ca201", "9w7"}},
		{"response at uac", IDFromResponse(res, true), ID{"77aa-31@phone.example.net", "ca201", "9w7"}},
		{"response at uas", IDFromResponse(res, false), ID{"77aa-31@phone.example.net", "9w7", "ca201"}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if s := tests[0].want.String(); s != "77aa-31@phone.example.net;local=9w7;remote=ca201" {
		t.Errorf("String = %q", s)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Early: "early", Confirmed: "confirmed", Terminated: "terminated", 0: "State(0)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
	d := newUACDialog(t)
	if got := d.String(); got != "5c3f0e1a9b@gw.atlanta.example.com;local=a11ce01;remote=b0b77 confirmed" {
		t.Errorf("Dialog.String = %q", got)
	}
}
