package transport

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestSchedulerRoundRobin(t *testing.T) {
	s := newScheduler(3, 100)
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	push := func(k netip.Addr, n int) bool {
		return s.push(k, item{closed: udpAddr(netip.AddrPortFrom(k, uint16(n)).String())}, false)
	}
	for i := 1; i <= 5; i++ {
		if got, want := push(a, i), i <= 3; got != want {
			t.Errorf("push a%d: %v", i, got)
		}
	}
	push(b, 1)
	push(c, 1)
	push(c, 2)
	var order []string
	var src *source
	for s.len() > 0 {
		var it item
		src, it, _ = s.next(src)
		order = append(order, it.closed.AddrPort.String())
	}
	want := "[192.0.2.1:1 192.0.2.2:1 192.0.2.3:1 192.0.2.1:2 192.0.2.3:2 192.0.2.1:3]"
	if got := fmt.Sprint(order); got != want {
		t.Errorf("order %s\nwant  %s", got, want)
	}
	s.release(src)
	if len(s.sources) != 0 {
		t.Errorf("%d sources kept after draining", len(s.sources))
	}
	// A forced push passes the caps.
	for range 5 {
		push(a, 9)
	}
	if !s.push(a, item{}, true) {
		t.Error("forced push refused")
	}
	s.close()
	if _, _, ok := s.next(nil); ok {
		t.Error("next after close")
	}
}

func TestSchedulerTotalCap(t *testing.T) {
	s := newScheduler(10, 4)
	for i := range 10 {
		k := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if got, want := s.push(k, item{}, false), i < 4; got != want {
			t.Errorf("push %d: %v", i, got)
		}
	}
	if len(s.sources) != 4 {
		t.Errorf("%d sources, want 4", len(s.sources))
	}
}
