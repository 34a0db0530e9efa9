package b2bua

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

func fakeClock() *clock.Fake { return clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// TestSessionTimerCaller: the browser's Session-Expires is granted with
// the browser as refresher; its refreshes (UPDATE) keep the call; when
// they stop the call ends with BYE on both legs.
func TestSessionTimerCaller(t *testing.T) {
	clk := fakeClock()
	h := newHarness(t, harnessOptions{b2bua: Options{Clock: clk}})
	_, _, oc, in := browserCallsPhoneWith(t, h, []string{"Session-Expires", "120", "Supported", "timer"}, nil)
	if got := oc.res.Get("Session-Expires"); got != "120;refresher=uac" || !oc.res.HasToken("Require", "timer") {
		t.Fatalf("200 to the browser: Session-Expires %q, Require %q", got, oc.res.Get("Require"))
	}
	if !in.req.HasToken("Supported", "timer") || in.req.Get("Session-Expires") != "1800" {
		t.Errorf("phone's invite: Supported %q, Session-Expires %q", in.req.Get("Supported"), in.req.Get("Session-Expires"))
	}

	// Refreshed by an UPDATE before the end: the timer starts again.
	clk.Advance(80 * time.Second)
	res := h.browser.request(oc.dlg, sip.MethodUpdate, nil, "", "Session-Expires", "120;refresher=uac", "Supported", "timer")
	if res.StatusCode != 200 || res.Get("Session-Expires") != "120;refresher=uac" {
		t.Fatalf("refresh: %d %q", res.StatusCode, res.Get("Session-Expires"))
	}
	h.phone.idle(sip.MethodUpdate)
	clk.Advance(80 * time.Second)
	h.browser.idle(sip.MethodBye)

	// No refresh: 120 - 32 s after the last one, the session is over.
	clk.Advance(9 * time.Second)
	h.browser.expect(sip.MethodBye).respond(200, nil)
	h.phone.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); !strings.Contains(cause, "session expired") {
		t.Errorf("cause %q", cause)
	}
}

// TestSessionTimerCallee: the phone makes the gateway the refresher; it
// refreshes with UPDATE when the phone allows it, else with a re-INVITE.
func TestSessionTimerCallee(t *testing.T) {
	for _, allow := range []string{"INVITE, ACK, BYE, CANCEL, UPDATE", "INVITE, ACK, BYE, CANCEL"} {
		t.Run(allow, func(t *testing.T) {
			clk := fakeClock()
			h := newHarness(t, harnessOptions{b2bua: Options{Clock: clk}})
			_, ph, _, _ := browserCallsPhoneWith(t, h, nil, []string{"Session-Expires", "90;refresher=uac", "Require", "timer", "Allow", allow})
			for range 2 {
				method := sip.MethodInvite
				if strings.Contains(allow, "UPDATE") {
					method = sip.MethodUpdate
				}
				in := advanceUntil(t, clk, 50*time.Second, h.phone, method)
				if method == sip.MethodUpdate {
					if len(in.req.Body) != 0 {
						t.Errorf("refresh update with a body:\n%s", in.req.Body)
					}
					in.respond(200, nil, "Session-Expires", "90;refresher=uac", "Require", "timer")
				} else {
					mustContain(t, in.req.Body, "RTP/AVP")
					in.respond(200, ph.sdp(2, "0 101"), "Session-Expires", "90;refresher=uac", "Require", "timer")
					h.phone.expect(sip.MethodAck)
				}
				if got := in.req.Get("Session-Expires"); got != "90;refresher=uac" {
					t.Errorf("refresh: Session-Expires %q", got)
				}
			}
			h.browser.idle(sip.MethodInvite)
			h.browser.idle(sip.MethodUpdate)
			if n := len(h.b2b.Calls()); n != 1 {
				t.Fatalf("%d calls", n)
			}
		})
	}
}

// TestReliableProvisional: a 180 with Require: 100rel gets a PRACK.
func TestReliableProvisional(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br := h.newBrowser()
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	if !in.req.HasToken("Supported", "100rel") {
		t.Errorf("Supported %q", in.req.Get("Supported"))
	}
	in.respond(180, nil, "Require", "100rel", "RSeq", "1")
	oc.await(180)
	pr := h.phone.expect(sip.MethodPrack)
	if got := pr.req.Get("RAck"); got != "1 1 INVITE" {
		t.Errorf("RAck %q", got)
	}
	if pr.req.To().Tag() != in.tag {
		t.Errorf("prack to tag %q", pr.req.To().Tag())
	}
	pr.respond(200, nil)
	in.respond(486, nil)
	oc.await(486)
	h.ended()
}

// Test422: a callee asking for a longer session interval gets the INVITE
// again with it.
func Test422(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br := h.newBrowser()
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	in.respond(422, nil, "Min-SE", "3600")
	again := h.phone.expect(sip.MethodInvite)
	if again.req.Get("Session-Expires") != "3600" || again.req.CSeq().Seq != in.req.CSeq().Seq+1 || again.req.CallID() != in.req.CallID() {
		t.Errorf("second invite: Session-Expires %q, CSeq %s", again.req.Get("Session-Expires"), again.req.CSeq())
	}
	again.respond(486, nil)
	oc.await(486)
	h.ended()
}

// advanceUntil moves clk on a second at a time until u receives a request
// of method, which the gateway sends when a timer fires; it fails after
// limit of fake time. Stepping leaves the gateway the (real) moment it
// needs to arm its timer after the previous exchange.
func advanceUntil(t *testing.T, clk *clock.Fake, limit time.Duration, u *testUA, method string) *inbound {
	t.Helper()
	for waited := time.Duration(0); waited <= limit; waited += time.Second {
		clk.Advance(time.Second)
		select {
		case in := <-u.in[method]:
			return in
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s: no %s within %v", u.name, method, limit)
	return nil
}
