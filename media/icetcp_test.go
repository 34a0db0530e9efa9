package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// newBrowserWith is newTestBrowser with more options: another network,
// ICE servers.
func newBrowserWith(t testing.TB, set func(*mediapeer.BrowserOptions)) *testBrowser {
	t.Helper()
	tb := &testBrowser{t: t, track: &webTrack{}}
	o := mediapeer.BrowserOptions{
		Codecs:        browserCodecs(),
		Track:         tb.track,
		LoggerFactory: pionLoggers{context.Background(), testLogger().With("side", "browser")},
		Wait:          15 * time.Second,
	}
	set(&o)
	tb.Browser = mediapeer.NewBrowser(t, o)
	return tb
}

// browserCall has br call a phone through b and returns once audio flows
// both ways.
func browserCall(t *testing.T, b *Bridge, br *testBrowser) (webAnswer []byte) {
	t.Helper()
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	phone := newTestPhone(t)
	webAnswer, err := b.RTPAnswer(phone.SDP(1, "0 101", "a=ptime:20", "a=sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(webAnswer)
	br.WaitConnected()
	prime(t, b, br, phone, 0)
	return webAnswer
}

// waitTransport waits until the bridge knows how its web leg connected.
func waitTransport(t *testing.T, b *Bridge) Transport {
	t.Helper()
	waitFor(t, "the web leg's transport facts", func() bool { return b.Stats().Web.Transport != nil })
	return *b.Stats().Web.Transport
}

// TestICETCPCall: a browser that may use TCP only (its network blocks
// UDP) calls a phone; the gateway's passive TCP candidate, on the ICE
// port's number, carries the call, audio both ways, and the bridge says
// so.
func TestICETCPCall(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{ICETCP: true})
	port := int(e.ICEAddr().Port())
	if port == 0 {
		t.Fatal("no ICE port")
	}
	b := newTestBridge(t, e)
	br := newBrowserWith(t, func(o *mediapeer.BrowserOptions) { o.Network = []webrtc.NetworkType{webrtc.NetworkTypeTCP4} })
	answer := browserCall(t, b, br)

	p := strconv.Itoa(port)
	for _, re := range []string{
		`a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 ` + p + ` typ host`,
		`a=candidate:\S+ 1 tcp \d+ 127\.0\.0\.1 ` + p + ` typ host tcptype passive`,
	} {
		if !regexp.MustCompile(re).Match(answer) {
			t.Errorf("the gateway's answer lacks %s:\n%s", re, answer)
		}
	}
	local, remote := br.SelectedPair()
	if local.Protocol != webrtc.ICEProtocolTCP || remote.Port != uint16(port) {
		t.Errorf("browser's pair %s -> %s, want tcp to the ICE port %d", local.String(), remote.String(), port)
	}
	tr := waitTransport(t, b)
	want := Candidate{Type: "host", Protocol: "tcp", Address: "127.0.0.1:" + p}
	if tr.Local != want || tr.Remote.Protocol != "tcp" || (tr.Remote.Type != "prflx" && tr.Remote.Type != "host") {
		t.Errorf("transport %+v, want local %+v and a tcp remote", tr, want)
	}
	// The gateway answered: a=setup:active, the DTLS client.
	if tr.DTLSRole != "client" || tr.SRTPProfile == "" {
		t.Errorf("dtls role %q, srtp profile %q", tr.DTLSRole, tr.SRTPProfile)
	}
	if n := e.Stats().Transports[tr.Key()]; n != 1 {
		t.Errorf("engine counts %d web legs over %+v, want 1", n, tr.Key())
	}
	if st := e.Stats(); st.ICETCPConns < 1 {
		t.Errorf("%d ice-tcp connections open during a tcp call", st.ICETCPConns)
	}
}

// TestICETCPAnnouncesPublicIP: behind a 1:1 NAT both the UDP and the TCP
// candidate carry the public address, not the bound one.
func TestICETCPAnnouncesPublicIP(t *testing.T) {
	checkGoroutines(t)
	public := netip.MustParseAddr("127.0.0.9")
	e := newTestEngine(t, Options{ICETCP: true, PublicIP: public})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	answer, err := b.RTPAnswer(newTestPhone(t).SDP(1, "0", "a=sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(int(e.ICEAddr().Port()))
	for _, re := range []string{
		`a=candidate:\S+ 1 udp \d+ 127\.0\.0\.9 ` + p + ` typ host`,
		`a=candidate:\S+ 1 tcp \d+ 127\.0\.0\.9 ` + p + ` typ host tcptype passive`,
	} {
		if !regexp.MustCompile(re).Match(answer) {
			t.Errorf("the gateway's answer lacks %s:\n%s", re, answer)
		}
	}
	mustNotContain(t, answer, " 127.0.0.1 ")
}

// TestICELite: a browser connects to an ICE-lite gateway, which
// says so in its SDP, and audio flows.
func TestICELite(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{ICELite: true, ICETCP: true})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	answer := browserCall(t, b, br)
	mustContain(t, answer, "a=ice-lite")
	tr := waitTransport(t, b)
	if tr.Local.Type != "host" || tr.Local.Protocol != "udp" {
		t.Errorf("transport %+v", tr)
	}
}

// TestTransportFactsPhoneCallsBrowser: the gateway offers (actpass) and the
// browser answers active, so the gateway is the DTLS server.
func TestTransportFactsPhoneCallsBrowser(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phone := phoneCallsBrowser(t, b, br.Answer)
	br.WaitConnected()
	prime(t, b, br, phone, 0)
	tr := waitTransport(t, b)
	if tr.DTLSRole != "server" || tr.SRTPProfile == "" || tr.Local.Protocol != "udp" || tr.Local.Address != e.ICEAddr().String() {
		t.Errorf("transport %+v", tr)
	}
	// The gateway offered, so it was the controlling agent: the pair it
	// chose is among the checks, succeeded and nominated, its checks sent
	// and answered.
	var chosen bool
	for _, c := range tr.Checks {
		if c.Local == tr.Local && c.Remote == tr.Remote {
			chosen = c.State == "succeeded" && c.Nominated && c.RequestsSent > 0 && c.ResponsesReceived > 0
		}
	}
	if !chosen {
		t.Errorf("the selected pair is not among the checks as succeeded and nominated:\n%v", tr.Checks)
	}
	st := b.Stats()
	if !st.RTP.Latched || st.RTP.Remote != phone.Conn.LocalAddr().String() || st.RTP.Local != b.RTPAddr().String() {
		t.Errorf("rtp leg remote %q (latched %v), local %q", st.RTP.Remote, st.RTP.Latched, st.RTP.Local)
	}
}

// dialICE opens a TCP connection to the engine's ICE port from src.
func dialICE(t *testing.T, e *Engine, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", e.ICEAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits for the gateway to close c.
func closedByPeer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection from %s still open after %v", c.LocalAddr(), within)
	}
	if err != io.EOF && !errors.Is(err, net.ErrClosed) && err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	if err == nil {
		t.Fatalf("connection from %s got data, want it closed", c.LocalAddr())
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// stillOpen checks that the gateway keeps c open for a while.
func stillOpen(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection from %s: %v, want it open", c.LocalAddr(), err)
	}
}

// TestICETCPCaps: strangers cannot pile up connections on the ICE-TCP
// port: one address gets ICETCPMaxConnsPerIP, all together get
// ICETCPMaxConns, the rest are closed at once and counted; a connection
// that sends no STUN is closed after ICETCPFirstMessage; a closed one
// gives its place back.
func TestICETCPCaps(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{ICETCP: true, ICETCPMaxConns: 3, ICETCPMaxConnsPerIP: 2, ICETCPFirstMessage: time.Hour})

	a1, a2 := dialICE(t, e, "127.0.0.1"), dialICE(t, e, "127.0.0.1")
	waitFor(t, "two connections held", func() bool { return e.Stats().ICETCPConns == 2 })
	a3 := dialICE(t, e, "127.0.0.1")
	closedByPeer(t, a3, 5*time.Second)
	if st := e.Stats(); st.ICETCPRefused != 1 {
		t.Errorf("refused %d, want 1 (per address)", st.ICETCPRefused)
	}
	b1 := dialICE(t, e, "127.0.0.2")
	waitFor(t, "three connections held", func() bool { return e.Stats().ICETCPConns == 3 })
	c1 := dialICE(t, e, "127.0.0.3")
	closedByPeer(t, c1, 5*time.Second)
	if st := e.Stats(); st.ICETCPRefused != 2 {
		t.Errorf("refused %d, want 2 (total)", st.ICETCPRefused)
	}
	stillOpen(t, a1)
	stillOpen(t, a2)
	stillOpen(t, b1)

	// Garbage instead of a STUN message: pion drops the connection, and
	// its place is free again.
	if _, err := a1.Write([]byte("\x00\x10GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, a1, 5*time.Second)
	waitFor(t, "the place given back", func() bool { return e.Stats().ICETCPConns == 2 })
	c2 := dialICE(t, e, "127.0.0.3")
	waitFor(t, "a new connection held", func() bool { return e.Stats().ICETCPConns == 3 })
	stillOpen(t, c2)
}

// TestICETCPFirstMessageTimeout: a connection that never speaks is closed
// after ICETCPFirstMessage.
func TestICETCPFirstMessageTimeout(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{ICETCP: true, ICETCPFirstMessage: 200 * time.Millisecond})
	c := dialICE(t, e, "127.0.0.1")
	closedByPeer(t, c, 5*time.Second)
	waitFor(t, "the place given back", func() bool { return e.Stats().ICETCPConns == 0 })
}

// TestICEPortFixed: the ICE port is the one asked for, UDP and TCP.
func TestICEPortFixed(t *testing.T) {
	checkGoroutines(t)
	e1 := newTestEngine(t, Options{ICETCP: true})
	port := int(e1.ICEAddr().Port())
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t, Options{ICETCP: true, ICEUDPPort: port})
	if got := int(e.ICEAddr().Port()); got != port {
		t.Fatalf("ICE port %d, want %d", got, port)
	}
	// Both are bound: a second engine on the port cannot start.
	_, err := NewEngine(context.Background(), Options{BindIP: loopback, ICETCP: true, ICEUDPPort: port, Logger: testLogger()})
	if err == nil {
		t.Fatal("a second engine bound the same ICE port")
	}
	// ICE-TCP needs the shared port.
	_, err = NewEngine(context.Background(), Options{BindIP: loopback, ICETCP: true, ICEPortRange: [2]int{40000, 40100}})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("ICE-TCP with a port range: %v, want ErrInvalidOptions", err)
	}
}

