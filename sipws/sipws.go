// Package sipws is the SIP over WebSocket transport (RFC 7118), the one
// browsers speak: JsSIP, SIP.js and the bundled softphone.
//
// A Transport is both a transport.Transport and an http.Handler; the binary
// mounts it at /ws of its HTTP server, which owns the listener, TLS and
// HTTP routing:
//
//	ws, err := sipws.New(sipws.Options{LocalAddr: httpAddr, AllowedOrigins: origins})
//	mux.Handle("/ws", ws)
//	layer.Add(ws) // the transport Layer calls ws.Serve and ws.Close
//
// Each WebSocket connection is one flow (RFC 5626): messages read from it
// carry Source = sip.Addr{Transport: WS or WSS, AddrPort: the client,
// Flow: the connection's id}, and a server cannot dial a browser, so the
// only way back to it is that flow. That is how a binding whose Contact is
// "xxxx.invalid" is reached.
//
// The handshake must offer the subprotocol "sip" (RFC 7118 §4), and a
// browser's Origin must be the gateway's own host or on the allow-list,
// which stops other web sites from opening SIP sessions with a visitor's
// cookies or network position (cross-site WebSocket hijacking). Clients
// that send no Origin are not browsers and are let through: Origin only
// protects browser users, and SIP authentication still applies to everyone.
//
// One WebSocket message carries exactly one SIP message (RFC 7118 §5.2).
// Text and binary messages are both read; messages are sent as text unless
// they are not valid UTF-8 (RFC 7118 §5.1). WebSocket pings detect dead
// peers, because SIP.js does not answer the CRLF keep-alives of RFC 5626;
// a client's own "\r\n\r\n" keep-alive is answered with "\r\n".
//
// Connections are capped per client (IPv4 address or IPv6 /64) and in all.
// A connection is a stranger until the gateway says it carries a
// registration (MarkRegistered): at the total cap the oldest stranger is
// closed to make room for a new connection, and a stranger that sends no
// SIP message for UnregisteredIdleTimeout is closed, since answering pings
// costs an attacker nothing.
package sipws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// Defaults of the zero Options. The caps hold on a 2-core machine with 2 GB:
// an idle connection costs the gateway about 29 KiB (two goroutines and the
// WebSocket library's buffers), one that sent a large message about 46 KiB
// (scripts/bench-conns.sh; docs/performance.md), so 5,000 take 145–230 MB,
// and their pings about 3 % of one core.
const (
	DefaultPingInterval            = 30 * time.Second
	DefaultPongTimeout             = 10 * time.Second
	DefaultMaxConns                = 5000
	DefaultMaxConnsPerIP           = 100
	DefaultUnregisteredIdleTimeout = 60 * time.Second
)

// Options configure a Transport. The zero value is usable: a WS transport
// that allows only same-host browsers, 64 KiB messages, pings every 30 s
// and the default connection caps.
type Options struct {
	// LocalAddr is the address of the HTTP listener the transport is
	// mounted on, returned by LocalAddr for the sent-by of Vias.
	LocalAddr netip.AddrPort

	// Secure says that clients reach the HTTP listener over TLS, directly
	// or through a TLS-terminating proxy: Network is then WSS, and every
	// connection is WSS. Without it a connection is WSS only when its
	// request arrived over TLS (http.Request.TLS is set) or a trusted
	// proxy says that the client used TLS (see Forwarded).
	Secure bool

	// AllowedOrigins lists the browser origins that may connect besides
	// the gateway's own host (the request's Host header), which is always
	// allowed. An entry is a full origin, "https://app.example.com" or
	// "http://localhost:3000", matched exactly; a host, "app.example.com",
	// matched with any scheme; or a wildcard host, "*.example.com" or
	// "https://*.example.com", matching every subdomain but not
	// example.com itself. A port must match exactly: leave out the
	// scheme's default port. "*" is refused: it would undo the protection.
	AllowedOrigins []string

	// AllowedHosts are the names (and addresses) clients reach the gateway
	// by: the Host header of a handshake must name one of them, the host
	// of LocalAddr, the address the connection came in on, or "localhost"
	// on a loopback listener; any port goes. Anything else gets 403, which
	// stops DNS rebinding. An entry is a host name, an IP address, or
	// "*.example.com" for every subdomain of example.com.
	AllowedHosts []string

	// MaxFrameSize bounds one WebSocket message, the size of one SIP
	// message (default Limits.MaxMessageSize, itself 64 KiB by default).
	// A longer message closes the connection with status 1009, since the
	// rest of it would have to be read to answer.
	MaxFrameSize int

	// Limits are the parser's limits for the messages read.
	Limits sip.Limits

	// PingInterval is how often a WebSocket ping checks that the peer is
	// alive (default 30 s; negative: never).
	PingInterval time.Duration
	// PongTimeout is how long a ping waits for its pong before the
	// connection is closed as dead (default 10 s).
	PongTimeout time.Duration

	// MaxConns bounds the open connections (default DefaultMaxConns). At
	// the bound the oldest connection that carries no registration is
	// closed to make room for the new one; when every connection carries
	// one, the handshake gets 503.
	MaxConns int
	// MaxConnsPerIP bounds the open connections from one client IPv4
	// address or IPv6 /64 (transport.PeerGroup; default
	// DefaultMaxConnsPerIP); beyond it the handshake gets 503. Users
	// behind one NAT share an IPv4 address: raise it for large offices.
	MaxConnsPerIP int
	// UnregisteredIdleTimeout closes a connection that carries no
	// registration when no SIP message (keep-alives included) has gone
	// either way for that long (default 60 s). Pings do not count: a
	// browser's WebSocket answers them by itself.
	UnregisteredIdleTimeout time.Duration
	// Clock times idle connections; nil means the system clock.
	Clock clock.Clock

	// Forwarded says which reverse proxies are believed when their
	// forwarding headers name the client (X-Forwarded-For or Forwarded)
	// and say that it used TLS (X-Forwarded-Proto, proto=): the client is
	// then the right-most hop that is not a trusted proxy, with port 0
	// when the header gives none, and its flow is WSS when it reached the
	// proxy over TLS. The zero value (the default) ignores the headers,
	// which any client can forge.
	Forwarded forwarded.Trust

	// Logger receives connection events and dropped input (nil: discard).
	Logger *slog.Logger
}

