package media

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
)

// The fast path relays a web leg's audio without pion's packet pipeline.
// pion hands each received SRTP packet through several goroutines (the
// ICE mux's read loop, the candidate's buffer, the DTLS mux, the SRTP
// session, the track's buffer) with a copy at each, and runs its
// interceptors and SRTP session for each packet sent. On the fast path
// the mux's read loop itself decrypts the browser's audio in place and
// relays it (one goroutine, no copy), and the RTP leg's reader encrypts
// the phone's audio and writes it on the shared socket.
//
// pion keeps everything else: ICE (STUN), DTLS, SRTCP and its reports,
// video, and the legs whose selected pair is not UDP on the shared port
// (ICE-TCP) or whose keys the fast path could not learn or verify.

// fastAuthTries is how many packets from a leg's address may fail to
// decrypt before any has succeeded, before the leg goes back to pion's path
// for good: keys that do not authenticate the browser's packets are wrong.
const fastAuthTries = 8

// fastPassEvery paces the browser's packets that go through pion although
// the leg is on the fast path (see fastLeg.receive).
const fastPassEvery = time.Second

// rtpHeaderLen is the fixed RTP header (RFC 3550 §5.1).
const rtpHeaderLen = 12

// FastPathStats counts the fast path's work, engine-wide.
type FastPathStats struct {
	// Legs is the number of web legs on the fast path now.
	Legs int `json:"legs"`
	// PacketsIn counts SRTP packets from browsers decrypted on the fast
	// path, PacketsOut those encrypted for them.
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	// Rejected counts packets from a leg's address dropped on the fast
	// path: failed authentication, replayed, malformed.
	Rejected uint64 `json:"rejected"`
	// Fallbacks counts legs left on pion's path: keys not learned, keys
	// that never authenticated a packet, or (the browser's audio only) a
	// leg whose packets no longer authenticate after a time off the path.
	Fallbacks uint64 `json:"fallbacks"`
}

// fastConn is the shared ICE socket as pion's UDP mux sees it. Its read,
// called by the mux's one read loop, takes the fast path's packets and
// returns the rest to pion; it watches the DTLS hellos both ways for the
// keys.
type fastConn struct {
	*net.UDPConn
	log   *slog.Logger
	keys  *keyTable
	clock clock.Clock
	// rd reads the socket a batch at a time, out of Go's network
	// poller; nil: a datagram a call through it (not Linux). w sends:
	// rd's socket, else the UDPConn.
	rd *iceReader
	w  udpWriter
	// now is the time of the batch being handed out, read once a batch.
	now time.Time
	// coalesce is Options.Coalesce for rd: after a batch of few
	// datagrams, the read loop sleeps this long (pause) before it reads
	// the socket again, so that the next batch holds those that came
	// meanwhile (see rtpPoller).
	coalesce time.Duration
	pause    func(time.Duration)
	pauses   atomic.Uint64
	// waits parks the read loop in Go's network poller until rd's socket
	// is readable (Linux; see pollWaiter).
	waits *iceWaits
	// q, when set, is where the engine's poller, which then reads rd's
	// socket and relays the fast path's datagrams, puts pion's: the
	// mux's read loop takes them from there (see feed).
	q *pionQueue

	mu   sync.RWMutex
	legs map[netip.AddrPort]*fastLeg

	packetsIn, packetsOut, rejected, fallbacks atomic.Uint64
}

