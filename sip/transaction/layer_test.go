package transaction

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
)

// TestServerMatching checks §17.2.3: which requests are retransmissions of
// (or the ACK of) an existing server transaction, and which start a new one,
// for RFC 3261 branches and for RFC 2543 requests without the cookie.
func TestServerMatching(t *testing.T) {
	base := msgSpec{method: "INVITE", branch: "z9hG4bKmatch1"}
	legacy := msgSpec{method: "INVITE", branch: "1234abc"}
	noBranch := msgSpec{method: "INVITE", branch: "-"}
	mod := func(s msgSpec, f func(*msgSpec)) msgSpec { f(&s); return s }
	tests := []struct {
		name   string
		first  msgSpec
		second msgSpec
		final  int    // response sent by the TU to first before second (0: none)
		want   string // "absorbed" (retransmission), "new" (new transaction), "ack-confirmed", "ack-to-tu"
	}{
		{"3261 retransmission", base, base, 180, "absorbed"},
		{"3261 other branch", base, mod(base, func(s *msgSpec) { s.branch = "z9hG4bKmatch2" }), 180, "new"},
		{"3261 other sent-by", base, mod(base, func(s *msgSpec) { s.sentBy = "192.0.2.9:5060" }), 180, "new"},
		{"3261 sent-by host case", mod(base, func(s *msgSpec) { s.sentBy = "PC33.Atlanta.Example.COM:5060" }),
			mod(base, func(s *msgSpec) { s.sentBy = "pc33.atlanta.example.com:5060" }), 180, "absorbed"},
		{"3261 other sent-by port", base, mod(base, func(s *msgSpec) { s.sentBy = "192.0.2.1:5070" }), 180, "new"},
		{"3261 other method", base, mod(base, func(s *msgSpec) { s.method = "OPTIONS" }), 180, "new"},
		{"3261 ignores call-id", base, mod(base, func(s *msgSpec) { s.callID = "other" }), 180, "absorbed"},
		{"3261 ack of non-2xx", base, mod(base, func(s *msgSpec) { s.method, s.toTag = "ACK", "uas" }), 486, "ack-confirmed"},
		{"3261 ack, new branch (2xx)", base, mod(base, func(s *msgSpec) { s.method, s.toTag, s.branch = "ACK", "uas", "z9hG4bKack" }), 200, "ack-to-tu"},
		{"3261 ack with same branch in accepted", base, mod(base, func(s *msgSpec) { s.method, s.toTag = "ACK", "uas" }), 200, "ack-to-tu"},

		{"2543 retransmission", legacy, legacy, 180, "absorbed"},
		{"2543 no branch retransmission", noBranch, noBranch, 180, "absorbed"},
		{"2543 other request-uri", legacy, mod(legacy, func(s *msgSpec) { s.uri = "sip:carol@example.com" }), 180, "new"},
		{"2543 other from tag", legacy, mod(legacy, func(s *msgSpec) { s.fromTag = "ft2" }), 180, "new"},
		{"2543 other to tag", legacy, mod(legacy, func(s *msgSpec) { s.toTag = "x" }), 180, "new"},
		{"2543 other call-id", legacy, mod(legacy, func(s *msgSpec) { s.callID = "call-2@192.0.2.1" }), 180, "new"},
		{"2543 other cseq", legacy, mod(legacy, func(s *msgSpec) { s.cseq = 2 }), 180, "new"},
		{"2543 other top via", legacy, mod(legacy, func(s *msgSpec) { s.sentBy = "192.0.2.9:5060" }), 180, "new"},
		{"2543 other via branch", legacy, mod(legacy, func(s *msgSpec) { s.branch = "5678" }), 180, "new"},
		{"2543 ack with to tag of response", legacy, mod(legacy, func(s *msgSpec) { s.method, s.toTag = "ACK", "uas" }), 486, "ack-confirmed"},
		{"2543 no branch ack", noBranch, mod(noBranch, func(s *msgSpec) { s.method, s.toTag = "ACK", "uas" }), 486, "ack-confirmed"},
		{"2543 ack with other to tag", legacy, mod(legacy, func(s *msgSpec) { s.method, s.toTag = "ACK", "zzz" }), 486, "ack-to-tu"},
		{"2543 ack with other cseq", legacy, mod(legacy, func(s *msgSpec) { s.method, s.toTag, s.cseq = "ACK", "uas", 9 }), 486, "ack-to-tu"},
		{"2543 ack of 2xx", legacy, mod(legacy, func(s *msgSpec) { s.method, s.toTag = "ACK", "uas" }), 200, "ack-to-tu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{TryingDelay: time.Hour})
			h.l.HandleMessage(tt.first.req(t))
			tx := h.serverTx()
			if tt.final != 0 {
				if err := tx.Respond(response(tx.Request(), tt.final, "uas")); err != nil {
					t.Fatal(err)
				}
			}
			h.net.take()
			h.l.HandleMessage(tt.second.req(t))
			var got string
			switch {
			case tt.second.method == "ACK" && tx.State() == StateConfirmed:
				got = "ack-confirmed"
			case tt.second.method == "ACK":
				if h.ack() != nil {
					got = "ack-to-tu"
				}
			case len(h.net.take()) == 1:
				got = "absorbed" // and answered with the last response
			default:
				h.serverTx()
				got = "new"
			}
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			h.noServerTx()
		})
	}
}

