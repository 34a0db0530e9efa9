//go:build linux

package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/mmsg"
	"github.com/switchboard/switchboard/internal/udpstat"
	"golang.org/x/sys/unix"
)

// TestRTPPoller: the engine's poller reads the RTP and RTCP sockets of
// its bridges (no reader goroutine per bridge), a closed bridge's sockets
// leave it, and closing the engine stops its goroutine and closes its
// epoll descriptor.
func TestRTPPoller(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	p := e.poller
	if p == nil {
		t.Fatal("no rtp poller on linux")
	}
	b := newTestBridge(t, e)
	if !b.polled || b.pair.polled == nil || p.len() != 2 {
		t.Fatalf("bridge polled %v, %d sockets in the poller, want its two", b.polled, p.len())
	}
	if g := leakcheck.Goroutines(leakcheck.Running("media.(*Bridge).readRTP", "media.(*Bridge).readRTCP")); len(g) != 0 {
		t.Fatalf("reader goroutines with the poller:\n%s", g[0])
	}
	a := newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	gw := b.RTPAddr()
	a.SendPacket(gw, latchPacket(0, 1))
	waitFor(t, "the phone's packet read by the poller", func() bool { return b.Stats().RTP.PacketsIn == 1 })
	if _, err := a.Conn.WriteToUDPAddrPort([]byte{0x80, 200, 0, 1}, netip.AddrPortFrom(gw.Addr(), gw.Port()+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the phone's RTCP read by the poller", func() bool { return b.Stats().RTP.RTCPIn == 1 })
	if p.datagrams.Load() != 2 || p.wakeups.Load() == 0 {
		t.Fatalf("poller: %d datagrams in %d wake-ups, want 2", p.datagrams.Load(), p.wakeups.Load())
	}
	// The gateway's packets to the phone leave from the RTP port.
	b.fromWeb(mustMarshal(t, latchPacket(0, 7)), &rtp.Packet{})
	if got := a.recv(); !bytes.Equal(got.Payload, payload(0, 160)) {
		t.Fatalf("phone got %x", got.Payload)
	}

	_ = b.Close()
	if n := p.len(); n != 0 {
		t.Fatalf("%d sockets in the poller after the bridge closed", n)
	}
	epfd := p.epfd
	if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", epfd)); err != nil || link != "anon_inode:[eventpoll]" {
		t.Fatalf("epoll descriptor %d: %q %v", epfd, link, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	default:
		t.Fatal("the poller's goroutine runs after Close")
	}
	if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", epfd)); err == nil && link == "anon_inode:[eventpoll]" {
		t.Fatalf("epoll descriptor %d still open after Close", epfd)
	}
	if _, err := e.NewBridge(t.Context(), "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewBridge after Close: %v", err)
	}
}

func mustMarshal(t *testing.T, p rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRTPPollerBridgeClosesUnderTraffic: a bridge closes while its phone
// floods its port; its sockets leave the poller with nothing in flight,
// what reaches them later is not read, and the poller goes on for the
// other bridges.
func TestRTPPollerBridgeClosesUnderTraffic(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{DrainTime: time.Hour}) // the closed port stays bound
	p := e.poller
	b1, b2 := newTestBridge(t, e), newTestBridge(t, e)
	a1, a2 := newTestPhone(t), newTestPhone(t)
	negotiateRTPOnly(b1, addrOf(a1))
	negotiateRTPOnly(b2, addrOf(a2))
	gw1, gw2 := b1.RTPAddr(), b2.RTPAddr()
	stop, flooded := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			n++
			a1.SendPacket(gw1, latchPacket(0, uint16(n)))
		}
	}()
	waitFor(t, "the flood relayed", func() bool { return b1.Stats().RTP.PacketsIn > 100 })
	_ = b1.Close()
	close(stop)
	n := <-flooded
	if p.len() != 2 {
		t.Fatalf("%d sockets in the poller, want b2's two", p.len())
	}
	before := p.datagrams.Load()
	for i := range 50 {
		a1.SendPacket(gw1, latchPacket(0, uint16(n+i)))
	}
	a2.SendPacket(gw2, latchPacket(0, 1))
	waitFor(t, "b2's packet", func() bool { return b2.Stats().RTP.PacketsIn == 1 })
	if got := p.datagrams.Load() - before; got != 1 {
		t.Fatalf("the poller read %d datagrams after b1 closed, want b2's one", got)
	}
}

