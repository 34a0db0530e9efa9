package transport_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/transport"
)

// conn stands for a transport's connection.
type conn struct {
	name  string
	entry *transport.ConnEntry[*conn]
}

// table is a ConnTable with the steps a transport takes around it.
type table struct {
	t *testing.T
	*transport.ConnTable[*conn]
	flows uint64
}

func newTable(t *testing.T, limits transport.ConnLimits, clk clock.Clock) *table {
	return &table{t: t, ConnTable: transport.NewConnTable[*conn](limits, clk)}
}

// accept admits and adds a connection from ip; it returns the connection
// and the one evicted for it, or the error of Admit.
func (tb *table) accept(name, ip string) (c, victim *conn, err error) {
	peer := transport.PeerGroup(netip.MustParseAddr(ip))
	if victim, err = tb.Admit(peer); err != nil {
		return nil, victim, err
	}
	return tb.add(name, peer), victim, nil
}

// dial admits and adds a connection the transport dialed.
func (tb *table) dial(name string) (c, victim *conn, err error) {
	if victim, err = tb.AdmitDialed(); err != nil {
		return nil, victim, err
	}
	return tb.add(name, netip.Prefix{}), victim, nil
}

func (tb *table) add(name string, peer netip.Prefix) *conn {
	tb.flows++
	c := &conn{name: name}
	c.entry = tb.Add(c, tb.flows, peer)
	if got, ok := tb.Conn(tb.flows); !ok || got != c {
		tb.t.Fatalf("Conn(%d) = %v, %v; want %s", tb.flows, got, ok, name)
	}
	return c
}

// must fails the test unless a connection was made without eviction.
func (tb *table) must(c, victim *conn, err error) *conn {
	tb.t.Helper()
	if err != nil || victim != nil {
		tb.t.Fatalf("got victim %v, error %v; want neither", victim, err)
	}
	return c
}

func (tb *table) flow(c *conn) uint64 {
	for f := uint64(1); f <= tb.flows; f++ {
		if got, ok := tb.Conn(f); ok && got == c {
			return f
		}
	}
	tb.t.Fatalf("%s is not in the table", c.name)
	return 0
}

func (tb *table) checkStats(want transport.ConnStats) {
	tb.t.Helper()
	if got := tb.Stats(); got != want {
		tb.t.Errorf("Stats =\n  %+v, want\n  %+v", got, want)
	}
}

func TestConnTablePerPeer(t *testing.T) {
	tb := newTable(t, transport.ConnLimits{MaxConnsPerIP: 2}, nil)
	a := tb.must(tb.accept("a", "192.0.2.1"))
	tb.must(tb.accept("b", "192.0.2.1"))
	if _, _, err := tb.accept("c", "192.0.2.1"); !errors.Is(err, transport.ErrTooManyFromIP) {
		t.Errorf("a third from one IPv4 address: %v, want ErrTooManyFromIP", err)
	}
	// An IPv4 address is a peer by itself; an IPv6 one by its /64.
	tb.must(tb.accept("d", "192.0.2.2"))
	tb.must(tb.accept("e", "2001:db8:1::1"))
	tb.must(tb.accept("f", "2001:db8:1:0:8000::3"))
	if _, _, err := tb.accept("g", "2001:db8:1:0:ffff:ffff:ffff:fffe"); !errors.Is(err, transport.ErrTooManyFromIP) {
		t.Errorf("a third from one /64: %v, want ErrTooManyFromIP", err)
	}
	tb.must(tb.accept("h", "2001:db8:2::1"))
	// Dialed connections do not count toward any peer.
	tb.must(tb.dial("trunk"))
	tb.checkStats(transport.ConnStats{Open: 7, Unregistered: 6, Accepted: 6, RefusedPerIP: 2})
	// A connection that goes makes room, once.
	if !tb.Remove(a.entry) || tb.Remove(a.entry) {
		t.Error("Remove did not report once that it removed a")
	}
	tb.must(tb.accept("i", "192.0.2.1"))
}

func TestConnTableEvictsOldestStranger(t *testing.T) {
	tb := newTable(t, transport.ConnLimits{MaxConns: 3}, nil)
	reg := tb.must(tb.accept("reg", "192.0.2.1"))
	tb.MarkRegistered(tb.flow(reg), true)
	a := tb.must(tb.accept("a", "192.0.2.2"))
	b := tb.must(tb.accept("b", "192.0.2.3"))
	tb.checkStats(transport.ConnStats{Open: 3, Registered: 1, Unregistered: 2, Accepted: 3})

	// At the cap, a newcomer takes the place of the oldest stranger,
	// which is out of the table already.
	c, victim, err := tb.accept("c", "192.0.2.4")
	if err != nil || victim != a {
		t.Fatalf("at the cap: victim %v, error %v; want a", victim, err)
	}
	if tb.Remove(a.entry) {
		t.Error("the evicted connection was removed again")
	}
	tb.checkStats(transport.ConnStats{Open: 3, Registered: 1, Unregistered: 2, Accepted: 4, Evicted: 1})

	// With every connection registered, nothing can be evicted.
	tb.MarkRegistered(tb.flow(b), true)
	tb.MarkRegistered(tb.flow(c), true)
	tb.MarkRegistered(tb.flow(c), true) // twice is once
	if _, victim, err := tb.accept("d", "192.0.2.5"); !errors.Is(err, transport.ErrTooManyConns) || victim != nil {
		t.Errorf("all registered: victim %v, error %v; want ErrTooManyConns", victim, err)
	}
	tb.checkStats(transport.ConnStats{Open: 3, Registered: 3, Accepted: 4, Evicted: 1, RefusedTotal: 1})

	// A registration that ends makes its connection the newest
	// stranger: b, whose registration ends after reg's, goes second.
	tb.MarkRegistered(tb.flow(reg), false)
	tb.MarkRegistered(tb.flow(b), false)
	for _, want := range []*conn{reg, b} {
		if _, victim, err := tb.accept("new", "192.0.2.6"); err != nil || victim != want {
			t.Errorf("victim %v, error %v; want %s", victim, err, want.name)
		}
	}
	tb.MarkRegistered(99, true) // an unknown flow is ignored
	tb.checkStats(transport.ConnStats{Open: 3, Registered: 1, Unregistered: 2, Accepted: 6, Evicted: 3, RefusedTotal: 1})
}