// TestClientMatching checks §17.1.3: a response matches by top Via branch
// and CSeq method; others go to OnStrayResponse.
func TestClientMatching(t *testing.T) {
	var strays []string
	h := newHarness(t, Config{OnStrayResponse: func(_ context.Context, res *sip.Response) {
		strays = append(strays, label(res))
	}})
	tx := mustRequest(t, h, "INVITE", peerUDP)
	req := tx.Request()

	// Same branch, CSeq method CANCEL: the CANCEL's transaction, not ours.
	cancel := NewCancel(req)
	h.l.HandleMessage(wire(t, response(cancel, 200, "a"), peerUDP))
	// Other branch.
	other := req.Clone()
	v, _ := other.TopVia()
	v.Params = v.Params.Set("branch", "z9hG4bKother")
	other.SetTopVia(v)
	h.l.HandleMessage(wire(t, response(other, 200, "a"), peerUDP))
	// Ours.
	h.l.HandleMessage(wire(t, response(req, 180, "a"), peerUDP))

	if got, _ := drain(tx); !slices.Equal(got, []string{"180"}) {
		t.Fatalf("transaction got %v", got)
	}
	if !slices.Equal(strays, []string{"200 CANCEL", "200 INVITE"}) {
		t.Fatalf("strays %v", strays)
	}

	// Without a hook, stray responses are dropped.
	h2 := newHarness(t, Config{})
	h2.l.HandleMessage(wire(t, response(other, 200, "a"), peerUDP))
	if sent := h2.net.take(); len(sent) != 0 {
		t.Fatalf("sent %v", labels(sent))
	}
}

func TestCancel(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			h := newHarness(t, Config{TryingDelay: time.Hour})
			inv := msgSpec{method: "INVITE", branch: "z9hG4bKinv"}
			if legacy {
				inv.branch = "legacy1"
			}
			cancel := inv
			cancel.method = "CANCEL"

			h.l.HandleMessage(inv.req(t))
			tx := h.serverTx()
			if err := tx.Respond(response(tx.Request(), 180, "uastag")); err != nil {
				t.Fatal(err)
			}
			h.net.take()
			if isClosed(tx.Canceled()) {
				t.Fatal("canceled too early")
			}
			h.l.HandleMessage(cancel.req(t))
			sent := h.net.take()
			if labels(sent) != "200 CANCEL" {
				t.Fatalf("sent %s, want 200 CANCEL", labels(sent))
			}
			if tag := sent[0].msg.Header().To().Tag(); tag != "uastag" {
				t.Fatalf("To tag of the 200 is %q, want the INVITE's responses' uastag", tag)
			}
			if !isClosed(tx.Canceled()) {
				t.Fatal("Canceled not signaled")
			}
			h.noServerTx() // the CANCEL does not reach the handler
			// The TU ends the INVITE.
			if err := tx.Respond(response(tx.Request(), 487, "uastag")); err != nil {
				t.Fatal(err)
			}
			if got := labels(h.net.take()); got != "487 INVITE" {
				t.Fatalf("sent %s", got)
			}
			// A retransmitted CANCEL is absorbed by the CANCEL transaction.
			h.l.HandleMessage(cancel.req(t))
			if got := labels(h.net.take()); got != "200 CANCEL" {
				t.Fatalf("retransmitted CANCEL: sent %s", got)
			}
			// The ACK of the 487 completes the INVITE transaction.
			ack := inv
			ack.method, ack.toTag = "ACK", "uastag"
			h.l.HandleMessage(ack.req(t))
			if tx.State() != StateConfirmed {
				t.Fatalf("state %v", tx.State())
			}
			// A new CANCEL (other branch on a 3261 INVITE is another
			// transaction) that finds the INVITE answered gets 481.
			late := cancel
			late.branch += "x"
			late.cseq = 1
			h.l.HandleMessage(late.req(t))
			if got := labels(h.net.take()); got != "481 CANCEL" {
				t.Fatalf("CANCEL for nothing: sent %s", got)
			}
		})
	}
}

