package media

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestBrowserCallsPhone runs a whole call over loopback: a pion
// PeerConnection as the browser, a UDP socket as the phone, the bridge
// between them on a fake clock.
func TestBrowserCallsPhone(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	e := newTestEngine(t, Options{Clock: clk})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	gw := b.RTPAddr()

	// Offer/answer: the phone answers PCMU and renumbers telephone-event
	// (126 in the offer, 101 in its answer).
	rtpOffer, err := b.WebOffer(br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpOffer, "RTP/AVP 111 9 0 8 110 126\r\n")
	phoneA := newTestPhone(t)
	webAnswer, err := b.RTPAnswer(phoneA.SDP(1, "0 101", "a=ptime:20", "a=sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mLine(t, webAnswer); got != "m=audio 9 UDP/TLS/RTP/SAVPF 0 126" {
		t.Errorf("web answer m= line %q: only what the phone accepted", got)
	}
	mustContain(t, webAnswer, "a=sendrecv", "a=setup:active", "a=fingerprint:", "a=candidate:", "a=end-of-candidates")
	br.SetAnswer(webAnswer)
	br.WaitConnected()
	prime(t, b, br, phoneA, 0)

	// Phone → browser: payload intact, payload type kept, one SSRC.
	for i := range 5 {
		phoneA.SendPacket(gw, rtp.Packet{
			Header:  rtp.Header{PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(1000 + 160*i), SSRC: 0x1111},
			Payload: payload(byte(i), 160),
		})
	}
	var webSSRC uint32
	var lastSeq uint16
	var lastTS uint32
	for i := range 5 {
		p := br.recv()
		if p.PayloadType != 0 || !bytes.Equal(p.Payload, payload(byte(i), 160)) {
			t.Fatalf("browser got pt %d payload %x", p.PayloadType, p.Payload[:4])
		}
		if i == 0 {
			webSSRC = p.SSRC
		} else if p.SSRC != webSSRC || p.SequenceNumber != lastSeq+1 || p.Timestamp != lastTS+160 {
			t.Fatalf("browser stream broke: ssrc %x seq %d ts %d after %x %d %d", p.SSRC, p.SequenceNumber, p.Timestamp, webSSRC, lastSeq, lastTS)
		}
		lastSeq, lastTS = p.SequenceNumber, p.Timestamp
	}

	// Browser → phone, with telephone-event from the browser mapped from
	// 126 to the phone's 101.
	for i := range 3 {
		br.send(0, uint16(7000+i), uint32(50000+160*i), payload(0x40+byte(i), 160))
	}
	var phoneSSRC uint32
	for i := range 3 {
		p := phoneA.recv()
		if p.PayloadType != 0 || !bytes.Equal(p.Payload, payload(0x40+byte(i), 160)) {
			t.Fatalf("phone got pt %d payload %x", p.PayloadType, p.Payload[:4])
		}
		if i == 0 {
			phoneSSRC = p.SSRC
		} else if p.SSRC != phoneSSRC {
			t.Fatalf("phone ssrc changed: %x then %x", phoneSSRC, p.SSRC)
		}
	}
	br.send(126, 7003, 50480, []byte{5, 0x0a, 0x00, 0xa0})
	if p := phoneA.recv(); p.PayloadType != 101 || p.Payload[0] != 5 || p.SSRC != phoneSSRC {
		t.Fatalf("browser's telephone-event reached the phone as pt %d event %d", p.PayloadType, p.Payload[0])
	}

	// The gateway's own RFC 4733 digit (SIP INFO), paced by the clock.
	if err := b.SendDTMF('7', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var events []*rtp.Packet
	for len(events) < 4+dtmfEndRepeats {
		clk.Advance(20 * time.Millisecond)
		for len(events) < 4+dtmfEndRepeats {
			if !pendingPacket(phoneA, &events) {
				break
			}
		}
	}
	for i, p := range events {
		end := p.Payload[1]&0x80 != 0
		if p.PayloadType != 101 || p.Payload[0] != 7 || p.Timestamp != events[0].Timestamp || p.SSRC != phoneSSRC {
			t.Fatalf("event %d: pt %d event %d ts %d ssrc %x", i, p.PayloadType, p.Payload[0], p.Timestamp, p.SSRC)
		}
		if (i == 0) != p.Marker || end != (i >= 4) {
			t.Fatalf("event %d: marker %v end %v", i, p.Marker, end)
		}
		if i > 0 && p.SequenceNumber != events[i-1].SequenceNumber+1 {
			t.Fatalf("event %d: seq %d after %d", i, p.SequenceNumber, events[i-1].SequenceNumber)
		}
	}
	if d := uint16(events[len(events)-1].Payload[2])<<8 | uint16(events[len(events)-1].Payload[3]); d != 800 {
		t.Errorf("final duration %d, want 800 (100 ms at 8 kHz)", d)
	}

	// The phone's answer moves to another address (early media from A, the
	// 200 from B): the browser's stream keeps its SSRC and numbering.
	phoneB := newTestPhone(t)
	again, err := b.RTPAnswer(phoneB.SDP(2, "0 101"))
	if err != nil || !bytes.Equal(again, webAnswer) {
		t.Fatalf("second answer: %v, same web answer %v", err, bytes.Equal(again, webAnswer))
	}
	phoneB.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 40000, Timestamp: 9999999, SSRC: 0x2222}, Payload: payload(0x90, 160)})
	p := br.recv()
	if p.SSRC != webSSRC || p.SequenceNumber != lastSeq+1 || p.Timestamp-lastTS < 160 || !bytes.Equal(p.Payload, payload(0x90, 160)) {
		t.Fatalf("after the source change: ssrc %x seq %d ts +%d, want ssrc %x seq %d", p.SSRC, p.SequenceNumber, p.Timestamp-lastTS, webSSRC, lastSeq+1)
	}
	lastSeq = p.SequenceNumber
	// B is latched now: A is dropped and counted.
	phoneA.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 105, Timestamp: 1800, SSRC: 0x1111}, Payload: payload(0, 160)})
	waitFor(t, "a dropped packet from the old source", func() bool { return b.Stats().RTP.Dropped.Source == 1 })

	// Hold from the phone (sendonly): nothing goes to the phone, its music
	// on hold still reaches the browser.
	hold, err := b.RTPReoffer(phoneB.SDP(3, "0 101", "a=sendonly"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, hold, "a=recvonly\r\n", "m=audio "+itoa(int(gw.Port()))+" RTP/AVP 0 101\r\n")
	dropped := b.Stats().Web.Dropped.Direction
	for i := range 3 {
		br.send(0, uint16(7100+i), uint32(60000+160*i), payload(0x50, 160))
	}
	waitFor(t, "browser packets dropped on hold", func() bool { return b.Stats().Web.Dropped.Direction == dropped+3 })
	if phoneB.pending() {
		t.Fatal("the phone got media while it held the call with sendonly")
	}
	phoneB.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 40001, Timestamp: 10000159, SSRC: 0x2222}, Payload: payload(0xa0, 160)})
	if p := br.recv(); !bytes.Equal(p.Payload, payload(0xa0, 160)) || p.SequenceNumber != lastSeq+1 {
		t.Fatalf("music on hold: seq %d", p.SequenceNumber)
	}

	// Resume.
	resume, err := b.RTPReoffer(phoneB.SDP(4, "0 101", "a=sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, resume, "a=sendrecv\r\n")
	br.send(0, 7200, 70000, payload(0x60, 160))
	if p := phoneB.recv(); !bytes.Equal(p.Payload, payload(0x60, 160)) || p.SSRC != phoneSSRC {
		t.Fatalf("after resume the phone got ssrc %x", p.SSRC)
	}

	st := b.Stats()
	if st.Web.PacketsIn < 8 || st.RTP.PacketsIn < 7 || st.Web.PacketsOut < 7 || st.RTP.PacketsOut < 12 ||
		st.RTP.FirstPacket < 0 || st.RTP.Remote != phoneB.Conn.LocalAddr().String() {
		t.Errorf("stats %+v", st)
	}
	if es := e.Stats(); es.Web.PacketsIn < st.Web.PacketsIn || es.RTP.PacketsOut < st.RTP.PacketsOut {
		t.Errorf("engine traffic %+v %+v below the bridge's %+v", es.Web, es.RTP, st)
	}

	// Silence: the inactivity timeout ends the bridge, on the fake clock.
	// (Loop: a packet in flight may move the last activity.)
	for i := 0; b.Err() == nil && i < 10; i++ {
		clk.Advance(DefaultInactivityTimeout)
	}
	select {
	case <-b.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not end")
	}
	if !errors.Is(b.Err(), ErrInactive) {
		t.Fatalf("Err() = %v, want ErrInactive", b.Err())
	}
	_ = b.Close()
	if s := e.Stats(); s.Bridges != 0 || s.PortsDraining != 1 || s.Inactive != 1 {
		t.Errorf("engine stats after the call: %+v", s)
	}
	// The bridge is gone; its traffic stays in the engine's sums.
	final := b.Stats()
	if s := e.Stats(); s.Web.PacketsIn != final.Web.PacketsIn || s.Web.BytesIn != final.Web.BytesIn ||
		s.RTP.PacketsIn != final.RTP.PacketsIn || s.RTP.PacketsOut != final.RTP.PacketsOut {
		t.Errorf("engine traffic after the call: web %+v rtp %+v; the bridge's: %+v", s.Web, s.RTP, final)
	}
}

// prime sends probes both ways until each side has received one: pion drops
// what is written in the microseconds between "connected" and the start of
// SRTP, so the assertions start once media flows. The browser goes first:
// the phone has sent nothing yet, so its probes go to the phone's SDP
// address, before any latching.
func prime(t testing.TB, b *Bridge, br *testBrowser, phone *testPhone, pt uint8) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// The browser's SSRC is fixed: probe with numbers below the test's.
	for seq := uint16(6000); ; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("no media towards the phone")
		}
		br.send(pt, seq, uint32(seq)*160, payload(0, 160))
		if pendingPacket(phone, new([]*rtp.Packet)) {
			break
		}
	}
	for seq := uint16(60000); ; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("no media towards the browser")
		}
		phone.SendPacket(b.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x0f0f}, Payload: payload(0, 160)})
		if br.arrived(20 * time.Millisecond) {
			break
		}
	}
	// Drain what is still in flight.
	for pendingPacket(phone, new([]*rtp.Packet)) {
	}
	for br.arrived(20 * time.Millisecond) {
	}
}

