//go:build linux

package mmsg

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/internal/udpstat"
	"github.com/switchboard/switchboard/internal/waitfor"
	"golang.org/x/sys/unix"
)

// families are the loopback addresses the tests run on, one a family.
var families = []struct {
	name string
	lo   netip.Addr
}{
	{"ipv4", netip.MustParseAddr("127.0.0.1")},
	{"ipv6", netip.MustParseAddr("::1")},
}

// eachFamily runs test once on each family's loopback address.
func eachFamily(t *testing.T, test func(t *testing.T, lo netip.Addr)) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { test(t, f.lo) })
	}
}

// readFrom reads one datagram from c, with a deadline.
func readFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n], from
}

// listen opens a UDP socket on lo and returns it with its descriptor,
// which stays open as long as the socket.
func listen(t testing.TB, lo netip.Addr) (*net.UDPConn, uintptr) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, fd(t, c)
}

func fd(t testing.TB, c *net.UDPConn) uintptr {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var d uintptr
	if err := rc.Control(func(f uintptr) { d = f }); err != nil {
		t.Fatal(err)
	}
	return d
}

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func newBatch(t testing.TB, cfg Config) *Batch {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rxQueue is the bytes in the receive queue of the socket at a: the
// kernel may queue loopback datagrams after the send returns, and a test
// that counts what one receive takes waits until they are all there.
func rxQueue(t testing.TB, a netip.AddrPort) int {
	t.Helper()
	s, err := udpstat.Find(a)
	if err != nil {
		t.Fatal(err)
	}
	return int(s.RxQueue)
}

// sendAll sends n datagrams of 3 bytes (i, 1, 2) from tx to rx, one a
// system call, and waits until rx's queue holds them all.
func sendAll(t *testing.T, tx, rx *net.UDPConn, n int) {
	t.Helper()
	to := addr(rx)
	send := func(i int) {
		t.Helper()
		if _, err := tx.WriteToUDPAddrPort([]byte{byte(i), 1, 2}, to); err != nil {
			t.Fatal(err)
		}
	}
	base := rxQueue(t, to)
	send(0)
	var one int
	waitfor.Until(t, "the first datagram queued", 10*time.Second, func() bool { one = rxQueue(t, to) - base; return one > 0 })
	for i := 1; i < n; i++ {
		send(i)
	}
	waitfor.Until(t, "the datagrams queued", 10*time.Second, func() bool { return rxQueue(t, to)-base == n*one })
}

// TestRecvCaps: one receive takes at most Cap datagrams, in order, with
// their sources; the rest stay for the next; an empty socket says
// EAGAIN; a datagram larger than a slot comes cut and flagged.
func TestRecvCaps(t *testing.T) {
	eachFamily(t, func(t *testing.T, lo netip.Addr) {
		rx, rxfd := listen(t, lo)
		tx, _ := listen(t, lo)
		const slots = 4
		b := newBatch(t, Config{Slots: slots, Size: 8, IPv6: lo.Is6()})
		sendAll(t, tx, rx, 2*slots+3)
		next := 0
		for _, want := range []int{slots, slots, 3} {
			n, err := b.Recv(rxfd)
			if err != nil || n != want || b.Len() != n {
				t.Fatalf("Recv: %d datagrams (Len %d), %v; want %d", n, b.Len(), err, want)
			}
			for i := range n {
				d := b.Datagram(i)
				if d.Truncated || d.Src != addr(tx) || !bytes.Equal(d.B, []byte{byte(next), 1, 2}) || d.Dst.IsValid() || d.At != 0 {
					t.Fatalf("datagram %d: %+v, want (%d 1 2) from %v", next, d, next, addr(tx))
				}
				next++
			}
		}
		if n, err := b.Recv(rxfd); !errors.Is(err, unix.EAGAIN) || n != 0 || b.Len() != 0 {
			t.Fatalf("Recv on an empty socket: %d, %v (Len %d)", n, err, b.Len())
		}

		big := bytes.Repeat([]byte{7}, 100)
		if _, err := tx.WriteToUDPAddrPort(big, addr(rx)); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.WriteToUDPAddrPort([]byte{9}, addr(rx)); err != nil {
			t.Fatal(err)
		}
		var got []Datagram
		waitfor.Until(t, "the large datagram and the small one", 10*time.Second, func() bool {
			n, err := b.Recv(rxfd)
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				t.Fatal(err)
			}
			for i := range n {
				d := b.Datagram(i)
				d.B = bytes.Clone(d.B)
				got = append(got, d)
			}
			return len(got) >= 2
		})
		if len(got) != 2 || !got[0].Truncated || !bytes.Equal(got[0].B, big[:8]) || got[1].Truncated || !bytes.Equal(got[1].B, []byte{9}) {
			t.Fatalf("100 bytes then 1 into slots of 8: %+v", got)
		}
	})
}