func newFastConn(c *net.UDPConn, log *slog.Logger, keys *keyTable, clk clock.Clock, batch bool, coalesce time.Duration) *fastConn {
	fc := &fastConn{UDPConn: c, log: log, keys: keys, clock: clk, legs: map[netip.AddrPort]*fastLeg{}, w: c, coalesce: coalesce}
	if batch {
		if fc.rd = newICEReader(c); fc.rd != nil {
			fc.w = fc.rd.writer()
			fc.waits = newICEWaits(fc.rd, log)
			if fc.waits != nil {
				fc.pause = fc.waits.timer.sleep
			}
		}
	}
	return fc
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter: pion's mux reads
// with it, from one goroutine. The fast path's datagrams are relayed
// here; the others are copied to p one a call, in the order they came.
func (c *fastConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	if c.q != nil {
		return c.q.pop(p)
	}
	if c.rd == nil {
		return c.readOne(p)
	}
	for {
		if c.waits != nil && c.rd.mustWait() {
			paused := c.coalesce > 0 && c.rd.sparse()
			if paused {
				c.pauses.Add(1)
				c.pause(c.coalesce)
			}
			if err := c.waits.wait(paused); err != nil {
				return 0, netip.AddrPort{}, net.ErrClosed
			}
		}
		b, src, fresh, err := c.rd.read()
		if errors.Is(err, errNotReady) {
			continue
		}
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		if fresh {
			c.now = c.clock.Now()
		}
		if len(b) == 0 || c.handle(b, src, c.now) {
			continue
		}
		return copy(p, b), src, nil
	}
}

// readOne is ReadFromAddrPort a datagram a system call.
func (c *fastConn) readOne(p []byte) (int, netip.AddrPort, error) {
	for {
		n, src, err := c.UDPConn.ReadFromUDPAddrPort(p)
		if err != nil || n == 0 {
			return n, src, err
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if c.handle(p[:n], src, c.clock.Now()) {
			continue
		}
		return n, src, nil
	}
}

// handle watches the DTLS hellos for keys and relays the fast path's
// datagrams; false gives b to pion.
func (c *fastConn) handle(b []byte, src netip.AddrPort, now time.Time) bool {
	switch {
	case b[0] >= 20 && b[0] <= 63: // DTLS (RFC 7983 §7)
		c.keys.observe(b, src, false)
	case b[0] >= 128 && b[0] <= 191 && !isRTCP(b):
		return c.take(b, src, now)
	}
	return false
}

// ReadFrom is ReadFromAddrPort for a caller that wants a net.Addr.
func (c *fastConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, src, err := c.ReadFromAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(src), nil
}

// WriteToAddrPort implements ice.AddrPortReaderWriter.
func (c *fastConn) WriteToAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if len(b) > 0 && b[0] >= 20 && b[0] <= 63 {
		c.keys.observe(b, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), true)
	}
	return c.w.WriteToUDPAddrPort(b, dst)
}

// feed hands the reading of rd's socket to the engine's poller, before
// pion's mux reads (or again, to a new poller): the read loop then takes
// pion's datagrams from the queue it returns, and its own waits go.
func (c *fastConn) feed() *pionQueue {
	if c.q == nil {
		c.q = newPionQueue()
		if c.waits != nil {
			c.waits.close()
			c.waits = nil
		}
	}
	return c.q
}

// Close closes the socket; a read waiting on it fails.
func (c *fastConn) Close() error {
	if c.q != nil {
		c.q.close()
	}
	if c.rd != nil {
		c.rd.close()
		if c.waits != nil {
			c.waits.close()
		}
		return nil
	}
	return c.UDPConn.Close()
}

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing once the
// socket is the batch reader's: its sends never wait (a datagram that
// finds the buffer full is dropped), its reads end with Close. pion's mux
// sets a write deadline to abort writes that block.
func (c *fastConn) SetDeadline(t time.Time) error {
	if c.rd != nil {
		return nil
	}
	return c.UDPConn.SetDeadline(t)
}

// SetReadDeadline: see SetDeadline.
func (c *fastConn) SetReadDeadline(t time.Time) error {
	if c.rd != nil {
		return nil
	}
	return c.UDPConn.SetReadDeadline(t)
}

// SetWriteDeadline: see SetDeadline.
func (c *fastConn) SetWriteDeadline(t time.Time) error {
	if c.rd != nil {
		return nil
	}
	return c.UDPConn.SetWriteDeadline(t)
}

// WriteTo is WriteToAddrPort for a net.Addr.
func (c *fastConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.UnknownNetworkError(addr.Network())}
	}
	return c.WriteToAddrPort(b, u.AddrPort())
}

// take relays b when it is fast-path audio from a leg's address; false
// gives it to pion. The read lock keeps a leg's removal waiting for the
// packet in flight.
func (c *fastConn) take(b []byte, src netip.AddrPort, now time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l := c.legs[src]
	if l == nil {
		return false
	}
	return l.receive(b, now)
}

