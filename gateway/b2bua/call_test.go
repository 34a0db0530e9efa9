package b2bua

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// browserCallsPhone sets up a call from the browser to the phone, answered
// with PCMU and telephone-event, and returns its parts.
func browserCallsPhone(t *testing.T, h *harness) (*testBrowser, *testPhone, *outCall, *inbound) {
	t.Helper()
	return browserCallsPhoneWith(t, h, nil, nil)
}

// browserCallsPhoneWith is browserCallsPhone with more headers in the
// browser's INVITE and in the phone's 200.
func browserCallsPhoneWith(t *testing.T, h *harness, inviteHdrs, okHdrs []string) (*testBrowser, *testPhone, *outCall, *inbound) {
	t.Helper()
	br, ph := h.newBrowser(), newTestPhone(t)
	oc := h.browser.invite("phone", br.Offer(), inviteHdrs...)
	in := h.phone.expect(sip.MethodInvite)
	mustContain(t, in.req.Body, "RTP/AVP", "a=rtpmap:0 PCMU/8000")
	if bytes.Contains(in.req.Body, []byte("fingerprint")) {
		t.Errorf("phone's offer has dtls:\n%s", in.req.Body)
	}
	ph.learn(in.req.Body)
	if in.req.CallID() == oc.req.CallID() || in.req.From().Tag() == oc.req.From().Tag() {
		t.Errorf("callee leg shares the caller's call-id or tag")
	}
	in.respond(180, nil)
	oc.await(180)
	in.respond(200, ph.sdp(1, "0 101"), okHdrs...)
	res := oc.await(200)
	mustContain(t, res.Body, "UDP/TLS/RTP/SAVPF", "a=fingerprint:", "a=candidate:")
	if res.To().Tag() == in.tag {
		t.Errorf("caller's to tag is the callee's")
	}
	br.SetAnswer(res.Body)
	oc.ack(res, nil)
	h.phone.expect(sip.MethodAck)
	br.WaitConnected()
	oc.res = res
	return br, ph, oc, in
}

// deadAddrs are addresses where no node of the test network listens.
var deadAddrs = []sip.Addr{
	{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5999")},
	{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5998")},
}

// TestCalleeFailover: the callee's INVITE goes to the next address of its
// next hop when one fails (RFC 3263 §4.3), as the proxy's branches do; the
// caller gets 480 when none is left (a callee's 503 is not passed on).
func TestCalleeFailover(t *testing.T) {
	t.Run("reaches the phone", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		br := h.newBrowser()
		oc := h.browser.invite("phone-failover", br.Offer())
		in := h.phone.expect(sip.MethodInvite)
		in.respond(486, nil)
		oc.await(486)
		h.ended()
	})
	t.Run("nowhere", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		br := h.newBrowser()
		oc := h.browser.invite("nowhere", br.Offer())
		oc.await(480)
		h.ended()
	})
}

func TestBrowserCallsPhone(t *testing.T) {
	for _, byeFrom := range []string{"browser", "phone"} {
		t.Run("bye from "+byeFrom, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			br, ph, oc, in := browserCallsPhone(t, h)

			if p := audioToPhone(t, br, ph); p.PayloadType != 0 {
				t.Errorf("phone got payload type %d, want 0", p.PayloadType)
			}
			if p := audioToBrowser(t, ph, br); p.PayloadType != 0 {
				t.Errorf("browser got payload type %d, want 0", p.PayloadType)
			}
			calls := h.b2b.Calls()
			if len(calls) != 1 || calls[0].State != "answered" || !calls[0].Caller.WebRTC || calls[0].Callee.WebRTC {
				t.Fatalf("calls: %+v", calls)
			}
			if calls[0].Media.RTP.PacketsIn == 0 || calls[0].Media.Web.PacketsIn == 0 {
				t.Errorf("media stats: %+v", calls[0].Media)
			}

			if byeFrom == "browser" {
				if res := h.browser.request(oc.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
					t.Fatalf("bye: %d", res.StatusCode)
				}
				h.phone.expect(sip.MethodBye).respond(200, nil)
			} else {
				if res := h.phone.request(in.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
					t.Fatalf("bye: %d", res.StatusCode)
				}
				h.browser.expect(sip.MethodBye).respond(200, nil)
			}
			if cause := h.ended(); !strings.Contains(cause, "bye from the") {
				t.Errorf("cause %q", cause)
			}
			if n := len(h.b2b.Calls()); n != 0 {
				t.Errorf("%d calls left", n)
			}
		})
	}
}

