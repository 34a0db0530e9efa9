//go:build linux

package mediapeer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/waitfor"
)

func newLoadGen(t *testing.T, opts LoadGenOptions) *LoadGen {
	t.Helper()
	g, err := NewLoadGen(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// fakeGateway is a plain socket that plays a gateway's RTP port towards
// a generator's phones.
func fakeGateway(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rtpTo sends an RTP packet carrying payload from c to a.
func rtpTo(t *testing.T, c *net.UDPConn, a netip.AddrPort, payload []byte) {
	t.Helper()
	pkt := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9}, payload...)
	if _, err := c.WriteToUDPAddrPort(pkt, a); err != nil {
		t.Fatal(err)
	}
}

func stamped(call int, measured bool) []byte {
	p := make([]byte, genPayload)
	stampPayload(p, 1, call, measured)
	return p
}

// TestLoadGenDemux: the phones' shared socket gives each call the packets
// that come from its gateway address and carry its stamp; a packet from
// an unknown source, not RTP, or too short is stray, and one of another
// call is misrouted; the browsers' shared socket refuses what comes for a
// browser address of no call. Nothing of these is counted as received.
func TestLoadGenDemux(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	g := newLoadGen(t, LoadGenOptions{Loops: 1, MaxCalls: 4})
	gws := []*net.UDPConn{fakeGateway(t), fakeGateway(t)}
	var phone netip.AddrPort
	for i, gw := range gws {
		_, ph, err := g.AddCall()
		if err != nil {
			t.Fatal(err)
		}
		phone = ph
		c := g.calls[i].Load()
		c.gw = gw.LocalAddr().(*net.UDPAddr).AddrPort()
		c.loop.mu.Lock()
		c.loop.byGW[c.gw] = c
		c.loop.mu.Unlock()
	}
	stranger := fakeGateway(t)

	rtpTo(t, gws[0], phone, stamped(0, true))                // call 0's: received
	rtpTo(t, gws[1], phone, stamped(1, false))               // call 1's, unmeasured: primes only
	rtpTo(t, gws[1], phone, stamped(0, true))                // call 0's at call 1: misrouted
	rtpTo(t, stranger, phone, stamped(0, true))              // unknown source: stray
	rtpTo(t, gws[0], phone, []byte("short"))                 // no stamp: stray
	_, _ = gws[0].WriteToUDPAddrPort([]byte{1, 2, 3}, phone) // not RTP: stray
	web := netip.AddrPortFrom(browserAddr(3), g.loops[0].web.Port())
	_, _ = stranger.WriteToUDPAddrPort([]byte("x"), web) // no such browser: stray

	waitfor.Until(t, "the datagrams counted", DefaultWait, func() bool {
		s := g.Stats()
		return s.GotPhone+s.Stray+s.Misrouted >= 6 && g.calls[1].Load().primedPh.Load()
	})
	s := g.Stats()
	if s.GotPhone != 1 || s.Misrouted != 1 || s.Stray != 4 || s.GotWeb != 0 || len(s.ToPhone) != 1 {
		t.Fatalf("got %d at the phones (%d latencies), %d misrouted, %d stray, %d at the browsers; want 1, 1, 1, 4, 0",
			s.GotPhone, len(s.ToPhone), s.Misrouted, s.Stray, s.GotWeb)
	}
	if d := s.ToPhone[0]; d < 0 || d > DefaultWait {
		t.Errorf("latency %v", d)
	}
	if !g.calls[0].Load().primedPh.Load() {
		t.Error("call 0's phone not primed")
	}
}

// TestLoadGenCaps: the calls' cap (and the cap on it), the latencies' cap,
// and the refusals of a generator not ready to send.
func TestLoadGenCaps(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	if _, err := NewLoadGen(context.Background(), LoadGenOptions{MaxCalls: genMaxCalls + 1}); err == nil {
		t.Fatalf("%d calls: no error", genMaxCalls+1)
	}
	g := newLoadGen(t, LoadGenOptions{Loops: 2, MaxCalls: 2, MaxSamples: 1})
	for range 2 {
		if _, _, err := g.AddCall(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := g.AddCall(); !errors.Is(err, ErrLoadGenFull) {
		t.Fatalf("a third call of 2: %v", err)
	}
	if err := g.Start(); err == nil {
		g.Stop()
		t.Fatal("started with calls not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultWait)
	defer cancel()
	if err := g.Connect(ctx, 0, "", netip.MustParseAddrPort("192.0.2.1:4000")); err == nil {
		t.Fatal("connected to a gateway off loopback")
	}
	if err := g.Connect(ctx, 5, "", netip.MustParseAddrPort("127.0.0.1:4000")); err == nil {
		t.Fatal("connected call 5 of 2")
	}

	c := g.calls[0].Load()
	gw := fakeGateway(t)
	c.gw = gw.LocalAddr().(*net.UDPAddr).AddrPort()
	c.loop.mu.Lock()
	c.loop.byGW[c.gw] = c
	c.loop.mu.Unlock()
	phone := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.loop.phone.Port())
	rtpTo(t, gw, phone, stamped(0, true))
	rtpTo(t, gw, phone, stamped(0, true))
	waitfor.Until(t, "two packets", DefaultWait, func() bool { return g.Stats().GotPhone == 2 })
	if s := g.Stats(); len(s.ToPhone) != 1 || s.SamplesDropped != 1 {
		t.Fatalf("%d latencies kept, %d dropped; want 1, 1", len(s.ToPhone), s.SamplesDropped)
	}
	g.ResetStats()
	if s := g.Stats(); s.GotPhone != 0 || len(s.ToPhone) != 0 || s.SamplesDropped != 0 {
		t.Fatalf("after ResetStats: %+v", s)
	}
	_ = g.Close()
	if _, _, err := g.AddCall(); !errors.Is(err, ErrLoadGenClosed) {
		t.Fatalf("AddCall after Close: %v", err)
	}
}

// TestLoadGenBaseline: the baseline's streams, paced and batched like the
// calls', arrive and are timed.
func TestLoadGenBaseline(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	g := newLoadGen(t, LoadGenOptions{Loops: 2, MaxCalls: 10})
	lat, err := g.Baseline(context.Background(), 10, 40*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) == 0 {
		t.Fatal("no latency measured")
	}
	for _, d := range lat {
		if d < 0 || d > DefaultWait {
			t.Fatalf("latency %v", d)
		}
	}
	if s := g.Stats(); s.Planned != 0 || s.SendCalls != 0 {
		t.Fatalf("the baseline counted as the calls': %+v", s)
	}
}

// TestLoadGenPacesOnFakeClock: the pacing loops, driven by a fake clock a
// millisecond at a time, queue every stream once per period, at its time
// (within the clock's step) and never more than a slot before it.
func TestLoadGenPacesOnFakeClock(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	t0 := time.Unix(1000, 0)
	fake := clock.NewFake(t0)
	const loops, n = 2, 8
	period, slot := 20*time.Millisecond, time.Millisecond
	g := newLoadGen(t, LoadGenOptions{Loops: loops, MaxCalls: n, Clock: fake, Consent: time.Hour, Period: period, Slot: slot})
	type queued struct {
		i  int
		at time.Time
	}
	var mu sync.Mutex
	var got []queued
	g.mu.Lock()
	g.run = g.startPacing(n, func(_ *genLoop, i int, _ bool) {
		mu.Lock()
		got = append(got, queued{i, fake.Now()})
		mu.Unlock()
	})
	g.mu.Unlock()
	asleep := func() bool { return fake.Pending() == loops+1 } // and the consent timer
	for range 2*period/time.Millisecond - 1 {
		waitfor.Until(t, "the loops asleep", DefaultWait, asleep)
		fake.Advance(time.Millisecond)
	}
	waitfor.Until(t, "the loops asleep", DefaultWait, asleep)
	g.Stop()
	mu.Lock()
	defer mu.Unlock()
	count := make([]int, n)
	for _, q := range got {
		count[q.i]++
		// Stream i is due at i·period/n in each period. A loop reads the
		// fake clock after Advance has moved it to the step's end, so it
		// may see a send up to a step (1 ms) late.
		off := q.at.Sub(t0) % period
		due := time.Duration(q.i) * period / n
		if early := due - off; early < -time.Millisecond || early > slot {
			if early = due + period - off; early < -time.Millisecond || early > slot {
				t.Errorf("stream %d queued at %v, due at %v in each period", q.i, q.at.Sub(t0), due)
			}
		}
	}
	for i, c := range count {
		if c != 2 {
			t.Errorf("stream %d queued %d times in 2 periods, want 2 (%v)", i, c, got)
		}
	}
}
