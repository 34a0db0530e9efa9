package siptcp_test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// accepted checks that the transport serves p: its request reaches rec,
// and is returned.
func accepted(t *testing.T, p *transporttest.TCPPeer, rec *transporttest.Recorder, callID string) *sip.Request {
	t.Helper()
	p.Write(options(callID, "TCP"))
	m := rec.Message(t)
	if m.Header().CallID() != callID {
		t.Fatalf("got %s, want %s", m.Header().CallID(), callID)
	}
	return m.(*sip.Request)
}

func checkStats(t *testing.T, tr *siptcp.Transport, want siptcp.Stats) {
	t.Helper()
	if got := tr.Stats(); got != want {
		t.Errorf("Stats =\n  %+v, want\n  %+v", got, want)
	}
}

func TestCapPerAddress(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{MaxConnsPerIP: 2})
	rec := transporttest.Record(t, tr)
	one := netip.MustParseAddr("127.0.0.1")
	a := transporttest.DialTCPFrom(t, one, tr.LocalAddr())
	accepted(t, a, rec, "a")
	accepted(t, transporttest.DialTCPFrom(t, one, tr.LocalAddr()), rec, "b")
	transporttest.DialTCPFrom(t, one, tr.LocalAddr()).EOF() // a third from 127.0.0.1
	// Another address has its own share.
	accepted(t, transporttest.DialTCPFrom(t, netip.MustParseAddr("127.0.0.2"), tr.LocalAddr()), rec, "c")
	checkStats(t, tr, siptcp.Stats{Open: 3, Unregistered: 3, Accepted: 3, RefusedPerIP: 1})
	// Closing one makes room.
	a.Conn.Close()
	rec.FlowClosed(t)
	accepted(t, transporttest.DialTCPFrom(t, one, tr.LocalAddr()), rec, "d")
}

// TestCapPerSlash64 runs in a network namespace where the prefixes
// 2001:db8:1::/64 and 2001:db8:2::/64 are local, so that it can connect
// from many addresses of each.
func TestCapPerSlash64(t *testing.T) {
	netns.Run(t, netns.Options{LocalRoutes: []string{"2001:db8:1::/64", "2001:db8:2::/64"}}, func(t *testing.T) {
		leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
		tr := listen(t, "[::1]:0", siptcp.Options{MaxConnsPerIP: 3})
		rec := transporttest.Record(t, tr)
		for i, src := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1:0:8000::3"} {
			accepted(t, transporttest.DialTCPFrom(t, netip.MustParseAddr(src), tr.LocalAddr()), rec, "in"+string(rune('0'+i)))
		}
		// Other addresses of the same /64 are refused...
		for _, src := range []string{"2001:db8:1::4", "2001:db8:1:0:ffff:ffff:ffff:fffe"} {
			transporttest.DialTCPFrom(t, netip.MustParseAddr(src), tr.LocalAddr()).EOF()
		}
		// ...and those of the next /64 are not.
		accepted(t, transporttest.DialTCPFrom(t, netip.MustParseAddr("2001:db8:2::1"), tr.LocalAddr()), rec, "other")
		checkStats(t, tr, siptcp.Stats{Open: 4, Unregistered: 4, Accepted: 4, RefusedPerIP: 2})
	})
}

func TestEvictOldestUnregistered(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{MaxConns: 3})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Record(t, l)
	to := tr.LocalAddr()
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}) }

	// reg registers (the gateway says so through the Layer); a and b are
	// strangers, a the older.
	reg := transporttest.DialTCPFrom(t, src(1), to)
	regFlow := accepted(t, reg, rec, "reg").Source
	l.MarkRegistered(regFlow, true)
	a := transporttest.DialTCPFrom(t, src(2), to)
	aFlow := accepted(t, a, rec, "a").Source
	b := transporttest.DialTCPFrom(t, src(3), to)
	bFlow := accepted(t, b, rec, "b").Source
	checkStats(t, tr, siptcp.Stats{Open: 3, Registered: 1, Unregistered: 2, Accepted: 3})

	// At the cap, a newcomer takes the place of the oldest stranger.
	c := transporttest.DialTCPFrom(t, src(4), to)
	cFlow := accepted(t, c, rec, "c").Source
	a.EOF()
	if got := rec.FlowClosed(t); got != aFlow {
		t.Errorf("flow closed %v, want a's %v", got, aFlow)
	}
	checkStats(t, tr, siptcp.Stats{Open: 3, Registered: 1, Unregistered: 2, Accepted: 4, Evicted: 1})

	// The registered connection still carries messages both ways.
	accepted(t, reg, rec, "reg2")
	m, _ := sip.ParseMessage([]byte(options("to-reg", "TCP")))
	if err := l.Send(context.Background(), m, regFlow); err != nil {
		t.Fatalf("send over the registered flow: %v", err)
	}
	if got := reg.Request().Header().CallID(); got != "to-reg" {
		t.Errorf("registered client got %s", got)
	}

	// With b and c registered too, nothing can be evicted: refused.
	l.MarkRegistered(bFlow, true)
	l.MarkRegistered(cFlow, true)
	checkStats(t, tr, siptcp.Stats{Open: 3, Registered: 3, Accepted: 4, Evicted: 1})
	transporttest.DialTCPFrom(t, src(5), to).EOF()
	checkStats(t, tr, siptcp.Stats{Open: 3, Registered: 3, Accepted: 4, Evicted: 1, RefusedTotal: 1})

	// A registration that ends makes its connection a stranger again: the
	// first to go.
	l.MarkRegistered(regFlow, false)
	accepted(t, transporttest.DialTCPFrom(t, src(6), to), rec, "f")
	reg.EOF()
	if got := rec.FlowClosed(t); got != regFlow {
		t.Errorf("flow closed %v, want the unregistered one %v", got, regFlow)
	}
}

