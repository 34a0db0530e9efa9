package sipudp_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// options returns a request from a phone behind a NAT: its Via names a
// private address, and asks for rport.
func options(callID string) string { return transporttest.OptionsRequest(callID, sip.UDP) }

// listen opens a UDP transport on addr, closed at the end of the test.
func listen(t *testing.T, addr string, opts sipudp.Options) *sipudp.Transport {
	t.Helper()
	tr, err := sipudp.Listen(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func roundTrip(t *testing.T, listenAddr, clientNet, clientAddr, wantReceived string) {
	tr := listen(t, listenAddr, sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Answer(t, l)
	c := transporttest.ListenUDP(t, clientNet, clientAddr)

	c.Send(tr.LocalAddr(), options("rt1"))
	res := c.Response()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	// The request as the upper layer saw it.
	req := rec.Message(t).(*sip.Request)
	if req.Source != (sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}) {
		t.Errorf("source %v, client %v", req.Source, c.Addr())
	}
	v, _ := req.TopVia()
	if v.Received() != wantReceived {
		t.Errorf("received %q, want %q", v.Received(), wantReceived)
	}
	if p, _ := v.RPort(); p != int(c.Addr().Port()) {
		t.Errorf("rport %d, want %d", p, c.Addr().Port())
	}
	// The response reached the client's real port, not the Via's 5062,
	// and carries the stamped Via back.
	if rv, _ := res.TopVia(); rv.Received() != wantReceived {
		t.Errorf("response via %s", rv.String())
	}
}

func TestRoundTripThroughLayer(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	roundTrip(t, "127.0.0.1:0", "udp4", "127.0.0.1:0", "127.0.0.1")
}

func TestRoundTripIPv6(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	needIPv6(t, net.IPv6loopback, "the IPv6 loopback ::1 (enable IPv6 on lo)")
	roundTrip(t, "[::1]:0", "udp6", "[::1]:0", "::1")
}

// needIPv6 fails the test, saying what it needs, when no UDP socket can
// be bound on ip.
func needIPv6(t *testing.T, ip net.IP, what string) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatalf("this test needs %s: %v", what, err)
	}
	c.Close()
}

// TestRoundTripDualStack: a socket on [::] answers an IPv4 client, to
// its IPv4-mapped address.
func TestRoundTripDualStack(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	needIPv6(t, net.IPv6unspecified, "IPv6 (a socket on [::])")
	tr := listen(t, "[::]:0", sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	transporttest.Answer(t, l)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	to := tr.LocalAddr()
	to.AddrPort = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.AddrPort.Port())
	c.Send(to, options("dual1"))
	if res := c.Response(); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestSendAfterClose: a send on a closed transport fails with
// transport.ErrClosed, as the socket is gone.
func TestSendAfterClose(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	m, err := sip.ParseMessage([]byte(options("closed")))
	if err != nil {
		t.Fatal(err)
	}
	dst := sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}
	if err := tr.Send(context.Background(), m, dst); err != nil {
		t.Fatalf("send before close: %v", err)
	}
	tr.Close()
	if err := tr.Send(context.Background(), m, dst); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("send after close: %v, want transport.ErrClosed", err)
	}
}

func TestRepliesFromListeningPort(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	transporttest.Answer(t, l)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	c.Send(tr.LocalAddr(), options("port1"))
	if _, from := c.Read(); from != tr.LocalAddr().AddrPort {
		t.Errorf("answer from %v, want the listening %v", from, tr.LocalAddr().AddrPort)
	}
	// A request the Layer sends leaves from the listening port too.
	req, _ := sip.ParseMessage([]byte(options("out1")))
	r := req.(*sip.Request)
	r.Del("Via")
	if _, err := l.StampVia(r, sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Send(context.Background(), r, sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}); err != nil {
		t.Fatal(err)
	}
	b, from := c.Read()
	if from != tr.LocalAddr().AddrPort || !strings.Contains(string(b), "Via: SIP/2.0/UDP "+tr.LocalAddr().AddrPort.String()+";branch=z9hG4bK") {
		t.Errorf("request from %v:\n%s", from, b)
	}
}

