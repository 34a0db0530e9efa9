package dialog

import (
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// uasWithRoutes makes a confirmed UAS dialog from an INVITE carrying the
// given Record-Route values (in order) and Contact.
func uasWithRoutes(t testing.TB, rr []string, contact string) *Dialog {
	t.Helper()
	s := "INVITE sip:gw@switchboard.example.org SIP/2.0\n" +
		"Via: SIP/2.0/UDP phone.example.net:5070;branch=z9hG4bKrt1\n"
	for _, r := range rr {
		s += "Record-Route: " + r + "\n"
	}
	s += "Max-Forwards: 70\n" +
		"To: <sip:gw@switchboard.example.org>\n" +
		"From: Carol <sip:carol@example.net>;tag=ca203\n" +
		"Call-ID: route-1@phone.example.net\n" +
		"CSeq: 5 INVITE\n" +
		"Contact: " + contact + "\n" +
		"Content-Length: 0\n"
	req := parseReq(t, s)
	res := sip.NewResponse(req, 200, "")
	res.SetToTag("gw5")
	d, err := NewUAS(req, res)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRouting(t *testing.T) {
	const carol = "<sip:carol@phone.example.net:5070>"
	tests := []struct {
		name    string
		rr      []string
		contact string
		ruri    string
		routes  []string
	}{
		{
			name: "no route set", contact: carol,
			ruri: "sip:carol@phone.example.net:5070",
		},
		{
			name: "loose", contact: carol,
			rr:     []string{"<sip:p2.example.org;lr>", "<sip:p1.example.net;lr>"},
			ruri:   "sip:carol@phone.example.net:5070",
			routes: []string{"sip:p2.example.org;lr", "sip:p1.example.net;lr"},
		},
		{
			// Only the first route decides.
			name: "loose first, strict second", contact: carol,
			rr:     []string{"<sip:p2.example.org;lr>, <sip:p1.example.net>"},
			ruri:   "sip:carol@phone.example.net:5070",
			routes: []string{"sip:p2.example.org;lr", "sip:p1.example.net"},
		},
		{
			name: "strict", contact: carol,
			rr:     []string{"<sip:p2.example.org;transport=tcp;maddr=203.0.113.1>", "<sip:p1.example.net;lr>"},
			ruri:   "sip:p2.example.org;transport=tcp;maddr=203.0.113.1",
			routes: []string{"sip:p1.example.net;lr", "sip:carol@phone.example.net:5070"},
		},
		{
			name: "strict, single route", contact: carol,
			rr:     []string{"<sip:p2.example.org>"},
			ruri:   "sip:p2.example.org",
			routes: []string{"sip:carol@phone.example.net:5070"},
		},
		{
			// Headers and the method parameter are not allowed in a
			// Request-URI (§19.1.1); the target in Route keeps everything.
			name: "strict, stripped", contact: "<sip:carol@phone.example.net;method=INVITE?subject=hi>",
			rr:     []string{"<sip:p2.example.org;method=INVITE;user=ip?priority=urgent>"},
			ruri:   "sip:p2.example.org;user=ip",
			routes: []string{"sip:carol@phone.example.net;method=INVITE?subject=hi"},
		},
		{
			name: "loose, target stripped", contact: "<sip:carol@phone.example.net;method=INVITE?subject=hi>",
			rr:     []string{"<sip:p2.example.org;lr>"},
			ruri:   "sip:carol@phone.example.net",
			routes: []string{"sip:p2.example.org;lr"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := uasWithRoutes(t, tt.rr, tt.contact)
			before := uriStrings(d.RouteSet())
			for _, method := range []string{sip.MethodInfo, sip.MethodInvite} {
				req, err := d.NewRequest(method)
				if err != nil {
					t.Fatal(err)
				}
				req = reparse(t, req)
				if req.URI.String() != tt.ruri {
					t.Errorf("%s Request-URI %s, want %s", method, req.URI.String(), tt.ruri)
				}
				if got := routeURIs(t, req); !equalStrings(got, tt.routes) {
					t.Errorf("%s Route %q, want %q", method, got, tt.routes)
				}
			}
			ack, err := d.NewAck(mustLocalSeq(t, d))
			if err != nil {
				t.Fatal(err)
			}
			ack = reparse(t, ack)
			if ack.URI.String() != tt.ruri || !equalStrings(routeURIs(t, ack), tt.routes) {
				t.Errorf("ACK %s Route %q", ack.URI.String(), routeURIs(t, ack))
			}
			if after := uriStrings(d.RouteSet()); !equalStrings(before, after) {
				t.Errorf("building requests changed the route set: %q → %q", before, after)
			}
		})
	}
}

func mustLocalSeq(t testing.TB, d *Dialog) uint32 {
	t.Helper()
	seq, ok := d.LocalSeq()
	if !ok {
		t.Fatal("local seq unset")
	}
	return seq
}

func TestRouteValuesKept(t *testing.T) {
	// Route values are copied whole from Record-Route: display name, URI
	// parameters and header parameters.
	d := uasWithRoutes(t, []string{`"edge" <sip:p2.example.org;lr;r2=on>;x=1`}, "<sip:carol@phone.example.net>")
	req, err := d.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Values("Route"); len(got) != 1 || got[0] != `"edge" <sip:p2.example.org;lr;r2=on>;x=1` {
		t.Errorf("Route lines %q", got)
	}
}

func TestCSeqAndHeaders(t *testing.T) {
	d := newUACDialog(t)
	tests := []struct {
		method  string
		seq     uint32
		contact bool
	}{
		{sip.MethodInfo, 4712, false},
		{sip.MethodUpdate, 4713, true},
		{sip.MethodInvite, 4714, true},
		{sip.MethodOptions, 4715, false},
		{sip.MethodNotify, 4716, true},
		{sip.MethodMessage, 4717, false},
	}
	for _, tt := range tests {
		req, err := d.NewRequest(tt.method)
		if err != nil {
			t.Fatal(err)
		}
		if req.Has("Via") {
			t.Errorf("%s has a Via", tt.method)
		}
		req = reparse(t, req)
		if c := req.CSeq(); c.Seq != tt.seq || c.Method != tt.method || req.Method != tt.method {
			t.Errorf("%s CSeq %v, want %d", tt.method, c, tt.seq)
		}
		if mf, ok := req.MaxForwards(); !ok || mf != 70 {
			t.Errorf("%s Max-Forwards %d", tt.method, mf)
		}
		if to, from := req.To(), req.From(); to.String() != `"Bob" <sip:bob@biloxi.example.com>;tag=b0b77` ||
			from.String() != `"Alice A." <sip:alice@atlanta.example.com>;tag=a11ce01` {
			t.Errorf("%s To %s From %s", tt.method, to.String(), from.String())
		}
		if req.CallID() != "5c3f0e1a9b@gw.atlanta.example.com" {
			t.Errorf("%s Call-ID %s", tt.method, req.CallID())
		}
		contacts, _ := req.Contacts()
		if got := len(contacts) == 1; got != tt.contact {
			t.Errorf("%s Contact %v, want %v", tt.method, contacts, tt.contact)
		} else if got && contacts[0].URI.String() != "sip:alice@gw.atlanta.example.com;transport=tcp" {
			t.Errorf("%s Contact %s", tt.method, contacts[0].URI.String())
		}
		if n, ok := req.ContentLength(); !ok || n != 0 {
			t.Errorf("%s Content-Length %d, %v", tt.method, n, ok)
		}
	}

	// ACK reuses the CSeq of the INVITE it acknowledges and leaves the
	// local sequence number alone; it has no Contact.
	for _, inviteSeq := range []uint32{4714, 4711} {
		ack, err := d.NewAck(inviteSeq)
		if err != nil {
			t.Fatal(err)
		}
		ack = reparse(t, ack)
		if c := ack.CSeq(); c.Seq != inviteSeq || c.Method != sip.MethodAck || ack.Method != sip.MethodAck {
			t.Errorf("ACK CSeq %v, want %d ACK", c, inviteSeq)
		}
		if ack.Has("Contact") {
			t.Error("ACK has a Contact")
		}
	}
	if seq := mustLocalSeq(t, d); seq != 4717 {
		t.Errorf("local seq after ACKs %d, want 4717", seq)
	}
	_, err := d.NewAck(4718)
	wantErr(t, err, ErrCSeqOutOfOrder)

	// The local Contact can be changed for later target refreshes.
	d.SetLocalContact(sip.Address{URI: sip.URI{Scheme: "sip", User: "alice", Host: "198.51.100.9", Port: 5080}})
	upd, err := d.NewRequest(sip.MethodUpdate)
	if err != nil {
		t.Fatal(err)
	}
	if got := upd.Get("Contact"); got != "<sip:alice@198.51.100.9:5080>" {
		t.Errorf("Contact after SetLocalContact %q", got)
	}

	// BYE takes the next number and ends the dialog; a retransmitted 2xx
	// can still be acknowledged.
	bye, err := d.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	if c := bye.CSeq(); c.Seq != 4719 {
		t.Errorf("BYE CSeq %v", c)
	}
	if d.State() != Terminated {
		t.Errorf("state after BYE %v", d.State())
	}
	_, err = d.NewRequest(sip.MethodInfo)
	wantErr(t, err, ErrTerminated)
	if _, err := d.NewAck(4711); err != nil {
		t.Errorf("ACK after BYE: %v", err)
	}
}

func TestAckCredentials(t *testing.T) {
	d := newUACDialog(t)
	invite, err := d.NewRequest(sip.MethodInvite)
	if err != nil {
		t.Fatal(err)
	}
	invite.Add("Proxy-Authorization", `Digest username="alice", realm="atlanta.example.com", nonce="n1", uri="sip:bob@192.0.2.4", response="0123456789abcdef0123456789abcdef"`)
	invite.Add("Authorization", `Digest username="alice", realm="biloxi.example.com", nonce="n2", uri="sip:bob@192.0.2.4", response="fedcba9876543210fedcba9876543210"`)
	ack, err := d.NewAck(invite.CSeq().Seq, WithCredentials(invite))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Proxy-Authorization", "Authorization"} {
		if got, want := ack.Values(h), invite.Values(h); !equalStrings(got, want) {
			t.Errorf("ACK %s %q, want %q", h, got, want)
		}
	}
	if n, ok := reparse(t, ack).ContentLength(); !ok || n != 0 {
		t.Errorf("ACK Content-Length %d %v", n, ok)
	}
	plain, err := d.NewAck(invite.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Has("Authorization") || plain.Has("Proxy-Authorization") {
		t.Error("ACK without the option has credentials")
	}
}

func TestBadMethods(t *testing.T) {
	d := newUACDialog(t)
	for _, m := range []string{sip.MethodAck, sip.MethodCancel, "", "IN VITE", "BYE\r\nX-Evil: 1", "BYE;"} {
		_, err := d.NewRequest(m)
		wantErr(t, err, ErrBadMethod)
	}
	if seq := mustLocalSeq(t, d); seq != 4711 {
		t.Errorf("refused requests moved the local seq to %d", seq)
	}
	// Extension methods are tokens and allowed.
	if _, err := d.NewRequest("X-PING"); err != nil {
		t.Error(err)
	}
}

func TestEarlyDialogRequests(t *testing.T) {
	d, err := NewUAC(parseReq(t, aliceInvite), bobResponse(t, "183 Session Progress", "b0b77", rrBoth, bobPhone, "Require: 100rel", "RSeq: 1"))
	if err != nil {
		t.Fatal(err)
	}
	// PRACK (RFC 3262) and UPDATE (RFC 3311) live in early dialogs.
	prack, err := d.NewRequest(sip.MethodPrack)
	if err != nil {
		t.Fatal(err)
	}
	if prack.CSeq().Seq != 4712 || prack.URI.String() != "sip:bob@192.0.2.4" {
		t.Errorf("PRACK %s CSeq %v", prack.URI.String(), prack.CSeq())
	}
	if _, err := d.NewRequest(sip.MethodUpdate); err != nil {
		t.Fatal(err)
	}
	_, err = d.NewRequest(sip.MethodInvite)
	wantErr(t, err, ErrNotConfirmed)
	_, err = d.NewAck(4711)
	wantErr(t, err, ErrNotConfirmed)
	// The caller may BYE an early dialog (RFC 3261 §15).
	if _, err := d.NewRequest(sip.MethodBye); err != nil {
		t.Fatal(err)
	}
	if d.State() != Terminated {
		t.Errorf("state after early BYE %v", d.State())
	}
}

func TestCSeqExhausted(t *testing.T) {
	req := parseReq(t, strings.Replace(aliceInvite, "CSeq: 4711 INVITE", "CSeq: 4294967295 INVITE", 1))
	res := parseRes(t, strings.Replace(bobResponse(t, "200 OK", "b0b77", bobPhone).String(), "CSeq: 4711 INVITE", "CSeq: 4294967295 INVITE", 1))
	d, err := NewUAC(req, res)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.NewRequest(sip.MethodBye)
	wantErr(t, err, ErrCSeqExhausted)
}

func TestConcurrentRequests(t *testing.T) {
	d := newUACDialog(t)
	const n = 64
	seqs := make(chan uint32, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, err := d.NewRequest(sip.MethodInfo)
			if err != nil {
				t.Error(err)
				return
			}
			seqs <- req.CSeq().Seq
			_ = d.RouteSet()
			_ = d.RemoteTarget()
		})
	}
	wg.Wait()
	close(seqs)
	seen := make(map[uint32]bool)
	for s := range seqs {
		if s <= 4711 || s > 4711+n || seen[s] {
			t.Errorf("CSeq %d repeated or out of range", s)
		}
		seen[s] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct CSeqs, want %d", len(seen), n)
	}
}
