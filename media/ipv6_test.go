package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestIPv6(t *testing.T) {
	checkGoroutines(t)
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatalf("this test needs the IPv6 loopback ::1 (enable IPv6 on lo): %v", err)
	}
	defer c.Close()
	clk := newFake()
	e := newTestEngine(t, Options{BindIP: netip.IPv6Loopback(), Clock: clk})
	b := newTestBridge(t, e)
	out, err := b.WebOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "o=- ", " IN IP6 ::1\r\n", "c=IN IP6 ::1\r\n")
	b2 := newTestBridge(t, e)
	phone6 := "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
	web, err := b2.RTPOffer([]byte(phone6))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, web, " ::1 ", "typ host")

	// The RTP leg relays over IPv6: latching, and DTMF towards the phone.
	b3 := newTestBridge(t, e)
	phone := newTestPhoneOn(t, c)
	negotiateRTPOnly(b3, c.LocalAddr().(*net.UDPAddr).AddrPort())
	phone.SendPacket(b3.RTPAddr(), rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: 1, SSRC: 5}, Payload: payload(0, 160)})
	waitFor(t, "latched over IPv6", func() bool { st := b3.Stats().RTP; return st.Latched && st.Remote == c.LocalAddr().String() })
	if err := b3.SendDTMF('1', MinDTMFDuration); err != nil {
		t.Fatal(err)
	}
	clk.Advance(0)
	if p := phone.recv(); p.PayloadType != 101 || p.Payload[0] != 1 {
		t.Fatalf("got pt %d", p.PayloadType)
	}
	clk.Advance(time.Second)
}
