// Package siptcp is the SIP transport over TCP and over TLS (RFC 3261
// §18, §26.2): messages framed by Content-Length on a byte stream, one
// goroutine reading each connection, connections reused for responses and
// for later requests to the same address, CRLF keep-alives (RFC 5626
// §4.4.1), and limits on what a peer can hold: connections per source
// (IPv4 address or IPv6 /64) and in all, idle time, and message size.
//
// Connections that carry a registration are kept in preference to the
// others, which are strangers until the gateway says otherwise
// (MarkRegistered): at the total cap the oldest stranger is closed to make
// room for a new connection, and strangers are closed after a shorter idle
// time. Connections the transport dialed (to a trunk, say) are not
// strangers: they idle as long as registered ones and are never evicted.
//
// Every connection is a flow (RFC 5626): it has a flow id, unique in the
// process (transport.NextFlowID), carried in the Source of each message it
// delivers, and the Handler hears once, with HandleFlowClosed, when it
// closes.
package siptcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// Defaults of Options. The total cap holds on a 2-core machine with 2 GB:
// an idle connection costs the gateway about 6 KiB, one holding a message
// that lacks its last byte up to 84 KiB (its buffer grows to the 64 KiB
// message limit; scripts/bench-conns.sh, docs/performance.md), so 5,000
// take 30–420 MB. TCP and TLS are capped each on its own.
const (
	DefaultIdleTimeout             = 10 * time.Minute
	DefaultUnregisteredIdleTimeout = 60 * time.Second
	DefaultDialTimeout             = 10 * time.Second
	DefaultHandshakeTimeout        = 10 * time.Second
	DefaultWriteTimeout            = 10 * time.Second
	DefaultMaxConns                = 5000
	DefaultMaxConnsPerIP           = 64
)

// ErrTooManyConns means the transport is at its connection cap.
var ErrTooManyConns = errors.New("siptcp: too many connections")

// Options configures a Transport. The zero value makes a TCP transport
// with the defaults above.
type Options struct {
	// TLS, when set, makes the transport a TLS one (Network returns
	// sip.TLS): the server side of every accepted connection uses it, so
	// it must hold a certificate. Load one with tls.LoadX509KeyPair.
	TLS *tls.Config
	// ClientTLS configures the connections a TLS transport dials. Nil
	// means the system roots. When its ServerName is empty, each dial
	// sets it to the host of the next hop: the top Route's, else the
	// Request-URI's, for a request; the top Via's sent-by for a response;
	// the destination IP address when that host is not known.
	ClientTLS *tls.Config
	// Limits bound what the parser accepts. A stream that carries a
	// larger message, or a message without Content-Length, is answered
	// with 513 or 400 when possible and closed: it cannot be
	// resynchronised.
	Limits sip.Limits
	// IdleTimeout closes a connection that carries a registration, or
	// that the transport dialed, when nothing has been received or sent
	// on it for that long. Default 10 minutes.
	IdleTimeout time.Duration
	// UnregisteredIdleTimeout closes an accepted connection that carries
	// no registration when nothing has been received or sent on it for
	// that long. Default 60 s: a client that registers does so at once,
	// and the longest silence of one that does not is the wait for an
	// answer, whose provisional responses count as traffic.
	UnregisteredIdleTimeout time.Duration
	// DialTimeout bounds opening a connection, TLS handshake included.
	// Default 10 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake of an accepted
	// connection. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing one message; a peer that does not read
	// loses its connection. Default 10 s.
	WriteTimeout time.Duration
	// MaxConns caps the open connections, accepted and dialed. At the
	// cap, the oldest accepted connection that carries no registration is
	// closed to make room for the new one; when every connection carries
	// one or was dialed, an accepted connection is refused and a dial
	// fails with ErrTooManyConns. Default 5000.
	MaxConns int
	// MaxConnsPerIP caps the accepted connections from one IPv4 address
	// or one IPv6 /64 (transport.PeerGroup); more are refused. Default 64.
	MaxConnsPerIP int
	// Clock times idle connections; nil means the system clock.
	Clock clock.Clock
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
}

