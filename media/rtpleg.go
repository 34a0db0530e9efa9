package media

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// latch implements symmetric RTP (RFC 4961 practice, "comedia"): the RTP
// leg sends to the address the peer's packets come from, not only to the
// one its SDP names, so that phones behind NAT work.
//
// The first valid packet (it parses as RTP and carries a payload type
// negotiated on the leg) latches the source; once the gateway knows where
// the peer's signalling comes from (Bridge.SetRTPPeer), only a packet from
// that address or from the SDP's may latch, so that a stranger cannot get
// in between a phone's re-INVITE and its first packet. From then on the
// source is checked strictly: packets from any other address are dropped
// and counted. Only the peer's signalling moves the latch, never a stray
// packet:
//   - an SDP from the peer (answer, re-INVITE) that changes its address or
//     port unlatches, and the next valid packet latches again;
//   - a packet from the very address of the peer's SDP takes the latch
//     over from another source, so that a stranger who got in first is
//     dropped as soon as the phone itself sends;
//   - only when Options.RelatchAfter is positive may another source take
//     over after that long of silence from the latched one (a NAT
//     rebinding heals, at the price of letting whoever learns the port
//     take the media over).
//
// Until a source latches, packets go to the SDP's address.
type latch struct {
	relatchAfter time.Duration
	loopbackOnly bool

	// cur is the latched source, nil when none; seen is when it last sent,
	// as the time since base. The packet path reads both without the lock.
	cur  atomic.Pointer[netip.AddrPort]
	seen atomic.Int64

	mu   sync.Mutex
	sdp  netip.AddrPort // from the peer's SDP; invalid on hold (0.0.0.0)
	peer netip.Addr     // where the peer's signalling comes from; invalid: unknown
	base time.Time      // set under mu before the first latch, then fixed
}

// setPeer records where the peer's signalling comes from: from then on
// only that address and the SDP's may latch.
func (l *latch) setPeer(ip netip.Addr) {
	l.mu.Lock()
	l.peer = ip.Unmap()
	l.mu.Unlock()
}

// mayLatch reports whether a packet from src may become the latched
// source. l.mu is held.
func (l *latch) mayLatch(src netip.AddrPort) bool {
	if !l.peer.IsValid() || src == l.sdp {
		return true
	}
	ip := src.Addr().Unmap()
	return ip == l.peer || ip == l.sdp.Addr().Unmap()
}

// setRemote records the address of the peer's latest SDP; a change
// unlatches.
func (l *latch) setRemote(ap netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ap != l.sdp {
		l.sdp = ap
		l.cur.Store(nil)
	}
}

// accept reports whether a valid packet from src may be relayed, latching
// src when allowed; relatched is set when the source changed. A packet from
// the latched source takes no lock.
func (l *latch) accept(src netip.AddrPort, now time.Time) (ok, relatched bool) {
	if l.loopbackOnly && !isLoopback(src.Addr()) {
		return false, false
	}
	if p := l.cur.Load(); p != nil && *p == src {
		l.seen.Store(int64(now.Sub(l.base)))
		return true, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.base.IsZero() {
		l.base = now
	}
	p := l.cur.Load()
	switch {
	case p != nil && *p == src:
	case !l.mayLatch(src):
		return false, false
	case p == nil, src == l.sdp:
		relatched = true
	case l.relatchAfter > 0 && now.Sub(l.base)-time.Duration(l.seen.Load()) >= l.relatchAfter:
		relatched = true
	default:
		return false, false
	}
	if relatched {
		a := new(netip.AddrPort)
		*a = src
		l.cur.Store(a)
	}
	l.seen.Store(int64(now.Sub(l.base)))
	return true, relatched
}

// target is where RTP for the peer goes: the latched source, else the SDP
// address; invalid when there is none.
func (l *latch) target() netip.AddrPort {
	if p := l.cur.Load(); p != nil {
		return *p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.cur.Load(); p != nil {
		return *p
	}
	if a := l.sdp.Addr(); a.IsValid() && !a.IsUnspecified() && l.sdp.Port() != 0 {
		return l.sdp
	}
	return netip.AddrPort{}
}

func (l *latch) source() netip.AddrPort {
	if p := l.cur.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// readRTP is the RTP socket's reader: phone → browser.
func (b *Bridge) readRTP() {
	defer b.wg.Done()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, src, err := b.pair.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if b.isClosing() {
				return
			}
			continue
		}
		b.fromRTP(buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), &pkt, b.clock.Now(), nil)
	}
}