// pendingPacket appends the next packet of p if one is waiting.
func pendingPacket(p *testPhone, to *[]*rtp.Packet) bool {
	_ = p.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, _, err := p.Conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return false
	}
	pkt := &rtp.Packet{}
	if pkt.Unmarshal(append([]byte(nil), p.buf[:n]...)) != nil {
		return false
	}
	*to = append(*to, pkt)
	return true
}

// TestPhoneCallsBrowser is the other direction: the phone offers, the
// browser answers.
func TestPhoneCallsBrowser(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{ICEFailedAfter: 3 * time.Second})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)

	webOffer, err := b.RTPOffer(phone.SDP(1, "8 0 101", "a=ptime:20", "a=rtcp-mux"))
	if err != nil {
		t.Fatal(err)
	}
	rtpAnswer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	if got := mLine(t, rtpAnswer); got != "m=audio "+itoa(int(b.RTPAddr().Port()))+" RTP/AVP 8 0 101" {
		t.Errorf("rtp answer m= line %q", got)
	}
	mustContain(t, rtpAnswer, "a=rtcp-mux\r\n", "a=sendrecv\r\n", "a=ptime:20\r\n", "c=IN IP4 127.0.0.1\r\n")
	br.WaitConnected()
	prime(t, b, br, phone, 8)

	br.send(8, 7000, 160, payload(1, 160))
	if p := phone.recv(); p.PayloadType != 8 || !bytes.Equal(p.Payload, payload(1, 160)) {
		t.Fatalf("phone got pt %d", p.PayloadType)
	}
	phone.SendPacket(b.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: 8, SequenceNumber: 1, Timestamp: 1, SSRC: 7}, Payload: payload(2, 160)})
	if p := br.recv(); p.PayloadType != 8 || !bytes.Equal(p.Payload, payload(2, 160)) {
		t.Fatalf("browser got pt %d", p.PayloadType)
	}
	// RTCP muxed on the RTP port is counted, not relayed.
	raw := []byte{0x80, 201, 0, 1, 0, 0, 0, 7}
	if _, err := phone.Conn.WriteToUDPAddrPort(raw, b.RTPAddr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rtcp counted", func() bool { return b.Stats().RTP.RTCPIn == 1 })

	// The browser goes away (DTLS close_notify, then silence): the web
	// leg's ICE fails after ICEFailedAfter and the bridge ends.
	_ = br.PC.GracefulClose()
	select {
	case <-b.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("bridge did not end when the browser left")
	}
	if !errors.Is(b.Err(), ErrWebFailed) {
		t.Fatalf("Err() = %v, want ErrWebFailed", b.Err())
	}
}