func TestConnTableDialed(t *testing.T) {
	tb := newTable(t, transport.ConnLimits{MaxConns: 2}, nil)
	stranger := tb.must(tb.accept("stranger", "192.0.2.1"))
	trunk := tb.must(tb.dial("trunk"))
	// A dial at the cap evicts a stranger...
	if _, victim, err := tb.dial("trunk2"); err != nil || victim != stranger {
		t.Fatalf("dial at the cap: victim %v, error %v; want the stranger", victim, err)
	}
	// ...but no dialed connection, even one whose registration ended.
	tb.MarkRegistered(tb.flow(trunk), true)
	tb.MarkRegistered(tb.flow(trunk), false)
	if _, victim, err := tb.accept("newcomer", "192.0.2.2"); !errors.Is(err, transport.ErrTooManyConns) || victim != nil {
		t.Errorf("accept with only dialed connections: victim %v, error %v", victim, err)
	}
	if _, victim, err := tb.dial("trunk3"); !errors.Is(err, transport.ErrTooManyConns) || victim != nil {
		t.Errorf("dial with only dialed connections: victim %v, error %v", victim, err)
	}
	// The failed dial is the caller's to count.
	tb.checkStats(transport.ConnStats{Open: 2, Accepted: 1, Evicted: 1, RefusedTotal: 1})
}

func TestConnTableCancel(t *testing.T) {
	tb := newTable(t, transport.ConnLimits{MaxConns: 2, MaxConnsPerIP: 1}, nil)
	peer := transport.PeerGroup(netip.MustParseAddr("192.0.2.1"))
	// A place taken and given back (a failed handshake) is free again,
	// for the peer and in all.
	for range 3 {
		if _, err := tb.Admit(peer); err != nil {
			t.Fatal(err)
		}
		tb.Cancel(peer)
	}
	if _, err := tb.AdmitDialed(); err != nil {
		t.Fatal(err)
	}
	// A place taken and not yet filled counts toward both caps.
	if _, err := tb.Admit(peer); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Admit(peer); !errors.Is(err, transport.ErrTooManyFromIP) {
		t.Errorf("second from the peer: %v, want ErrTooManyFromIP", err)
	}
	if _, err := tb.Admit(transport.PeerGroup(netip.MustParseAddr("192.0.2.2"))); !errors.Is(err, transport.ErrTooManyConns) {
		t.Errorf("at the cap: %v, want ErrTooManyConns", err)
	}
	tb.checkStats(transport.ConnStats{RefusedPerIP: 1, RefusedTotal: 1})
}

func TestConnTableIdle(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const short, long = time.Minute, 10 * time.Minute
	tb := newTable(t, transport.ConnLimits{IdleTimeout: long, StrangerIdleTimeout: short}, clk)
	if got := tb.SweepInterval(); got != short/4 {
		t.Errorf("SweepInterval %v, want a quarter of %v", got, short)
	}
	idle := func(want map[*conn]time.Duration) {
		t.Helper()
		got := map[*conn]time.Duration{}
		for c, limit := range tb.Idle() {
			got[c] = limit
		}
		if len(got) != len(want) {
			t.Fatalf("idle: %d connections, want %d", len(got), len(want))
		}
		for c, limit := range want {
			if got[c] != limit {
				t.Errorf("%s idle after %v, want %v", c.name, got[c], limit)
			}
		}
	}
	stranger := tb.must(tb.accept("stranger", "192.0.2.1"))
	reg := tb.must(tb.accept("reg", "192.0.2.2"))
	tb.MarkRegistered(tb.flow(reg), true)
	trunk := tb.must(tb.dial("trunk"))

	clk.Advance(short - time.Second)
	idle(nil)
	stranger.entry.Touch()
	clk.Advance(short - time.Second)
	idle(nil)
	clk.Advance(time.Second)
	idle(map[*conn]time.Duration{stranger: short})
	clk.Advance(long)
	idle(map[*conn]time.Duration{stranger: short, reg: long, trunk: long})
	if got, want := reg.entry.LastActive(), clk.Now().Add(-long-2*short+time.Second); !got.Equal(want) {
		t.Errorf("reg last active %v, want %v", got, want)
	}
	tb.CountClosedIdle()
	if got := tb.Stats().ClosedIdle; got != 1 {
		t.Errorf("ClosedIdle %d, want 1", got)
	}

	// Without IdleTimeout only strangers go.
	tb = newTable(t, transport.ConnLimits{StrangerIdleTimeout: short}, clk)
	stranger = tb.must(tb.accept("stranger", "192.0.2.1"))
	reg = tb.must(tb.accept("reg", "192.0.2.2"))
	tb.MarkRegistered(tb.flow(reg), true)
	clk.Advance(time.Hour)
	idle(map[*conn]time.Duration{stranger: short})
	if got := newTable(t, transport.ConnLimits{}, nil).SweepInterval(); got != 0 {
		t.Errorf("SweepInterval with no timeout: %v, want 0", got)
	}
}