func TestCancelAfterFinal(t *testing.T) {
	h := newHarness(t, Config{TryingDelay: time.Hour})
	inv := msgSpec{method: "INVITE", branch: "z9hG4bKinv"}
	h.l.HandleMessage(inv.req(t))
	tx := h.serverTx()
	if err := tx.Respond(response(tx.Request(), 486, "t")); err != nil {
		t.Fatal(err)
	}
	h.net.take()
	c := inv
	c.method = "CANCEL"
	h.l.HandleMessage(c.req(t))
	if got := labels(h.net.take()); got != "481 CANCEL" {
		t.Fatalf("sent %s", got)
	}
	if isClosed(tx.Canceled()) {
		t.Fatal("Canceled signaled after the final response")
	}
}

func TestCancelMatchesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	c := msgSpec{method: "CANCEL", branch: "z9hG4bKnothing"}
	h.l.HandleMessage(c.req(t))
	sent := h.net.take()
	if labels(sent) != "481 CANCEL" {
		t.Fatalf("sent %s", labels(sent))
	}
	if sent[0].dst != phoneUDP || sent[0].msg.Header().To().Tag() == "" {
		t.Fatalf("481 to %v with To %v", sent[0].dst, sent[0].msg.Header().Get("To"))
	}
	if st := h.l.Stats(); st.ServerTransactions != 0 || st.Pending != 0 {
		t.Fatalf("stateless 481 left state: %+v", st)
	}
	h.noServerTx()
}

// TestHandlerAutoResponse: a handler that returns without a final response
// gets 500 sent for it, or 487 after a CANCEL; a panic is recovered.
func TestHandlerAutoResponse(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		handler func(tx *ServerTx, req *sip.Request, h *harness)
		cancel  bool
		want    string
	}{
		{"returns silently", "OPTIONS", func(*ServerTx, *sip.Request, *harness) {}, false, "500 OPTIONS"},
		{"returns after provisional", "INVITE", func(tx *ServerTx, req *sip.Request, _ *harness) {
			_ = tx.Respond(response(req, 180, "mine"))
		}, false, "180 INVITE,500 INVITE"},
		{"returns on cancel", "INVITE", func(tx *ServerTx, req *sip.Request, _ *harness) {
			<-tx.Canceled()
		}, true, "200 CANCEL,487 INVITE"},
		{"panics", "MESSAGE", func(*ServerTx, *sip.Request, *harness) { panic("boom") }, false, "500 MESSAGE"},
		{"responds", "OPTIONS", func(tx *ServerTx, req *sip.Request, _ *harness) {
			_ = tx.Respond(response(req, 200, "x"))
		}, false, "200 OPTIONS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{TryingDelay: time.Hour})
			returned := make(chan struct{})
			h.l.handler = HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
				defer close(returned)
				tt.handler(tx, req, h)
			})
			spec := msgSpec{method: tt.method, branch: sip.NewBranch()}
			h.l.HandleMessage(spec.req(t))
			if tt.cancel {
				spec.method = "CANCEL"
				h.l.HandleMessage(spec.req(t))
			}
			<-returned
			n := strings.Count(tt.want, ",") + 1
			sent := h.net.wait(t, n)
			if got := labels(sent); got != tt.want {
				t.Fatalf("sent %s, want %s", got, tt.want)
			}
			last := sent[len(sent)-1].msg.Header().To().Tag()
			if last == "" || strings.Contains(tt.want, "180") && last != "mine" {
				t.Fatalf("To tag of the automatic response: %q", last)
			}
		})
	}
}

