package sipws

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// dialFrom opens a SIP WebSocket to s from the source address src, or
// returns the HTTP status of the refused handshake.
func (s *server) dialFrom(t *testing.T, src netip.Addr) (*websocket.Conn, int) {
	t.Helper()
	return transporttest.DialWS(t, s.url(), src)
}

// flowOf sends a request over c and returns the flow the server saw it on.
func (s *server) flowOf(t *testing.T, c *websocket.Conn) sip.Addr {
	t.Helper()
	id := "f" + strconv.FormatInt(time.Now().UnixNano(), 36)
	send(t, c, websocket.MessageText, request(id, 1))
	m := s.rec.Message(t)
	if m.Header().CallID() != id {
		t.Fatalf("got %s, want %s", m.Header().CallID(), id)
	}
	return m.Src()
}

// closedByServer checks that the server ends c.
func closedByServer(t *testing.T, c *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			t.Fatal("connection still open")
		}
		return
	}
}

func (s *server) checkStats(t *testing.T, want Stats) {
	t.Helper()
	if got := s.tr.Stats(); got != want {
		t.Errorf("Stats =\n  %+v, want\n  %+v", got, want)
	}
}

func TestCapPerAddress(t *testing.T) {
	s := start(t, Options{MaxConnsPerIP: 2})
	one := netip.MustParseAddr("127.0.0.1")
	a, _ := s.dialFrom(t, one)
	s.flowOf(t, a)
	b, _ := s.dialFrom(t, one)
	s.flowOf(t, b)
	if _, status := s.dialFrom(t, one); status != http.StatusServiceUnavailable {
		t.Errorf("third connection from %s: HTTP %d, want 503", one, status)
	}
	// Another address has its own share.
	c, status := s.dialFrom(t, netip.MustParseAddr("127.0.0.2"))
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("connection from 127.0.0.2: HTTP %d", status)
	}
	s.flowOf(t, c)
	s.checkStats(t, Stats{Open: 3, Accepted: 3, Refused: 1, RefusedPerIP: 1})
	// Closing one makes room.
	a.CloseNow()
	s.rec.FlowClosed(t)
	if _, status := s.dialFrom(t, one); status != http.StatusSwitchingProtocols {
		t.Errorf("after a close: HTTP %d, want 101", status)
	}
}

// TestCapPerSlash64 runs in a network namespace where 2001:db8:1::/64 and
// 2001:db8:2::/64 are local, to connect from many addresses of each.
func TestCapPerSlash64(t *testing.T) {
	netns.Run(t, netns.Options{LocalRoutes: []string{"2001:db8:1::/64", "2001:db8:2::/64"}}, func(t *testing.T) {
		s := startWith(t, Options{MaxConnsPerIP: 3}, func(h http.Handler) *httptest.Server {
			srv := httptest.NewUnstartedServer(h)
			ln, err := net.Listen("tcp", "[::1]:0")
			if err != nil {
				t.Fatal(err)
			}
			srv.Listener.Close()
			srv.Listener = ln
			srv.Start()
			return srv
		}, 64)
		for _, src := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1:0:8000::3"} {
			c, status := s.dialFrom(t, netip.MustParseAddr(src))
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("connection from %s: HTTP %d", src, status)
			}
			s.flowOf(t, c)
		}
		// Other addresses of the same /64 are refused...
		for _, src := range []string{"2001:db8:1::4", "2001:db8:1:0:ffff:ffff:ffff:fffe"} {
			if _, status := s.dialFrom(t, netip.MustParseAddr(src)); status != http.StatusServiceUnavailable {
				t.Errorf("connection from %s: HTTP %d, want 503", src, status)
			}
		}
		// ...and those of the next /64 are not.
		other, status := s.dialFrom(t, netip.MustParseAddr("2001:db8:2::1"))
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("connection from another /64: HTTP %d, want 101", status)
		}
		// A message through it proves the server has counted it, which
		// happens after the client's handshake.
		s.flowOf(t, other)
		s.checkStats(t, Stats{Open: 4, Accepted: 4, Refused: 2, RefusedPerIP: 2})
	})
}