func TestDialEvictsAtCap(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", siptcp.Options{MaxConns: 1})
	rec := transporttest.Record(t, tr)
	stranger := transporttest.DialTCP(t, tr.LocalAddr())
	accepted(t, stranger, rec, "s")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, _ := sip.ParseMessage([]byte(options("out", "TCP")))
	dst := sip.Addr{Transport: sip.TCP, AddrPort: ln.Addr().(*net.TCPAddr).AddrPort()}
	if err := tr.Send(context.Background(), m, dst); err != nil {
		t.Fatalf("dial at the cap: %v", err)
	}
	stranger.EOF()
	rec.FlowClosed(t)
	checkStats(t, tr, siptcp.Stats{Open: 1, Accepted: 1, Evicted: 1})

	// The dialed connection is not a stranger: a newcomer cannot evict it,
	// and another dial fails.
	transporttest.DialTCP(t, tr.LocalAddr()).EOF()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	dst2 := sip.Addr{Transport: sip.TCP, AddrPort: other.Addr().(*net.TCPAddr).AddrPort()}
	if err := tr.Send(context.Background(), m, dst2); err == nil {
		t.Error("second dial at the cap succeeded")
	}
	checkStats(t, tr, siptcp.Stats{Open: 1, Accepted: 1, Evicted: 1, RefusedTotal: 1})
}

func TestIdleTimeouts(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const short, long = time.Minute, 10 * time.Minute
	tr := listen(t, "127.0.0.1:0", siptcp.Options{Clock: clk, UnregisteredIdleTimeout: short, IdleTimeout: long})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Record(t, l)
	closedIdle := func(want uint64) {
		t.Helper()
		// The sweep runs inside Advance: its count is final when Advance
		// returns.
		if got := tr.Stats().ClosedIdle; got != want {
			t.Fatalf("%d connections closed idle, want %d", got, want)
		}
	}

	stranger := transporttest.DialTCP(t, tr.LocalAddr())
	accepted(t, stranger, rec, "s")
	reg := transporttest.DialTCP(t, tr.LocalAddr())
	l.MarkRegistered(accepted(t, reg, rec, "r").Source, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, _ := sip.ParseMessage([]byte(options("out", "TCP")))
	if err := tr.Send(context.Background(), m, sip.Addr{Transport: sip.TCP, AddrPort: ln.Addr().(*net.TCPAddr).AddrPort()}); err != nil {
		t.Fatal(err)
	}
	dialed, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()

	// Traffic keeps the stranger: a keep-alive just before its timeout.
	clk.Advance(short - time.Second)
	closedIdle(0)
	stranger.Write("\r\n\r\n")
	if b, err := stranger.Read(2); err != nil || b != "\r\n" {
		t.Fatalf("keep-alive answer %q, %v", b, err)
	}
	clk.Advance(short - time.Second)
	closedIdle(0)
	// Silent for its timeout (and at most a quarter more), it is closed;
	// the registered and the dialed connections stay.
	clk.Advance(short/4 + time.Second)
	closedIdle(1)
	stranger.EOF()
	rec.FlowClosed(t)
	if n := tr.NumConns(); n != 2 {
		t.Errorf("%d connections open, want the registered and the dialed one", n)
	}
	// They go after the long timeout.
	clk.Advance(long)
	closedIdle(3)
	reg.EOF()
	dialed.SetReadDeadline(time.Now().Add(transporttest.Timeout))
	if _, err := bufio.NewReader(dialed).ReadString(0); err == nil {
		t.Error("dialed connection still open")
	}
}

func TestUnregisteredIdleAfterRegistration(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tr := listen(t, "127.0.0.1:0", siptcp.Options{Clock: clk, UnregisteredIdleTimeout: time.Minute})
	l := transporttest.NewLayer(transport.Config{}, tr)
	rec := transporttest.Record(t, l)
	p := transporttest.DialTCP(t, tr.LocalAddr())
	flow := accepted(t, p, rec, "r").Source
	l.MarkRegistered(flow, true)
	clk.Advance(5 * time.Minute)
	if got := tr.Stats().ClosedIdle; got != 0 {
		t.Fatalf("registered connection closed idle")
	}
	// Its registration ends: silent for 5 minutes already, it goes at the
	// next sweep.
	l.MarkRegistered(flow, false)
	clk.Advance(time.Minute / 4)
	if got := tr.Stats().ClosedIdle; got != 1 {
		t.Fatalf("%d closed idle, want 1", got)
	}
	p.EOF()
}
