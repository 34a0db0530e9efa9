package b2bua

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// checkGoroutines fails the test if goroutines started during it are still
// running when it ends (after its other cleanups, which run first).
func checkGoroutines(t testing.TB) { leakcheck.Count(t, waitLimit) }

// logSink is the B2BUA's log in a test: it reports the end of every call
// on a channel, and prints everything with B2BUA_TEST_LOG=debug.
type logSink struct {
	ended chan slog.Record
	echo  bool
	attrs []slog.Attr
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	if s.echo {
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		for _, a := range s.attrs {
			b.WriteString(" " + a.String())
		}
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		os.Stderr.WriteString(b.String() + "\n")
	}
	if r.Message == "call ended" {
		r2 := r.Clone()
		r2.AddAttrs(s.attrs...)
		select {
		case s.ended <- r2:
		default:
		}
	}
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	c := *s
	c.attrs = append(append([]slog.Attr(nil), s.attrs...), as...)
	return &c
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

var debugLog = os.Getenv("B2BUA_TEST_LOG") == "debug"

func discardLogger() *slog.Logger {
	if debugLog {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness is a gateway (a transaction layer whose handler is a tiny
// router in front of the B2BUA), a browser's SIP UA reaching it over
// WebSocket and a phone's over UDP, on an in-memory network.
type harness struct {
	t       testing.TB
	net     *sipnet.Network
	engine  *media.Engine
	b2b     *B2BUA
	gw      *sipnet.Node
	layer   *transaction.Layer
	phone   *testUA
	browser *testUA
	// browserDst is where the gateway reaches the browser: over the
	// flow of its WebSocket connection.
	browserDst sip.Addr
	logs       *logSink
	clock      clock.Clock
}

type harnessOptions struct {
	media media.Options
	b2bua Options
}

func newHarness(t testing.TB, ho harnessOptions) *harness {
	t.Helper()
	checkGoroutines(t)
	h := &harness{t: t, net: sipnet.New(), logs: &logSink{ended: make(chan slog.Record, 16), echo: debugLog}}
	t.Cleanup(func() {
		h.net.Close()
		if debugLog || t.Failed() {
			for _, d := range h.net.Log.All() {
				t.Logf("net: %s", d)
			}
		}
	})

	mo := ho.media
	mo.LoopbackOnly = true
	mo.BindIP = netip.MustParseAddr("127.0.0.1")
	mo.DrainTime = -1
	if mo.Logger == nil {
		mo.Logger = discardLogger()
	}
	e, err := media.NewEngine(mo)
	if err != nil {
		t.Fatal(err)
	}
	h.engine = e
	t.Cleanup(func() { _ = e.Close() })

	h.gw = h.net.AddNode("gateway", gwUDP, gwWS)
	h.layer = transaction.New(h.gw, transaction.HandlerFunc(h.serve), transaction.Config{Logger: discardLogger()})
	h.gw.Recv = h.layer.HandleMessage
	t.Cleanup(func() { _ = h.layer.Close() })

	o := ho.b2bua
	o.Engine = e
	o.Transactions = h.layer
	o.Sender = h.gw
	o.StampVia = h.gw.StampVia
	o.Contact = func(dst sip.Addr) sip.Address {
		if dst.Transport == sip.WS {
			return sip.Address{URI: sip.URI{Scheme: "sip", User: "gw", Host: "127.0.0.1", Port: 8080, Params: ";transport=ws"}}
		}
		return sip.Address{URI: sip.URI{Scheme: "sip", User: "gw", Host: "127.0.0.1", Port: 5060}}
	}
	o.Logger = slog.New(h.logs)
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.b2b = b
	h.clock = b.clock

	h.phone = newTestUA(t, h.net, "phone", phoneAddr, gwUDP, "<sip:phone@127.0.0.1:5070>")
	h.browser = newTestUA(t, h.net, "browser", browserWS, gwWS, "<sip:browser@df7jal23ls0d.invalid;transport=ws>")
	flow := h.net.Connect(h.browser.node, sip.WS, gwWS)
	h.browser.gw.Flow = flow
	h.browserDst = sip.Addr{Transport: sip.WS, AddrPort: browserWS.AddrPort, Flow: flow}
	// First of the cleanups: the calls a test leaves up end with BYEs,
	// which the UAs, still running, answer by themselves.
	t.Cleanup(func() {
		h.autoAnswer()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("Close: %v; calls %+v\n%s", err, b.Calls(), buf[:n])
		}
	})
	return h
}

// autoAnswer makes the UAs answer every request by themselves, the
// queued ones too: the test is over, and the calls it left up end.
func (h *harness) autoAnswer() {
	h.phone.autoAnswer()
	h.browser.autoAnswer()
}

// newBrowser returns the browser's media; once the test is over, the
// UAs answer the BYEs that closing it causes.
func (h *harness) newBrowser() *testBrowser {
	h.t.Helper()
	br := newTestBrowser(h.t)
	h.t.Cleanup(h.autoAnswer)
	return br
}

// serve is the gateway's handler: in-dialog requests to the B2BUA, new
// INVITEs routed by user to the phone or the browser.
func (h *harness) serve(tx *transaction.ServerTx, req *sip.Request) {
	if h.b2b.HandleInDialog(tx, req) || tx == nil {
		return
	}
	if req.Method != sip.MethodInvite || req.To().Tag() != "" {
		_ = tx.Respond(sip.NewResponse(req, 481, ""))
		return
	}
	var target Target
	switch req.URI.User {
	case "phone":
		target = Target{URI: sip.URI{Scheme: "sip", User: "phone", Host: "127.0.0.1", Port: 5070}, Dst: phoneAddr}
	case "browser":
		target = Target{
			URI:    sip.URI{Scheme: "sip", User: "browser", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"},
			Dst:    h.browserDst,
			WebRTC: true,
		}
	case "fork", "fork-elsewhere":
		// A proxy forking to a browser among other contacts: the B2BUA
		// runs the browser's branch, the proxy relays what it yields;
		// fork-elsewhere cancels as when another branch answered.
		reason := ""
		if req.URI.User == "fork-elsewhere" {
			reason = completedElsewhere
		}
		h.relayBranch(tx, req, Target{
			URI:    sip.URI{Scheme: "sip", User: "browser", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"},
			Dst:    h.browserDst,
			WebRTC: true,
		}, reason)
		return
	default:
		_ = tx.Respond(sip.NewResponse(req, 404, ""))
		return
	}
	h.b2b.Call(tx, req, target)
}

// relayBranch is the part of a proxy that the tests need: one branch,
// its responses forwarded upstream, the caller's CANCEL passed on.
func (h *harness) relayBranch(tx *transaction.ServerTx, req *sip.Request, target Target, reason string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leg := h.b2b.Branch(ctx, req, target)
	canceled := tx.Canceled()
	for {
		select {
		case res, ok := <-leg.Responses():
			if !ok {
				return
			}
			_ = tx.Respond(res)
		case <-canceled:
			canceled = nil
			if reason != "" {
				leg.CancelWithReason(reason)
			} else {
				leg.Cancel()
			}
		case <-tx.Done():
			return
		}
	}
}

// ended waits for the end of a call and returns its cause.
func (h *harness) ended() string {
	h.t.Helper()
	select {
	case r := <-h.logs.ended:
		var cause string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "cause" {
				cause = a.Value.String()
			}
			return true
		})
		return cause
	case <-time.After(waitLimit):
		h.t.Fatal("no call ended")
		return ""
	}
}

// testBrowser is a pion PeerConnection playing the browser's media, on
// loopback only, sending PCMU with a TrackLocalStaticRTP.
type testBrowser struct {
	t         testing.TB
	pc        *webrtc.PeerConnection
	track     *webrtc.TrackLocalStaticRTP
	got       chan *rtp.Packet
	connected chan struct{}
	once      sync.Once
	seq       uint16
}

func newTestBrowser(t testing.TB) *testBrowser {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var s webrtc.SettingEngine
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
	s.SetInterfaceFilter(func(string) bool { return true })
	s.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	s.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "browser")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBrowser{t: t, pc: pc, track: track, got: make(chan *rtp.Packet, 512), connected: make(chan struct{})}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case tb.got <- p:
			default:
			}
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			tb.once.Do(func() { close(tb.connected) })
		}
	})
	t.Cleanup(func() {
		_ = pc.GracefulClose()
		wg.Wait()
	})
	return tb
}

