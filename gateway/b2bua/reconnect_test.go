package b2bua

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/internal/waitfor"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// dropFlow closes the browser's WebSocket, as a network change does, and
// tells the B2BUA, as the transports tell the gateway. It returns the
// flow that closed.
func (h *harness) dropFlow() sip.Addr {
	h.t.Helper()
	old := h.browserDst
	h.net.Disconnect(old.Flow)
	h.b2b.FlowClosed(old)
	return old
}

// reconnect opens a new WebSocket from the browser, over which its
// requests go from now on, and returns the flow the gateway reaches it
// by. It does not tell the B2BUA: that is what a registration over it
// does (FlowMoved).
func (h *harness) reconnect() sip.Addr {
	h.t.Helper()
	flow := h.net.Connect(h.browser.node, sip.WS, gwWS)
	h.browser.gw.Flow = flow
	h.browserDst = sip.Addr{Transport: sip.WS, AddrPort: browserWS.AddrPort, Flow: flow}
	return h.browserDst
}

// TestReconnectKeepsCall is issue 15 point 1 on the B2BUA: the browser's
// WebSocket drops mid-call and it comes back over a new one; the call
// goes on, media included, and the phone's BYE reaches the browser over
// the new connection.
func TestReconnectKeepsCall(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, in := browserCallsPhone(t, h)
	audioToPhone(t, br, ph)

	old := h.dropFlow()
	calls := h.b2b.Calls()
	if len(calls) != 1 || calls[0].Caller.FlowDownSince.IsZero() || calls[0].State != "answered" {
		t.Fatalf("calls while the connection is down: %+v", calls)
	}
	// The media does not go over the WebSocket: it goes on.
	audioToPhone(t, br, ph)
	audioToBrowser(t, ph, br)

	now := h.reconnect()
	h.b2b.FlowMoved(old, now)
	calls = h.b2b.Calls()
	if len(calls) != 1 || !calls[0].Caller.FlowDownSince.IsZero() || calls[0].Caller.Dst != now.String() {
		t.Fatalf("calls after the reconnect: %+v", calls)
	}
	if st := h.b2b.Stats(); st.Reconnects != 1 || st.FlowLost != 0 {
		t.Errorf("stats %+v, want 1 reconnect", st)
	}
	// The browser's requests come over the new connection...
	res := h.browser.request(oc.dlg, sip.MethodInfo, []byte("Signal=5\r\nDuration=160\r\n"), "application/dtmf-relay")
	if res.StatusCode != 200 {
		t.Fatalf("info after the reconnect: %d", res.StatusCode)
	}
	// ...and the gateway's go out over it.
	phoneHangsUpOver(t, h, in.dlg, now)
	if cause := h.ended(); !strings.Contains(cause, "bye from the callee") {
		t.Errorf("cause %q", cause)
	}
}

// phoneHangsUpOver has the phone send BYE in its dialog d and checks
// that the gateway's BYE reaches the browser over flow now.
func phoneHangsUpOver(t *testing.T, h *harness, d *dialog.Dialog, now sip.Addr) {
	t.Helper()
	done := make(chan *sip.Response, 1)
	go func() { done <- h.phone.request(d, sip.MethodBye, nil, "") }()
	bye := h.browser.expect(sip.MethodBye)
	if bye.req.Source.Flow != now.Flow {
		t.Errorf("bye came over flow %d, want the new %d", bye.req.Source.Flow, now.Flow)
	}
	bye.respond(200, nil)
	if res := <-done; res.StatusCode != 200 {
		t.Errorf("phone's bye: %d", res.StatusCode)
	}
}

// TestReconnectCalleeBrowser: the browser that was called (the callee
// leg) reconnects the same way: the phone's BYE reaches it over the new
// connection.
func TestReconnectCalleeBrowser(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, _ := phoneCallsBrowser(t, h, true)
	old := h.dropFlow()
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].Callee.FlowDownSince.IsZero() {
		t.Fatalf("calls while the connection is down: %+v", calls)
	}
	audioToBrowser(t, ph, br)
	now := h.reconnect()
	h.b2b.FlowMoved(old, now)
	phoneHangsUpOver(t, h, oc.dlg, now)
	h.ended()
	if st := h.b2b.Stats(); st.Reconnects != 1 {
		t.Errorf("stats %+v, want 1 reconnect", st)
	}
}