// Transport is a SIP transport over TCP or TLS. It implements
// transport.Transport.
type Transport struct {
	network string
	ln      net.Listener
	local   sip.Addr
	opts    Options
	parser  sip.Parser
	maxMsg  int
	log     *slog.Logger
	clock   clock.Clock

	// life ends when the transport closes; dials in progress end with it.
	life     context.Context
	stopLife context.CancelFunc

	mu      sync.Mutex
	conns   *transport.ConnTable[*conn] // the caps' books, under mu
	byAddr  map[netip.AddrPort]*conn
	dialing map[netip.AddrPort]*dialCall
	sweeper clock.Timer
	closed  bool

	serving atomic.Bool
	h       transport.Handler // written before ready is closed
	ready   chan struct{}     // closed when Serve starts
	wg      sync.WaitGroup    // connection goroutines
}

// dialCall lets concurrent sends to one address share one dial.
type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
}

var _ transport.Transport = (*Transport)(nil)

// Listen opens a TCP listener on addr ("127.0.0.1:5060", "[::1]:5061")
// and returns a Transport on it, a TLS one when opts.TLS is set. ctx
// bounds the listening only.
func Listen(ctx context.Context, addr string, opts Options) (*Transport, error) {
	if opts.TLS != nil && len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil &&
		opts.TLS.GetConfigForClient == nil {
		return nil, errors.New("siptcp: tls config without certificate")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("siptcp: listen: %w", err)
	}
	return newTransport(ctx, ln, opts), nil
}

func newTransport(ctx context.Context, ln net.Listener, opts Options) *Transport {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.UnregisteredIdleTimeout <= 0 {
		opts.UnregisteredIdleTimeout = DefaultUnregisteredIdleTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConnsPerIP <= 0 {
		opts.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	network := sip.TCP
	if opts.TLS != nil {
		network = sip.TLS
	}
	la := ln.Addr().(*net.TCPAddr).AddrPort()
	t := &Transport{
		network: network,
		ln:      ln,
		local:   sip.Addr{Transport: network, AddrPort: la},
		opts:    opts,
		parser:  sip.Parser{Limits: opts.Limits},
		maxMsg:  opts.Limits.WithDefaults().MaxMessageSize,
		log:     opts.Logger,
		clock:   clock.Or(opts.Clock),
		byAddr:  make(map[netip.AddrPort]*conn),
		dialing: make(map[netip.AddrPort]*dialCall),
		ready:   make(chan struct{}),
	}
	t.conns = transport.NewConnTable[*conn](transport.ConnLimits{
		MaxConns:            opts.MaxConns,
		MaxConnsPerIP:       opts.MaxConnsPerIP,
		IdleTimeout:         opts.IdleTimeout,
		StrangerIdleTimeout: opts.UnregisteredIdleTimeout,
	}, t.clock)
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("transport", network, "local", la)
	// Listen's ctx bounds the listening only: the transport lives until
	// Close, with ctx's values.
	t.life, t.stopLife = context.WithCancel(context.WithoutCancel(ctx))
	t.mu.Lock()
	t.sweeper = t.clock.AfterFunc(t.conns.SweepInterval(), t.sweep)
	t.mu.Unlock()
	return t
}

// Network returns sip.TCP or sip.TLS.
func (t *Transport) Network() string { return t.network }

// LocalAddr returns the address the transport listens on.
func (t *Transport) LocalAddr() sip.Addr { return t.local }

// NumConns returns the number of open connections.
func (t *Transport) NumConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns.Len()
}

// Stats counts a Transport's connections, for metrics: Open, of which
// Registered carry a registration, Unregistered are accepted ones that
// carry none (the ones shed first) and the rest were dialed; and the
// connections accepted, refused at MaxConnsPerIP or MaxConns, evicted to
// make room at MaxConns, and closed for being idle.
type Stats = transport.ConnStats

// Stats returns the transport's connection counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns.Stats()
}

// MarkRegistered says whether flow, one of the transport's connections,
// carries a registration (see transport.RegistrationMarker). A connection
// that stops carrying one is treated as a stranger that has just arrived,
// idle since its last traffic.
func (t *Transport) MarkRegistered(flow sip.Addr, registered bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns.MarkRegistered(flow.Flow, registered)
}

// Serve accepts connections until ctx is done or the transport is closed,
// and calls h with every message and every closed connection. When it
// returns the transport is closed and every connection goroutine has
// ended. It returns nil, or the error that broke the listener.
func (t *Transport) Serve(ctx context.Context, h transport.Handler) error {
	if !t.serving.CompareAndSwap(false, true) {
		return errors.New("siptcp: serve called twice")
	}
	t.h = h
	close(t.ready)
	stop := context.AfterFunc(ctx, func() { t.Close() })
	defer stop()
	err := t.acceptLoop()
	t.Close()
	t.wg.Wait()
	return err
}

