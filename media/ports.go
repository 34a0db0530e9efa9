package media

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// portPair is the socket pair of one RTP leg: RTP on an even port, RTCP on
// the next one (RFC 3550 §11). Both are bound for the life of the leg, even
// when rtcp-mux makes the RTCP socket idle, so that the pair is always ours.
type portPair struct {
	port int
	rtp  *net.UDPConn
	rtcp *net.UDPConn
	// polled, when set, holds the sockets in place of rtp and rtcp
	// (closed then): the RTP poller reads them (poller_linux.go).
	polled *polledPair
}

func (p *portPair) close() {
	if p.polled != nil {
		p.polled.close()
		return
	}
	_ = p.rtp.Close()
	_ = p.rtcp.Close()
}

// rtpWriter and rtcpWriter send from the pair's sockets.
func (p *portPair) rtpWriter() udpWriter {
	if p.polled != nil {
		return p.polled.rtp
	}
	return p.rtp
}

func (p *portPair) rtcpWriter() udpWriter {
	if p.polled != nil {
		return p.polled.rtcp
	}
	return p.rtcp
}

// portPool hands out RTP port pairs from a range. A released pair drains
// before it can be handed out again: its sockets stay bound (and unread) for
// the drain time, so late packets of the old call are dropped by the kernel
// with the old sockets instead of reaching a new call, and no other process
// can take the port meanwhile. The drain runs on the injected clock.
type portPool struct {
	ip    netip.Addr
	lo    int // first RTP port (even)
	pairs int // number of pairs in the range
	clock clock.Clock
	drain time.Duration

	mu       sync.Mutex
	next     int // index of the pair to try first
	inUse    map[int]bool
	draining map[int]drainingPair
	closed   bool
}

type drainingPair struct {
	pair  *portPair
	timer clock.Timer
}

// newPortPool serves the even ports of [lo, hi] with their odd neighbour.
func newPortPool(ip netip.Addr, lo, hi int, c clock.Clock, drain time.Duration) *portPool {
	if lo%2 != 0 {
		lo++
	}
	return &portPool{
		ip:       ip,
		lo:       lo,
		pairs:    (hi - lo + 1) / 2,
		clock:    c,
		drain:    drain,
		inUse:    map[int]bool{},
		draining: map[int]drainingPair{},
	}
}

// alloc binds the next free pair, round robin through the range, so that a
// port is reused as late as possible. Ports that another program holds are
// skipped.
func (p *portPool) alloc() (*portPair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("media: port pool: %w", ErrClosed)
	}
	network := "udp4"
	if p.ip.Is6() {
		network = "udp6"
	}
	for i := 0; i < p.pairs; i++ {
		idx := (p.next + i) % p.pairs
		port := p.lo + 2*idx
		if p.inUse[port] {
			continue
		}
		if _, ok := p.draining[port]; ok {
			continue
		}
		rtpConn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			continue
		}
		rtcpConn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port+1))))
		if err != nil {
			_ = rtpConn.Close()
			continue
		}
		p.inUse[port] = true
		p.next = (idx + 1) % p.pairs
		return &portPair{port: port, rtp: rtpConn, rtcp: rtcpConn}, nil
	}
	return nil, fmt.Errorf("media: %d pairs from port %d: %w", p.pairs, p.lo, ErrNoPorts)
}

// release starts the drain of pp; the pair is closed and free again after
// the drain time.
func (p *portPool) release(pp *portPair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inUse, pp.port)
	if p.closed || p.drain <= 0 {
		pp.close()
		return
	}
	d := drainingPair{pair: pp}
	d.timer = p.clock.AfterFunc(p.drain, func() { p.drained(pp) })
	p.draining[pp.port] = d
}

func (p *portPool) drained(pp *portPair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.draining[pp.port]; ok && d.pair == pp {
		delete(p.draining, pp.port)
		pp.close()
	}
}

// close ends every drain at once; pairs still in use are closed by their
// bridges.
func (p *portPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for port, d := range p.draining {
		d.timer.Stop()
		d.pair.close()
		delete(p.draining, port)
	}
}

func (p *portPool) counts() (inUse, draining int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse), len(p.draining)
}