// TestReconnectHoldsRequests: what the gateway has for the browser while
// its connection is down — here the phone's hang-up — waits for the new
// connection instead of being lost on the closed one.
func TestReconnectHoldsRequests(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, _, in := browserCallsPhone(t, h)
	old := h.dropFlow()

	// The phone hangs up while the browser is away: its BYE is answered,
	// the call ends, and the BYE for the browser waits.
	if res := h.phone.request(in.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
		t.Fatalf("phone's bye: %d", res.StatusCode)
	}
	if cause := h.ended(); !strings.Contains(cause, "bye from the callee") {
		t.Errorf("cause %q", cause)
	}
	h.browser.idle(sip.MethodBye)

	now := h.reconnect()
	h.b2b.FlowMoved(old, now)
	bye := h.browser.expect(sip.MethodBye)
	if bye.req.Source.Flow != now.Flow {
		t.Errorf("bye came over flow %d, want the new %d", bye.req.Source.Flow, now.Flow)
	}
	bye.respond(200, nil)
	// The call had ended: the reconnect saved nothing.
	if st := h.b2b.Stats(); st.Reconnects != 0 {
		t.Errorf("stats %+v, want no reconnect counted", st)
	}
}

// TestReconnectBeforeClose: the browser registers over its new connection
// before the gateway notices that the old one is dead; the old one's end
// then changes nothing.
func TestReconnectBeforeClose(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, _, in := browserCallsPhone(t, h)
	old := h.browserDst
	now := h.reconnect()
	h.b2b.FlowMoved(old, now)
	h.net.Disconnect(old.Flow)
	h.b2b.FlowClosed(old)
	if calls := h.b2b.Calls(); len(calls) != 1 || !calls[0].Caller.FlowDownSince.IsZero() {
		t.Fatalf("calls: %+v", calls)
	}
	done := make(chan *sip.Response, 1)
	go func() { done <- h.phone.request(in.dlg, sip.MethodBye, nil, "") }()
	h.browser.expect(sip.MethodBye).respond(200, nil)
	<-done
	h.ended()
}

// TestReconnectGraceExpires: a browser that does not come back within
// Options.FlowGrace loses its call: BYE to the phone, ErrFlowLost as the
// cause in the log, in Ended and in Lookup, and counted.
func TestReconnectGraceExpires(t *testing.T) {
	clk := fakeClock()
	h := newHarness(t, harnessOptions{b2bua: Options{Clock: clk, FlowGrace: 20 * time.Second}})
	browserCallsPhone(t, h)
	id := h.b2b.Calls()[0].ID
	h.dropFlow()

	clk.Advance(19 * time.Second)
	h.phone.idle(sip.MethodBye)
	if n := len(h.b2b.Calls()); n != 1 {
		t.Fatalf("%d calls before the grace ran out", n)
	}
	clk.Advance(time.Second)
	h.phone.expect(sip.MethodBye).respond(200, nil)
	cause := h.ended()
	if !strings.Contains(cause, "connection lost") || !strings.Contains(cause, "caller's connection") {
		t.Errorf("cause %q", cause)
	}
	if st := h.b2b.Stats(); st.FlowLost != 1 || st.Reconnects != 0 {
		t.Errorf("stats %+v, want 1 call lost", st)
	}
	ended := h.b2b.Ended()
	if len(ended) != 1 || ended[0].ID != id || ended[0].State != "ended" || !strings.Contains(ended[0].Cause, "connection lost") || ended[0].Ended.IsZero() {
		t.Fatalf("ended: %+v", ended)
	}
	if ci, ok := h.b2b.Lookup(id); !ok || ci.Cause != ended[0].Cause {
		t.Errorf("lookup %q: %+v %v", id, ci, ok)
	}
	// No BYE goes to the browser: its connection is gone.
	h.browser.idle(sip.MethodBye)
}

// TestReconnectNoGrace: with a negative FlowGrace the call ends as soon
// as the connection closes.
func TestReconnectNoGrace(t *testing.T) {
	h := newHarness(t, harnessOptions{b2bua: Options{FlowGrace: -1}})
	browserCallsPhone(t, h)
	h.dropFlow()
	h.phone.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); !strings.Contains(cause, "connection lost") {
		t.Errorf("cause %q", cause)
	}
}

// TestEndedCallsBounded: Ended keeps the last Options.EndedCalls calls,
// newest first.
func TestEndedCallsBounded(t *testing.T) {
	h := newHarness(t, harnessOptions{b2bua: Options{EndedCalls: 2}})
	ph := newTestPhone(t)
	var ids []string
	for range 3 {
		oc := h.phone.invite("browser", ph.sdp(1, "18")) // no common codec: 488
		oc.await(488)
		h.ended()
		ids = append(ids, h.b2b.Ended()[0].ID)
	}
	ended := h.b2b.Ended()
	if len(ended) != 2 || ended[0].ID != ids[2] || ended[1].ID != ids[1] {
		t.Fatalf("ended %+v, want the last two of %v", ended, ids)
	}
	if _, ok := h.b2b.Lookup(ids[0]); ok {
		t.Error("the oldest ended call is still found")
	}
}