// TestSendQueue: datagrams written in place and ones in the caller's
// memory go out in order, as one sendmmsg when they fit; the queue's caps
// hold (full, too large, another family, a source without control
// buffers), and what they refuse is not queued.
func TestSendQueue(t *testing.T) {
	eachFamily(t, func(t *testing.T, lo netip.Addr) {
		rx, _ := listen(t, lo)
		tx, txfd := listen(t, lo)
		b := newBatch(t, Config{Slots: 3, Size: 16, IPv6: lo.Is6()})
		other := netip.MustParseAddrPort("[::1]:9")
		if lo.Is6() {
			other = netip.MustParseAddrPort("127.0.0.1:9")
		}
		if err := b.Queue([]byte("x"), other, netip.Addr{}); !lo.Is6() && !errors.Is(err, ErrFamily) {
			t.Fatalf("an IPv6 destination on an IPv4 socket: %v", err)
		}
		b.Reset() // an IPv6 socket takes IPv4 peers, mapped
		if err := b.Queue(make([]byte, 17), addr(rx), netip.Addr{}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("17 bytes in slots of 16: %v", err)
		}
		if err := b.Queue([]byte("x"), addr(rx), lo); !errors.Is(err, ErrNoControl) {
			t.Fatalf("a source without control buffers: %v", err)
		}
		if err := b.Queue(b.Next()[:copy(b.Next(), "in place")], addr(rx), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		mine := []byte("caller's")
		if err := b.Queue(mine, addr(rx), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Queue(nil, addr(rx), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if b.Next() != nil || b.Len() != 3 {
			t.Fatalf("a full batch: Next %v, Len %d", b.Next(), b.Len())
		}
		if err := b.Queue([]byte("x"), addr(rx), netip.Addr{}); !errors.Is(err, ErrFull) {
			t.Fatalf("a fourth datagram in 3 slots: %v", err)
		}
		for i, want := range []string{"in place", "caller's", ""} {
			if p, dst := b.Queued(i); string(p) != want || dst != addr(rx) {
				t.Fatalf("Queued(%d): %q to %v, want %q to %v", i, p, dst, want, addr(rx))
			}
		}
		if n, err := b.Send(txfd, 0); n != 3 || err != nil {
			t.Fatalf("Send: %d, %v", n, err)
		}
		if n, err := b.Send(txfd, 3); n != 0 || err != nil {
			t.Fatalf("Send past the queue: %d, %v", n, err)
		}
		for _, want := range []string{"in place", "caller's", ""} {
			if p, from := readFrom(t, rx); string(p) != want || from != addr(tx) {
				t.Fatalf("got %q from %v, want %q from %v", p, from, want, addr(tx))
			}
		}
		b.Reset()
		if b.Len() != 0 || b.Next() == nil {
			t.Fatal("Reset left the queue")
		}
	})
}

// TestSendRefused: a datagram the kernel refuses stops the batch there:
// Send says how many went before it, then its error from it, and the
// rest go after it.
func TestSendRefused(t *testing.T) {
	eachFamily(t, func(t *testing.T, lo netip.Addr) {
		rx, _ := listen(t, lo)
		_, txfd := listen(t, lo)
		b := newBatch(t, Config{Slots: 4, Size: 4, IPv6: lo.Is6()})
		for i, to := range []netip.AddrPort{addr(rx), addr(rx), netip.AddrPortFrom(lo, 0), addr(rx)} {
			if err := b.Queue([]byte{byte(i)}, to, netip.Addr{}); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := b.Send(txfd, 0); n != 2 || err != nil {
			t.Fatalf("Send: %d, %v; want the 2 before port 0", n, err)
		}
		if n, err := b.Send(txfd, 2); n != 0 || !errors.Is(err, unix.EINVAL) {
			t.Fatalf("Send from port 0's: %d, %v; want EINVAL", n, err)
		}
		if n, err := b.Send(txfd, 3); n != 1 || err != nil {
			t.Fatalf("Send after it: %d, %v", n, err)
		}
		for _, want := range []byte{0, 1, 3} {
			if p, _ := readFrom(t, rx); len(p) != 1 || p[0] != want {
				t.Fatalf("got %x, want %d", p, want)
			}
		}
	})
}

// listenOnLo opens a socket on the wildcard address of family lo that
// takes only what comes over the loopback device, with destination
// addresses and receive times asked for.
func listenOnLo(t testing.TB, lo netip.Addr) (*net.UDPConn, syscall.RawConn) {
	t.Helper()
	network, wild := "udp4", netip.IPv4Unspecified()
	if lo.Is6() {
		network, wild = "udp6", netip.IPv6Unspecified()
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			pktinfo := func() error { return unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) }
			if lo.Is6() {
				pktinfo = func() error { return unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) }
			}
			serr = errors.Join(
				unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"),
				pktinfo(),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1))
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(t.Context(), network, netip.AddrPortFrom(wild, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	c := pc.(*net.UDPConn)
	t.Cleanup(func() { _ = c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// TestControl: through the RawConn, datagrams sent each from its own
// source address (IP_PKTINFO, IPV6_PKTINFO) come from it, and those
// received tell the address they were sent to and the kernel's receive
// time.
func TestControl(t *testing.T) {
	eachFamily(t, func(t *testing.T, lo netip.Addr) {
		c, rc := listenOnLo(t, lo)
		port := addr(c).Port()
		peer, _ := listen(t, lo)
		srcs := []netip.Addr{lo}
		if lo.Is4() {
			srcs = append(srcs, netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.3.2.1"))
		}
		out := newBatch(t, Config{Slots: 4, Size: 64, IPv6: lo.Is6(), Control: true})
		for _, s := range srcs {
			if err := out.Queue([]byte(s.String()), addr(peer), s); err != nil {
				t.Fatal(err)
			}
		}
		// one without a source goes from the socket's choice
		if err := out.Queue([]byte("-"), addr(peer), netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if n, err := out.SendConn(rc, 0); n != len(srcs)+1 || err != nil {
			t.Fatalf("SendConn: %d, %v", n, err)
		}
		for range len(srcs) + 1 {
			p, from := readFrom(t, peer)
			want := netip.AddrPortFrom(lo, port)
			if s, err := netip.ParseAddr(string(p)); err == nil {
				want = netip.AddrPortFrom(s, port)
			}
			if from != want {
				t.Errorf("datagram %q came from %v, want %v", p, from, want)
			}
		}

		in := newBatch(t, Config{Slots: 4, Size: 64, IPv6: lo.Is6(), Control: true})
		before := time.Now().UnixNano()
		for _, d := range srcs {
			if _, err := peer.WriteToUDPAddrPort([]byte(d.String()), netip.AddrPortFrom(d, port)); err != nil {
				t.Fatal(err)
			}
		}
		for got := 0; got < len(srcs); {
			n, err := in.RecvConn(rc)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				d := in.Datagram(i)
				if d.Dst.String() != string(d.B) || d.Src != addr(peer) || d.Truncated {
					t.Errorf("datagram %q: for %v from %v, want for %s from %v", d.B, d.Dst, d.Src, d.B, addr(peer))
				}
				if d.At < before || d.At > time.Now().UnixNano() {
					t.Errorf("datagram %q: received at %d, sent after %d", d.B, d.At, before)
				}
			}
			got += n
		}

		// a source of the other family is refused, not sent from the socket's
		other := netip.MustParseAddr("::1")
		if lo.Is6() {
			other = netip.Addr{}
		}
		out.Reset()
		if err := out.Queue([]byte("x"), addr(peer), other); other.IsValid() && !errors.Is(err, ErrFamily) {
			t.Fatalf("an IPv6 source on an IPv4 socket: %v", err)
		}

		_ = c.Close()
		if _, err := in.RecvConn(rc); err == nil {
			t.Fatal("RecvConn on a closed socket")
		}
		if _, err := out.SendConn(rc, 0); err == nil {
			t.Fatal("SendConn on a closed socket")
		}
	})
}

// TestRecvConnWaits: RecvConn parks in Go's poller until a datagram
// comes, and returns when the socket closes.
func TestRecvConnWaits(t *testing.T) {
	eachFamily(t, func(t *testing.T, lo netip.Addr) {
		rx, _ := listen(t, lo)
		tx, _ := listen(t, lo)
		rc, err := rx.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		b := newBatch(t, Config{Slots: 2, Size: 4, IPv6: lo.Is6()})
		type res struct {
			n   int
			err error
		}
		// each receive is asked for, so that the test reads the
		// batch between two
		ask, got := make(chan struct{}), make(chan res)
		go func() {
			for range ask {
				n, err := b.RecvConn(rc)
				got <- res{n, err}
			}
		}()
		defer close(ask)
		ask <- struct{}{}
		if _, err := tx.WriteToUDPAddrPort([]byte{5}, addr(rx)); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.n != 1 || r.err != nil || b.Datagram(0).B[0] != 5 {
			t.Fatalf("RecvConn: %d, %v", r.n, r.err)
		}
		ask <- struct{}{}
		_ = rx.Close()
		if r := <-got; r.err == nil {
			t.Fatalf("RecvConn after close: %d, %v", r.n, r.err)
		}
	})
}

// TestNewCaps: a batch out of its caps is refused.
func TestNewCaps(t *testing.T) {
	for _, c := range []Config{
		{Slots: 0, Size: 1},
		{Slots: MaxSlots + 1, Size: 1},
		{Slots: 1, Size: 0},
		{Slots: 1, Size: MaxSize + 1},
		{Slots: -1, Size: -1},
	} {
		if b, err := New(c); err == nil || b != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	b := newBatch(t, Config{Slots: MaxSlots, Size: 1})
	if b.Cap() != MaxSlots {
		t.Fatalf("Cap %d", b.Cap())
	}
}

// TestParseControlHostile: control messages that lie about their length
// are passed over, not read past.
func TestParseControlHostile(t *testing.T) {
	good := make([]byte, controlSize)
	// a received IP_PKTINFO: the header's destination is ipi_addr
	l, _ := putSource(good, netip.MustParseAddr("127.0.0.1"), false)
	(*unix.Inet4Pktinfo)(unsafe.Pointer(&good[unix.CmsgLen(0)])).Addr = [4]byte{127, 0, 0, 9}
	if dst, _ := parseControl(good[:l]); dst != netip.MustParseAddr("127.0.0.9") {
		t.Fatalf("a good IP_PKTINFO: %v", dst)
	}
	for name, mangle := range map[string]func(b []byte) []byte{
		"length past the end":   func(b []byte) []byte { (*unix.Cmsghdr)(ptr(b)).Len = 1 << 20; return b },
		"length below a header": func(b []byte) []byte { (*unix.Cmsghdr)(ptr(b)).Len = 3; return b },
		"data cut":              func(b []byte) []byte { (*unix.Cmsghdr)(ptr(b)).SetLen(unix.CmsgLen(4)); return b },
		"header cut":            func(b []byte) []byte { return b[:unix.SizeofCmsghdr-1] },
		"empty":                 func([]byte) []byte { return nil },
	} {
		b := mangle(bytes.Clone(good[:l]))
		if dst, at := parseControl(b); dst.IsValid() || at != 0 {
			t.Errorf("%s: %v, %d", name, dst, at)
		}
	}
	if got := AppendSource(nil, netip.MustParseAddr("::1"), false); len(got) != 0 {
		t.Errorf("an IPv6 source for an IPv4 socket: %x", got)
	}
}

// TestNoAllocs: queueing, sending, receiving and reading a batch
// allocate nothing, on either kind of descriptor.
func TestNoAllocs(t *testing.T) {
	rx, rxfd := listen(t, families[0].lo)
	tx, txfd := listen(t, families[0].lo)
	rrc, _ := rx.SyscallConn()
	trc, _ := tx.SyscallConn()
	out := newBatch(t, Config{Slots: 8, Size: 64})
	in := newBatch(t, Config{Slots: 8, Size: 64, Control: true})
	to := addr(rx)
	round := func(raw bool) {
		out.Reset()
		for out.Next() != nil {
			p := out.Next()[:32]
			if err := out.Queue(p, to, netip.Addr{}); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if raw {
			_, err = out.Send(txfd, 0)
		} else {
			_, err = out.SendConn(trc, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		for got := 0; got < out.Len(); {
			var n int
			if raw {
				n, err = in.Recv(rxfd)
				if errors.Is(err, unix.EAGAIN) {
					continue
				}
			} else {
				n, err = in.RecvConn(rrc)
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if d := in.Datagram(i); len(d.B) != 32 {
					t.Fatalf("datagram of %d bytes", len(d.B))
				}
			}
			got += n
		}
	}
	for _, raw := range []bool{true, false} {
		if a := testing.AllocsPerRun(50, func() { round(raw) }); a != 0 {
			t.Errorf("raw %v: %v allocations a batch", raw, a)
		}
	}
	var sa Sockaddr
	if a := testing.AllocsPerRun(50, func() {
		if _, err := SendTo(txfd, []byte{1}, to, false, &sa); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("SendTo: %v allocations", a)
	}
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// BenchmarkBatch: a batch of 16 RTP-sized datagrams queued, sent with
// one sendmmsg and read with recvmmsg on loopback, per op; -benchmem
// shows nothing allocated.
func BenchmarkBatch(b *testing.B) {
	for _, f := range families {
		lo := f.lo
		b.Run(f.name, func(b *testing.B) {
			rx, rxfd := listen(b, lo)
			_, txfd := listen(b, lo)
			out := newBatch(b, Config{Slots: 16, Size: 1500, IPv6: lo.Is6()})
			in := newBatch(b, Config{Slots: 16, Size: 1500, IPv6: lo.Is6()})
			to := addr(rx)
			b.ReportAllocs()
			b.SetBytes(16 * 172)
			for b.Loop() {
				out.Reset()
				for out.Next() != nil {
					if err := out.Queue(out.Next()[:172], to, netip.Addr{}); err != nil {
						b.Fatal(err)
					}
				}
				if n, err := out.Send(txfd, 0); n != out.Len() || err != nil {
					b.Fatalf("Send: %d, %v", n, err)
				}
				for got := 0; got < out.Len(); {
					n, err := in.Recv(rxfd)
					if err != nil && !errors.Is(err, unix.EAGAIN) {
						b.Fatal(err)
					}
					for i := range n {
						_ = in.Datagram(i)
					}
					got += n
				}
			}
		})
	}
}

// TestSendWouldBlock: when the socket's send buffer is full, Send takes
// what fits and then says EAGAIN for the rest, which stays queued;
// SendConn waits in Go's poller until the buffer drains and sends it. The
// buffer is kept full by a slow queue (tbf) on loopback, in a network
// namespace of the test's own.
func TestSendWouldBlock(t *testing.T) {
	netns.Run(t, netns.Options{}, func(t *testing.T) {
		tc, err := exec.LookPath("tc")
		if err != nil {
			t.Fatalf("tc not found (Debian package iproute2; scripts/deps.sh installs it): %v", err)
		}
		// 1 Mbit/s: 64 datagrams of 1,000 bytes drain in about half a
		// second, while a 4 KiB send buffer holds two or three.
		if out, err := exec.Command(tc, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "1mb").CombinedOutput(); err != nil {
			t.Fatalf("tc: %v: %s", err, out)
		}
		eachFamily(t, func(t *testing.T, lo netip.Addr) {
			rx, _ := listen(t, lo)
			tx, txfd := listen(t, lo)
			if err := tx.SetWriteBuffer(4096); err != nil {
				t.Fatal(err)
			}
			b := newBatch(t, Config{Slots: 64, Size: 1000, IPv6: lo.Is6()})
			for i := range b.Cap() {
				p := b.Next()
				p[0] = byte(i)
				if err := b.Queue(p, addr(rx), netip.Addr{}); err != nil {
					t.Fatal(err)
				}
			}
			sent, err := b.Send(txfd, 0)
			if err != nil || sent == 0 || sent >= b.Cap() {
				t.Fatalf("Send into a 4 KiB buffer: %d of %d, %v; want some, not all", sent, b.Cap(), err)
			}
			if n, err := b.Send(txfd, sent); n != 0 || !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("Send into a full buffer: %d, %v; want EAGAIN", n, err)
			}
			rc, err := tx.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			for sent < b.Cap() {
				n, err := b.SendConn(rc, sent)
				if err != nil || n == 0 {
					t.Fatalf("SendConn from %d: %d, %v", sent, n, err)
				}
				sent += n
			}
			for i := range b.Cap() {
				if p, _ := readFrom(t, rx); len(p) != 1000 || p[0] != byte(i) {
					t.Fatalf("datagram %d: %d bytes, first %d", i, len(p), p[0])
				}
			}
		})
	})
}
