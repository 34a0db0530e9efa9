package b2bua

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
)

// TestEarlyMedia: the phone's 183 with SDP reaches the browser with the
// translated SDP, and its ringback reaches the browser before the answer.
func TestEarlyMedia(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph := h.newBrowser(), newTestPhone(t)
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	ph.learn(in.req.Body)
	phoneSDP := ph.sdp(1, "0 101")
	in.respond(183, phoneSDP)
	early := oc.await(183)
	mustContain(t, early.Body, "UDP/TLS/RTP/SAVPF", "a=fingerprint:")
	if got := h.b2b.Calls(); len(got) != 1 || got[0].State != "early" {
		t.Fatalf("calls: %+v", got)
	}
	br.SetAnswer(early.Body)
	br.WaitConnected()
	audioToBrowser(t, ph, br) // ringback

	in.respond(200, phoneSDP)
	res := oc.await(200)
	if !bytes.Equal(res.Body, early.Body) {
		t.Errorf("200's sdp differs from the 183's:\n%s\n---\n%s", res.Body, early.Body)
	}
	oc.ack(res, nil)
	h.phone.expect(sip.MethodAck)
	audioToPhone(t, br, ph)
	h.browser.request(oc.dlg, sip.MethodBye, nil, "")
	h.phone.expect(sip.MethodBye).respond(200, nil)
	h.ended()
}

// TestHoldFromPhone: the phone's re-INVITEs (hold with sendonly, then
// resume) are answered on the RTP leg alone; the browser's session is not
// renegotiated.
func TestHoldFromPhone(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, _, in := browserCallsPhone(t, h)
	audioToPhone(t, br, ph)

	res := h.phone.request(in.dlg, sip.MethodInvite, ph.sdp(2, "0 101", "a=sendonly"), contentSDP)
	if res.StatusCode != 200 {
		t.Fatalf("hold: %d", res.StatusCode)
	}
	mustContain(t, res.Body, "RTP/AVP", "a=recvonly")
	audioToBrowser(t, ph, br) // the held phone's music still reaches the browser

	res = h.phone.request(in.dlg, sip.MethodInvite, ph.sdp(3, "0 101", "a=sendrecv"), contentSDP)
	if res.StatusCode != 200 {
		t.Fatalf("resume: %d", res.StatusCode)
	}
	mustContain(t, res.Body, "a=sendrecv")
	audioToPhone(t, br, ph)

	// A re-INVITE without SDP: the gateway offers, the ACK answers.
	res = h.phone.request(in.dlg, sip.MethodInvite, nil, "")
	if res.StatusCode != 200 || !strings.Contains(string(res.Body), "RTP/AVP") {
		t.Fatalf("re-invite without sdp: %d\n%s", res.StatusCode, res.Body)
	}
	h.browser.idle(sip.MethodInvite)
	h.browser.idle(sip.MethodUpdate)
	if br.PC.SignalingState().String() != "stable" {
		t.Errorf("browser signaling state %s", br.PC.SignalingState())
	}
}

// TestHoldFromBrowser: the browser's re-INVITE (hold) is carried to the
// phone, whose answer makes the browser's.
func TestHoldFromBrowser(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, _ := browserCallsPhone(t, h)
	audioToPhone(t, br, ph)

	for _, tc := range []struct{ dir, phoneGets, phoneAnswers, browserGets string }{
		{"sendonly", "a=sendonly", "a=recvonly", "a=recvonly"},
		{"sendrecv", "a=sendrecv", "a=sendrecv", "a=sendrecv"},
	} {
		// A browser holding re-offers with the direction changed (pion
		// has no API for it: the text is changed as JsSIP's hold does).
		offer := bytes.ReplaceAll(br.Offer(), []byte("a=sendrecv"), []byte("a="+tc.dir))
		done := make(chan *sip.Response, 1)
		go func() { done <- h.browser.request(oc.dlg, sip.MethodInvite, offer, contentSDP) }()
		in := h.phone.expect(sip.MethodInvite)
		mustContain(t, in.req.Body, "RTP/AVP", tc.phoneGets)
		in.respond(200, ph.sdp(2, "0 101", tc.phoneAnswers))
		h.phone.expect(sip.MethodAck)
		res := answered(t, done, "browser's re-invite")
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.dir, res.StatusCode)
		}
		mustContain(t, res.Body, "UDP/TLS/RTP/SAVPF", tc.browserGets)
		br.SetAnswer(res.Body)
	}
	audioToPhone(t, br, ph)
}

