package netns

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRunSealsTheNamespace(t *testing.T) {
	Run(t, Options{
		Addrs:       []string{"192.0.2.10/32", "2001:db8:1::1/128"},
		LocalRoutes: []string{"198.51.100.0/24", "2001:db8:2::/64"},
		Timeout:     time.Minute,
	}, func(t *testing.T) {
		if !Inside() {
			t.Fatal("Inside reports false in the namespace")
		}
		// No route out: a global address cannot be reached.
		if c, err := net.Dial("udp4", "203.0.113.1:9"); err == nil {
			c.Close()
			t.Fatal("dialed 203.0.113.1 from a namespace that should have no route out")
		}
		// The added address is on loopback: a datagram sent to it arrives.
		roundTrip(t, netip.MustParseAddrPort("192.0.2.10:0"), netip.MustParseAddrPort("127.0.0.1:0"))
		roundTrip(t, netip.MustParseAddrPort("[2001:db8:1::1]:0"), netip.MustParseAddrPort("[::1]:0"))
		// Any address of a local route can be a source.
		roundTrip(t, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("198.51.100.77:0"))
		roundTrip(t, netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddrPort("[2001:db8:2::42]:0"))
	})
}

// roundTrip sends a datagram from an address to another and waits for it.
func roundTrip(t *testing.T, to, from netip.AddrPort) {
	t.Helper()
	if to.Addr().Is6() != from.Addr().Is6() {
		t.Fatalf("mixed families %v and %v", to, from)
	}
	rx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("listen on %v: %v", to, err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(from))
	if err != nil {
		t.Fatalf("bind %v: %v", from, err)
	}
	defer tx.Close()
	if _, err := tx.WriteTo([]byte("ping"), rx.LocalAddr()); err != nil {
		t.Fatalf("send to %v: %v", rx.LocalAddr(), err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, src, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read on %v: %q, %v", rx.LocalAddr(), buf[:n], err)
	}
	if src.Addr() != netip.MustParseAddrPort(tx.LocalAddr().String()).Addr() {
		t.Fatalf("datagram from %v, sent from %v", src, tx.LocalAddr())
	}
}

func TestRunPattern(t *testing.T) {
	for name, want := range map[string]string{
		"TestA":          "^TestA$",
		"TestA/sub_case": "^TestA$/^sub_case$",
		"TestA/x.y(1)":   `^TestA$/^x\.y\(1\)$`,
	} {
		if got := runPattern(name); got != want {
			t.Errorf("runPattern(%q) = %q, want %q", name, got, want)
		}
	}
}