// TestControllingGatewayOutlastsLostChecks: the gateway offered, so it is
// the controlling agent, and its first checks of the browser's one pair go
// unanswered for 2.5 s (a busy browser, a lossy link). pion's default gives
// a pair up after 7 checks, 1.4 s, and never checks it again: the call
// would never connect (with a TURN relay offered, it would connect through
// the relay for good). The gateway keeps checking (iceMaxChecks) and
// nominates the pair once the checks are answered.
func TestControllingGatewayOutlastsLostChecks(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lossy := &checkLoss{PacketConn: conn, lose: 2500 * time.Millisecond}
	br := &testBrowser{t: t, track: &webTrack{}}
	br.Browser = mediapeer.NewBrowser(t, mediapeer.BrowserOptions{
		Codecs:        browserCodecs(),
		Track:         br.track,
		LoggerFactory: pionLoggers{context.Background(), testLogger().With("side", "browser")},
		Wait:          15 * time.Second,
		ICEConn:       lossy,
	})
	phoneCallsBrowser(t, b, br.Answer)
	br.WaitConnected()
	if n := lossy.lost.Load(); n < 8 {
		t.Fatalf("%d of the gateway's checks lost, want more than pion's default of 7", n)
	}
	tr := waitTransport(t, b)
	if tr.Remote.Address != conn.LocalAddr().String() || tr.Local.Protocol != "udp" {
		t.Errorf("transport %+v, want the browser's one UDP candidate", tr)
	}
}