// TestInfoDTMF: JsSIP's INFO (application/dtmf-relay) becomes RFC 4733
// events at the phone.
func TestInfoDTMF(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, _ := browserCallsPhone(t, h)
	audioToPhone(t, br, ph)
	res := h.browser.request(oc.dlg, sip.MethodInfo, []byte("Signal=5\r\nDuration=160\r\n"), "application/dtmf-relay")
	if res.StatusCode != 200 {
		t.Fatalf("info: %d", res.StatusCode)
	}
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		p := ph.Recv(time.Until(deadline))
		if p == nil {
			break
		}
		if p.PayloadType == 101 && len(p.Payload) == 4 {
			if p.Payload[0] != 5 {
				t.Fatalf("event %d, want 5", p.Payload[0])
			}
			return
		}
	}
	t.Fatal("no telephone-event at the phone")
}

// TestNoCommonCodec: a phone offering only G.729 gets 488.
func TestNoCommonCodec(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ph := newTestPhone(t)
	oc := h.phone.invite("browser", ph.sdp(1, "18"))
	res := oc.await(488)
	if w := res.Get("Warning"); !strings.HasPrefix(w, "399 ") || !strings.Contains(w, "offered G729/8000") || !strings.Contains(w, "allowed opus/48000") {
		t.Errorf("488's Warning %q does not name both sides' codecs", w)
	}
	h.browser.idle(sip.MethodInvite)
	h.ended()
}

// TestPictureFastUpdateFromPhone: the phone's INFO picture_fast_update
// (RFC 5168) is answered 200 by the gateway and not relayed to the
// browser.
func TestPictureFastUpdateFromPhone(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, _, in := browserCallsPhone(t, h)
	res := h.phone.request(in.dlg, sip.MethodInfo, pictureFastUpdateBody, contentMediaControl)
	if res.StatusCode != 200 {
		t.Fatalf("INFO picture_fast_update: %d", res.StatusCode)
	}
	h.browser.idle(sip.MethodInfo)
}

// TestInactivity: no RTP for the inactivity timeout ends the call with
// BYE on both legs.
func TestInactivity(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOptions{media: media.Options{Clock: clk, InactivityTimeout: 10 * time.Second}})
	browserCallsPhone(t, h)
	clk.Advance(11 * time.Second)
	h.browser.expect(sip.MethodBye).respond(200, nil)
	h.phone.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); !strings.Contains(cause, "inactivity") {
		t.Errorf("cause %q", cause)
	}
}

// TestInfoRelayed: an INFO that is not DTMF goes to the other leg, and
// its answer comes back.
func TestInfoRelayed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, oc, _ := browserCallsPhone(t, h)
	done := make(chan *sip.Response, 1)
	go func() {
		done <- h.browser.request(oc.dlg, sip.MethodInfo, []byte("<xml/>"), "application/media_control+xml", "Info-Package", "x-test")
	}()
	in := h.phone.expect(sip.MethodInfo)
	if in.req.ContentType() != "application/media_control+xml" || string(in.req.Body) != "<xml/>" || in.req.Get("Info-Package") != "x-test" {
		t.Errorf("relayed info:\n%s", in.req)
	}
	in.respond(469, nil)
	if res := answered(t, done, "info"); res.StatusCode != 469 {
		t.Errorf("info: %d", res.StatusCode)
	}
}
