package udpstat

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestFind: a loopback socket of each family is found, and the datagram
// queued on it (unread) shows in its receive queue.
func TestFind(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		rx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		local := rx.LocalAddr().(*net.UDPAddr).AddrPort()
		s, err := Find(local)
		if err != nil {
			t.Fatal(err)
		}
		if s.RxQueue != 0 {
			t.Errorf("%v: queue %d before a datagram", local, s.RxQueue)
		}
		if _, err := rx.WriteToUDPAddrPort([]byte("hello"), local); err != nil {
			t.Fatal(err)
		}
		// The kernel may queue a loopback datagram after the send returns.
		deadline := time.Now().Add(5 * time.Second)
		for s.RxQueue == 0 && time.Now().Before(deadline) {
			if s, err = Find(local); err != nil {
				t.Fatal(err)
			}
		}
		if s.RxQueue == 0 {
			t.Errorf("%v: the datagram never showed in the queue", local)
		}
	}
	if _, err := Find(netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Error("found a socket on 127.0.0.1:1")
	}
}

// TestParseHostile: odd lines are errors, not panics.
func TestParseHostile(t *testing.T) {
	head := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
	good := "  1: 0100007F:1F90 00000000:0000 07 00000000:00000010 00:00000000 00000000     0        0 1 2 0000000000000000 3\n"
	got, err := parse(head+good, "test")
	if err != nil || len(got) != 1 {
		t.Fatalf("parse: %v, %v", got, err)
	}
	if want := (Socket{Local: netip.MustParseAddrPort("127.0.0.1:8080"), RxQueue: 16, Drops: 3}); got[0] != want {
		t.Errorf("got %+v, want %+v", got[0], want)
	}
	for _, bad := range []string{
		"  1: 0100007:1F90 00000000:0000 07 00000000:00000010 00:00000000 00000000 0 0 1 2 0 3\n",
		"  1: 0100007F 00000000:0000 07 00000000:00000010 00:00000000 00000000 0 0 1 2 0 3\n",
		"  1: 0100007F:1F90 00000000:0000 07 00000000:zz 00:00000000 00000000 0 0 1 2 0 3\n",
		"  1: 0100007F:1F90 00000000:0000 07 00000000:00000010 00:00000000 00000000 0 0 1 2 0 -3\n",
	} {
		if _, err := parse(head+bad, "test"); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}