func TestMalformedRequestGets400(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	rec := transporttest.Record(t, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	bad := strings.Replace(options("bad1"), "Max-Forwards: 70", "Max-Forwards: seventy", 1)
	c.Send(tr.LocalAddr(), bad)
	res := c.Response()
	if res.StatusCode != 400 || res.Reason != "Malformed Max-Forwards" || res.CallID() != "bad1" {
		t.Errorf("got %d %q for %s", res.StatusCode, res.Reason, res.CallID())
	}
	// Without a usable Via nothing can be answered; the next good message
	// is the first one delivered.
	c.Send(tr.LocalAddr(), strings.Replace(bad, "Via: SIP/2.0/UDP", "Via: SIP/3.0/UDP", 1))
	c.Send(tr.LocalAddr(), options("good1"))
	if m := rec.Message(t); m.Header().CallID() != "good1" {
		t.Errorf("delivered %s", m.Header().CallID())
	}
	if n, _ := rec.Counts(); n != 0 {
		t.Errorf("%d more messages delivered", n)
	}
}

func TestOversizedDatagram(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	var logs transporttest.Logs
	tr := listen(t, "127.0.0.1:0", sipudp.Options{Limits: sip.Limits{MaxMessageSize: 1024}, Logger: logs.Logger()})
	rec := transporttest.Record(t, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	big := strings.Replace(options("big1"), "Content-Length: 0", "X-Pad: "+strings.Repeat("x", 1500)+"\r\nContent-Length: 0", 1)
	c.Send(tr.LocalAddr(), big)
	if res := c.Response(); res.StatusCode != 513 {
		t.Errorf("status %d %s", res.StatusCode, res.Reason)
	}
	logs.Line(t, `msg="unparseable message"`)
	c.Send(tr.LocalAddr(), options("small1"))
	if m := rec.Message(t); m.Header().CallID() != "small1" {
		t.Errorf("delivered %s", m.Header().CallID())
	}
}

// TestReadsFillTheBatch: datagrams that wait in the socket when the read
// loop starts come up in several reads of ReadBatch (the cap of one read)
// and a part, in order, from two sources and both families of the same
// socket, with an oversized one among them answered 513 and the rest
// unaffected.
func TestReadsFillTheBatch(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	for _, tt := range []struct{ listen, network, client string }{
		{"127.0.0.1:0", "udp4", "127.0.0.1:0"},
		{"[::1]:0", "udp6", "[::1]:0"},
	} {
		t.Run(tt.network, func(t *testing.T) {
			tr := listen(t, tt.listen, sipudp.Options{Limits: sip.Limits{MaxMessageSize: 1024}, ReadBuffer: 1 << 20})
			a := transporttest.ListenUDP(t, tt.network, tt.client)
			b := transporttest.ListenUDP(t, tt.network, tt.client)
			n := 3*sipudp.ReadBatch + 3
			var want []string
			for i := range n {
				c := a
				if i%3 == 1 {
					c = b
				}
				if i == sipudp.ReadBatch+2 {
					big := strings.Replace(options("big"), "Content-Length: 0", "X-Pad: "+strings.Repeat("x", 1500)+"\r\nContent-Length: 0", 1)
					c.Send(tr.LocalAddr(), big)
					continue
				}
				id := fmt.Sprintf("fill%d", i)
				c.Send(tr.LocalAddr(), options(id))
				want = append(want, id)
			}
			rec := transporttest.Record(t, tr) // the read loop starts here
			for i, id := range want {
				m := rec.Message(t)
				if got := m.Header().CallID(); got != id {
					t.Fatalf("message %d is %s, want %s", i, got, id)
				}
				if src := m.(*sip.Request).Source.AddrPort; src != a.Addr() && src != b.Addr() {
					t.Errorf("message %s from %v, sent from %v or %v", id, src, a.Addr(), b.Addr())
				}
			}
			if res := b.Response(); res.StatusCode != 513 {
				t.Errorf("oversized datagram answered %d %s", res.StatusCode, res.Reason)
			}
		})
	}
}

func TestKeepAlivesIgnored(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	rec := transporttest.Record(t, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	for _, ka := range []string{"\r\n\r\n", "\r\n", "\x00\x00\x00\x00", ""} {
		c.Send(tr.LocalAddr(), ka)
	}
	// Loopback keeps order: if a keep-alive had been answered, that answer
	// would come before the 400.
	c.Send(tr.LocalAddr(), strings.Replace(options("ka1"), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1))
	if res := c.Response(); res.StatusCode != 400 {
		t.Errorf("status %d", res.StatusCode)
	}
	c.Send(tr.LocalAddr(), options("ka2"))
	if m := rec.Message(t); m.Header().CallID() != "ka2" {
		t.Errorf("delivered %s", m.Header().CallID())
	}
}

func TestSTUNBinding(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	transporttest.Record(t, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	req := make([]byte, 20)
	binary.BigEndian.PutUint16(req[0:], 0x0001)
	binary.BigEndian.PutUint32(req[4:], 0x2112A442)
	copy(req[8:], "transaction1")
	c.Send(tr.LocalAddr(), string(req))
	resp, _ := c.Read()
	if len(resp) != 20+12+8 || binary.BigEndian.Uint16(resp) != 0x0101 || string(resp[8:20]) != "transaction1" {
		t.Fatalf("response %x", resp)
	}
	if int(binary.BigEndian.Uint16(resp[2:])) != len(resp)-20 {
		t.Errorf("length %d", binary.BigEndian.Uint16(resp[2:]))
	}
	attr := resp[20:32]
	if binary.BigEndian.Uint16(attr) != 0x0020 || attr[5] != 0x01 {
		t.Fatalf("attribute %x", attr)
	}
	port := binary.BigEndian.Uint16(attr[6:]) ^ 0x2112
	var ip [4]byte
	for i := range ip {
		ip[i] = attr[8+i] ^ req[4+i]
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4(ip), port); got != c.Addr() {
		t.Errorf("mapped address %v, want %v", got, c.Addr())
	}
	fp := resp[32:]
	if binary.BigEndian.Uint16(fp) != 0x8028 || binary.BigEndian.Uint32(fp[4:]) != crc32.ChecksumIEEE(resp[:32])^0x5354554e {
		t.Errorf("fingerprint %x", fp)
	}
}

func TestManyDatagrams(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{ReadBuffer: 1 << 20})
	rec := transporttest.Record(t, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	const n, window = 2000, 64
	for i := range n {
		// Keep at most window datagrams in flight, so that the socket
		// buffer never overflows: UDP may drop, the transport must not.
		if i >= window && !rec.WaitMessages(i-window+1) {
			t.Fatalf("stalled after %d", i)
		}
		c.Send(tr.LocalAddr(), options(fmt.Sprintf("many%d", i)))
	}
	for i := range n {
		if got, want := rec.Message(t).Header().CallID(), fmt.Sprintf("many%d", i); got != want {
			t.Fatalf("message %d is %s", i, got)
		}
	}
}

func TestPerSourceCapOverUDP(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	var logs transporttest.Logs
	release := make(chan struct{})
	first := make(chan struct{})
	var once sync.Once
	rec := transporttest.NewRecorder(t)
	rec.OnMessage = func(sip.Message) {
		once.Do(func() { close(first); <-release })
	}
	l := transporttest.ServeLayer(t, transport.Config{Workers: 1, MaxPendingPerSource: 2, Logger: logs.Logger()}, rec, tr)
	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	c.Send(tr.LocalAddr(), options("cap0"))
	<-first
	for i := 1; i <= 9; i++ {
		c.Send(tr.LocalAddr(), options(fmt.Sprintf("cap%d", i)))
	}
	// One in the worker, two queued, seven dropped with a log naming the
	// source.
	for range 7 {
		r := logs.Line(t, `msg="dropped message"`)
		if !strings.Contains(r, c.Addr().String()) {
			t.Errorf("log without source: %s", r)
		}
	}
	close(release)
	for _, want := range []string{"cap0", "cap1", "cap2"} {
		if got := rec.Message(t).Header().CallID(); got != want {
			t.Errorf("delivered %s, want %s", got, want)
		}
	}
	if s := l.Stats(); s.Dropped != 7 || s.Received != 10 {
		t.Errorf("stats %+v", s)
	}
}

func TestLargeRequestGoesOverTCP(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	ctx := context.Background()
	// The peer listens on UDP and TCP on the same port, as phones do.
	peerTCP, err := siptcp.Listen(ctx, "127.0.0.1:0", siptcp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	peerUDP := listen(t, peerTCP.LocalAddr().AddrPort.String(), sipudp.Options{})
	peer := transporttest.NewRecorder(t)
	transporttest.ServeLayer(t, transport.Config{}, peer, peerUDP, peerTCP)

	ourTCP, err := siptcp.Listen(ctx, "127.0.0.1:0", siptcp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ourUDP := listen(t, "127.0.0.1:0", sipudp.Options{})
	l := transporttest.ServeLayer(t, transport.Config{}, transporttest.NewRecorder(t), ourUDP, ourTCP)

	dst := sip.Addr{Transport: sip.UDP, AddrPort: peerUDP.LocalAddr().AddrPort}
	for _, size := range []int{100, 2000} {
		m, _ := sip.ParseMessage([]byte(options(fmt.Sprintf("mtu%d", size))))
		req := m.(*sip.Request)
		req.Del("Via")
		req.SetBody([]byte(strings.Repeat("a", size)), "text/plain")
		if _, err := l.StampVia(req, dst); err != nil {
			t.Fatal(err)
		}
		if err := l.Send(ctx, req, dst); err != nil {
			t.Fatal(err)
		}
		got := peer.Message(t).(*sip.Request)
		v, _ := got.TopVia()
		want, wantSentBy := sip.UDP, ourUDP.LocalAddr().AddrPort.String()
		if size > 1300 {
			want, wantSentBy = sip.TCP, ourTCP.LocalAddr().AddrPort.String()
		}
		if got.Source.Transport != want || v.Transport != want || v.SentBy() != wantSentBy {
			t.Errorf("%d bytes came over %s with Via %s", size, got.Source.Transport, v.String())
		}
	}
}
