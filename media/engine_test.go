package media

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// freePortPair finds an even port whose odd neighbour is free too.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 100 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port &^ 1
		_ = c.Close()
		a, err1 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		b, err2 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1})
		if a != nil {
			_ = a.Close()
		}
		if b != nil {
			_ = b.Close()
		}
		if err1 == nil && err2 == nil {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func TestPortsDrainBeforeReuse(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	lo := freePortPair(t)
	e := newTestEngine(t, Options{Clock: clk, RTPPorts: [2]int{lo, lo + 1}})
	b1, err := e.NewBridge(context.Background(), "one")
	if err != nil {
		t.Fatal(err)
	}
	if got := int(b1.RTPAddr().Port()); got != lo {
		t.Fatalf("port %d, want %d", got, lo)
	}
	if _, err := e.NewBridge(context.Background(), "two"); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second bridge on a one-pair range: %v", err)
	}
	_ = b1.Close()
	if s := e.Stats(); s.PortsInUse != 0 || s.PortsDraining != 1 {
		t.Fatalf("after close: %+v", s)
	}
	// Still bound while it drains: nobody else gets it.
	if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lo}); err == nil {
		_ = c.Close()
		t.Fatal("a draining port could be bound")
	}
	if _, err := e.NewBridge(context.Background(), "three"); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("bridge during the drain: %v", err)
	}
	clk.Advance(DefaultDrainTime - time.Millisecond)
	if e.Stats().PortsDraining != 1 {
		t.Fatal("drain ended early")
	}
	clk.Advance(time.Millisecond)
	b4, err := e.NewBridge(context.Background(), "four")
	if err != nil {
		t.Fatalf("after the drain: %v", err)
	}
	if got := int(b4.RTPAddr().Port()); got != lo {
		t.Fatalf("port %d, want %d", got, lo)
	}
}

func TestEngineCloseEndsBridges(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	if _, err := b.RTPOffer([]byte(phoneOffer)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("bridge still open after Engine.Close")
	}
	if !errors.Is(b.Err(), ErrClosed) {
		t.Fatalf("Err() = %v", b.Err())
	}
	if _, err := e.NewBridge(context.Background(), "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewBridge after Close: %v", err)
	}
	if s := e.Stats(); s.Bridges != 0 || s.PortsInUse != 0 || s.PortsDraining != 0 {
		t.Fatalf("stats after Close: %+v", s)
	}
}

func TestOutOfOrder(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	for _, tc := range []struct {
		name string
		run  func(b *Bridge) error
	}{
		{"rtp answer first", func(b *Bridge) error { _, err := b.RTPAnswer([]byte(phoneOffer)); return err }},
		{"web answer first", func(b *Bridge) error { _, err := b.WebAnswer([]byte(chromeOffer)); return err }},
		{"rtp reoffer first", func(b *Bridge) error { _, err := b.RTPReoffer([]byte(phoneOffer)); return err }},
		{"web reoffer first", func(b *Bridge) error { _, err := b.WebReoffer([]byte(chromeOffer)); return err }},
		{"refresh first", func(b *Bridge) error { _, err := b.RTPRefresh(); return err }},
		{"rollback first", func(b *Bridge) error { return b.Rollback() }},
		{"two offers", func(b *Bridge) error {
			if _, err := b.WebOffer([]byte(chromeOffer)); err != nil {
				return err
			}
			_, err := b.RTPOffer([]byte(phoneOffer))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(newTestBridge(t, e)); !errors.Is(err, ErrState) {
				t.Fatalf("err = %v, want ErrState", err)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"inverted port range", Options{RTPPorts: [2]int{30000, 20000}}},
		{"no pair in range", Options{RTPPorts: [2]int{20001, 20001}}},
		{"port out of range", Options{RTPPorts: [2]int{0, 70000}}},
		{"unspecified bind without public ip", Options{BindIP: netip.IPv4Unspecified()}},
		{"loopback only on another address", Options{BindIP: netip.MustParseAddr("192.0.2.1"), LoopbackOnly: true}},
		{"family mismatch", Options{PublicIP: netip.MustParseAddr("2001:db8::1")}},
		{"duplicate payload type", Options{Codecs: []Codec{{Name: "PCMU", ClockRate: 8000}, {Name: "PCMA", ClockRate: 8000}}}},
		{"telephone-event only", Options{Codecs: []Codec{{Name: "telephone-event", ClockRate: 8000, PayloadType: 101}}}},
		{"bad ice range", Options{ICEPortRange: [2]int{50000, 40000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.o.withDefaults(); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.BindIP != loopback || o.RTPPorts != [2]int{20000, 29999} || o.InactivityTimeout != 30*time.Second ||
		o.DrainTime != 5*time.Second || len(o.Codecs) != 6 || o.Clock == nil || o.Logger == nil {
		t.Errorf("defaults %+v", o)
	}
}

// TestICEPortRange runs a call on per-call ICE ports instead of the mux.
func TestICEPortRange(t *testing.T) {
	checkGoroutines(t)
	lo := freePortPair(t)
	e := newTestEngine(t, Options{ICEPortRange: [2]int{lo, lo + 1}})
	b := newTestBridge(t, e)
	out, err := b.RTPOffer([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(" 127.0.0.1 "+itoa(lo)+" typ host")) && !bytes.Contains(out, []byte(" 127.0.0.1 "+itoa(lo+1)+" typ host")) {
		t.Errorf("no candidate in %d-%d:\n%s", lo, lo+1, out)
	}
}