// add puts l on the fast path at addr, in place of where it was.
func (c *fastConn) add(l *fastLeg, addr netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := l.addr.Load(); old != nil && c.legs[*old] == l {
		delete(c.legs, *old)
	}
	if other := c.legs[addr]; other != nil && other != l {
		// Two legs cannot share a browser address; the newer wins
		// and the other goes back to pion.
		other.addr.Store(nil)
	}
	if l.addr.Load() == nil {
		// Back from a time off the path (or on it for the first
		// time): see fastLeg.rejoin.
		l.rejoin.Store(true)
	}
	c.legs[addr] = l
	l.addr.Store(&addr)
}

// remove takes l off the fast path; it returns when no packet of l is in
// flight.
func (c *fastConn) remove(l *fastLeg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := l.addr.Load(); old != nil && c.legs[*old] == l {
		delete(c.legs, *old)
	}
	l.addr.Store(nil)
}

func (c *fastConn) stats() FastPathStats {
	c.mu.RLock()
	n := len(c.legs)
	c.mu.RUnlock()
	return FastPathStats{
		Legs:       n,
		PacketsIn:  c.packetsIn.Load(),
		PacketsOut: c.packetsOut.Load(),
		Rejected:   c.rejected.Load(),
		Fallbacks:  c.fallbacks.Load(),
	}
}

// fastLeg is one web leg on the fast path.
type fastLeg struct {
	b    *Bridge
	conn *fastConn
	addr atomic.Pointer[netip.AddrPort] // the browser's, nil: off the path

	// Receive side, used by the mux's read loop only. tagLen is the
	// profile's authentication tag.
	remote   *srtp.Context
	tagLen   int
	verified bool // a packet has authenticated since the leg (re)joined
	proven   bool // a packet has authenticated: the keys are good
	// rejoin tells the read loop that the leg came back to the fast path
	// and must authenticate a packet again. While it was off, pion
	// decrypted the browser's packets: after 2^15 of them the remote
	// context can no longer guess their rollover counter (RFC 3711
	// §3.3.1), and a verified leg would drop them all. Unverified, they
	// go to pion, and after fastAuthTries failures for good (recvOff).
	rejoin  atomic.Bool
	recvOff bool // the browser's audio goes through pion for good
	// lastPass is when pion last got a copy of a packet (fastPassEvery).
	// copy holds that copy once the leg is verified, and before, the
	// plaintext of a trial decryption (see receive).
	lastPass time.Time
	copy     [1500]byte
	// copied is the SSRC and sequence number of the last copy given to
	// pion, with bit 48 set; read by pion's track reader.
	copied   atomic.Uint64
	failures int
	pkt      rtp.Packet

	// Send side, used under the bridge's toWeb.mu.
	local *srtp.Context
	hdr   rtp.Header
	plain [1500]byte
	enc   [1600]byte
}