func (t *Transport) acceptLoop() error {
	var backoff time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.life.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait for some to be
			// freed rather than spin (as net/http does).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-t.life.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		t.accept(nc)
	}
}

func (t *Transport) accept(nc net.Conn) {
	remote := unmap(nc.RemoteAddr().(*net.TCPAddr).AddrPort())
	group := transport.PeerGroup(remote.Addr())
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return
	}
	victim, err := t.conns.Admit(group)
	if err != nil {
		t.mu.Unlock()
		nc.Close()
		if errors.Is(err, transport.ErrTooManyFromIP) {
			t.log.Debug("connection refused: source at its cap", "remote", remote, "group", group, "cap", t.opts.MaxConnsPerIP)
		} else {
			t.log.Debug("connection refused: transport at its cap, every connection registered or dialed",
				"remote", remote, "cap", t.opts.MaxConns)
		}
		return
	}
	if victim != nil {
		t.forgetLocked(victim)
	}
	if t.opts.TLS != nil {
		nc = tls.Server(nc, t.opts.TLS)
	}
	c := t.addLocked(nc, remote, group)
	t.mu.Unlock()
	if victim != nil {
		t.shed(victim, "for a new connection at the cap", c.addr.AddrPort)
	}
	go c.serve()
}

// shed closes an evicted connection; its reader then reports the flow
// closed.
func (t *Transport) shed(c *conn, why string, newcomer netip.AddrPort) {
	t.log.Debug("connection evicted "+why, "remote", c.addr.AddrPort, "flow", c.addr.Flow,
		"for", newcomer, "cap", t.opts.MaxConns)
	c.close()
}

// addLocked registers a new connection in the place t.conns gave it: an
// accepted one from group, a dialed one (the zero group); t.mu is held.
func (t *Transport) addLocked(nc net.Conn, remote netip.AddrPort, group netip.Prefix) *conn {
	c := &conn{
		t:       t,
		nc:      nc,
		addr:    sip.Addr{Transport: t.network, AddrPort: remote, Flow: transport.NextFlowID()},
		inbound: group.IsValid(),
	}
	c.entry = t.conns.Add(c, c.addr.Flow, group)
	t.byAddr[remote] = c
	t.wg.Add(1)
	return c
}

// remove forgets c.
func (t *Transport) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c)
}

// removeLocked forgets c, once: an evicted connection is out of t.conns
// before its reader ends.
func (t *Transport) removeLocked(c *conn) {
	if t.conns.Remove(c.entry) {
		t.forgetLocked(c)
	}
}

// forgetLocked drops c, which is out of t.conns, from the transport's own
// index.
func (t *Transport) forgetLocked(c *conn) {
	if t.byAddr[c.addr.AddrPort] == c {
		delete(t.byAddr, c.addr.AddrPort)
	}
}

// sweep closes the connections idle beyond their timeout and schedules
// the next sweep. It runs from the clock's timer.
func (t *Transport) sweep() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	type idleConn struct {
		c     *conn
		limit time.Duration
	}
	var idle []idleConn
	for c, limit := range t.conns.Idle() {
		idle = append(idle, idleConn{c, limit})
	}
	t.sweeper = t.clock.AfterFunc(t.conns.SweepInterval(), t.sweep)
	t.mu.Unlock()
	for _, ic := range idle {
		if ic.c.close() {
			t.conns.CountClosedIdle()
			t.log.Debug("idle connection closed", "remote", ic.c.addr.AddrPort, "flow", ic.c.addr.Flow,
				"idle_timeout", ic.limit)
		}
	}
}