func TestErrorsMapToStatus(t *testing.T) {
	for _, err := range []error{ErrCanceled, ErrHangup, ErrClosed} {
		if code, _ := statusOf(err); code < 400 {
			t.Errorf("%v: %d", err, code)
		}
	}
	if code, _ := statusOf(errors.New("x")); code != 500 {
		t.Errorf("unknown error: %d", code)
	}
}

// phoneCallsBrowser sets up a call from the phone (with an SDP offer, or
// a late offer when offer is false) to the browser.
func phoneCallsBrowser(t *testing.T, h *harness, offer bool) (*testBrowser, *testPhone, *outCall, *inbound) {
	t.Helper()
	br, ph := h.newBrowser(), newTestPhone(t)
	var body []byte
	if offer {
		body = ph.sdp(1, "0 8 101")
	}
	oc := h.phone.invite("browser", body)
	in := h.browser.invite0()
	mustContain(t, in.req.Body, "UDP/TLS/RTP/SAVPF", "a=fingerprint:", "a=ice-ufrag:", "a=candidate:")
	if in.req.Source.Transport != sip.WS || in.req.CallID() == oc.req.CallID() {
		t.Errorf("browser's invite: source %s, call-id %s", in.req.Source, in.req.CallID())
	}
	answer := br.Answer(in.req.Body)
	in.respond(180, nil)
	oc.await(180)
	in.respond(200, answer)
	h.browser.expect(sip.MethodAck)
	res := oc.await(200)
	mustContain(t, res.Body, "RTP/AVP", "a=rtpmap:0 PCMU/8000")
	ph.learn(res.Body)
	if offer {
		oc.ack(res, nil)
	} else {
		// The gateway offered in its 200: the answer goes in the ACK.
		oc.ack(res, ph.sdp(1, "0 101"))
	}
	br.WaitConnected()
	return br, ph, oc, in
}

// invite0 takes the INVITE the gateway sends to the UA.
func (u *testUA) invite0() *inbound {
	u.t.Helper()
	return u.expect(sip.MethodInvite)
}

func TestPhoneCallsBrowser(t *testing.T) {
	for _, tc := range []struct {
		name  string
		offer bool
	}{{"offer", true}, {"late offer", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			br, ph, oc, _ := phoneCallsBrowser(t, h, tc.offer)
			audioToBrowser(t, ph, br)
			audioToPhone(t, br, ph)
			if res := h.phone.request(oc.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
				t.Fatalf("bye: %d", res.StatusCode)
			}
			h.browser.expect(sip.MethodBye).respond(200, nil)
			h.ended()
		})
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br := h.newBrowser()
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	in.respond(180, nil)
	oc.await(180)
	if err := oc.tx.Cancel(); err != nil {
		t.Fatal(err)
	}
	oc.await(487)
	select {
	case <-in.tx.Canceled():
	case <-timeAfter():
		t.Fatal("the phone's invite was not canceled")
	}
	in.respond(487, nil)
	if cause := h.ended(); !strings.Contains(cause, "canceled") {
		t.Errorf("cause %q", cause)
	}
}

func TestFailureRelayed(t *testing.T) {
	for _, tc := range []struct{ callee, caller int }{
		{486, 486}, {480, 480}, {404, 404}, {603, 603}, {488, 488}, {302, 480}, {407, 502},
	} {
		t.Run(sip.StatusText(tc.callee), func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			br := h.newBrowser()
			oc := h.browser.invite("phone", br.Offer())
			in := h.phone.expect(sip.MethodInvite)
			in.respond(tc.callee, nil)
			res := oc.await(tc.caller)
			if tc.callee == tc.caller && res.Reason != sip.StatusText(tc.callee) {
				t.Errorf("reason %q", res.Reason)
			}
			h.ended()
		})
	}
}