// readRTCP counts what arrives on the RTCP port. RTCP is terminated on
// each leg; the RTP leg's reports are not relayed to the browser.
func (b *Bridge) readRTCP() {
	defer b.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := b.pair.rtcp.ReadFromUDPAddrPort(buf); err != nil {
			if b.isClosing() {
				return
			}
			continue
		}
		b.rtpIn.addRTCP()
	}
}

// fromRTP relays one datagram from the RTP leg to the browser, received
// at now. batch, when not nil, is the RTP poller's batch for the shared ICE
// socket.
func (b *Bridge) fromRTP(buf []byte, src netip.AddrPort, pkt *rtp.Packet, now time.Time, batch *iceSender) {
	r := b.route.Load()
	if r != nil && r.rtcpMux && isRTCP(buf) {
		b.rtpIn.addRTCP()
		return
	}
	if err := pkt.Unmarshal(buf); err != nil || pkt.Version != 2 {
		b.rtpIn.drop(dropMalformed)
		return
	}
	pt := pkt.PayloadType
	if r == nil || !r.toWeb.known[pt] {
		b.rtpIn.drop(dropPayloadType)
		return
	}
	ok, relatched := b.latch.accept(src, now)
	if !ok {
		b.rtpIn.drop(dropSource)
		return
	}
	if relatched {
		b.log.Debug("rtp latched", "source", src)
	}
	b.touch(now)
	rate := r.toWeb.rate[pt]
	if r.toWeb.dtmf[pt] {
		rate = 0
	}
	b.rtpIn.packet(pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, len(buf), rate, now)
	out := r.toWeb.out[pt]
	if out == 0 {
		b.rtpIn.drop(dropPayloadType)
		return
	}
	if !r.fwdToWeb {
		b.rtpIn.drop(dropDirection)
		return
	}
	stripForRelay(pkt)
	pkt.PayloadType = out - 1
	s := b.toWeb
	s.mu.Lock()
	if relatched {
		s.reset = true
	}
	s.rewrite(&pkt.Header, r.toWeb.rate[pt], r.ptime, now)
	n, err := b.writeWeb(&pkt.Header, pkt.Payload, batch)
	s.mu.Unlock()
	switch {
	case err != nil:
		b.rtpIn.drop(dropFailed)
		return
	case n == 0:
		// pion drops what is written before SRTP is up.
		b.rtpIn.drop(dropDirection)
		return
	}
	b.webOut.add(pkt.MarshalSize())
}

// fromWeb relays one RTP packet from the browser to the RTP leg.
func (b *Bridge) fromWeb(buf []byte, pkt *rtp.Packet) {
	if err := pkt.Unmarshal(buf); err != nil {
		b.webIn.drop(dropMalformed)
		return
	}
	b.relayWeb(pkt, len(buf), b.clock.Now())
}

// relayWeb relays the browser's packet pkt, parsed from size bytes and
// received at now, to the RTP leg.
func (b *Bridge) relayWeb(pkt *rtp.Packet, size int, now time.Time) {
	r := b.route.Load()
	b.touch(now)
	pt := pkt.PayloadType
	var rate uint32
	if r != nil && !r.toRTP.dtmf[pt] {
		rate = r.toRTP.rate[pt]
	}
	b.webIn.packet(pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, size, rate, now)
	if r == nil {
		b.webIn.drop(dropDirection)
		return
	}
	out := r.toRTP.out[pt]
	if out == 0 {
		b.webIn.drop(dropPayloadType)
		return
	}
	if !r.fwdToRTP {
		b.webIn.drop(dropDirection)
		return
	}
	stripForRelay(pkt)
	pkt.PayloadType = out - 1
	if !b.sendRTP(pkt, r.toRTP.rate[pt], r.ptime, now, true) {
		b.webIn.drop(dropFailed)
	}
}

// sendRTP writes pkt to the RTP leg on the gateway's stream, rewriting its
// SSRC, sequence number and timestamp when rewrite is set (generated
// packets come numbered).
func (b *Bridge) sendRTP(pkt *rtp.Packet, rate uint32, frame time.Duration, now time.Time, rewrite bool) bool {
	dst := b.latch.target()
	if !dst.IsValid() || b.e.opts.LoopbackOnly && !isLoopback(dst.Addr()) {
		return false
	}
	s := b.toRTP
	s.mu.Lock()
	defer s.mu.Unlock()
	if rewrite {
		s.rewrite(&pkt.Header, rate, frame, now)
	}
	pkt.SSRC = s.ssrc
	n, err := pkt.MarshalTo(s.buf[:])
	if err != nil {
		return false
	}
	if _, err := b.pair.rtpWriter().WriteToUDPAddrPort(s.buf[:n], dst); err != nil {
		return false
	}
	b.rtpOut.add(n)
	return true
}