// TestMmsgBatchCaps: one recvmmsg takes at most the batch's slots, the
// rest stay for the next; a datagram larger than a slot is refused; the
// send batch goes out when full and keeps the order.
func TestMmsgBatchCaps(t *testing.T) {
	rx, tx := newTestPhone(t).Conn, newTestPhone(t).Conn
	to, from := rx.LocalAddr().(*net.UDPAddr).AddrPort(), tx.LocalAddr().(*net.UDPAddr).AddrPort()
	send := func(b []byte) {
		t.Helper()
		if _, err := tx.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel may queue loopback datagrams after sendto returns: the
	// test waits until the socket holds them all (its receive queue's
	// bytes, the same for each datagram of a size).
	send([]byte{0, 1, 2})
	var one int
	waitFor(t, "the first datagram queued", func() bool { one = rxQueue(t, to.Port()); return one > 0 })
	const sent = 2*pollRecvBatch + 3
	for i := 1; i < sent; i++ {
		send([]byte{byte(i), 1, 2})
	}
	waitFor(t, "the datagrams queued", func() bool { return rxQueue(t, to.Port()) == sent*one })
	m, err := mmsg.New(mmsg.Config{Slots: pollRecvBatch, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	fd, _ := sockFD(rx)
	next := 0
	for _, want := range []int{pollRecvBatch, pollRecvBatch, 3} {
		n, err := m.Recv(fd)
		if err != nil || n != want {
			t.Fatalf("recv: %d datagrams, %v; want %d", n, err, want)
		}
		for i := range n {
			d := m.Datagram(i)
			if d.Truncated || d.Src != from || !bytes.Equal(d.B, []byte{byte(next), 1, 2}) {
				t.Fatalf("datagram %d: %+v", next, d)
			}
			next++
		}
	}
	if _, err := m.Recv(fd); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("recv on an empty socket: %v", err)
	}
	send(make([]byte, 100))
	waitFor(t, "a datagram larger than a slot", func() bool {
		n, err := m.Recv(fd)
		if err != nil {
			return false
		}
		if d := m.Datagram(0); n != 1 || !d.Truncated {
			t.Fatalf("a datagram of 100 bytes in slots of 64: %d bytes, %d datagrams", len(d.B), n)
		}
		return true
	})

	txfd, err := dupSocket(tx)
	if err != nil {
		t.Fatal(err)
	}
	sock := &rawUDP{fd: txfd}
	defer sock.close()
	s, err := newICESender(sock)
	if err != nil {
		t.Fatal(err)
	}
	br := &Bridge{}
	for i := range pollSendBatch + 1 {
		slot := s.slot()
		slot[0], slot[1] = byte(i), byte(i>>8)
		if !s.queue(br, slot[:2], to) {
			t.Fatal("queue refused a datagram")
		}
	}
	if s.calls.Load() != 1 || s.m.Len() != 1 {
		t.Fatalf("after %d datagrams: %d sendmmsg, %d queued; want the full batch sent", pollSendBatch+1, s.calls.Load(), s.m.Len())
	}
	if s.queue(br, s.slot()[:2], netip.MustParseAddrPort("[::1]:9")) {
		t.Fatal("an IPv6 destination queued on an IPv4 socket")
	}
	s.flush()
	if s.calls.Load() != 2 || s.sent.Load() != pollSendBatch+1 || s.m.Len() != 0 {
		t.Fatalf("flush: %d calls, %d sent, %d queued", s.calls.Load(), s.sent.Load(), s.m.Len())
	}
	buf := make([]byte, 64)
	for i := range pollSendBatch + 1 {
		_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil || n != 2 || int(buf[0])|int(buf[1])<<8 != i {
			t.Fatalf("datagram %d: %x, %v", i, buf[:n], err)
		}
	}
}

// TestRawUDPClosed: a send on a closed socket of the poller fails, it
// does not reach another descriptor.
func TestRawUDPClosed(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := dupSocket(c)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	s := &rawUDP{fd: fd}
	rx := newTestPhone(t)
	if _, err := s.WriteToUDPAddrPort([]byte{1}, addrOf(rx)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteToUDPAddrPort([]byte{1}, netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Fatal("an IPv6 destination from an IPv4 socket")
	}
	s.close()
	s.close()
	if _, err := s.WriteToUDPAddrPort([]byte{1}, addrOf(rx)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// TestRTPPollerRoundCap: a round reads one socket at most
// pollRecvRounds·pollRecvBatch datagrams; a socket left with more is
// read again in the next round, not forgotten (its edge is spent).
func TestRTPPollerRoundCap(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	p := e.poller
	b := newTestBridge(t, e)
	a := newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	const sent = 3 * pollRecvRounds * pollRecvBatch
	// The write lock keeps the poller's goroutine out: the test plays
	// its rounds.
	p.mu.Lock()
	for i := range sent {
		a.SendPacket(b.RTPAddr(), latchPacket(0, uint16(i)))
	}
	id := b.pollIDs[0]
	read, capped := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for read < sent && time.Now().Before(deadline) {
		before := p.datagrams.Load()
		p.again = p.again[:0]
		p.drain(id, e.clock.Now())
		n := int(p.datagrams.Load() - before)
		if n > pollRecvRounds*pollRecvBatch {
			p.mu.Unlock()
			t.Fatalf("one round read %d datagrams of a socket", n)
		}
		if n == pollRecvRounds*pollRecvBatch {
			capped++
			if len(p.again) != 1 || p.again[0] != id {
				p.mu.Unlock()
				t.Fatalf("a socket read to its cap is not read again: %v", p.again)
			}
		}
		read += n
	}
	p.again = p.again[:0]
	p.mu.Unlock()
	if read != sent || capped < 2 {
		t.Fatalf("%d of %d datagrams read, %d rounds at the cap", read, sent, capped)
	}
	waitFor(t, "the packets counted", func() bool { return b.Stats().RTP.PacketsIn == sent })
}

// TestICEReader: the shared ICE socket's batch reader hands pion the
// datagrams that are not the fast path's, in order, from one recvmmsg;
// Close wakes a read that waits, which fails, and closes the socket.
func TestICEReader(t *testing.T) {
	checkGoroutines(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fc := newFastConn(c, testLogger(), newKeyTable(time.Now), newFake(), true, -1)
	if fc.rd == nil {
		t.Fatal("no batch reader on linux")
	}
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	peer := newTestPhone(t)
	const sent = iceReadSlots + 3
	for i := range sent {
		// STUN-like first bytes: pion's.
		if _, err := peer.Conn.WriteToUDPAddrPort([]byte{0, 1, byte(i)}, to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	for i := range sent {
		n, src, err := fc.ReadFromAddrPort(buf)
		if err != nil || src != addrOf(peer) || !bytes.Equal(buf[:n], []byte{0, 1, byte(i)}) {
			t.Fatalf("datagram %d: %x from %v, %v", i, buf[:n], src, err)
		}
	}
	if calls := fc.rd.calls.Load(); calls >= sent {
		t.Fatalf("%d datagrams took %d recvmmsg", sent, calls)
	}
	// Sends leave from the same socket.
	if _, err := fc.WriteToAddrPort([]byte{0, 1}, addrOf(peer)); err != nil {
		t.Fatal(err)
	}
	_ = peer.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, src, err := peer.Conn.ReadFromUDPAddrPort(buf); err != nil || src != to {
		t.Fatalf("the gateway's datagram came from %v (%v), want %v", src, err, to)
	}

	read := make(chan error, 1)
	go func() {
		_, _, err := fc.ReadFromAddrPort(buf)
		read <- err
	}()
	_ = fc.Close()
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake the read")
	}
	if fc.rd.sock.fd != -1 {
		t.Fatal("the socket is open after Close")
	}
	if _, err := fc.WriteToAddrPort([]byte{0, 1}, addrOf(peer)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	_ = fc.Close()
}

// rxQueue returns the bytes queued on the loopback UDP socket of port.
func rxQueue(t *testing.T, port uint16) int {
	t.Helper()
	s, err := udpstat.Find(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port))
	if err != nil {
		t.Fatal(err)
	}
	return int(s.RxQueue)
}

// TestRTPPollerHostile: what the poller reads is checked as the reader
// goroutine's was: a datagram too short for RTP, one larger than the
// relay's buffer (it would arrive cut), and an empty one are dropped as
// malformed and counted; a good packet after them is relayed.
func TestRTPPollerHostile(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	a := newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	big := mustMarshal(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, SSRC: 1}, Payload: make([]byte, pollDatagramMax)})
	for _, d := range [][]byte{{0x80, 0}, big, {}} {
		if _, err := a.Conn.WriteToUDPAddrPort(d, b.RTPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three malformed datagrams counted", func() bool { return b.Stats().RTP.Dropped.Malformed == 3 })
	a.SendPacket(b.RTPAddr(), latchPacket(0, 2))
	waitFor(t, "the good packet", func() bool { return b.Stats().RTP.PacketsIn == 1 })
	if st := b.Stats().RTP; st.PacketsIn != 1 || st.Dropped.Malformed != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRTPPollerCoalesce: after a round that read few datagrams the poller
// pauses for Options.Coalesce, exactly, before it reads again, and the
// datagrams that came during the pause are read together in the next
// wake-up; with a negative Coalesce it never pauses.
func TestRTPPollerCoalesce(t *testing.T) {
	checkGoroutines(t)
	const bound = 700 * time.Microsecond
	type pause struct {
		d                  time.Duration
		wakeups, datagrams uint64
	}
	pauses, release, done := make(chan pause), make(chan struct{}), make(chan struct{})
	e := newTestEngine(t, Options{Coalesce: bound})
	if e.opts.Coalesce != bound {
		t.Fatalf("coalesce %v, want %v", e.opts.Coalesce, bound)
	}
	// It reports each pause and holds the poller in it until the test
	// lets it go.
	var p *rtpPoller
	p = restartPoller(t, e, func(d time.Duration) {
		select {
		case pauses <- pause{d, p.wakeups.Load(), p.datagrams.Load()}:
			select {
			case <-release:
			case <-done:
			}
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) })

	b := newTestBridge(t, e)
	a := newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	a.SendPacket(b.RTPAddr(), latchPacket(0, 0))
	var first pause
	select {
	case first = <-pauses:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller did not pause after a round of one datagram")
	}
	if first.d != bound || first.wakeups != 1 || first.datagrams != 1 {
		t.Fatalf("first pause %+v, want %v after 1 wake-up and 1 datagram", first, bound)
	}
	// Sent while the poller sleeps: queued on the socket.
	const during = 5
	for i := range during {
		a.SendPacket(b.RTPAddr(), latchPacket(0, uint16(1+i)))
	}
	waitFor(t, "the datagrams queued on the socket", func() bool { return rxQueue(t, b.RTPAddr().Port()) > 0 })
	release <- struct{}{}
	var second pause
	select {
	case second = <-pauses:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller did not pause again")
	}
	if second.wakeups != 2 || second.datagrams < 3 {
		t.Fatalf("second pause %+v: the wake-up after the pause read %d datagrams, want several", second, second.datagrams-first.datagrams)
	}
	go func() { // the rest, if a datagram came late
		for {
			select {
			case <-pauses:
				release <- struct{}{}
			case <-done:
				return
			}
		}
	}()
	release <- struct{}{}
	waitFor(t, "every packet relayed", func() bool { return b.Stats().RTP.PacketsIn == 1+during })
	if st := e.Stats().Batch; st.Pauses < 2 {
		t.Fatalf("batch stats %+v: pauses not counted", st)
	}

	// Negative: no pause, each datagram is read as it comes.
	e2 := newTestEngine(t, Options{Coalesce: -1})
	b2 := newTestBridge(t, e2)
	negotiateRTPOnly(b2, addrOf(a))
	for i := range 3 {
		a.SendPacket(b2.RTPAddr(), latchPacket(0, uint16(i)))
		waitFor(t, "the packet relayed", func() bool { return b2.Stats().RTP.PacketsIn == uint64(i+1) })
	}
	if st := e2.Stats().Batch; st.Pauses != 0 || st.Wakeups < 3 {
		t.Fatalf("coalesce off: %+v", st)
	}
}

// restartPoller replaces the engine's poller with one whose pauses call
// pause, and returns it.
func restartPoller(t *testing.T, e *Engine, pause func(time.Duration)) *rtpPoller {
	t.Helper()
	_ = e.poller.Close()
	p, err := startRTPPoller(e.log, e.clock, e.fast, e.opts.Coalesce, pause)
	if err != nil {
		t.Fatal(err)
	}
	e.poller = p
	return p
}

// TestCoalesceCap: Options.Coalesce above MaxCoalesce is refused; at it,
// taken.
func TestCoalesceCap(t *testing.T) {
	if _, err := (Options{Coalesce: MaxCoalesce + 1}).withDefaults(); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("coalesce above the cap: %v", err)
	}
	for in, want := range map[time.Duration]time.Duration{MaxCoalesce: MaxCoalesce, 0: DefaultCoalesce, -1: -1} {
		if o, err := (Options{Coalesce: in}).withDefaults(); err != nil || o.Coalesce != want {
			t.Fatalf("coalesce %v: %v, %v", in, o.Coalesce, err)
		}
	}
}

// TestICEReaderCoalesce: after a batch of few datagrams the ICE socket's
// read loop pauses for Options.Coalesce before its next read, and the
// datagrams that came during the pause come in one recvmmsg.
func TestICEReaderCoalesce(t *testing.T) {
	checkGoroutines(t)
	const bound = 700 * time.Microsecond
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fc := newFastConn(c, testLogger(), newKeyTable(time.Now), newFake(), true, bound)
	defer func() { _ = fc.Close() }()
	pauses, release, done := make(chan time.Duration), make(chan struct{}), make(chan struct{})
	defer close(done)
	fc.pause = func(d time.Duration) {
		select {
		case pauses <- d:
			select {
			case <-release:
			case <-done:
			}
		case <-done:
		}
	}
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	peer := newTestPhone(t)
	send := func(i int) {
		if _, err := peer.Conn.WriteToUDPAddrPort([]byte{0, 1, byte(i)}, to); err != nil {
			t.Error(err)
		}
	}
	const during = 5
	got := make(chan []byte, 1+during)
	go func() {
		buf := make([]byte, 1500)
		for range 1 + during {
			n, _, err := fc.ReadFromAddrPort(buf)
			if err != nil {
				close(got)
				return
			}
			got <- bytes.Clone(buf[:n])
		}
	}()
	send(0)
	if b := <-got; !bytes.Equal(b, []byte{0, 1, 0}) {
		t.Fatalf("first datagram %x", b)
	}
	select {
	case d := <-pauses:
		if d != bound {
			t.Fatalf("paused %v, want %v", d, bound)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read loop did not pause after a batch of one datagram")
	}
	calls := fc.rd.calls.Load()
	for i := range during {
		send(1 + i)
	}
	waitFor(t, "the datagrams queued on the socket", func() bool { return rxQueue(t, to.Port()) > 0 })
	release <- struct{}{}
	for i := range during {
		var b []byte
		select {
		case b = <-got:
		case <-pauses: // a datagram that came late: its own batch
			release <- struct{}{}
			b = <-got
		case <-time.After(10 * time.Second):
			t.Fatalf("datagram %d not read", 1+i)
		}
		if !bytes.Equal(b, []byte{0, 1, byte(1 + i)}) {
			t.Fatalf("datagram %d: %x", 1+i, b)
		}
	}
	if n := fc.rd.calls.Load() - calls; n > 2 {
		t.Fatalf("the %d datagrams sent during the pause took %d recvmmsg", during, n)
	}
	if fc.pauses.Load() == 0 {
		t.Fatal("pauses not counted")
	}
}

// TestPauseTimer: the coalescing pause's timerfd returns after at least
// its duration, also when it expires before the goroutine parks (1 µs;
// set before the wait, that expiry would be lost and the sleep never
// end), and at once for no duration or once closed.
func TestPauseTimer(t *testing.T) {
	checkGoroutines(t)
	pt, err := newPauseTimer()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range []time.Duration{time.Microsecond, 200 * time.Microsecond} {
			for range 200 {
				start := time.Now()
				pt.sleep(d)
				if el := time.Since(start); el < d {
					t.Errorf("sleep(%v) returned after %v", d, el)
					return
				}
			}
		}
		pt.sleep(0)
		pt.sleep(-time.Second)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a pause did not end")
	}
	pt.close()
	ended := make(chan struct{})
	go func() {
		pt.sleep(time.Hour)
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("a pause of the closed timer did not return at once")
	}
}

// TestPollerServesBothDirections: with the fast path the engine's poller
// reads the shared ICE socket too, so one wake-up and one pause serve both
// directions: the browser's audio that comes while the poller pauses
// waits on the socket (no other loop reads it), and the round after the
// pause relays it with the phone's. pion's datagrams (STUN, DTLS) reach
// pion through the poller's queue, and pion's read loop makes no pause of
// its own.
func TestPollerServesBothDirections(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{Coalesce: 700 * time.Microsecond})
	var hold atomic.Bool
	paused, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(done) })
	// Held in its pause on the test's word.
	p := restartPoller(t, e, func(time.Duration) {
		if !hold.Load() {
			return
		}
		select {
		case paused <- struct{}{}:
			select {
			case <-release:
			case <-done:
			}
		case <-done:
		}
	})
	b, br, phone := fastCall(t, e, true)
	if st := e.Stats().Batch; st.PionQueued == 0 || st.ICEPauses != 0 || st.ICEDatagrams == 0 {
		t.Fatalf("batch stats %+v: pion's datagrams not through the poller", st)
	}
	waitPause := func() {
		t.Helper()
		select {
		case <-paused:
		case <-time.After(10 * time.Second):
			t.Fatal("the poller did not pause")
		}
	}
	gw := b.RTPAddr()
	phoneSends := func(seq uint16, body byte) {
		phone.SendPacket(gw, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x2222}, Payload: payload(body, 160)})
	}
	hold.Store(true)
	phoneSends(500, 0x10)
	waitPause()
	wakeups, fast := p.wakeups.Load(), e.Stats().FastPath
	br.send(0, 9000, 90000, payload(0x33, 160))
	phoneSends(501, 0x44)
	waitFor(t, "the browser's packet relayed or waiting on the ice socket", func() bool {
		return e.Stats().FastPath.PacketsIn != fast.PacketsIn || rxQueue(t, e.ICEAddr().Port()) > 0
	})
	if in := e.Stats().FastPath.PacketsIn; in != fast.PacketsIn {
		t.Fatalf("the browser's packet was relayed while the poller paused (%d → %d): another loop reads the ice socket", fast.PacketsIn, in)
	}
	release <- struct{}{}
	waitPause() // after the round that followed the pause
	st := e.Stats().FastPath
	if w := p.wakeups.Load(); w != wakeups+1 || st.PacketsIn < fast.PacketsIn+1 || st.PacketsOut < fast.PacketsOut+1 {
		t.Fatalf("after the pause: %d wake-ups, %d and %d packets from and to the browser, want 1 wake-up for both", w-wakeups, st.PacketsIn-fast.PacketsIn, st.PacketsOut-fast.PacketsOut)
	}
	hold.Store(false)
	release <- struct{}{}
	for !bytes.Equal(phone.recv().Payload, payload(0x33, 160)) {
	}
	for !bytes.Equal(br.recv().Payload, payload(0x44, 160)) {
	}
}

// TestPionQueueCap: when pion's read loop does not keep up, its queue
// fills to pionQueueLen and the poller leaves the rest on the ICE socket;
// once the read loop has taken half, the poller reads on: every datagram
// reaches the read loop, in order, none dropped.
func TestPionQueueCap(t *testing.T) {
	checkGoroutines(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(1 << 20)
	fc := newFastConn(c, testLogger(), newKeyTable(time.Now), newFake(), true, -1)
	defer func() { _ = fc.Close() }()
	p, err := newRTPPoller(testLogger(), newFake(), fc, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if fc.q == nil || fc.waits != nil {
		t.Fatal("the poller did not take the ice socket")
	}
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	peer := newTestPhone(t)
	const sent = pionQueueLen + 3*iceReadSlots
	for i := range sent {
		// STUN-like first bytes: pion's.
		if _, err := peer.Conn.WriteToUDPAddrPort([]byte{0, 1, byte(i >> 8), byte(i)}, to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the queue full and the rest left on the socket", func() bool {
		holds, _ := fc.q.counts()
		return holds > 0 && rxQueue(t, to.Port()) > 0
	})
	fc.q.mu.Lock()
	queued := fc.q.n
	fc.q.mu.Unlock()
	if queued > pionQueueLen || queued <= pionQueueLen-iceReadSlots {
		t.Fatalf("%d datagrams queued when held, want between %d and %d", queued, pionQueueLen-iceReadSlots+1, pionQueueLen)
	}
	buf := make([]byte, 1500)
	for i := range sent {
		n, src, err := fc.ReadFromAddrPort(buf)
		if err != nil || src != addrOf(peer) || !bytes.Equal(buf[:n], []byte{0, 1, byte(i >> 8), byte(i)}) {
			t.Fatalf("datagram %d: %x from %v, %v", i, buf[:n], src, err)
		}
	}
	if holds, q := fc.q.counts(); holds == 0 || q != sent {
		t.Fatalf("%d holds, %d queued, want some and %d", holds, q, sent)
	}
	if n := rxQueue(t, to.Port()); n != 0 {
		t.Fatalf("%d bytes left on the socket", n)
	}
}