// Transport is the SIP over WebSocket transport. It implements
// transport.Transport and http.Handler. Create it with New.
type Transport struct {
	local        sip.Addr
	secure       bool
	origins      []originPattern
	hosts        []hostPattern
	parser       sip.Parser
	maxFrame     int
	pingInterval time.Duration
	pongTimeout  time.Duration
	maxConns     int
	maxPerIP     int
	idleTimeout  time.Duration
	forwarded    forwarded.Trust
	log          *slog.Logger
	clock        clock.Clock

	// active counts ServeHTTP calls that hold a connection slot, so that
	// Close can wait for every connection's goroutines to end.
	active sync.WaitGroup

	mu      sync.Mutex
	handler transport.Handler // set by Serve; nil: refuse connections
	closed  bool
	done    chan struct{} // closed by Close, ends Serve
	ready   chan struct{} // closed by Serve once handler is set
	// conns keeps the caps' books: a place is taken at the handshake, a
	// connection added once upgraded.
	conns   *transport.ConnTable[*conn]
	byAddr  map[netip.AddrPort][]*conn // open connections, oldest first
	sweeper clock.Timer

	refused atomic.Uint64
}

// Stats counts a Transport's connections, for metrics.
type Stats struct {
	// Open is the number of WebSocket connections carrying SIP now;
	// Registered of them carry a registration.
	Open, Registered int
	// Accepted counts connections upgraded since New.
	Accepted uint64
	// Refused counts handshakes refused: a wrong Host, Origin or
	// subprotocol, a connection limit, the transport closed.
	Refused uint64
	// RefusedPerIP counts the handshakes refused because their client (an
	// IPv4 address or IPv6 /64) had MaxConnsPerIP open; RefusedTotal those
	// refused at MaxConns with no connection to evict. Both are in
	// Refused too.
	RefusedPerIP, RefusedTotal uint64
	// Evicted counts connections closed to make room at MaxConns.
	Evicted uint64
	// ClosedIdle counts connections closed by UnregisteredIdleTimeout.
	ClosedIdle uint64
}

// Stats returns the transport's connection counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	s := t.conns.Stats()
	t.mu.Unlock()
	return Stats{Open: s.Open, Registered: s.Registered, Accepted: s.Accepted, Refused: t.refused.Load(),
		RefusedPerIP: s.RefusedPerIP, RefusedTotal: s.RefusedTotal, Evicted: s.Evicted, ClosedIdle: s.ClosedIdle}
}

// MarkRegistered says whether flow, one of the transport's connections,
// carries a registration (see transport.RegistrationMarker). A connection
// that stops carrying one is treated as a stranger that has just arrived,
// idle since its last message.
func (t *Transport) MarkRegistered(flow sip.Addr, registered bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns.MarkRegistered(flow.Flow, registered)
}