// receive decrypts and relays one SRTP packet from the leg's address.
func (l *fastLeg) receive(b []byte, now time.Time) bool {
	hlen, ok := rtpHeaderSize(b)
	if !ok || len(b) < hlen+l.tagLen {
		// Not SRTP, from the browser's address: refused here, where
		// it costs nothing (pion's errors are allocated).
		l.conn.rejected.Add(1)
		return true
	}
	r := l.b.route.Load()
	if r == nil || !r.toRTP.known[b[1]&0x7f] {
		// Video, or a format of no audio stream: pion's.
		return false
	}
	if l.rejoin.Load() {
		l.rejoin.Store(false)
		l.verified, l.failures = false, 0
	}
	if l.recvOff {
		return false
	}
	// pion's ICE agent takes the browser for gone when it hears nothing
	// for a few seconds, and an ICE-lite gateway sends no checks of its
	// own to hear answers to: once a second pion gets a copy of a packet
	// that the fast path relays (its track drops it, see isCopy).
	copyForPion := false
	if l.verified && now.Sub(l.lastPass) >= fastPassEvery {
		l.lastPass = now
		copyForPion = copy(l.copy[:], b) == len(b)
	}
	// Decrypted in place (b is the mux's buffer) once the leg is
	// verified. Before, into l.copy: a packet that fails goes to pion,
	// and a failed AES-GCM open clears what it was to decrypt.
	dst := b
	if !l.verified {
		dst = l.copy[:0]
	}
	plain, err := l.remote.DecryptRTP(dst, b, &l.pkt.Header)
	if err != nil {
		if l.verified {
			l.conn.rejected.Add(1)
			return true
		}
		l.failures++
		if l.failures == fastAuthTries {
			// Once: the packets that come before the change go to
			// pion too, and are not counted again.
			l.conn.fallbacks.Add(1)
			if l.proven {
				// The keys are good, this context lost the
				// browser's rollover counter (see rejoin): pion's
				// has it. The phone's audio stays on the fast path.
				l.recvOff = true
				l.b.log.Warn("media fast path: the browser's packets no longer decrypt after a time off the path, they go through pion", "err", err)
				return false
			}
			l.b.log.Warn("media fast path: the browser's packets fail to decrypt, the leg stays on pion's path", "err", err)
			// Under the conn's read lock: the removal happens
			// in a goroutine of the bridge.
			l.b.goWorker(l.b.stopFast)
		}
		return false
	}
	if !l.verified {
		l.verified, l.proven = true, true
		l.lastPass = now
	}
	l.conn.packetsIn.Add(1)
	if copyForPion {
		l.copied.Store(uint64(l.pkt.SSRC)<<16 | uint64(l.pkt.SequenceNumber) | 1<<48)
	}
	// DecryptRTP parsed the header: only the payload is left to find.
	if !setPayload(&l.pkt, plain, hlen) {
		l.b.webIn.drop(dropMalformed)
		return true
	}
	l.b.relayWeb(&l.pkt, len(plain), now)
	if copyForPion {
		copy(b, l.copy[:len(b)])
		return false
	}
	return true
}

// isCopy reports whether a packet that pion's track delivers is the copy
// the fast path gave pion of a packet it relayed itself.
func (l *fastLeg) isCopy(ssrc uint32, seq uint16) bool {
	return l.copied.Load() == uint64(ssrc)<<16|uint64(seq)|1<<48
}

// send encrypts one packet for the browser and writes it on the shared
// socket; handled false leaves it to pion. Called with the bridge's
// toWeb.mu held.
//
// With out (the RTP poller's batch), the packet is encrypted into the
// batch, which its poller sends at the end of the wake-up.
func (l *fastLeg) send(h *rtp.Header, payload []byte, roc uint32, out *iceSender) (handled bool, n int, err error) {
	addr := l.addr.Load()
	bound := l.b.track.bound.Load()
	if addr == nil || bound == nil {
		return false, 0, nil
	}
	h.SSRC = bound.ssrc
	// The stream may have gone on pion's path since the fast path last
	// sent (the leg started late, or its pair went and came back): the
	// packet is encrypted with the rollover counter the stream is at,
	// which the browser expects, whatever this context saw.
	l.local.SetROC(bound.ssrc, roc)
	n, err = h.MarshalTo(l.plain[:])
	if err != nil || n+len(payload) > len(l.plain) {
		return false, 0, nil
	}
	n += copy(l.plain[n:], payload)
	dst := l.enc[:0]
	if out != nil {
		dst = out.slot()[:0]
	}
	enc, err := l.local.EncryptRTP(dst, l.plain[:n], &l.hdr)
	if err != nil {
		return false, 0, nil
	}
	// Counted before the write, so that the count is there when the
	// packet is.
	l.conn.packetsOut.Add(1)
	if out != nil {
		if !out.queue(l.b, enc, *addr) {
			return true, 0, errFastFamily
		}
		return true, n, nil
	}
	if _, err := l.conn.w.WriteToUDPAddrPort(enc, *addr); err != nil {
		return true, 0, err
	}
	return true, n, nil
}

// writeWeb sends one audio packet to the browser: on the fast path when
// the leg is on it, else through pion. Called with b.toWeb.mu held.
func (b *Bridge) writeWeb(h *rtp.Header, payload []byte, out *iceSender) (int, error) {
	// The browser's SRTP counts wraps from the first packet it gets (RFC
	// 3711 §3.3.1): a packet that went nowhere (pion drops what comes
	// before SRTP is up) must not move the count, or a wrap among the
	// early audio leaves the browser unable to decrypt anything after.
	before := b.webROC
	n, err := b.sendWeb(h, payload, b.webROC.count(h.SequenceNumber), out)
	if n == 0 {
		b.webROC = before
	}
	return n, err
}

