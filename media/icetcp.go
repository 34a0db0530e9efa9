package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// tcpListener is the ICE-TCP listener under pion's TCP mux. Anyone may
// connect to it, and pion keeps a connection until its first STUN message
// or a timeout, so it holds connections to a total cap and a cap per IPv4
// address or IPv6 /64: a connection beyond either is closed at once and
// never reaches the mux. It refuses rather than evicts (as the SIP
// transports do) because any connection it holds may carry a call.
type tcpListener struct {
	net.Listener
	maxConns, maxPerIP int
	log                *slog.Logger

	mu    sync.Mutex
	open  int
	perIP map[netip.Prefix]int

	refused atomic.Uint64
}

func newTCPListener(l net.Listener, maxConns, maxPerIP int, log *slog.Logger) *tcpListener {
	return &tcpListener{Listener: l, maxConns: maxConns, maxPerIP: maxPerIP, log: log, perIP: map[netip.Prefix]int{}}
}

// Accept returns the next connection within the caps; it closes the
// others itself.
func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		group := netip.Prefix{}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			group = peerGroup(ap.Addr())
		}
		if why := l.admit(group); why != "" {
			l.refused.Add(1)
			l.log.Debug("ice-tcp connection refused", "remote", c.RemoteAddr().String(), "reason", why)
			_ = c.Close()
			continue
		}
		return &tcpConn{Conn: c, l: l, group: group}, nil
	}
}

// admit takes a place for a connection from group, or says why not.
func (l *tcpListener) admit(group netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.maxConns:
		return "total cap"
	case l.perIP[group] >= l.maxPerIP:
		return "per-address cap"
	}
	l.open++
	l.perIP[group]++
	return ""
}

func (l *tcpListener) release(group netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[group]--; l.perIP[group] <= 0 {
		delete(l.perIP, group)
	}
}

// counts returns the connections open now and those refused so far.
func (l *tcpListener) counts() (open int, refused uint64) {
	l.mu.Lock()
	open = l.open
	l.mu.Unlock()
	return open, l.refused.Load()
}

// tcpConn gives its place back when closed, once.
type tcpConn struct {
	net.Conn
	l     *tcpListener
	group netip.Prefix
	once  sync.Once
}

func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.group) })
	return err
}

// peerGroup is the unit of the per-address cap: an IPv4 address, or an
// IPv6 address's /64, which one subscriber is given whole.
func peerGroup(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// iceListenAttempts bounds the tries for a free port number that is free
// for both UDP and TCP, when the system picks it.
const iceListenAttempts = 20

// listenICE binds the ICE UDP socket on bind:port and, with tcp set, the
// TCP listener on the same port number. With port 0 the system picks the
// UDP port, and another is tried while its TCP twin is taken.
func listenICE(bind netip.Addr, port int, tcp bool) (*net.UDPConn, *net.TCPListener, error) {
	udpNet, tcpNet := "udp4", "tcp4"
	if bind.Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	for attempt := 1; ; attempt++ {
		u, err := net.ListenUDP(udpNet, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(port))))
		if err != nil {
			return nil, nil, fmt.Errorf("media: ice udp port: %w", err)
		}
		if !tcp {
			return u, nil, nil
		}
		got := u.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		t, err := net.ListenTCP(tcpNet, net.TCPAddrFromAddrPort(netip.AddrPortFrom(bind, got)))
		if err == nil {
			return u, t, nil
		}
		u.Close()
		if port != 0 || attempt == iceListenAttempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("media: ice tcp port: %w", err)
		}
	}
}