// TestNilHandler: a Layer without a Handler answers 501.
func TestNilHandler(t *testing.T) {
	clk := newHarness(t, Config{}).clk
	net := newNetRec(clk)
	l := New(context.Background(), net, nil, Config{Clock: clk})
	defer l.Close()
	l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKx"}.req(t))
	if got := labels(net.wait(t, 1)); got != "501 OPTIONS" {
		t.Fatalf("sent %s", got)
	}
}

// TestAckBuilding checks every header of the ACK of a non-2xx response
// (§17.1.1.3).
func TestAckBuilding(t *testing.T) {
	h := newHarness(t, Config{})
	text := "INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKack1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKbelow\r\n" +
		"Via: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKfar\r\n" +
		"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n" +
		"Route: <sip:p3.example.com;lr>\r\n" +
		"Max-Forwards: 69\r\n" +
		"To: \"Bob\" <sip:bob@biloxi.example.com>\r\n" +
		"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
		"CSeq: 314159 INVITE\r\n" +
		"Contact: <sip:alice@pc33.atlanta.example.com>\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 4\r\n\r\nv=0\n"
	m, err := sip.ParseDatagram([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	inv := m.(*sip.Request)
	tx, err := h.l.Request(context.Background(), inv, peerUDP)
	if err != nil {
		t.Fatal(err)
	}
	h.net.take()
	res := response(inv, 486, "bobtag")
	res.Add("Warning", "399 biloxi \"busy\"")
	h.l.HandleMessage(wire(t, res, peerUDP))
	sent := h.net.take()
	if len(sent) != 1 || sent[0].dst != peerUDP {
		t.Fatalf("sent %v", sent)
	}
	// Check the ACK as it goes on the wire.
	ack := wire(t, sent[0].msg, peerUDP).(*sip.Request)
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	check("method", ack.Method, "ACK")
	check("Request-URI", ack.URI.String(), inv.URI.String())
	check("Via lines", len(ack.Values("Via")), 1)
	vias := ack.Via()
	check("Via count", len(vias), 1)
	top, _ := inv.TopVia()
	check("Via", vias[0].String(), top.String())
	check("branch", vias[0].Branch(), "z9hG4bKack1")
	check("To", ack.Get("To"), "\"Bob\" <sip:bob@biloxi.example.com>;tag=bobtag")
	check("To tag", ack.To().Tag(), "bobtag")
	check("From", ack.Get("From"), inv.Get("From"))
	check("Call-ID", ack.CallID(), inv.CallID())
	check("CSeq", ack.CSeq(), sip.CSeq{Seq: 314159, Method: "ACK"})
	check("Route", strings.Join(ack.Values("Route"), " | "), strings.Join(inv.Values("Route"), " | "))
	check("Max-Forwards", ack.Get("Max-Forwards"), "69")
	check("Content-Length", ack.Get("Content-Length"), "0")
	check("body", len(ack.Body), 0)
	for _, h := range []string{"Contact", "Content-Type", "Warning"} {
		if ack.Has(h) {
			t.Errorf("ACK has %s", h)
		}
	}
	// The same ACK answers each retransmission of the response.
	h.l.HandleMessage(wire(t, res, peerUDP))
	again := h.net.take()
	if len(again) != 1 || again[0].msg != sent[0].msg {
		t.Fatalf("retransmission answered with %v", again)
	}
	if got, _ := drain(tx); !slices.Equal(got, []string{"486"}) {
		t.Fatalf("TU got %v", got)
	}
}

// TestNewCancel checks §9.1.
func TestNewCancel(t *testing.T) {
	inv := msgSpec{method: "INVITE", branch: "z9hG4bKc1", cseq: 77, toTag: "",
		extra: "Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\nContact: <sip:a@h>\r\n",
		body:  "v=0\n"}.req(t)
	c := wire(t, NewCancel(inv), peerUDP).(*sip.Request)
	if c.Method != "CANCEL" || c.URI != inv.URI {
		t.Fatalf("%s %s", c.Method, c.URI.String())
	}
	for _, name := range []string{"To", "From", "Call-ID", "Max-Forwards"} {
		if c.Get(name) != inv.Get(name) {
			t.Errorf("%s: %q, want %q", name, c.Get(name), inv.Get(name))
		}
	}
	if c.CSeq() != (sip.CSeq{Seq: 77, Method: "CANCEL"}) {
		t.Errorf("CSeq %v", c.CSeq())
	}
	if v := c.Via(); len(v) != 1 || v[0].Branch() != "z9hG4bKc1" {
		t.Errorf("Via %v", c.Values("Via"))
	}
	if !slices.Equal(c.Values("Route"), inv.Values("Route")) {
		t.Errorf("Route %v", c.Values("Route"))
	}
	if c.Has("Contact") || len(c.Body) != 0 {
		t.Errorf("extra content")
	}
}

// TestClientCancel: Cancel waits for a provisional response (§9.1), then
// sends the CANCEL once, to the INVITE's destination.
func TestClientCancel(t *testing.T) {
	h := newHarness(t, Config{})
	tx := mustRequest(t, h, "INVITE", peerUDP)
	h.net.take()
	if err := tx.Cancel(); err != nil {
		t.Fatal(err)
	}
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("CANCEL before a provisional response: %v", sent)
	}
	h.l.HandleMessage(wire(t, response(tx.Request(), 180, "b"), peerUDP))
	sent := h.net.take()
	if labels(sent) != "CANCEL" || sent[0].dst != peerUDP {
		t.Fatalf("sent %v", sent)
	}
	if err := tx.Cancel(); err != nil {
		t.Fatal(err)
	}
	if s := h.net.take(); len(s) != 0 {
		t.Fatalf("second Cancel sent %v", s)
	}
	// The CANCEL's 200 goes to the CANCEL transaction, the 487 to ours.
	cancel := sent[0].msg.(*sip.Request)
	h.l.HandleMessage(wire(t, response(cancel, 200, "b"), peerUDP))
	h.l.HandleMessage(wire(t, response(tx.Request(), 487, "b"), peerUDP))
	if got, _ := drain(tx); !slices.Equal(got, []string{"180", "487"}) {
		t.Fatalf("TU got %v", got)
	}
	if labels(h.net.take()) != "ACK" {
		t.Fatal("no ACK for the 487")
	}
	if err := mustRequest(t, h, "OPTIONS", peerUDP).Cancel(); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("Cancel of OPTIONS: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	h := newHarness(t, Config{})
	noVia := clientReq(t, "OPTIONS", sip.UDP)
	noVia.Del("Via")
	oldBranch := msgSpec{method: "OPTIONS", branch: "1234"}.req(t)
	badCSeq := clientReq(t, "OPTIONS", sip.UDP)
	badCSeq.Set("CSeq", "1 INFO")
	dup := clientReq(t, "OPTIONS", sip.UDP)
	if _, err := h.l.Request(context.Background(), dup, peerUDP); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *sip.Request
		dst  sip.Addr
		want error
	}{
		{"nil", nil, peerUDP, ErrInvalidRequest},
		{"ack", clientReq(t, "ACK", sip.UDP), peerUDP, ErrInvalidRequest},
		{"no via", noVia, peerUDP, ErrMissingBranch},
		{"rfc 2543 branch", oldBranch, peerUDP, ErrMissingBranch},
		{"cseq method", badCSeq, peerUDP, ErrInvalidRequest},
		{"no destination", clientReq(t, "OPTIONS", sip.UDP), sip.Addr{}, ErrInvalidRequest},
		{"duplicate", dup, peerUDP, ErrTransactionExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := h.l.Request(context.Background(), tt.req, tt.dst)
			if !errors.Is(err, tt.want) || tx != nil {
				t.Fatalf("got %v, %v; want %v", tx, err, tt.want)
			}
		})
	}
}