// pionSyncEvery is how far the stream to the browser runs on the fast path
// ahead of the last packet that pion's SRTP context encrypted before one
// goes through pion again. pion's context never sees what the fast path
// sends and guesses a packet's rollover counter from the last packet it
// encrypted itself (see pionIndex): kept well within 2^15 of the stream,
// it can take the stream over whenever the leg leaves the fast path (its
// pair on ICE-TCP or a relay), wraps or not. One packet in 4,096: every
// 82 s of 20 ms audio.
const pionSyncEvery = 1 << 12

// sendWeb is writeWeb with the packet's rollover counter.
func (b *Bridge) sendWeb(h *rtp.Header, payload []byte, roc uint32, out *iceSender) (int, error) {
	i := uint64(roc)<<16 | uint64(h.SequenceNumber)
	l := b.fast.Load()
	pionFirst := l == nil || b.pion.due(i) && b.pion.guesses(i)
	if !pionFirst {
		if handled, n, err := l.send(h, payload, roc, out); handled {
			return n, err
		}
		if !b.pion.guesses(i) {
			// Off the fast path, and pion's context would take the
			// packet for another index: one the browser does not
			// expect, or one already used (keystream). Lost rather
			// than that; not while pion gets its packets (due).
			return 0, errFastROC
		}
	}
	n, err := b.track.writeRTP(h, payload)
	if n > 0 {
		b.pion.saw(i)
		return n, err
	}
	if pionFirst && l != nil {
		// Not sent (pion's SRTP not up yet): the fast path sends it,
		// and pion tries the next.
		if handled, n, err := l.send(h, payload, roc, out); handled {
			return n, err
		}
	}
	return n, err
}

// pionIndex follows the packets of the stream to the browser that pion's
// SRTP context encrypted. That context guesses a packet's rollover counter
// from the last of them, rightly within 2^15 packets either way, and takes
// it for 0 before the first (RFC 3711 §3.3.1). Indexes are the rollover
// counter and sequence number (writeWeb's, the browser's view). Guarded by
// the bridge's toWeb.mu.
type pionIndex struct {
	last uint64
	sent bool
}

// guesses reports whether pion's context would encrypt packet i as i.
func (p *pionIndex) guesses(i uint64) bool {
	if !p.sent {
		return i < 1<<16
	}
	d := int64(i - p.last)
	return d > -(1<<15) && d < 1<<15
}

// due reports whether packet i goes through pion, for its context to
// follow the stream (see pionSyncEvery).
func (p *pionIndex) due(i uint64) bool {
	return !p.sent || int64(i-p.last) >= pionSyncEvery
}

// saw records that pion's context encrypted packet i.
func (p *pionIndex) saw(i uint64) {
	if !p.sent || int64(i-p.last) > 0 {
		p.last, p.sent = i, true
	}
}

var (
	errFastROC    = errors.New("media: fast path: pion's srtp context cannot take the stream over at this packet")
	errFastFamily = errors.New("media: fast path: the browser's address is not of the ice socket's family")
)

// rocCount follows the rollover counter (RFC 3711 §3.3.1) of the stream
// to the browser, whichever path sends it: sequence numbers come in order
// from the outStream. Guarded by the bridge's toWeb.mu.
type rocCount struct {
	started bool
	last    uint16
	roc     uint32
}

// count takes the sequence number of the next packet sent and returns the
// packet's rollover counter.
func (c *rocCount) count(seq uint16) uint32 {
	switch {
	case !c.started:
		c.started, c.last = true, seq
	case int16(seq-c.last) > 0:
		if seq < c.last {
			c.roc++
		}
		c.last = seq
	case seq > c.last && c.roc > 0:
		return c.roc - 1 // late, from before the last wrap
	}
	return c.roc
}