func (tb *testBrowser) gather(set func() error) []byte {
	tb.t.Helper()
	done := webrtc.GatheringCompletePromise(tb.pc)
	if err := set(); err != nil {
		tb.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		tb.t.Fatal("browser: ice gathering")
	}
	return []byte(tb.pc.LocalDescription().SDP)
}

// offer returns the browser's offer, with every candidate.
func (tb *testBrowser) offer() []byte {
	tb.t.Helper()
	o, err := tb.pc.CreateOffer(nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	return tb.gather(func() error { return tb.pc.SetLocalDescription(o) })
}

// answer answers the gateway's offer.
func (tb *testBrowser) answer(offer []byte) []byte {
	tb.t.Helper()
	if err := tb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		tb.t.Fatalf("browser: offer: %v\n%s", err, offer)
	}
	a, err := tb.pc.CreateAnswer(nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	return tb.gather(func() error { return tb.pc.SetLocalDescription(a) })
}

func (tb *testBrowser) setAnswer(answer []byte) {
	tb.t.Helper()
	if err := tb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		tb.t.Fatalf("browser: answer: %v\n%s", err, answer)
	}
}

func (tb *testBrowser) waitConnected() {
	tb.t.Helper()
	select {
	case <-tb.connected:
	case <-time.After(waitLimit):
		tb.t.Fatal("browser: not connected")
	}
}