func TestRespondValidation(t *testing.T) {
	h := newHarness(t, Config{TryingDelay: time.Hour})
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKv"}.req(t))
	tx := h.serverTx()
	for _, res := range []*sip.Response{nil, response(tx.Request(), 99, "x"), response(tx.Request(), 700, "x")} {
		if err := tx.Respond(res); !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("Respond(%v) = %v", res, err)
		}
	}
	if _, err := tx.Respond2xx(response(tx.Request(), 200, "x")); !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("Respond2xx to OPTIONS: %v", err)
	}
	if tx.Canceled() != nil {
		t.Error("Canceled of a non-INVITE is not nil")
	}
	if len(h.net.take()) != 0 {
		t.Error("something was sent")
	}
}

// TestServerBound: beyond MaxServerTransactions new requests get 503 with
// Retry-After, statelessly, and do not reach the handler; retransmissions
// and CANCELs of existing transactions still work; slots come back when a
// transaction has ended and its handler returned.
func TestServerBound(t *testing.T) {
	h := newHarness(t, Config{MaxServerTransactions: 2, RetryAfter: 30 * time.Second, TryingDelay: time.Hour})
	a := msgSpec{method: "OPTIONS", branch: "z9hG4bKa", src: phoneTCP}
	b := msgSpec{method: "INVITE", branch: "z9hG4bKb"}
	c := msgSpec{method: "REGISTER", branch: "z9hG4bKc"}
	h.l.HandleMessage(a.req(t))
	txA := h.serverTx()
	h.l.HandleMessage(b.req(t))
	txB := h.serverTx()

	h.l.HandleMessage(c.req(t))
	sent := h.net.take()
	if labels(sent) != "503 REGISTER" {
		t.Fatalf("sent %s", labels(sent))
	}
	res := sent[0].msg.(*sip.Response)
	if res.Get("Retry-After") != "30" || res.To().Tag() == "" || sent[0].dst != phoneUDP {
		t.Fatalf("503: %s", res)
	}
	if st := h.l.Stats(); st.ServerTransactions != 2 || st.Pending != 2 || st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
	h.noServerTx()

	// Existing transactions are unaffected.
	h.l.HandleMessage(b.req(t))
	if got := labels(h.net.take()); got != "100 INVITE" {
		t.Fatalf("retransmission answered with %q", got)
	}
	bc := b
	bc.method = "CANCEL"
	h.l.HandleMessage(bc.req(t))
	if got := labels(h.net.take()); got != "200 CANCEL" {
		t.Fatalf("CANCEL at the bound answered with %q", got)
	}
	if !isClosed(txB.Canceled()) {
		t.Fatal("not canceled")
	}
	// An ACK without transaction is dropped at the bound.
	h.l.HandleMessage(msgSpec{method: "ACK", branch: "z9hG4bKack", toTag: "x"}.req(t))

	// End A (reliable: terminates at once); its handler returns; the slot
	// comes back.
	if err := txA.Respond(response(txA.Request(), 200, "x")); err != nil {
		t.Fatal(err)
	}
	h.net.take()
	eventually(t, "slot released", func() bool { return h.l.Stats().Pending == 1 })
	h.l.HandleMessage(c.req(t))
	if h.serverTx().Request().Method != "REGISTER" {
		t.Fatal("wrong transaction")
	}
	select {
	case <-h.acks:
		t.Fatal("ACK beyond the bound reached the handler")
	default:
	}
	if st := h.l.Stats(); st.Rejected != 2 {
		t.Fatalf("rejected %d, want 2 (the REGISTER and the ACK)", st.Rejected)
	}
}