// TestLateOffer: the phone's INVITE has no SDP; the gateway offers to the
// browser from policy, then to the phone in the 200 OK.
func TestLateOffer(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)

	webOffer, err := b.LateOffer()
	if err != nil {
		t.Fatal(err)
	}
	if got := mLine(t, webOffer); got != "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 110 101" {
		t.Errorf("late web offer %q", got)
	}
	rtpOffer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpOffer, "RTP/AVP 111 9 0 8 110 101\r\n", "a=sendrecv\r\n")
	webAnswer, err := b.RTPAnswer(phone.SDP(1, "0 101"))
	if err != nil || webAnswer != nil {
		t.Fatalf("RTPAnswer after a late offer: %v, %q", err, webAnswer)
	}
	br.WaitConnected()
	prime(t, b, br, phone, 0)
	phone.SendPacket(b.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 1, Timestamp: 1, SSRC: 9}, Payload: payload(3, 160)})
	if p := br.recv(); p.PayloadType != 0 || !bytes.Equal(p.Payload, payload(3, 160)) {
		t.Fatalf("browser got pt %d", p.PayloadType)
	}
	br.send(0, 7000, 1, payload(4, 160))
	if p := phone.recv(); p.PayloadType != 0 || !bytes.Equal(p.Payload, payload(4, 160)) {
		t.Fatalf("phone got pt %d", p.PayloadType)
	}
}

