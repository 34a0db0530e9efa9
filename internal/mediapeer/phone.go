package mediapeer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// PhoneSSRC is the SSRC of what SendPCMU and SendAudio send.
const PhoneSSRC = 0x5eed

// Phone is a plain RTP endpoint on a UDP socket of 127.0.0.1.
type Phone struct {
	// Conn is the phone's socket, for tests that write or read raw
	// datagrams.
	Conn *net.UDPConn
	// Far is the far end's RTP address: Learn sets it from the far end's
	// SDP, and SendPCMU and SendAudio send there.
	Far netip.AddrPort

	t        testing.TB
	seq      uint16 // of SendPCMU
	watching sync.Once
	wg       sync.WaitGroup
	audio    atomic.Int64
	events   chan byte
}

// NewPhone opens a phone on 127.0.0.1 for t; it is closed when t ends.
func NewPhone(t testing.TB) *Phone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return NewPhoneOn(t, c)
}

// NewPhoneOn makes a phone on a socket the test opened (on ::1, say); the
// phone closes it when t ends. Its SDP names its IPv4 address, or
// 127.0.0.1 for a socket on IPv6.
func NewPhoneOn(t testing.TB, c *net.UDPConn) *Phone {
	p := &Phone{Conn: c, t: t, events: make(chan byte, 64)}
	t.Cleanup(func() {
		_ = c.Close()
		p.wg.Wait()
	})
	return p
}

// Addr returns the phone's RTP address.
func (p *Phone) Addr() netip.AddrPort { return p.Conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Port returns the phone's RTP port.
func (p *Phone) Port() int { return int(p.Addr().Port()) }

// SDP is an SDP of the phone with session version version: m=audio with
// the payload types pts ("0 101"; 0 PCMU, 8 PCMA, 9 G722, 18 G729, 101
// telephone-event/8000), then the extra attribute lines in order.
func (p *Phone) SDP(version int, pts string, extra ...string) []byte {
	// A phone on another IPv4 loopback address (one that moved) says so;
	// one on ::1 keeps the IPv4 SDP of NewPhone.
	ip := "127.0.0.1"
	if a := p.Addr().Addr().Unmap(); a.Is4() {
		ip = a.String()
	}
	var b strings.Builder
	b.WriteString("v=0\r\no=phone 4242 " + strconv.Itoa(version) + " IN IP4 " + ip + "\r\ns=call\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\n")
	b.WriteString("m=audio " + strconv.Itoa(p.Port()) + " RTP/AVP " + pts + "\r\n")
	for _, pt := range strings.Fields(pts) {
		switch pt {
		case "0":
			b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
		case "8":
			b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
		case "9":
			b.WriteString("a=rtpmap:9 G722/8000\r\n")
		case "18":
			b.WriteString("a=rtpmap:18 G729/8000\r\n")
		case "101":
			b.WriteString("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
		}
	}
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	return []byte(b.String())
}

var (
	mLine = regexp.MustCompile(`(?m)^m=audio (\d+) (\S+)`)
	cLine = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
)

// ErrNotRTP is Learn's error for an SDP that a plain RTP phone cannot use.
var ErrNotRTP = errors.New("mediapeer: not an RTP/AVP audio sdp")

// Learn sets Far from the far end's SDP: its c= address and m=audio port,
// which must be RTP/AVP.
func (p *Phone) Learn(sdp []byte) error {
	m, c := mLine.FindSubmatch(sdp), cLine.FindSubmatch(sdp)
	if m == nil || c == nil {
		return fmt.Errorf("%w: no m=audio or c=IN IP4 line", ErrNotRTP)
	}
	if string(m[2]) != "RTP/AVP" {
		return fmt.Errorf("%w: profile %s", ErrNotRTP, m[2])
	}
	port, err := strconv.ParseUint(string(m[1]), 10, 16)
	if err != nil {
		return fmt.Errorf("%w: port %s", ErrNotRTP, m[1])
	}
	ip, err := netip.ParseAddr(string(c[1]))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRTP, err)
	}
	p.Far = netip.AddrPortFrom(ip, uint16(port))
	return nil
}

// SendPCMU sends one PCMU packet to Far, numbered after the last one it
// sent.
func (p *Phone) SendPCMU(payload []byte) {
	p.t.Helper()
	p.seq++
	p.SendPacket(p.Far, rtp.Packet{Header: rtp.Header{PayloadType: 0, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 160, SSRC: PhoneSSRC}, Payload: payload})
}

// SendPacket sends pkt, as version 2, to to.
func (p *Phone) SendPacket(to netip.AddrPort, pkt rtp.Packet) {
	p.t.Helper()
	pkt.Version = 2
	raw, err := pkt.Marshal()
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.Conn.WriteToUDPAddrPort(raw, to); err != nil {
		p.t.Fatalf("phone: send: %v", err)
	}
}

// SendAudio sends PCMU to Far every 20 ms until stop is closed (500
// packets at the most). It may run on a goroutine of its own: it fails
// nothing.
func (p *Phone) SendAudio(stop <-chan struct{}) {
	payload := bytes.Repeat([]byte{0xff}, 160)
	every20ms(stop, func(seq uint16) {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: PhoneSSRC}, Payload: payload}
		raw, _ := pkt.Marshal()
		_, _ = p.Conn.WriteToUDPAddrPort(raw, p.Far)
	})
}

// Recv reads the next RTP packet; nil when none came within d, or when
// what came was not RTP. Not after Watch.
func (p *Phone) Recv(d time.Duration) *rtp.Packet {
	buf := make([]byte, 1500)
	_ = p.Conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.Conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	pkt := &rtp.Packet{}
	if pkt.Unmarshal(buf[:n]) != nil {
		return nil
	}
	return pkt
}

// Watch reads everything the phone receives from now on, on a goroutine
// of its own that ends with the test: it counts PCMU packets (Audio) and
// passes RFC 4733 events on (Events).
func (p *Phone) Watch() {
	p.watching.Do(func() {
		_ = p.Conn.SetReadDeadline(time.Time{}) // Recv's
		p.wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, err := p.Conn.Read(buf)
				if err != nil {
					return
				}
				var pkt rtp.Packet
				if pkt.Unmarshal(buf[:n]) != nil {
					continue
				}
				switch pkt.PayloadType {
				case 0:
					p.audio.Add(1)
				case 101:
					if len(pkt.Payload) == 4 {
						select {
						case p.events <- pkt.Payload[0]:
						default:
						}
					}
				}
			}
		})
	})
}

// Audio returns how many PCMU packets Watch has seen.
func (p *Phone) Audio() int64 { return p.audio.Load() }

// Events returns the RFC 4733 event codes (payload type 101) Watch sees.
func (p *Phone) Events() <-chan byte { return p.events }