// TestStray2xxAcknowledged: the callee's 2xx sent again after the INVITE's
// client transaction was ended early (to make room at the client
// transactions' bound, before Timer M) is acknowledged again, as those
// the transaction passes on are: without an ACK the callee would resend
// it for 32 s and then end the call. A 2xx to an INVITE of no call of
// the B2BUA's is not taken.
func TestStray2xxAcknowledged(t *testing.T) {
	h := newHarness(t, harnessOptions{maxClientTx: 1})
	br, ph := h.newBrowser(), newTestPhone(t)
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	ph.learn(in.req.Body)
	ok := in.respond(200, ph.sdp(1, "0 101"))
	res := oc.await(200)
	br.SetAnswer(res.Body)
	oc.ack(res, nil)
	first := h.phone.expect(sip.MethodAck)

	evictClientTx(t, h)

	// An attacker who knows the Call-ID and the tags but not the branch:
	// a 2xx from "another fork" would be acknowledged and ended, at the
	// Contact it names (the phone's here, so that it would show).
	forged := ok.Clone()
	to := forged.To()
	to.Params = to.Params.Set("tag", "forged")
	forged.Set("To", to.String())
	via, _ := forged.TopVia()
	via.Params = via.Params.Set("branch", sip.NewBranch())
	forged.SetTopVia(via)
	// The phone's UA core sends its 200 again: no transaction takes it.
	// The strays are served in order, the forged one first.
	for _, r := range []*sip.Response{forged, ok} {
		if err := h.phone.node.Send(t.Context(), r, gwUDP); err != nil {
			t.Fatal(err)
		}
	}
	again := h.phone.expect(sip.MethodAck)
	if again.req.CSeq() != first.req.CSeq() || again.req.CallID() != first.req.CallID() || again.req.To().Tag() != in.tag {
		t.Errorf("second ack (the forged 2xx taken?)\n%s\nfirst\n%s", again.req, first.req)
	}
	h.phone.idle(sip.MethodAck)
	h.phone.idle(sip.MethodBye)

	// A 2xx to an INVITE the B2BUA did not send is not its own.
	other := ok.Clone()
	other.Set("From", `<sip:browser@example.test>;tag=`+sip.NewTag())
	if h.b2b.HandleStray(other) {
		t.Error("took a 2xx of a dialog it does not have")
	}
}

// TestStray2xxToReinviteAcknowledged: likewise for the 2xx to a re-INVITE
// that the B2BUA relayed (the browser's hold, to the phone).
func TestStray2xxToReinviteAcknowledged(t *testing.T) {
	h := newHarness(t, harnessOptions{maxClientTx: 1})
	br, ph, oc, _ := browserCallsPhone(t, h)

	// The relayed re-INVITE's transaction takes the place of the
	// INVITE's, which lingers.
	offer := bytes.ReplaceAll(br.Offer(), []byte("a=sendrecv"), []byte("a=sendonly"))
	done := make(chan *sip.Response, 1)
	go func() { done <- h.browser.request(oc.dlg, sip.MethodInvite, offer, contentSDP) }()
	in := h.phone.expect(sip.MethodInvite)
	ok := in.respond(200, ph.sdp(2, "0 101", "a=recvonly"))
	first := h.phone.expect(sip.MethodAck)
	if res := answered(t, done, "browser's re-invite"); res.StatusCode != 200 {
		t.Fatalf("re-invite: %d", res.StatusCode)
	}
	evictClientTx(t, h)

	if err := h.phone.node.Send(t.Context(), ok, gwUDP); err != nil {
		t.Fatal(err)
	}
	again := h.phone.expect(sip.MethodAck)
	if again.req.CSeq() != first.req.CSeq() || again.req.CSeq().Seq < 2 {
		t.Errorf("second ack\n%s\nfirst\n%s", again.req, first.req)
	}
	h.phone.idle(sip.MethodAck)
}

// evictClientTx has the gateway send an OPTIONS to the phone, answered:
// in a harness with maxClientTx 1 its client transaction takes the only
// place, and ends the lingering one that held it (a 2xx's INVITE
// transaction, before Timer M).
func evictClientTx(t *testing.T, h *harness) {
	t.Helper()
	opts := sip.NewRequest(sip.MethodOptions, sip.URI{Scheme: "sip", User: "phone", Host: "127.0.0.1", Port: 5070})
	opts.Add("Max-Forwards", "70")
	opts.Add("From", "<sip:gateway@localhost>;tag="+sip.NewTag())
	opts.Add("To", "<sip:phone@127.0.0.1:5070>")
	opts.Add("Call-ID", sip.NewCallID())
	opts.Add("CSeq", "1 OPTIONS")
	opts.Add("Content-Length", "0")
	if _, err := h.gw.StampVia(opts, phoneAddr); err != nil {
		t.Fatal(err)
	}
	tx, err := h.layer.Request(t.Context(), opts, phoneAddr)
	if err != nil {
		t.Fatalf("options: %v (the lingering transaction was not ended)", err)
	}
	h.phone.expect(sip.MethodOptions).respond(200, nil)
	for range tx.Responses() {
	}
}