// TestBrowserHolds: the browser re-offers sendonly; the gateway re-offers
// to the phone and answers the browser with the phone's answer.
func TestBrowserHolds(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	ans, err := b.RTPAnswer(phone.SDP(1, "0 101"))
	if err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(ans)
	br.WaitConnected()
	prime(t, b, br, phone, 0)

	// The browser holds.
	reoffer := bytes.Replace(br.Offer(), []byte("a=sendrecv"), []byte("a=sendonly"), 1)
	rtpOffer, err := b.WebReoffer(reoffer)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpOffer, "a=sendonly\r\n", "RTP/AVP 0 126\r\n")
	webAnswer, err := b.RTPAnswer(phone.SDP(2, "0 101", "a=recvonly"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webAnswer, "a=recvonly")
	// A rejected re-offer leaves the session as it was.
	if _, err := b.WebReoffer(reoffer); err != nil {
		t.Fatal(err)
	}
	if err := b.Rollback(); err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(webAnswer)

	dropped := b.Stats().RTP.Dropped.Direction
	phone.SendPacket(b.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 1, Timestamp: 1, SSRC: 0x0f0f}, Payload: payload(3, 160)})
	waitFor(t, "phone packet dropped while the browser holds", func() bool { return b.Stats().RTP.Dropped.Direction == dropped+1 })
	br.send(0, 7000, 1, payload(4, 160))
	if p := phone.recv(); !bytes.Equal(p.Payload, payload(4, 160)) {
		t.Fatal("music on hold from the browser did not reach the phone")
	}
}