// TestTUNeverReads: a client TU that never reads Responses blocks neither
// the transaction's retransmissions and ACKs nor other transactions; the
// final response is never dropped.
func TestTUNeverReads(t *testing.T) {
	h := newHarness(t, Config{})
	stuck := mustRequest(t, h, "INVITE", peerUDP)
	stuckReq := stuck.Request() // nil once the final response is in
	h.clk.Advance(DefaultT1)    // a retransmission
	for i := 0; i < 3*responseBuffer; i++ {
		h.l.HandleMessage(wire(t, response(stuckReq, 180, "a"), peerUDP))
	}
	h.l.HandleMessage(wire(t, response(stuckReq, 486, "a"), peerUDP))
	h.l.HandleMessage(wire(t, response(stuckReq, 486, "a"), peerUDP))
	if got := labels(h.net.take()); got != "INVITE,INVITE,ACK,ACK" {
		t.Fatalf("sent %s", got)
	}
	// Meanwhile another transaction runs normally.
	other := mustRequest(t, h, "OPTIONS", peerUDP)
	h.l.HandleMessage(wire(t, response(other.Request(), 200, "b"), peerUDP))
	if res := <-other.Responses(); res.StatusCode != 200 {
		t.Fatalf("other got %d", res.StatusCode)
	}
	// The stuck TU finally reads: provisionals up to the buffer, then the
	// final.
	var codes []int
	for res := range stuck.Responses() {
		codes = append(codes, res.StatusCode)
	}
	if len(codes) != responseBuffer || codes[len(codes)-1] != 486 {
		t.Fatalf("stuck TU got %v", codes)
	}

	// A 2xx in Accepted finds the buffer full: the first is kept.
	inv := mustRequest(t, h, "INVITE", peerUDP)
	invReq := inv.Request()
	for i := 0; i < 2*responseBuffer; i++ {
		h.l.HandleMessage(wire(t, response(invReq, 183, "a"), peerUDP))
	}
	for i := 0; i < 3; i++ {
		h.l.HandleMessage(wire(t, response(invReq, 200, "a"), peerUDP))
	}
	got, _ := drain(inv)
	if len(got) != responseBuffer || got[len(got)-1] != "200" {
		t.Fatalf("got %v", got)
	}
}

