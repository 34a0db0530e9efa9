package media

import (
	"errors"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// negotiateRTPOnly gives b a negotiated RTP leg (PCMU, telephone-event 101)
// towards remote and no web leg, for tests of the RTP side alone.
func negotiateRTPOnly(b *Bridge, remote netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	codecs := []Codec{{Name: "PCMU", ClockRate: 8000, PayloadType: 0}, {Name: "telephone-event", ClockRate: 8000, PayloadType: 101}}
	b.rtpSend, b.rtpRecv = codecs, codecs
	b.webCodecs = codecs
	b.webDir, b.webOurDir, b.rtpDir = dirSendRecv, dirSendRecv, dirSendRecv
	b.latch.setRemote(remote)
	b.updateRoute()
}

func addrOf(p *testPhone) netip.AddrPort {
	return p.Conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestSymmetricRTPLatching(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	e := newTestEngine(t, Options{Clock: clk})
	b := newTestBridge(t, e)
	a, c, d := newTestPhone(t), newTestPhone(t), newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	gw := b.RTPAddr()
	stats := func() LegStats { return b.Stats().RTP }
	latched := func() string {
		if s := stats(); s.Latched {
			return s.Remote
		}
		return ""
	}

	// A payload type that was not negotiated does not latch.
	c.SendPacket(gw, latchPacket(96, 1))
	waitFor(t, "unknown payload type dropped", func() bool { return stats().Dropped.PayloadType == 1 })
	if l := latched(); l != "" {
		t.Fatalf("latched on an invalid packet: %s", l)
	}
	if r := stats().Remote; r != addrOf(a).String() {
		t.Errorf("remote %s before latching, want the SDP's %s", r, addrOf(a))
	}
	// The first valid packet latches its source...
	a.SendPacket(gw, latchPacket(0, 2))
	waitFor(t, "latched to a", func() bool { return latched() == addrOf(a).String() })
	// ...and then other sources are dropped and counted.
	c.SendPacket(gw, latchPacket(0, 3))
	c.SendPacket(gw, latchPacket(0, 4))
	waitFor(t, "two packets from c dropped", func() bool { return stats().Dropped.Source == 2 })
	a.SendPacket(gw, latchPacket(0, 5))
	waitFor(t, "a still accepted", func() bool { return stats().PacketsIn == 2 })

	// Silence from a does not let a stranger in: only signalling moves
	// the latch.
	clk.Advance(time.Minute)
	c.SendPacket(gw, latchPacket(0, 6))
	waitFor(t, "c dropped after a's silence", func() bool { return stats().Dropped.Source == 3 })
	if l := latched(); l != addrOf(a).String() {
		t.Fatalf("latched to %s after silence, want a", l)
	}

	// A new address in SDP (re-INVITE) lets the next source latch: a
	// stranger that gets in first is dropped once the SDP's address
	// itself sends.
	b.latch.setRemote(addrOf(d))
	c.SendPacket(gw, latchPacket(0, 7))
	waitFor(t, "c got in first", func() bool { return latched() == addrOf(c).String() })
	d.SendPacket(gw, latchPacket(0, 8))
	waitFor(t, "latched to d, the SDP's address", func() bool { return latched() == addrOf(d).String() })
	c.SendPacket(gw, latchPacket(0, 9))
	a.SendPacket(gw, latchPacket(0, 10))
	waitFor(t, "c and a dropped now", func() bool { return stats().Dropped.Source == 5 })
	if s := stats(); s.PacketsIn != 4 || latched() != addrOf(d).String() {
		t.Errorf("stats %+v", s)
	}
}

// TestRelatchAfterSilence: with Options.RelatchAfter, a source silent
// that long may be replaced by another.
func TestRelatchAfterSilence(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	e := newTestEngine(t, Options{Clock: clk, RelatchAfter: 3 * time.Second})
	b := newTestBridge(t, e)
	a, c := newTestPhone(t), newTestPhone(t)
	negotiateRTPOnly(b, addrOf(a))
	gw := b.RTPAddr()
	latched := func() string {
		if s := b.Stats().RTP; s.Latched {
			return s.Remote
		}
		return ""
	}
	a.SendPacket(gw, latchPacket(0, 1))
	waitFor(t, "latched to a", func() bool { return latched() == addrOf(a).String() })
	c.SendPacket(gw, latchPacket(0, 2))
	waitFor(t, "c dropped", func() bool { return b.Stats().RTP.Dropped.Source == 1 })
	clk.Advance(3 * time.Second)
	c.SendPacket(gw, latchPacket(0, 3))
	waitFor(t, "latched to c after silence", func() bool { return latched() == addrOf(c).String() })
}

// latchPacket is a PCMU (pt 0) or other packet of SSRC 1.
func latchPacket(pt uint8, seq uint16) rtp.Packet {
	return rtp.Packet{Header: rtp.Header{PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 1}, Payload: payload(0, 160)}
}

// TestLatchOnlyFromPeer: once the gateway knows where the phone's
// signalling comes from, a stranger that sends first does not latch; the
// SDP's address or the signalling's (a phone behind NAT) does.
func TestLatchOnlyFromPeer(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name, sdp, peer, from string
		ok                    bool
	}{
		{"the sdp's address", "192.0.2.10:4000", "192.0.2.10", "192.0.2.10:4000", true},
		{"the sdp's ip, another port", "192.0.2.10:4000", "198.51.100.1", "192.0.2.10:4100", true},
		{"a phone behind nat", "10.0.0.5:4000", "203.0.113.7", "203.0.113.7:31000", true},
		{"a stranger", "192.0.2.10:4000", "192.0.2.10", "198.51.100.66:4000", false},
		{"a stranger, nat", "10.0.0.5:4000", "203.0.113.7", "198.51.100.66:31000", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l latch
			l.setRemote(ap(tc.sdp))
			l.setPeer(netip.MustParseAddr(tc.peer))
			if ok, _ := l.accept(ap(tc.from), t0); ok != tc.ok {
				t.Fatalf("accept(%s) = %v, want %v", tc.from, ok, tc.ok)
			}
		})
	}
	// Without a peer, the first source latches, whoever it is.
	var l latch
	l.setRemote(ap("192.0.2.10:4000"))
	if ok, _ := l.accept(ap("198.51.100.66:4000"), t0); !ok {
		t.Fatal("no peer: the first source did not latch")
	}
}