// New returns a transport configured by opts, or an error when an option is
// invalid.
func New(opts Options) (*Transport, error) {
	t := &Transport{
		secure:       opts.Secure,
		parser:       sip.Parser{Limits: opts.Limits},
		maxFrame:     opts.MaxFrameSize,
		pingInterval: opts.PingInterval,
		pongTimeout:  opts.PongTimeout,
		maxConns:     opts.MaxConns,
		maxPerIP:     opts.MaxConnsPerIP,
		idleTimeout:  opts.UnregisteredIdleTimeout,
		forwarded:    forwarded.Trust{Proxies: slices.Clone(opts.Forwarded.Proxies), Header: opts.Forwarded.Header},
		log:          opts.Logger,
		clock:        clock.Or(opts.Clock),
		done:         make(chan struct{}),
		ready:        make(chan struct{}),
		byAddr:       make(map[netip.AddrPort][]*conn),
	}
	t.local = sip.Addr{Transport: t.Network(), AddrPort: opts.LocalAddr}
	for _, s := range opts.AllowedOrigins {
		p, err := parseOriginPattern(s)
		if err != nil {
			return nil, fmt.Errorf("sipws: allowed origin %q: %w", s, err)
		}
		t.origins = append(t.origins, p)
	}
	for _, s := range opts.AllowedHosts {
		p, err := parseHostPattern(s)
		if err != nil {
			return nil, fmt.Errorf("sipws: allowed host %q: %w", s, err)
		}
		t.hosts = append(t.hosts, p)
	}
	if t.maxFrame <= 0 {
		t.maxFrame = opts.Limits.WithDefaults().MaxMessageSize
	}
	if t.pingInterval == 0 {
		t.pingInterval = DefaultPingInterval
	}
	if t.pongTimeout <= 0 {
		t.pongTimeout = DefaultPongTimeout
	}
	if t.maxConns < 0 || t.maxPerIP < 0 {
		return nil, errors.New("sipws: negative connection limit")
	}
	if t.maxConns == 0 {
		t.maxConns = DefaultMaxConns
	}
	if t.maxPerIP == 0 {
		t.maxPerIP = DefaultMaxConnsPerIP
	}
	if t.idleTimeout <= 0 {
		t.idleTimeout = DefaultUnregisteredIdleTimeout
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	// Registered connections never idle out: a browser's WebSocket
	// answers pings by itself, and a registration is worth keeping.
	t.conns = transport.NewConnTable[*conn](transport.ConnLimits{
		MaxConns:            t.maxConns,
		MaxConnsPerIP:       t.maxPerIP,
		StrangerIdleTimeout: t.idleTimeout,
	}, t.clock)
	return t, nil
}

// Network returns sip.WSS when Options.Secure is set, else sip.WS.
func (t *Transport) Network() string {
	if t.secure {
		return sip.WSS
	}
	return sip.WS
}

// LocalAddr returns Options.LocalAddr with the transport's name.
func (t *Transport) LocalAddr() sip.Addr { return t.local }

// Serving is closed once Serve has its handler: from then on an upgrade
// is served rather than refused with 503 ("not serving yet").
func (t *Transport) Serving() <-chan struct{} { return t.ready }

// Serve lets connections in and delivers what they read to h until ctx is
// done or Close is called; then it closes the transport and returns nil.
// Until Serve is called the handshake is refused with 503, since there is
// no one to hand messages to. Serve may be called once.
func (t *Transport) Serve(ctx context.Context, h transport.Handler) error {
	if h == nil {
		return errors.New("sipws: nil handler")
	}
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return transport.ErrClosed
	case t.handler != nil:
		t.mu.Unlock()
		return errors.New("sipws: already serving")
	}
	t.handler = h
	close(t.ready)
	t.sweeper = t.clock.AfterFunc(t.conns.SweepInterval(), t.sweep)
	t.mu.Unlock()

	select {
	case <-ctx.Done():
		// Connections would otherwise keep calling h after Serve returned.
		t.Close()
	case <-t.done:
	}
	return nil
}

// Close refuses new connections and closes the open ones with status 1001
// (going away), so that clients reconnect elsewhere. It returns once every
// connection has ended and its flow has been reported closed; a peer that
// does not take part in the close handshake delays that by at most 10 s
// (5 s to write the close frame, 5 s to wait for the answer). Close must
// not be called from a Handler method, which runs on a connection's own
// goroutine.
func (t *Transport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
		if t.sweeper != nil {
			t.sweeper.Stop()
		}
	}
	open := t.conns.Conns()
	t.mu.Unlock()

	// In parallel: each close handshake may wait for a slow peer.
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Go(func() { c.ws.Close(websocket.StatusGoingAway, "server shutting down") })
	}
	wg.Wait()
	t.active.Wait()
	return nil
}