// TestHandlerNeverReturns: a handler stuck forever does not stall its
// transaction's retransmissions, its answers to retransmitted requests, or
// other transactions.
func TestHandlerNeverReturns(t *testing.T) {
	h := newHarness(t, Config{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before Close, which waits for handlers
	h.l.handler = HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		switch req.Method {
		case "INVITE":
			_ = tx.Respond(response(req, 486, "x"))
			<-release // never returns while the test runs
		case "BYE":
			<-release // never even answers
		default:
			_ = tx.Respond(response(req, 200, "x"))
		}
	})
	inv := msgSpec{method: "INVITE", branch: "z9hG4bKstuck"}
	h.l.HandleMessage(inv.req(t))
	if got := labels(h.net.wait(t, 1)); got != "486 INVITE" {
		t.Fatalf("sent %s", got)
	}
	bye := msgSpec{method: "BYE", branch: "z9hG4bKbye"}
	h.l.HandleMessage(bye.req(t))
	h.l.HandleMessage(bye.req(t)) // retransmission absorbed in Trying
	h.clk.Advance(DefaultT1)      // Timer G
	h.l.HandleMessage(inv.req(t)) // INVITE retransmission
	if got := labels(h.net.take()); got != "486 INVITE,486 INVITE" {
		t.Fatalf("sent %s", got)
	}
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKo"}.req(t))
	if got := labels(h.net.wait(t, 1)); got != "200 OPTIONS" {
		t.Fatalf("sent %s", got)
	}
}

// TestTransportErrorSurfaces checks the 503 a client TU gets and the error
// chain, and the error a server TU gets.
func TestTransportErrorSurfaces(t *testing.T) {
	h := newHarness(t, Config{})
	h.net.failNext(1)
	tx := mustRequest(t, h, "OPTIONS", peerUDP)
	res, ok := <-tx.Responses()
	if !ok || res.StatusCode != 503 || res.Reason != "Service Unavailable" {
		t.Fatalf("got %v", res)
	}
	if res.CSeq() != tx.Request().CSeq() || res.CallID() != tx.Request().CallID() {
		t.Fatal("synthesized 503 does not match the request")
	}
	err := tx.Err()
	if !errors.Is(err, ErrTransport) || !errors.Is(err, errNetDown) {
		t.Fatalf("Err() = %v", err)
	}
	if err.Error() != "transport error: network down" {
		t.Fatalf("message %q", err)
	}
	if _, ok := <-tx.Responses(); ok {
		t.Fatal("Responses not closed")
	}
	<-tx.Done()

	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKs"}.req(t))
	stx := h.serverTx()
	h.net.failNext(1)
	rerr := stx.Respond(response(stx.Request(), 200, "x"))
	if !errors.Is(rerr, ErrTransport) || !errors.Is(rerr, errNetDown) {
		t.Fatalf("Respond = %v", rerr)
	}
	<-stx.Done()
	if !errors.Is(stx.Err(), ErrTransport) {
		t.Fatalf("Err() = %v", stx.Err())
	}
}

// TestTryingImmediately: a negative TryingDelay sends 100 before the
// handler runs.
func TestTryingImmediately(t *testing.T) {
	h := newHarness(t, Config{TryingDelay: -1})
	h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKi"}.req(t))
	if got := labels(h.net.take()); got != "100 INVITE" {
		t.Fatalf("sent %q", got)
	}
	h.serverTx()
	h.clk.Advance(time.Second)
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("sent again: %s", labels(sent))
	}
}