func TestLatchRefusesNonLoopback(t *testing.T) {
	l := latch{loopbackOnly: true}
	if ok, _ := l.accept(netip.MustParseAddrPort("192.0.2.1:4000"), t0); ok {
		t.Fatal("LoopbackOnly accepted a non-loopback source")
	}
	if ok, relatched := l.accept(netip.MustParseAddrPort("127.0.0.1:4000"), t0); !ok || !relatched {
		t.Fatal("first loopback source not latched")
	}
	l.setRemote(netip.MustParseAddrPort("0.0.0.0:4000"))
	if l.target().IsValid() {
		t.Fatal("hold address is a target")
	}
}

func TestOutStreamContinuity(t *testing.T) {
	s := newOutStream()
	now := t0
	var out []rtp.Header
	send := func(ssrc uint32, seq uint16, ts uint32, at time.Duration) {
		h := rtp.Header{SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}
		s.rewrite(&h, 8000, 20*time.Millisecond, now.Add(at))
		out = append(out, h)
	}
	send(1, 100, 1000, 0)
	send(1, 101, 1160, 20*time.Millisecond)
	send(1, 102, 1320, 40*time.Millisecond)
	// A new source 100 ms later, numbered anyhow.
	send(2, 5, 777, 140*time.Millisecond)
	send(2, 6, 937, 160*time.Millisecond)
	for i := 1; i < len(out); i++ {
		if out[i].SequenceNumber != out[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, out[i].SequenceNumber, out[i-1].SequenceNumber)
		}
	}
	if d := out[3].Timestamp - out[2].Timestamp; d != 800 {
		t.Errorf("timestamp gap across the source change %d, want 800 (100 ms)", d)
	}
	if !out[3].Marker || out[4].Marker || out[1].Marker {
		t.Errorf("marker bits %v %v %v", out[1].Marker, out[3].Marker, out[4].Marker)
	}
	// A generated packet takes the next number; relayed ones shift after it.
	seq, ts := s.next(8000, now.Add(180*time.Millisecond))
	if seq != out[4].SequenceNumber+1 || ts != out[4].Timestamp+160 {
		t.Errorf("generated seq %d ts %d", seq, ts)
	}
	send(2, 7, 1097, 180*time.Millisecond)
	if got := out[5].SequenceNumber; got != seq+1 {
		t.Errorf("relayed after generated: seq %d, want %d", got, seq+1)
	}
}

