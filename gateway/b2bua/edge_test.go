package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// TestAnswerCrossesCancel: a 2xx that crosses the CANCEL is acknowledged
// and ended with BYE (RFC 3261 §15).
func TestAnswerCrossesCancel(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph := h.newBrowser(), newTestPhone(t)
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
	// The phone had answered already.
	in.respond(200, ph.sdp(1, "0"))
	if ack := h.phone.expect(sip.MethodAck); ack.req.To().Tag() != in.tag {
		t.Errorf("ack to tag %q", ack.req.To().Tag())
	}
	bye := h.phone.expect(sip.MethodBye)
	if bye.req.To().Tag() != in.tag || bye.req.CallID() != in.req.CallID() {
		t.Errorf("bye for another dialog:\n%s", bye.req)
	}
	bye.respond(200, nil)
}

// TestExtraFork: a second 2xx from another fork of the callee's INVITE
// is acknowledged and ended with BYE; the call goes on.
func TestExtraFork(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, ph, _, in := browserCallsPhone(t, h)
	other := sip.NewResponse(in.req, 200, "")
	other.SetToTag("otherfork")
	other.Add("Contact", "<sip:other@127.0.0.1:5070>")
	other.SetBody(ph.sdp(1, "0"), contentSDP)
	if err := in.tx.Respond(other); err != nil {
		t.Fatal(err)
	}
	var sawAck bool
	for !sawAck {
		ack := h.phone.expect(sip.MethodAck)
		sawAck = ack.req.To().Tag() == "otherfork"
	}
	bye := h.phone.expect(sip.MethodBye)
	if bye.req.To().Tag() != "otherfork" {
		t.Fatalf("bye to tag %q", bye.req.To().Tag())
	}
	bye.respond(200, nil)
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("calls %+v", calls)
	}
	h.browser.idle(sip.MethodBye)
}

// TestRingTimeout: a callee that rings too long is canceled; the caller
// gets 408.
func TestRingTimeout(t *testing.T) {
	clk := fakeClock()
	h := newHarness(t, harnessOptions{b2bua: Options{Clock: clk, RingTimeout: time.Minute}})
	br := h.newBrowser()
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	in.respond(180, nil)
	oc.await(180)
	clk.Advance(time.Minute)
	oc.await(408)
	select {
	case <-in.tx.Canceled():
	case <-timeAfter():
		t.Fatal("the phone's invite was not canceled")
	}
	in.respond(487, nil)
	if cause := h.ended(); !strings.Contains(cause, "no answer") {
		t.Errorf("cause %q", cause)
	}
}

// TestBrowserEarlyAnswer: the browser's 183 with SDP gives the phone its
// answer early; the 200 repeats it.
func TestBrowserEarlyAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph := h.newBrowser(), newTestPhone(t)
	oc := h.phone.invite("browser", ph.sdp(1, "0 101"))
	in := h.browser.expect(sip.MethodInvite)
	answer := br.Answer(in.req.Body)
	in.respond(183, answer)
	early := oc.await(183)
	mustContain(t, early.Body, "RTP/AVP", "a=rtpmap:0 PCMU/8000")
	in.respond(200, answer)
	h.browser.expect(sip.MethodAck)
	res := oc.await(200)
	if string(res.Body) != string(early.Body) {
		t.Errorf("200's sdp differs from the 183's")
	}
	oc.ack(res, nil)
	ph.learn(res.Body)
	br.WaitConnected()
	audioToBrowser(t, ph, br)
}

// TestLateOfferAckWithoutAnswer: an ACK without the answer to the
// gateway's offer ends the call.
func TestLateOfferAckWithoutAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br := h.newBrowser()
	oc := h.phone.invite("browser", nil)
	in := h.browser.expect(sip.MethodInvite)
	in.respond(200, br.Answer(in.req.Body))
	h.browser.expect(sip.MethodAck)
	res := oc.await(200)
	oc.ack(res, nil)
	h.phone.expect(sip.MethodBye).respond(200, nil)
	h.browser.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); !strings.Contains(cause, "protocol") {
		t.Errorf("cause %q", cause)
	}
}

// TestInDialogRefused: requests that do not fit the dialog.
func TestInDialogRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, oc, _ := browserCallsPhone(t, h)

	// A BYE with the right Call-ID and To tag but another From tag.
	req, err := oc.dlg.NewRequest(sip.MethodInfo) // a BYE would end our dialog
	if err != nil {
		t.Fatal(err)
	}
	req.Method = sip.MethodBye
	req.Set("CSeq", sip.CSeq{Seq: req.CSeq().Seq, Method: sip.MethodBye}.String())
	from := req.From()
	from.Params = from.Params.Set("tag", "intruder")
	req.Set("From", from.String())
	if _, err := h.browser.node.StampVia(req, h.browser.gw); err != nil {
		t.Fatal(err)
	}
	tx, err := h.browser.layer.Request(t.Context(), req, h.browser.gw)
	if err != nil {
		t.Fatal(err)
	}
	for res := range tx.Responses() {
		if res.StatusCode >= 200 && res.StatusCode != 481 {
			t.Fatalf("forged bye: %d", res.StatusCode)
		}
	}
	// Methods: unknown (501), not allowed here (405), a REFER without
	// Refer-To (400), OPTIONS (200), and a
	// PRACK with no reliable response to acknowledge (481, RFC 3262 §3,
	// last: a 481 ends the sender's dialog).
	for _, tc := range []struct {
		method string
		code   int
	}{{"FOO", 501}, {sip.MethodSubscribe, 405}, {sip.MethodRefer, 400}, {sip.MethodOptions, 200}, {sip.MethodPrack, 481}} {
		if res := h.browser.request(oc.dlg, tc.method, nil, ""); res.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", tc.method, res.StatusCode, tc.code)
		}
	}
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("calls %+v", calls)
	}
}