// TestContextEndsBridge: cancelling NewBridge's context ends the bridge.
func TestContextEndsBridge(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	b, err := e.NewBridge(ctx, "ctx")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-b.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bridge did not end")
	}
	if !errors.Is(b.Err(), context.Canceled) {
		t.Fatalf("Err() = %v", b.Err())
	}
	waitFor(t, "teardown", func() bool { return e.Stats().Bridges == 0 })
	if _, err := b.WebOffer([]byte(chromeOffer)); !errors.Is(err, ErrClosed) {
		t.Fatalf("WebOffer after the end: %v", err)
	}
}

// TestBrowserICERestart: a browser that changed networks re-offers with
// new ICE credentials; WebRefresh answers on the web leg alone (new
// gateway credentials, every candidate, the same DTLS session), ICE
// restarts and audio flows again both ways. A re-offer that changes what
// the phone sees is left to WebReoffer.
func TestBrowserICERestart(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := newTestPhone(t)
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	first, err := b.RTPAnswer(phone.SDP(1, "0 101", "a=ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(first)
	br.WaitConnected()
	prime(t, b, br, phone, 0)

	// A hold is not a refresh: the phone must hear of it.
	hold := bytes.Replace([]byte(br.PC.LocalDescription().SDP), []byte("a=sendrecv"), []byte("a=sendonly"), 1)
	if _, err := b.WebRefresh(hold); !errors.Is(err, ErrChangesRTP) {
		t.Fatalf("WebRefresh of a hold: %v, want ErrChangesRTP", err)
	}

	offer := br.RestartOffer()
	answer, err := b.WebRefresh(offer)
	if err != nil {
		t.Fatal(err)
	}
	if a, o := sdpAttr(t, answer, "ice-ufrag"), sdpAttr(t, first, "ice-ufrag"); a == o {
		t.Errorf("the answer to an ice restart keeps the ice-ufrag %q", a)
	}
	if a, o := sdpAttr(t, answer, "fingerprint"), sdpAttr(t, first, "fingerprint"); a != o {
		t.Errorf("fingerprint changed: %q, was %q", a, o)
	}
	mustContain(t, answer, "a=sendrecv", "a=setup:active", "a=candidate:", "a=end-of-candidates", "m=audio 9 UDP/TLS/RTP/SAVPF 0 126")
	restarted := time.Now()
	br.SetAnswer(answer)

	// Audio again, both ways, over the restarted ICE session: the phone's
	// packets reach the browser and the browser's the phone.
	waitFor(t, "browser ice connected again", func() bool {
		return br.PC.ICEConnectionState() == webrtc.ICEConnectionStateConnected
	})
	var got []*rtp.Packet
	// The browser's SSRC is fixed and SRTP refuses replays: its numbers
	// go on after prime's.
	for seq := uint16(8000); len(got) == 0; seq++ {
		if time.Since(restarted) > 10*time.Second {
			t.Fatal("no audio at the phone after the ice restart")
		}
		br.send(0, seq, uint32(seq)*160, payload(7, 160))
		pendingPacket(phone, &got)
	}
	toPhone := time.Since(restarted)
	for seq := uint16(200); ; seq++ {
		if time.Since(restarted) > 10*time.Second {
			t.Fatal("no audio at the browser after the ice restart")
		}
		phone.SendPacket(b.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x0f0f}, Payload: payload(8, 160)})
		if br.arrived(20 * time.Millisecond) {
			break
		}
	}
	t.Logf("audio after the ice restart: to the phone in %v, to the browser in %v", toPhone, time.Since(restarted))
	if n := e.Stats().ICERestarts; n != 1 {
		t.Errorf("engine counts %d ice restarts, want 1", n)
	}
	if b.Err() != nil {
		t.Fatalf("bridge ended: %v", b.Err())
	}
}

// sdpAttr returns the value of the first a=name: line of sdp.
func sdpAttr(t testing.TB, sdp []byte, name string) string {
	t.Helper()
	for line := range strings.SplitSeq(string(sdp), "\r\n") {
		if v, ok := strings.CutPrefix(line, "a="+name+":"); ok {
			return v
		}
	}
	t.Fatalf("no a=%s in\n%s", name, sdp)
	return ""
}