// TestOutStreamFirstSeq: a stream starts in the lower half of the
// sequence numbers (see maxFirstSeq); 1,000 draws from the whole space
// would all land there once in 2^1000.
func TestOutStreamFirstSeq(t *testing.T) {
	for range 1000 {
		h := rtp.Header{SSRC: 1, SequenceNumber: 40000}
		newOutStream().rewrite(&h, 8000, 20*time.Millisecond, t0)
		if h.SequenceNumber > maxFirstSeq {
			t.Fatalf("a stream starts at %d, above %d", h.SequenceNumber, maxFirstSeq)
		}
	}
}

func TestRecvStatsJitterAndLoss(t *testing.T) {
	var s recvStats
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	// On time: no jitter.
	s.packet(1, 1, 0, 172, 8000, at(0))
	s.packet(1, 2, 160, 172, 8000, at(20))
	// 10 ms late: D = 80 units, J = 80/16 = 5.
	s.packet(1, 3, 320, 172, 8000, at(50))
	// Back on time: D = 80, J = 5 + (80-5)/16.
	s.packet(1, 4, 480, 172, 8000, at(60))
	// Seq 5 lost.
	s.packet(1, 6, 800, 172, 8000, at(100))
	var l LegStats
	s.snapshot(t0, &l)
	// Seq 6 is on time again: D = 0.
	wantJ := (5 + (80.0-5)/16) * 15 / 16 * 1000 / 8000
	if math.Abs(l.Jitter-wantJ) > 1e-9 {
		t.Errorf("jitter %v ms, want %v", l.Jitter, wantJ)
	}
	if l.Lost != 1 || l.PacketsIn != 5 || l.BytesIn != 5*172 {
		t.Errorf("lost %d packets %d bytes %d", l.Lost, l.PacketsIn, l.BytesIn)
	}
	// Sequence wrap, then a new source that loses one packet too.
	s.packet(1, 7, 960, 172, 8000, at(120))
	var w recvStats
	for i, seq := range []uint16{65533, 65534, 0, 1} {
		w.packet(9, seq, uint32(i)*160, 172, 8000, at(float64(20*i)))
	}
	w.packet(10, 10, 0, 172, 8000, at(100))
	w.packet(10, 12, 320, 172, 8000, at(140))
	w.snapshot(t0, &l)
	if l.Lost != 2 {
		t.Errorf("lost %d across a wrap and a new source, want 2 (65535 and 11)", l.Lost)
	}
}

func TestSendDTMFErrors(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	if err := b.SendDTMF('1', 0); !errors.Is(err, ErrNoDTMF) {
		t.Fatalf("before negotiation: %v", err)
	}
	if err := b.SendDTMF('x', 0); err == nil {
		t.Fatal("digit x accepted")
	}
	phone := newTestPhone(t)
	negotiateRTPOnly(b, addrOf(phone))
	if err := b.SendDTMF('#', 0); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if err := b.SendDTMF('1', 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestDTMFEventCodes(t *testing.T) {
	for d, want := range map[rune]uint8{'0': 0, '9': 9, '*': 10, '#': 11, 'A': 12, 'd': 15, 'R': 16} {
		if got, ok := dtmfEvent(d); !ok || got != want {
			t.Errorf("%q: %d %v, want %d", d, got, ok, want)
		}
	}
}

func TestBuildRoute(t *testing.T) {
	web := []Codec{{Name: "PCMU", ClockRate: 8000, PayloadType: 0}, {Name: "telephone-event", ClockRate: 8000, PayloadType: 126}}
	ours := []Codec{{Name: "PCMU", ClockRate: 8000, PayloadType: 0}, {Name: "telephone-event", ClockRate: 8000, PayloadType: 126}}
	phone := []Codec{{Name: "PCMU", ClockRate: 8000, PayloadType: 0}, {Name: "telephone-event", ClockRate: 8000, PayloadType: 101}}
	r := buildRoute(web, append(ours, phone...), phone)
	if r.toRTP.out[126] != 101+1 || r.toRTP.out[0] != 0+1 || !r.toRTP.dtmf[126] {
		t.Errorf("to rtp: 126→%d", r.toRTP.out[126]-1)
	}
	if r.toWeb.out[126] != 126+1 || r.toWeb.out[101] != 126+1 {
		t.Errorf("to web: 126→%d 101→%d", r.toWeb.out[126]-1, r.toWeb.out[101]-1)
	}
	if !r.dtmfOK || r.dtmf.PayloadType != 101 {
		t.Errorf("dtmf %+v", r.dtmf)
	}
}