// TestClose: Close terminates everything with ErrClosed, stops the
// timers, waits for the handlers, and refuses new work; no goroutine of the
// layer is left.
func TestClose(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := mustRequest(t, h, "INVITE", peerUDP)
	h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKc1"}.req(t))
	stx := h.serverTx()
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKc2", src: phoneTCP}.req(t))
	stx2 := h.serverTx()
	// An ACK handler that waits too.
	ackSeen := make(chan struct{})
	h.l.HandleMessage(msgSpec{method: "ACK", branch: "z9hG4bKc3", toTag: "t"}.req(t))
	go func() { h.ack(); close(ackSeen) }()
	<-ackSeen

	if err := h.l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tx := range []stateErr{ctx, stx, stx2} {
		if tx.State() != StateTerminated || !errors.Is(tx.Err(), ErrClosed) || !isClosed(tx.Done()) {
			t.Fatalf("%v %v", tx.State(), tx.Err())
		}
	}
	if _, ok := <-ctx.Responses(); ok {
		t.Fatal("Responses open")
	}
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	if st := h.l.Stats(); st != (Stats{HandlerDelay: st.HandlerDelay}) {
		t.Fatalf("stats %+v", st)
	}
	if _, err := h.l.Request(context.Background(), clientReq(t, "OPTIONS", sip.UDP), peerUDP); !errors.Is(err, ErrClosed) {
		t.Fatalf("Request after Close: %v", err)
	}
	h.net.take()
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bKc4"}.req(t))
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("sent after Close: %v", sent)
	}
	h.noServerTx()
	if err := h.l.Close(); err != nil {
		t.Fatal(err)
	}
	if leaked := leakcheck.Wait(5*time.Second, ownGoroutines); len(leaked) > 0 {
		t.Fatalf("goroutines left:\n%s", strings.Join(leaked, "\n\n"))
	}
}

// TestConcurrentLayers runs many transactions between two layers over an
// in-memory network, with the clock moving in parallel, for the race
// detector.
func TestConcurrentLayers(t *testing.T) {
	h := newHarness(t, Config{})
	var mu sync.Mutex
	var server *Layer
	srvAddr := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.2:5060")}
	cliAddr := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.5:5060")}
	var client *Layer
	// Deliver the wire form, so the receiver gets its own copy.
	toServer := senderFunc(func(_ context.Context, m sip.Message, _ sip.Addr) error {
		mu.Lock()
		s := server
		mu.Unlock()
		s.HandleMessage(wire(t, m, cliAddr))
		return nil
	})
	toClient := senderFunc(func(_ context.Context, m sip.Message, _ sip.Addr) error {
		client.HandleMessage(wire(t, m, srvAddr))
		return nil
	})
	server = New(context.Background(), toClient, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			return
		}
		_ = tx.Respond(response(req, 100, ""))
		if req.Method == "INVITE" {
			_ = tx.Respond(response(req, 180, "s"))
			_ = tx.Respond(response(req, 486, "s"))
			return
		}
		_ = tx.Respond(response(req, 200, "s"))
	}), Config{Clock: h.clk})
	defer server.Close()
	client = New(context.Background(), toServer, nil, Config{Clock: h.clk})
	defer client.Close()

	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		// Retransmission timers race with the responses, but the clock
		// stops short of Timers B and F (64*T1), which would be legitimate
		// timeouts if the handlers were scheduled late.
		for elapsed := time.Duration(0); elapsed < 60*DefaultT1; elapsed += 10 * time.Millisecond {
			select {
			case <-stop:
				return
			default:
				h.clk.Advance(10 * time.Millisecond)
			}
		}
	}()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method := "OPTIONS"
			if i%2 == 0 {
				method = "INVITE"
			}
			tx, err := client.Request(context.Background(), clientReq(t, method, sip.UDP), srvAddr)
			if err != nil {
				errs <- err
				return
			}
			var last int
			for res := range tx.Responses() {
				last = res.StatusCode
			}
			if want := map[string]int{"INVITE": 486, "OPTIONS": 200}[method]; last != want {
				errs <- fmt.Errorf("%s got %d, err %v", method, last, tx.Err())
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-ticked
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