func TestEvictOldestUnregistered(t *testing.T) {
	s := start(t, Options{MaxConns: 3})
	// reg registers (the gateway says so); a and b are strangers, a the
	// older.
	reg := s.dial(t, nil)
	regFlow := s.flowOf(t, reg)
	s.tr.MarkRegistered(regFlow, true)
	a := s.dial(t, nil)
	aFlow := s.flowOf(t, a)
	b := s.dial(t, nil)
	bFlow := s.flowOf(t, b)
	s.checkStats(t, Stats{Open: 3, Registered: 1, Accepted: 3})

	// At the cap, a newcomer takes the place of the oldest stranger.
	c := s.dial(t, nil)
	cFlow := s.flowOf(t, c)
	closedByServer(t, a)
	if got := s.rec.FlowClosed(t); got != aFlow {
		t.Errorf("flow closed %v, want a's %v", got, aFlow)
	}
	s.checkStats(t, Stats{Open: 3, Registered: 1, Accepted: 4, Evicted: 1})

	// The registered connection still carries messages both ways.
	s.flowOf(t, reg)
	if err := s.tr.Send(context.Background(), sip.NewResponse(mustRequest(t, request("to-reg", 1)), 200, ""), regFlow); err != nil {
		t.Fatalf("send over the registered flow: %v", err)
	}
	if res := recvResponse(t, reg); res.CallID() != "to-reg" {
		t.Errorf("registered client got %s", res.CallID())
	}

	// With every connection registered, nothing can be evicted: 503.
	s.tr.MarkRegistered(bFlow, true)
	s.tr.MarkRegistered(cFlow, true)
	if status := s.dialStatus(t, nil, []string{"sip"}); status != http.StatusServiceUnavailable {
		t.Errorf("all registered: HTTP %d, want 503", status)
	}
	s.checkStats(t, Stats{Open: 3, Registered: 3, Accepted: 4, Evicted: 1, Refused: 1, RefusedTotal: 1})

	// A registration that ends makes its connection a stranger again: the
	// first to go.
	s.tr.MarkRegistered(regFlow, false)
	s.flowOf(t, s.dial(t, nil))
	closedByServer(t, reg)
	if got := s.rec.FlowClosed(t); got != regFlow {
		t.Errorf("flow closed %v, want the unregistered one %v", got, regFlow)
	}
}

func mustRequest(t *testing.T, raw string) *sip.Request {
	t.Helper()
	return transporttest.ParseRequest(t, raw)
}

func TestIdleTimeout(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const idle = time.Minute
	s := start(t, Options{Clock: clk, UnregisteredIdleTimeout: idle, PingInterval: -1})
	closedIdle := func(want uint64) {
		t.Helper()
		// The sweep runs inside Advance: its count is final when Advance
		// returns.
		if got := s.tr.Stats().ClosedIdle; got != want {
			t.Fatalf("%d connections closed idle, want %d", got, want)
		}
	}
	stranger := s.dial(t, nil)
	strangerFlow := s.flowOf(t, stranger)
	reg := s.dial(t, nil)
	regFlow := s.flowOf(t, reg)
	s.tr.MarkRegistered(regFlow, true)

	// A keep-alive just before the timeout keeps the stranger.
	clk.Advance(idle - time.Second)
	closedIdle(0)
	send(t, stranger, websocket.MessageText, "\r\n\r\n")
	if _, pong := recv(t, stranger); pong != "\r\n" {
		t.Fatalf("keep-alive answer %q", pong)
	}
	clk.Advance(idle - time.Second)
	closedIdle(0)
	// Silent for its timeout (and at most a quarter more), it is closed;
	// the registered connection stays, however long it is silent.
	clk.Advance(idle/4 + time.Second)
	closedIdle(1)
	closedByServer(t, stranger)
	if got := s.rec.FlowClosed(t); got != strangerFlow {
		t.Errorf("flow closed %v, want %v", got, strangerFlow)
	}
	clk.Advance(time.Hour)
	closedIdle(1)
	// Its registration ends: silent for an hour, it goes at the next sweep.
	s.tr.MarkRegistered(regFlow, false)
	clk.Advance(idle / 4)
	closedIdle(2)
	closedByServer(t, reg)
	s.rec.FlowClosed(t)
}

func TestDefaultCaps(t *testing.T) {
	tr, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.maxConns != DefaultMaxConns || tr.maxPerIP != DefaultMaxConnsPerIP || tr.idleTimeout != DefaultUnregisteredIdleTimeout {
		t.Errorf("zero Options: caps %d, %d per address, idle %v; want the defaults", tr.maxConns, tr.maxPerIP, tr.idleTimeout)
	}
	if _, err := New(Options{MaxConns: -1}); err == nil {
		t.Error("negative MaxConns accepted")
	}
}
