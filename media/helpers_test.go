package media

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
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
)

var loopback = netip.MustParseAddr("127.0.0.1")

// testLogger logs to stderr with MEDIA_TEST_LOG=debug, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("MEDIA_TEST_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// checkGoroutines fails the test if goroutines started during it are still
// running when it ends (after its other cleanups, which run first).
func checkGoroutines(t testing.TB) { leakcheck.Count(t, 10*time.Second) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
}

func newTestEngine(t testing.TB, o Options) *Engine {
	t.Helper()
	o.LoopbackOnly = true
	if !o.BindIP.IsValid() {
		o.BindIP = loopback
	}
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	e, err := NewEngine(o)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func newTestBridge(t testing.TB, e *Engine) *Bridge {
	t.Helper()
	b, err := e.NewBridge(context.Background(), t.Name())
	if err != nil {
		t.Fatalf("NewBridge: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// testBrowser is a pion PeerConnection playing the browser, on loopback
// only. It sends with a webTrack, so that it can send telephone-event on
// the audio SSRC like a browser does.
type testBrowser struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webTrack
	got   chan *rtp.Packet
	// signal, when set before media flows, replaces got: one token per
	// packet, nothing allocated (benchmarks).
	signal    chan struct{}
	connected chan struct{}
	once      sync.Once
}

func browserCodecs() []webrtc.RTPCodecParameters {
	c := func(mime string, rate uint32, ch uint16, fmtp string, pt uint8) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: rate, Channels: ch, SDPFmtpLine: fmtp},
			PayloadType:        webrtc.PayloadType(pt),
		}
	}
	return []webrtc.RTPCodecParameters{
		c("audio/opus", 48000, 2, "minptime=10;useinbandfec=1", 111),
		c("audio/G722", 8000, 0, "", 9),
		c("audio/PCMU", 8000, 0, "", 0),
		c("audio/PCMA", 8000, 0, "", 8),
		c("audio/telephone-event", 48000, 0, "0-16", 110),
		c("audio/telephone-event", 8000, 0, "0-16", 126),
	}
}

// arrived waits up to d for a packet at the browser (on got, or on signal
// when set) and reports whether one came.
func (tb *testBrowser) arrived(d time.Duration) bool {
	select {
	case <-tb.got:
		return true
	case <-tb.signal: // nil unless set: never ready
		return true
	case <-time.After(d):
		return false
	}
}

func newTestBrowser(t testing.TB) *testBrowser {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range browserCodecs() {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var s webrtc.SettingEngine
	s.LoggerFactory = pionLoggers{testLogger().With("side", "browser")}
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
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
	tb := &testBrowser{t: t, pc: pc, track: &webTrack{}, got: make(chan *rtp.Packet, 256), connected: make(chan struct{})}
	sender, err := pc.AddTrack(tb.track)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil && (n == 0 || err == io.EOF) {
				return
			}
			if tb.signal != nil {
				select {
				case tb.signal <- struct{}{}:
				default:
				}
				continue
			}
			p := &rtp.Packet{}
			if p.Unmarshal(append([]byte(nil), buf[:n]...)) == nil {
				select {
				case tb.got <- p:
				default:
				}
			}
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			tb.once.Do(func() { close(tb.connected) })
		}
	})
	t.Cleanup(func() { _ = pc.GracefulClose() })
	return tb
}

func (tb *testBrowser) offer() []byte {
	tb.t.Helper()
	o, err := tb.pc.CreateOffer(nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(tb.pc)
	if err := tb.pc.SetLocalDescription(o); err != nil {
		tb.t.Fatal(err)
	}
	<-done
	return []byte(tb.pc.LocalDescription().SDP)
}

func (tb *testBrowser) answer(offer []byte) []byte {
	tb.t.Helper()
	if err := tb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		tb.t.Fatalf("browser: set offer: %v\n%s", err, offer)
	}
	a, err := tb.pc.CreateAnswer(nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(tb.pc)
	if err := tb.pc.SetLocalDescription(a); err != nil {
		tb.t.Fatal(err)
	}
	<-done
	return []byte(tb.pc.LocalDescription().SDP)
}

func (tb *testBrowser) setAnswer(answer []byte) {
	tb.t.Helper()
	if err := tb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		tb.t.Fatalf("browser: set answer: %v\n%s", err, answer)
	}
}

func (tb *testBrowser) waitConnected() {
	tb.t.Helper()
	select {
	case <-tb.connected:
	case <-time.After(15 * time.Second):
		tb.t.Fatal("browser: not connected")
	}
}

// send writes one packet towards the gateway; the track's binding sets the
// SSRC.
func (tb *testBrowser) send(pt uint8, seq uint16, ts uint32, payload []byte) {
	tb.t.Helper()
	h := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts}
	if _, err := tb.track.writeRTP(&h, payload); err != nil {
		tb.t.Fatalf("browser: send: %v", err)
	}
}

func (tb *testBrowser) recv() *rtp.Packet {
	tb.t.Helper()
	select {
	case p := <-tb.got:
		return p
	case <-time.After(10 * time.Second):
		tb.t.Fatal("browser: no packet")
		return nil
	}
}

// testPhone is a plain RTP endpoint on a loopback UDP socket.
type testPhone struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func newTestPhone(t testing.TB) *testPhone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testPhone{t: t, conn: c, buf: make([]byte, 1500)}
}

func (p *testPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// sdp is an SDP of the phone: m=audio with the given payload types (known
// static ones, 101 as telephone-event/8000) and extra attribute lines.
func (p *testPhone) sdp(version int, pts string, extra ...string) []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=phone 4242 " + itoa(version) + " IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	b.WriteString("m=audio " + itoa(p.port()) + " RTP/AVP " + pts + "\r\n")
	for _, pt := range strings.Fields(pts) {
		switch pt {
		case "0":
			b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
		case "8":
			b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
		case "9":
			b.WriteString("a=rtpmap:9 G722/8000\r\n")
		case "101":
			b.WriteString("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
		case "18":
			b.WriteString("a=rtpmap:18 G729/8000\r\n")
		}
	}
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	return []byte(b.String())
}

func itoa(n int) string { return strconv.Itoa(n) }

func (p *testPhone) send(to netip.AddrPort, pkt rtp.Packet) {
	p.t.Helper()
	pkt.Version = 2
	raw, err := pkt.Marshal()
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(raw, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv reads the next RTP packet, failing after a deadline.
func (p *testPhone) recv() *rtp.Packet {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		p.t.Fatalf("phone: no packet: %v", err)
	}
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(append([]byte(nil), p.buf[:n]...)); err != nil {
		p.t.Fatalf("phone: %v", err)
	}
	return pkt
}

// pending reports whether a datagram is waiting, without blocking.
func (p *testPhone) pending() bool {
	_ = p.conn.SetReadDeadline(time.Now())
	_, _, err := p.conn.ReadFromUDPAddrPort(p.buf)
	return err == nil
}

func payload(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

func mustContain(t testing.TB, sdp []byte, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !bytes.Contains(sdp, []byte(p)) {
			t.Errorf("sdp lacks %q:\n%s", p, sdp)
		}
	}
}

func mustNotContain(t testing.TB, sdp []byte, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if bytes.Contains(sdp, []byte(p)) {
			t.Errorf("sdp has %q:\n%s", p, sdp)
		}
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFake() *clock.Fake { return clock.NewFake(t0) }