// fastAddr returns the browser's address of t when its media may take
// the fast path: UDP through the shared ICE port (a browser's relay
// candidate included: the TURN server sends plain UDP to that port).
func (e *Engine) fastAddr(t Transport) (netip.AddrPort, bool) {
	if t.Local.Protocol != "udp" || t.Remote.Protocol != "udp" || t.Local.Type == "relay" {
		return netip.AddrPort{}, false
	}
	local, err := netip.ParseAddrPort(t.Local.Address)
	if err != nil || local.Port() != e.iceAddr.Port() {
		return netip.AddrPort{}, false
	}
	remote, err := netip.ParseAddrPort(t.Remote.Address)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), true
}

// startFast puts the connected web leg on the fast path, with the keys of
// its DTLS session, when its selected pair allows.
func (b *Bridge) startFast(t Transport) {
	c := b.e.fast
	if c == nil {
		return
	}
	b.fastMu.Lock()
	defer b.fastMu.Unlock()
	if b.isClosing() {
		return
	}
	if l := b.fast.Load(); l != nil || b.fastTried {
		b.moveFastLocked(t)
		return
	}
	addr, ok := b.e.fastAddr(t)
	if !ok {
		return
	}
	b.fastTried = true
	keys, err := c.keys.take(addr)
	var local, remote *srtp.Context
	if err == nil {
		local, remote, err = keys.contexts()
	}
	if err != nil {
		c.fallbacks.Add(1)
		b.log.Info("media fast path: the leg stays on pion's path", "err", err)
		return
	}
	l := &fastLeg{b: b, conn: c, local: local, remote: remote, tagLen: keys.tagLen()}
	b.fast.Store(l)
	c.add(l, addr)
	b.log.Debug("media fast path", "browser", addr, "srtp_profile", t.SRTPProfile)
}

// moveFast follows the selected pair of pc: the leg's fast path moves to
// its address, or stops when the pair cannot take it (ICE-TCP). It reads
// the pair when it runs, under fastMu, not when pion reported it: each
// report is handled on a goroutine of its own, in any order, and the last
// to run must leave the leg on the pair that pion selected last.
func (b *Bridge) moveFast(pc *webrtc.PeerConnection) {
	b.fastMu.Lock()
	defer b.fastMu.Unlock()
	p, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil {
		return
	}
	b.moveFastLocked(Transport{Local: candidateOf(p.Local), Remote: candidateOf(p.Remote)})
}

func (b *Bridge) moveFastLocked(t Transport) {
	l := b.fast.Load()
	if l == nil || b.isClosing() {
		return
	}
	if addr, ok := b.e.fastAddr(t); ok {
		l.conn.add(l, addr)
		return
	}
	// Back to pion's path (see writeWeb for the stream to the browser).
	l.conn.remove(l)
}

// onFastPath reports whether the leg's audio is on the fast path now.
func (b *Bridge) onFastPath() bool {
	l := b.fast.Load()
	return l != nil && l.addr.Load() != nil
}

// stopFast takes the leg off the fast path for good.
func (b *Bridge) stopFast() {
	b.fastMu.Lock()
	defer b.fastMu.Unlock()
	if l := b.fast.Swap(nil); l != nil {
		l.conn.remove(l)
	}
}

// rtpHeaderSize returns the size of the RTP header at the start of b,
// CSRCs and extension included; false when b is too short for it.
func rtpHeaderSize(b []byte) (int, bool) {
	if len(b) < rtpHeaderLen {
		return 0, false
	}
	n := rtpHeaderLen + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	return n, len(b) >= n
}

// setPayload finds the payload of pkt in plain, the packet whose hlen
// bytes of header pkt.Header was parsed from, as rtp.Packet.Unmarshal
// would; false when the padding does not fit.
func setPayload(pkt *rtp.Packet, plain []byte, hlen int) bool {
	end := len(plain)
	pkt.Header.PaddingSize = 0
	if pkt.Header.Padding {
		if end <= hlen {
			return false
		}
		pkt.Header.PaddingSize = plain[end-1]
		if pkt.Header.PaddingSize == 0 {
			return false
		}
		end -= int(pkt.Header.PaddingSize)
	}
	pkt.PaddingSize = pkt.Header.PaddingSize
	if end < hlen {
		return false
	}
	pkt.Payload = plain[hlen:end]
	return true
}