// send writes one PCMU packet towards the gateway.
func (tb *testBrowser) send(payload []byte) {
	tb.t.Helper()
	tb.seq++
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: tb.seq, Timestamp: uint32(tb.seq) * 160}, Payload: payload}
	if err := tb.track.WriteRTP(p); err != nil {
		tb.t.Fatalf("browser: send: %v", err)
	}
}

// testPhone is the phone's media: a plain RTP endpoint on a loopback UDP
// socket.
type testPhone struct {
	t    testing.TB
	conn *net.UDPConn
	gw   netip.AddrPort // the gateway's RTP address, from its SDP
	seq  uint16
}

func newTestPhone(t testing.TB) *testPhone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testPhone{t: t, conn: c}
}

func (p *testPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// sdp is an SDP of the phone: m=audio with payload types pts (0 PCMU, 8
// PCMA, 18 G729, 101 telephone-event/8000) and extra attribute lines.
func (p *testPhone) sdp(version int, pts string, extra ...string) []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=phone 4242 " + strconv.Itoa(version) + " IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	b.WriteString("m=audio " + strconv.Itoa(p.port()) + " RTP/AVP " + pts + "\r\n")
	for _, pt := range strings.Fields(pts) {
		switch pt {
		case "0":
			b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
		case "8":
			b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
		case "18":
			b.WriteString("a=rtpmap:18 G729/8000\r\n")
		case "101":
			b.WriteString("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
		}
	}
	b.WriteString("a=ptime:20\r\n")
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	return []byte(b.String())
}

var (
	mLineRE = regexp.MustCompile(`(?m)^m=audio (\d+) (\S+)`)
	cLineRE = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
)

// learn takes the gateway's RTP address from its SDP.
func (p *testPhone) learn(sdp []byte) {
	p.t.Helper()
	m := mLineRE.FindSubmatch(sdp)
	c := cLineRE.FindSubmatch(sdp)
	if m == nil || c == nil || string(m[2]) != "RTP/AVP" {
		p.t.Fatalf("phone: not an RTP/AVP sdp:\n%s", sdp)
	}
	port, _ := strconv.Atoi(string(m[1]))
	p.gw = netip.AddrPortFrom(netip.MustParseAddr(string(c[1])), uint16(port))
}

// send writes one PCMU packet to the gateway.
func (p *testPhone) send(payload []byte) {
	p.t.Helper()
	p.seq++
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 160, SSRC: 0x5eed}, Payload: payload}
	raw, err := pkt.Marshal()
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(raw, p.gw); err != nil {
		p.t.Fatal(err)
	}
}

// recv reads the next RTP packet, or nil when none came within d.
func (p *testPhone) recv(d time.Duration) *rtp.Packet {
	buf := make([]byte, 1500)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	pkt := &rtp.Packet{}
	if pkt.Unmarshal(buf[:n]) != nil {
		return nil
	}
	return pkt
}

// audioToPhone sends packets from the browser until the phone gets one
// carrying the marker payload (the first packets may be dropped while the
// relay starts), and returns it.
func audioToPhone(t testing.TB, br *testBrowser, ph *testPhone) *rtp.Packet {
	t.Helper()
	marker := []byte("browser-to-phone-audio-0123456789")
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		br.send(marker)
		for {
			p := ph.recv(20 * time.Millisecond)
			if p == nil {
				break
			}
			if bytes.Equal(p.Payload, marker) {
				return p
			}
		}
	}
	t.Fatal("no audio from the browser reached the phone")
	return nil
}

// audioToBrowser sends packets from the phone until the browser gets one.
func audioToBrowser(t testing.TB, ph *testPhone, br *testBrowser) *rtp.Packet {
	t.Helper()
	marker := []byte("phone-to-browser-audio-9876543210")
	deadline := time.After(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	ph.send(marker)
	for {
		select {
		case p := <-br.got:
			if bytes.Equal(p.Payload, marker) {
				return p
			}
		case <-tick.C:
			ph.send(marker)
		case <-deadline:
			t.Fatal("no audio from the phone reached the browser")
			return nil
		}
	}
}

func mustContain(t testing.TB, body []byte, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !bytes.Contains(body, []byte(p)) {
			t.Errorf("body lacks %q:\n%s", p, body)
		}
	}
}