// Send writes msg to the connection dst names: dst.Flow when set, else the
// most recent open connection from dst.AddrPort. A server cannot open a
// WebSocket to a client, so with no such connection Send fails with
// transport.ErrFlowClosed; after Close it fails with transport.ErrClosed.
//
// If ctx ends while the message is being written, the connection is closed
// (and ErrFlowClosed returned): a half-written WebSocket frame cannot be
// taken back. Writes to a peer that stopped reading are ended the same way
// by the ping timeout.
func (t *Transport) Send(ctx context.Context, msg sip.Message, dst sip.Addr) error {
	c, err := t.lookup(dst)
	if err != nil {
		return err
	}
	// An expired ctx would make the WebSocket library close the
	// connection before writing anything; the flow is still good.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sipws: send to %v: %w", c.src, err)
	}
	bp := transport.GetBuffer()
	*bp = msg.AppendTo(*bp)
	err = c.write(ctx, *bp)
	transport.PutBuffer(bp)
	if err != nil {
		// The library closes the connection on every write error.
		return fmt.Errorf("sipws: send to %v: %w: %w", c.src, transport.ErrFlowClosed, err)
	}
	return nil
}

func (t *Transport) lookup(dst sip.Addr) (*conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("sipws: send to %v: %w", dst, transport.ErrClosed)
	}
	if dst.Flow != 0 {
		if c, ok := t.conns.Conn(dst.Flow); ok {
			return c, nil
		}
	} else if cs := t.byAddr[dst.AddrPort]; len(cs) > 0 {
		return cs[len(cs)-1], nil
	}
	return nil, fmt.Errorf("sipws: send to %v: %w", dst, transport.ErrFlowClosed)
}

// reserve takes a connection slot for a client of group (its
// transport.PeerGroup). It returns the handler to deliver to, or an HTTP
// status and reason to refuse with. At the total cap it evicts the oldest
// stranger for the newcomer. On success the caller must call t.active.Done
// when it returns, and give the slot back with release or, once
// registered, unregister.
func (t *Transport) reserve(group netip.Prefix) (transport.Handler, int, string) {
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return nil, 503, "SIP transport closed"
	case t.handler == nil:
		t.mu.Unlock()
		return nil, 503, "SIP transport not serving yet"
	}
	victim, err := t.conns.Admit(group)
	switch {
	case errors.Is(err, transport.ErrTooManyFromIP):
		t.mu.Unlock()
		return nil, 503, "too many connections from your address"
	case err != nil:
		t.mu.Unlock()
		return nil, 503, "too many connections"
	}
	if victim != nil {
		t.forgetLocked(victim)
	}
	t.active.Add(1)
	h := t.handler
	t.mu.Unlock()
	if victim != nil {
		t.log.Debug("sipws: connection evicted for a new one at the cap", "flow", victim.src, "cap", t.maxConns)
		// No close handshake: a peer slow to answer would hold the
		// connection beyond the cap.
		victim.ws.CloseNow()
	}
	return h, 0, ""
}

// release gives back a slot taken by reserve for a connection that was
// never registered.
func (t *Transport) release(group netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conns.Cancel(group)
}

// register makes c, from group, reachable by Send in the place reserve
// took; false means the transport closed during the handshake.
func (t *Transport) register(c *conn, group netip.Prefix) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	c.entry = t.conns.Add(c, c.src.Flow, group)
	t.byAddr[c.src.AddrPort] = append(t.byAddr[c.src.AddrPort], c)
	return true
}

// unregister makes c unreachable and frees its slot, before its flow is
// reported closed: a client that reconnects at once is not refused.
func (t *Transport) unregister(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Once: an evicted connection is out of t.conns before its reader
	// ends.
	if t.conns.Remove(c.entry) {
		t.forgetLocked(c)
	}
}

// forgetLocked drops c, which is out of t.conns, from the transport's own
// index.
func (t *Transport) forgetLocked(c *conn) {
	cs := t.byAddr[c.src.AddrPort]
	for i, o := range cs {
		if o == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(t.byAddr, c.src.AddrPort)
	} else {
		t.byAddr[c.src.AddrPort] = cs
	}
}

// sweep closes the strangers idle for UnregisteredIdleTimeout and
// schedules the next sweep. It runs from the clock's timer.
func (t *Transport) sweep() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	var idle []*conn
	for c := range t.conns.Idle() {
		idle = append(idle, c)
	}
	t.sweeper = t.clock.AfterFunc(t.conns.SweepInterval(), t.sweep)
	t.mu.Unlock()
	for _, c := range idle {
		t.conns.CountClosedIdle()
		t.log.Debug("sipws: idle connection without registration closed", "flow", c.src, "idle_timeout", t.idleTimeout)
		c.ws.CloseNow()
	}
}