// checkLoss is a browser's socket that loses the STUN Binding requests it
// receives for lose after the first.
type checkLoss struct {
	net.PacketConn
	lose  time.Duration
	until time.Time // set by the first request; the mux reads on one goroutine
	lost  atomic.Int64
}

func (c *checkLoss) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		// A Binding request: type 0x0001, then the magic cookie (RFC
		// 5389 §6).
		if err != nil || n < 20 || p[0] != 0 || p[1] != 1 || binary.BigEndian.Uint32(p[4:]) != 0x2112A442 {
			return n, addr, err
		}
		if c.until.IsZero() {
			c.until = time.Now().Add(c.lose)
		}
		if time.Now().After(c.until) {
			return n, addr, err
		}
		c.lost.Add(1)
	}
}

// TestAnswerCandidatesBeforeChecks: when the browser's answer is applied,
// the ICE agent already holds the answer's candidates, with the priorities
// the browser gave them, so that no check of the browser's can make one of
// them a peer-reflexive candidate first (primeCandidates). The answer
// also lists a relay candidate, as a browser with a TURN server does, and,
// as a hostile answer might, more candidates than the gateway primes.
func TestAnswerCandidatesBeforeChecks(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := newTestBrowser(t)
	phoneCallsBrowser(t, b, func(offer []byte) []byte {
		answer := string(br.Answer(offer))
		const relay = "a=candidate:9 1 udp 41885439 127.0.0.1 40999 typ relay raddr 127.0.0.1 rport 40998\r\n"
		extra := relay
		for i := range 2 * maxPrimed {
			extra += fmt.Sprintf("a=candidate:%d 1 udp 2122260223 127.0.0.%d 41000 typ host\r\n", 100+i, 2+i)
		}
		at := strings.Index(answer, "a=candidate:")
		if at < 0 {
			t.Fatalf("the browser's answer has no candidate:\n%s", answer)
		}
		answer = answer[:at] + extra + answer[at:]
		return []byte(answer)
	})
	// Read at once: pion alone adds them in goroutines of its own.
	remote := map[string]webrtc.ICECandidateStats{}
	for _, c := range remoteCandidates(b) {
		remote[net.JoinHostPort(c.IP, strconv.Itoa(int(c.Port)))] = c
	}
	if c, ok := remote["127.0.0.1:40999"]; !ok || c.CandidateType != webrtc.ICECandidateTypeRelay || c.Priority != 41885439 {
		t.Errorf("the answer's relay candidate is %+v (held: %v), want it held as relay with priority 41885439", c, ok)
	}
	if len(remote) < maxPrimed {
		t.Errorf("%d remote candidates held when the answer was applied, want at least %d", len(remote), maxPrimed)
	}
	br.WaitConnected()
	// pion adds the answer's candidates again: it must know them for the
	// same, not hold two of an address.
	seen := map[string]int{}
	for _, c := range remoteCandidates(b) {
		seen[net.JoinHostPort(c.IP, strconv.Itoa(int(c.Port)))+" "+c.Protocol]++
	}
	for a, n := range seen {
		if n > 1 {
			t.Errorf("the agent holds %d remote candidates at %s", n, a)
		}
	}
}

// phoneCallsBrowser has b offer to the browser, as for a phone's call (the
// gateway is then the controlling ICE agent and the DTLS server), and
// gives it the answer that answer makes of the offer.
func phoneCallsBrowser(t *testing.T, b *Bridge, answer func(offer []byte) []byte) *testPhone {
	t.Helper()
	phone := newTestPhone(t)
	webOffer, err := b.RTPOffer(phone.SDP(1, "0 101", "a=ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WebAnswer(answer(webOffer)); err != nil {
		t.Fatal(err)
	}
	return phone
}

// remoteCandidates are the browser's candidates that b's ICE agent holds.
func remoteCandidates(b *Bridge) []webrtc.ICECandidateStats {
	var out []webrtc.ICECandidateStats
	for _, s := range b.pc.GetStats() {
		if c, ok := s.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate {
			out = append(out, c)
		}
	}
	return out
}