// Close closes the listener and every connection. Serve returns once
// their goroutines have ended; Close does not wait for them. It is safe
// to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.stopLife()
	t.sweeper.Stop()
	conns := t.conns.Conns()
	t.mu.Unlock()
	err := t.ln.Close()
	for _, c := range conns {
		c.close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Send writes msg to dst: over the connection dst.Flow when set (failing
// with transport.ErrFlowClosed when it is gone), else over an open
// connection to dst.AddrPort, else over a new one, dialed within ctx and
// DialTimeout. A write that fails closes the connection, since a partial
// message leaves the stream unusable, and wraps transport.ErrFlowClosed.
func (t *Transport) Send(ctx context.Context, msg sip.Message, dst sip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := t.connFor(ctx, msg, dst)
	if err != nil {
		return err
	}
	b := transport.GetBuffer()
	defer transport.PutBuffer(b)
	*b = msg.AppendTo(*b)
	return c.write(ctx, *b)
}

func (t *Transport) connFor(ctx context.Context, msg sip.Message, dst sip.Addr) (*conn, error) {
	if dst.Flow != 0 {
		t.mu.Lock()
		c, ok := t.conns.Conn(dst.Flow)
		closed := t.closed
		t.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("siptcp: send: %w", transport.ErrClosed)
		case !ok:
			return nil, fmt.Errorf("siptcp: %s: %w", dst, transport.ErrFlowClosed)
		}
		return c, nil
	}
	ap := unmap(dst.AddrPort)
	if !ap.IsValid() {
		return nil, fmt.Errorf("siptcp: send to %q: %w", dst, transport.ErrNoRoute)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("siptcp: send: %w", transport.ErrClosed)
	}
	if c := t.byAddr[ap]; c != nil {
		t.mu.Unlock()
		return c, nil
	}
	d := t.dialing[ap]
	if d == nil {
		d = &dialCall{done: make(chan struct{})}
		t.dialing[ap] = d
		t.mu.Unlock()
		t.dial(ctx, ap, msg, d)
		return d.c, d.err
	}
	t.mu.Unlock()
	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial opens a connection to ap and completes d.
func (t *Transport) dial(ctx context.Context, ap netip.AddrPort, msg sip.Message, d *dialCall) {
	defer func() {
		t.mu.Lock()
		delete(t.dialing, ap)
		t.mu.Unlock()
		close(d.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(t.life, cancel)
	defer stop()
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		d.err = fmt.Errorf("siptcp: dial %s: %w", ap, err)
		return
	}
	if t.network == sip.TLS {
		tc := tls.Client(nc, t.clientConfig(msg, ap))
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			d.err = fmt.Errorf("siptcp: tls handshake with %s: %w", ap, err)
			return
		}
		nc = tc
	}
	t.mu.Lock()
	var victim *conn
	if t.closed {
		d.err = fmt.Errorf("siptcp: dial %s: %w", ap, transport.ErrClosed)
	} else if victim, err = t.conns.AdmitDialed(); err != nil {
		d.err = fmt.Errorf("dial %s: %w", ap, ErrTooManyConns)
	} else {
		if victim != nil {
			t.forgetLocked(victim)
		}
		d.c = t.addLocked(nc, ap, netip.Prefix{})
	}
	t.mu.Unlock()
	if d.c == nil {
		nc.Close()
		return
	}
	if victim != nil {
		t.shed(victim, "for a dialed connection at the cap", ap)
	}
	t.log.Debug("connection opened", "remote", ap, "flow", d.c.addr.Flow)
	go d.c.serve()
}

// clientConfig returns the TLS config of a dial, with the server name to
// verify.
func (t *Transport) clientConfig(msg sip.Message, ap netip.AddrPort) *tls.Config {
	var cfg *tls.Config
	if t.opts.ClientTLS != nil {
		cfg = t.opts.ClientTLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName(msg, ap)
	}
	return cfg
}

// serverName returns the host a TLS peer must prove it is (RFC 3261
// §26.3.1, RFC 5922): the next hop's host as the request names it, or the
// sent-by of the response's Via.
func serverName(msg sip.Message, ap netip.AddrPort) string {
	host := ""
	switch m := msg.(type) {
	case *sip.Request:
		if host = firstRouteHost(&m.Headers); host == "" {
			host = m.URI.Host
		}
	case *sip.Response:
		if v, ok := m.TopVia(); ok {
			host = v.Host
		}
	}
	if host == "" {
		host = ap.Addr().String()
	}
	return host
}

// firstRouteHost returns the host of the first Route value, or "". It
// reads the header line itself: the typed accessor may fill a cache, and
// Send must only read a message that other goroutines share.
func firstRouteHost(h *sip.Headers) string {
	v := h.Get("Route")
	if i := strings.IndexByte(v, '>'); i >= 0 {
		v = v[:i+1]
	} else if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	a, err := sip.ParseAddress(strings.TrimSpace(v))
	if err != nil {
		return ""
	}
	return a.URI.Host
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
