//go:build linux

package mediapeer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchConnAddresses: one socket on the wildcard address of lo sends
// a batch, each datagram from its own loopback address (IP_PKTINFO), and
// receives a batch for several addresses, telling each datagram's
// destination, source and kernel receive time.
func TestBatchConnAddresses(t *testing.T) {
	c, err := listenBatch(context.Background(), netip.AddrPortFrom(netip.IPv4Unspecified(), 0), true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Close() }()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	srcs := []netip.Addr{browserAddr(0), browserAddr(1), browserAddr(700)}
	ms := make([]batchMsg, len(srcs))
	for i, s := range srcs {
		ms[i] = batchMsg{Buf: []byte(s.String()), Addr: peerAddr, Local: s}
	}
	if failed, err := c.writeBatch(ms); failed != 0 || err != nil {
		t.Fatalf("writeBatch: %d failed, %v", failed, err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(DefaultWait))
	buf := make([]byte, 100)
	for range srcs {
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.AddrPortFrom(netip.MustParseAddr(string(buf[:n])), c.Port())
		if from != want {
			t.Errorf("datagram %q came from %v, want %v", buf[:n], from, want)
		}
	}

	before := time.Now().UnixNano()
	dsts := []netip.Addr{browserAddr(5), browserAddr(300)}
	for _, d := range dsts {
		if _, err := peer.WriteToUDPAddrPort([]byte(d.String()), netip.AddrPortFrom(d, c.Port())); err != nil {
			t.Fatal(err)
		}
	}
	rd := newReadMsgs()
	for got := 0; got < len(dsts); {
		n, err := c.readBatch(rd)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range rd[:n] {
			if m.Local.String() != string(m.Buf) || m.Addr != peerAddr {
				t.Errorf("datagram %q: for %v from %v, want for %s from %v", m.Buf, m.Local, m.Addr, m.Buf, peerAddr)
			}
			if m.At < before || m.At > time.Now().UnixNano() {
				t.Errorf("datagram %q: received at %d, sent after %d", m.Buf, m.At, before)
			}
		}
		got += n
	}
}

// TestBatchConnRefusesBadMessages: an empty datagram, one to an IPv6
// address or one from an IPv6 source is refused with an error, not sent
// as something else.
func TestBatchConnRefusesBadMessages(t *testing.T) {
	c, err := listenBatch(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for _, m := range []batchMsg{
		{Addr: netip.MustParseAddrPort("127.0.0.1:9")},
		{Buf: []byte("x"), Addr: netip.MustParseAddrPort("[::1]:9")},
		{Buf: []byte("x"), Addr: netip.MustParseAddrPort("127.0.0.1:9"), Local: netip.IPv6Loopback()},
	} {
		if failed, err := c.writeBatch([]batchMsg{m}); failed != 1 || err == nil {
			t.Errorf("%d bytes to %v: %d failed, %v", len(m.Buf), m.Addr, failed, err)
		}
	}
}