// TestICERestartNotRelayed is issue 15 point 2 on the B2BUA: the
// browser's re-INVITE or UPDATE with new ICE credentials is answered on
// its leg alone — the phone gets no re-INVITE — and audio flows again both
// ways.
func TestICERestartNotRelayed(t *testing.T) {
	for _, method := range []string{sip.MethodInvite, sip.MethodUpdate} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			br, ph, oc, _ := browserCallsPhone(t, h)
			audioToPhone(t, br, ph)
			before := sdpValue(oc.res.Body, "a=ice-ufrag:")

			res := h.browser.request(oc.dlg, method, br.RestartOffer(), contentSDP)
			if res.StatusCode != 200 {
				t.Fatalf("ice restart %s: %d", method, res.StatusCode)
			}
			mustContain(t, res.Body, "UDP/TLS/RTP/SAVPF", "a=candidate:", "a=sendrecv")
			if after := sdpValue(res.Body, "a=ice-ufrag:"); after == before || after == "" {
				t.Errorf("ice-ufrag %q after the restart, %q before", after, before)
			}
			restarted := time.Now()
			br.SetAnswer(res.Body)
			audioToPhone(t, br, ph)
			audioToBrowser(t, ph, br)
			t.Logf("audio both ways %v after the restart's answer", time.Since(restarted))
			h.phone.idle(sip.MethodInvite)
			h.phone.idle(sip.MethodUpdate)
			if n := h.engine.Stats().ICERestarts; n != 1 {
				t.Errorf("%d ice restarts counted, want 1", n)
			}
		})
	}
}

func sdpValue(sdp []byte, prefix string) string {
	for line := range strings.SplitSeq(string(sdp), "\r\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return ""
}

// TestPhoneMoves is issue 15 point 3 on the B2BUA: a phone that changed
// address re-INVITEs from there with its new media address. Its requests
// go to the new address from then on, the media latches to its new
// source, and packets from anyone else — its old address, a stranger —
// are dropped: only signalling moves the media.
func TestPhoneMoves(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, in := browserCallsPhone(t, h)
	audioToBrowser(t, ph, br)
	gwRTP := ph.Far

	// The phone, now at 127.0.0.2, with a new media port.
	movedAddr := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("127.0.0.2:5072")}
	moved := newTestUA(t, h.net, "moved-phone", movedAddr, gwUDP, "<sip:phone@127.0.0.2:5072>")
	newMedia := newTestPhone(t)
	newMedia.Far = gwRTP
	in.dlg.SetLocalContact(moved.contact)
	res := moved.request(in.dlg, sip.MethodInvite, newMedia.sdp(2, "0 101"), contentSDP)
	if res.StatusCode != 200 {
		t.Fatalf("re-invite from the new address: %d", res.StatusCode)
	}
	calls := h.b2b.Calls()
	if len(calls) != 1 || calls[0].Callee.Dst != movedAddr.String() {
		t.Fatalf("callee leg after the move: %+v", calls)
	}

	// A stranger sends first, right after the re-INVITE: the latch is
	// open for the phone's new address, not for anyone.
	stranger := strangerPhone(t)
	injected := []byte("injected-by-a-stranger")
	inject := func(seq uint16) {
		stranger.SendPacket(gwRTP, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: seq, SSRC: 0xbad}, Payload: injected})
	}
	inject(1)
	waitUntil(t, "the stranger's first packet dropped", func() bool {
		return h.b2b.Calls()[0].Media.RTP.Dropped.Source == 1
	})
	audioToBrowser(t, newMedia, br)
	// Then the stranger again, and the phone's old address: dropped.
	for i := range 5 {
		inject(uint16(2 + i))
		ph.SendPCMU(injected)
	}
	waitUntil(t, "10 more packets of others dropped", func() bool {
		return h.b2b.Calls()[0].Media.RTP.Dropped.Source == 11
	})
	if m := h.b2b.Calls()[0].Media.RTP; m.Remote != newMedia.Addr().String() || !m.Latched {
		t.Errorf("rtp leg latched to %s (%v), want the phone's new address %s", m.Remote, m.Latched, newMedia.Addr())
	}
	audioToBrowser(t, newMedia, br)
	for drained := false; !drained; {
		select {
		case p := <-br.Packets():
			if bytes.Equal(p.Payload, injected) {
				t.Fatal("an injected packet reached the browser")
			}
		default:
			drained = true
		}
	}
	audioToPhone(t, br, newMedia)

	// The browser hangs up: the BYE goes to the phone's new address.
	done := make(chan *sip.Response, 1)
	go func() { done <- h.browser.request(oc.dlg, sip.MethodBye, nil, "") }()
	moved.expect(sip.MethodBye).respond(200, nil)
	<-done
	h.phone.idle(sip.MethodBye)
	h.ended()
}

// strangerPhone is an RTP sender on 127.0.0.3, an address that no
// signalling or SDP of the call names.
func strangerPhone(t testing.TB) *mediapeer.Phone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	return mediapeer.NewPhoneOn(t, c)
}

// waitUntil polls cond until it holds, failing t after waitLimit.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Until(t, what, waitLimit, cond)
}
