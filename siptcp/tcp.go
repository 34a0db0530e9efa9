// Package siptcp is the SIP transport over TCP and over TLS (RFC 3261
// §18, §26.2): messages framed by Content-Length on a byte stream, one
// goroutine reading each connection, connections reused for responses and
// for later requests to the same address, CRLF keep-alives (RFC 5626
// §4.4.1), and limits on what a peer can hold: connections per source IP
// address and in all, idle time, and message size.
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

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// Defaults of Options.
const (
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxConns         = 10000
	DefaultMaxConnsPerIP    = 64
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
	// IdleTimeout closes a connection on which nothing has been received
	// for that long. Default 10 minutes.
	IdleTimeout time.Duration
	// DialTimeout bounds opening a connection, TLS handshake included.
	// Default 10 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake of an accepted
	// connection. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds writing one message; a peer that does not read
	// loses its connection. Default 10 s.
	WriteTimeout time.Duration
	// MaxConns caps the open connections, accepted and dialed. Default
	// 10000.
	MaxConns int
	// MaxConnsPerIP caps the accepted connections from one IP address.
	// Default 64.
	MaxConnsPerIP int
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

	// life ends when the transport closes; dials in progress end with it.
	life     context.Context
	stopLife context.CancelFunc

	mu      sync.Mutex
	conns   map[uint64]*conn // by flow id
	byAddr  map[netip.AddrPort]*conn
	dialing map[netip.AddrPort]*dialCall
	perIP   map[netip.Addr]int
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
	return newTransport(ln, opts), nil
}

func newTransport(ln net.Listener, opts Options) *Transport {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
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
		conns:   make(map[uint64]*conn),
		byAddr:  make(map[netip.AddrPort]*conn),
		dialing: make(map[netip.AddrPort]*dialCall),
		perIP:   make(map[netip.Addr]int),
		ready:   make(chan struct{}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("transport", network, "local", la)
	t.life, t.stopLife = context.WithCancel(context.Background())
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
	return len(t.conns)
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
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		nc.Close()
		return
	case len(t.conns) >= t.opts.MaxConns:
		t.mu.Unlock()
		nc.Close()
		t.log.Debug("connection refused: transport at its cap", "remote", remote, "cap", t.opts.MaxConns)
		return
	case t.perIP[remote.Addr()] >= t.opts.MaxConnsPerIP:
		t.mu.Unlock()
		nc.Close()
		t.log.Debug("connection refused: source at its cap", "remote", remote, "cap", t.opts.MaxConnsPerIP)
		return
	}
	if t.opts.TLS != nil {
		nc = tls.Server(nc, t.opts.TLS)
	}
	c := t.addLocked(nc, remote, true)
	t.mu.Unlock()
	go c.serve()
}

// addLocked registers a new connection; t.mu is held.
func (t *Transport) addLocked(nc net.Conn, remote netip.AddrPort, inbound bool) *conn {
	c := &conn{
		t:       t,
		nc:      nc,
		addr:    sip.Addr{Transport: t.network, AddrPort: remote, Flow: transport.NextFlowID()},
		inbound: inbound,
	}
	t.conns[c.addr.Flow] = c
	t.byAddr[remote] = c
	if inbound {
		t.perIP[remote.Addr()]++
	}
	t.wg.Add(1)
	return c
}

// remove forgets c.
func (t *Transport) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c.addr.Flow)
	if t.byAddr[c.addr.AddrPort] == c {
		delete(t.byAddr, c.addr.AddrPort)
	}
	if c.inbound {
		ip := c.addr.AddrPort.Addr()
		if t.perIP[ip]--; t.perIP[ip] <= 0 {
			delete(t.perIP, ip)
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
	conns := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
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
		c, closed := t.conns[dst.Flow], t.closed
		t.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("siptcp: send: %w", transport.ErrClosed)
		case c == nil:
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
	switch {
	case t.closed:
		d.err = fmt.Errorf("siptcp: dial %s: %w", ap, transport.ErrClosed)
	case len(t.conns) >= t.opts.MaxConns:
		d.err = fmt.Errorf("dial %s: %w", ap, ErrTooManyConns)
	default:
		d.c = t.addLocked(nc, ap, false)
	}
	t.mu.Unlock()
	if d.c == nil {
		nc.Close()
		return
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
