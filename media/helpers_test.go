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
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/internal/waitfor"
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
	waitfor.Until(t, what, 10*time.Second, cond)
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
	e, err := NewEngine(context.Background(), o)
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

// testBrowser is the browser: mediapeer's, sending with a webTrack so
// that it can send telephone-event on the audio SSRC like a browser does.
type testBrowser struct {
	*mediapeer.Browser
	t     testing.TB
	track *webTrack
	// signal, when set, replaces Packets: one token per packet, nothing
	// allocated (benchmarks).
	signal chan struct{}
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

func newTestBrowser(t testing.TB) *testBrowser { return newSignallingBrowser(t, nil) }

// newSignallingBrowser is a browser that reports each packet it receives
// on signal (when not nil) instead of on Packets.
func newSignallingBrowser(t testing.TB, signal chan struct{}) *testBrowser {
	t.Helper()
	tb := &testBrowser{t: t, track: &webTrack{}, signal: signal}
	tb.Browser = mediapeer.NewBrowser(t, mediapeer.BrowserOptions{
		Codecs:        browserCodecs(),
		Track:         tb.track,
		Signal:        signal,
		LoggerFactory: pionLoggers{context.Background(), testLogger().With("side", "browser")},
		Wait:          15 * time.Second,
	})
	return tb
}

// arrived waits up to d for a packet at the browser (on Packets, or on
// signal when set) and reports whether one came.
func (tb *testBrowser) arrived(d time.Duration) bool {
	select {
	case <-tb.Packets():
		return true
	case <-tb.signal: // nil unless set: never ready
		return true
	case <-time.After(d):
		return false
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
	case p := <-tb.Packets():
		return p
	case <-time.After(10 * time.Second):
		tb.t.Fatal("browser: no packet")
		return nil
	}
}

// testPhone is a plain RTP endpoint on a loopback UDP socket.
type testPhone struct {
	*mediapeer.Phone
	t   testing.TB
	buf []byte
}

func newTestPhone(t testing.TB) *testPhone {
	t.Helper()
	return &testPhone{Phone: mediapeer.NewPhone(t), t: t, buf: make([]byte, 1500)}
}

// newTestPhoneOn is a phone on the test's socket c (an IPv6 one).
func newTestPhoneOn(t testing.TB, c *net.UDPConn) *testPhone {
	return &testPhone{Phone: mediapeer.NewPhoneOn(t, c), t: t, buf: make([]byte, 1500)}
}

// recv reads the next RTP packet, failing after a deadline.
func (p *testPhone) recv() *rtp.Packet {
	p.t.Helper()
	pkt := p.Recv(10 * time.Second)
	if pkt == nil {
		p.t.Fatal("phone: no packet")
	}
	return pkt
}

// pending reports whether a datagram is waiting, without blocking.
func (p *testPhone) pending() bool {
	_ = p.Conn.SetReadDeadline(time.Now())
	_, _, err := p.Conn.ReadFromUDPAddrPort(p.buf)
	return err == nil
}

func itoa(n int) string { return strconv.Itoa(n) }

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
