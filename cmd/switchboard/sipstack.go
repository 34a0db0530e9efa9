package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/config"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/sipws"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/locate"
)

// udpReadBuffer is the SO_RCVBUF asked for the SIP UDP socket.
const udpReadBuffer = 4 << 20

// sipStack is the running SIP side of the gateway: transports, the
// transaction layer and the roles behind them.
type sipStack struct {
	transports *transport.Layer
	tx         *transaction.Layer
	tcp, tls   *siptcp.Transport // nil when off
	ws         *sipws.Transport
	location   *location.Memory
	media      *media.Engine
	calls      *b2bua.B2BUA
	proxy      *proxy.Proxy
	accounts   *accounts.Store
	server     *gateway.Server
	routing    *routingTable
	dns        *locate.Locator
	addrs      listening

	// registering are the trunks registered with their providers, as
	// started; a reload does not change them.
	registering []trunk.Trunk

	// throttle counts the authentication failures of the registrar, the
	// proxy and the admin API, and the proxy's answers to probes for
	// user names: a source blocked by one is refused by all.
	throttle *accounts.Throttle

	wg       sync.WaitGroup
	regs     sync.WaitGroup
	stopRegs context.CancelFunc
	served   chan error
	stopped  bool
}

// startSIP opens the SIP listeners and starts serving them. httpAddr is
// where the HTTP listener (and so the WebSocket transport) is bound.
func startSIP(ctx context.Context, cfg Config, httpAddr net.Addr, logger *slog.Logger, metrics *sipMetrics) (*sipStack, error) {
	s := &sipStack{
		served:   make(chan error, 1),
		throttle: &accounts.Throttle{Logger: logger.With("component", "throttle")},
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	var file *config.File
	if cfg.ConfigFile != "" {
		f, err := config.Options{Domain: cfg.Domain}.Load(cfg.ConfigFile)
		if err != nil {
			return nil, err
		}
		file = f
	}
	accts := loadAccounts(cfg, file)
	trunks, err := newTrunkRouting(cfg.Domain, file)
	if err != nil {
		return nil, fmt.Errorf("trunks: %w", err)
	}
	if s.accounts, err = accounts.NewStore(accts); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}

	s.location, err = location.Open(location.Options{
		Dir:    filepath.Join(cfg.DataDir, "location"),
		Logger: logger.With("component", "location"),
	})
	if err != nil {
		return nil, fmt.Errorf("open location store: %w", err)
	}
	secret, err := loadSecret(filepath.Join(cfg.DataDir, "nonce.key"))
	if err != nil {
		return nil, err
	}
	aliases := gatewayAliases(cfg, httpAddr)
	s.transports = transport.NewLayer(transport.Config{Logger: logger.With("component", "transport"), Trace: cfg.SIPTrace})

	if cfg.SIPUDP != "" {
		t, err := sipudp.Listen(ctx, cfg.SIPUDP, sipudp.Options{
			// The system's default (208 KiB on Linux: about 90 small
			// datagrams, 4 ms at 25,000 a second) overflows whenever the
			// read loop waits for a CPU, and the kernel then drops
			// everyone's datagrams alike. The system caps it at
			// net.core.rmem_max.
			ReadBuffer: udpReadBuffer,
			Logger:     logger.With("component", "udp"),
		})
		if err != nil {
			return nil, fmt.Errorf("listen sip udp: %w", err)
		}
		s.transports.Add(t)
		s.addrs.UDP = t.LocalAddr().AddrPort
	}
	if cfg.SIPTCP != "" {
		t, err := siptcp.Listen(ctx, cfg.SIPTCP, siptcp.Options{
			MaxConns:                cfg.TCPMaxConns,
			MaxConnsPerIP:           cfg.TCPMaxConnsPerIP,
			UnregisteredIdleTimeout: cfg.UnregisteredIdleTimeout,
			Logger:                  logger.With("component", "tcp"),
		})
		if err != nil {
			return nil, fmt.Errorf("listen sip tcp: %w", err)
		}
		s.transports.Add(t)
		s.tcp = t
		s.addrs.TCP = t.LocalAddr().AddrPort
	}
	if cfg.SIPTLS != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load tls certificate: %w", err)
		}
		t, err := siptcp.Listen(ctx, cfg.SIPTLS, siptcp.Options{
			TLS:                     &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			MaxConns:                cfg.TCPMaxConns,
			MaxConnsPerIP:           cfg.TCPMaxConnsPerIP,
			UnregisteredIdleTimeout: cfg.UnregisteredIdleTimeout,
			Logger:                  logger.With("component", "tls"),
		})
		if err != nil {
			return nil, fmt.Errorf("listen sip tls: %w", err)
		}
		s.transports.Add(t)
		s.tls = t
		s.addrs.TLS = t.LocalAddr().AddrPort
	}
	httpAP, _ := netip.ParseAddrPort(httpAddr.String())
	s.ws, err = sipws.New(sipws.Options{
		LocalAddr:               httpAP,
		AllowedOrigins:          cfg.WSOrigins,
		AllowedHosts:            wsHosts(cfg, aliases),
		MaxConns:                cfg.WSMaxConns,
		MaxConnsPerIP:           cfg.WSMaxConnsPerIP,
		UnregisteredIdleTimeout: cfg.UnregisteredIdleTimeout,
		Logger:                  logger.With("component", "ws"),
	})
	if err != nil {
		return nil, fmt.Errorf("websocket transport: %w", err)
	}
	s.transports.Add(s.ws)

	_, announce, _, err := mediaAddrs(cfg)
	if err != nil {
		return nil, err
	}
	ident, err := identity.New(identity.Config{
		Domains:   []string{cfg.Domain},
		Aliases:   aliases,
		Endpoints: endpoints(s.addrs, httpAP, announce),
	})
	if err != nil {
		return nil, err
	}
	reg, err := registrar.New(registrar.Options{
		Identity:   ident,
		Accounts:   s.accounts,
		Location:   s.location,
		Digest:     &digest.Server{Realm: cfg.Domain, Secret: secret},
		Throttle:   s.throttle,
		Algorithms: cfg.DigestAlgorithms,
		Logger:     logger.With("component", "registrar"),
	})
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	s.server = gateway.New(gateway.Options{
		Identity:  ident,
		Registrar: reg,
		Location:  s.location,
		// The connection transports shed connections without a
		// registration first.
		Flows:  transport.NewFlowHolds(s.transports, nil),
		Logger: logger.With("component", "gateway"),
	})

	dns := &locate.Locator{}
	if err := trunks.resolveTrusted(ctx, dns); err != nil {
		// Not fatal: a trunk named by host is trusted once it resolves.
		logger.Warn("resolve trunk hosts", "err", err)
	}
	s.routing = newRoutingTable(trunks)
	s.dns = dns
	s.registering = registeringTrunks(file)
	// The proxy needs the transaction layer and the layer its handler:
	// the server dispatches to the proxy once both exist.
	var px *proxy.Proxy
	s.tx = transaction.New(s.transports, s.server, transaction.Config{
		Logger:  logger.With("component", "transaction"),
		OnFinal: metrics.onFinal,
		Admit:   refuseThrottled(s.throttle),
		OnStrayResponse: func(res *sip.Response) {
			if px != nil {
				px.ForwardResponse(res)
			}
		},
	})
	s.media, s.calls, err = startCalls(cfg, s.tx, s.transports, ident, logger)
	if err != nil {
		return nil, err
	}
	px, err = proxy.New(proxy.Options{
		Bridge:          bridge(s.calls, dns, logger.With("component", "b2bua")),
		Transactions:    s.tx,
		Sender:          s.transports,
		Identity:        ident,
		Realm:           cfg.Domain,
		Locator:         locator{s.location},
		Resolver:        dns,
		Router:          s.routing,
		Trusted:         s.routing,
		RedirectDomains: redirectDomains(cfg.Domain, file),
		Credentials:     credentials{s.accounts},
		Throttle:        proxyThrottle{s.throttle},
		Secret:          secret,
		Algorithms:      cfg.DigestAlgorithms,
		Logger:          logger.With("component", "proxy"),
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.proxy = px
	s.server.SetProxy(px)
	s.server.SetCalls(s.calls)

	// Outbound registrations to the providers of trunks that ask for one,
	// stopped (with an unregister) before the transports close.
	regCtx, stopRegs := context.WithCancel(ctx)
	s.stopRegs = stopRegs
	if file != nil {
		for _, t := range file.Trunks {
			if !t.Register {
				continue
			}
			reg, err := trunk.NewRegistration(trunk.RegistrationOptions{
				Trunk:     t,
				Requester: s.tx,
				Resolver:  dns,
				Identity:  ident,
				UserAgent: "Switchboard " + version,
				Logger:    logger.With("component", "trunk", "trunk", t.Name),
			})
			if err != nil {
				return nil, fmt.Errorf("trunk %s: %w", t.Name, err)
			}
			s.regs.Add(1)
			go func() {
				defer s.regs.Done()
				if err := reg.Run(regCtx); err != nil {
					logger.Warn("trunk registration", "trunk", t.Name, "err", err)
				}
			}()
		}
	}

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Not ctx: on shutdown, BYEs and unregisters still go out; close
		// stops the transports after them.
		s.served <- s.transports.Serve(context.WithoutCancel(ctx), transport.HandlerFuncs{
			Message:     s.tx.HandleMessage,
			FlowClosed:  s.server.FlowClosed,
			Unreachable: s.tx.HandleUnreachable,
		})
	}()
	ok = true
	return s, nil
}

// close stops the SIP side: transports first, so that nothing new comes
// in, then the transactions, then the store, which writes what is left of
// its journal (every acknowledged binding is on disk already).
func (s *sipStack) close() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.stopRegs != nil {
		s.stopRegs() // each registration unregisters, within its timeout
		s.regs.Wait()
	}
	if s.calls != nil {
		// Calls get their BYE while the transports can still carry it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.calls.Close(ctx)
		cancel()
	}
	if s.transports != nil {
		s.transports.Close()
	}
	s.wg.Wait()
	if s.tx != nil {
		s.tx.Close()
	}
	if s.media != nil {
		s.media.Close()
	}
	if s.location != nil {
		s.location.Close()
	}
}

// loadAccounts gathers the accounts of SWITCHBOARD_USERS (or the demo ones)
// and of the config file.
func loadAccounts(cfg Config, f *config.File) []accounts.Account {
	var out []accounts.Account
	users, _ := startAccounts(cfg)
	for _, u := range users {
		out = append(out, accounts.FromPassword(u.User, cfg.Domain, u.Password))
	}
	if f != nil {
		for _, a := range f.Accounts {
			out = append(out, accounts.Account{User: a.User, Realm: a.Realm, HA1MD5: a.HA1MD5, HA1SHA256: a.HA1SHA256})
		}
	}
	return out
}

// loadSecret reads the key of the digest nonces, creating it on first run,
// so that nonces stay valid across a restart.
func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read nonce key: %w", err)
	}
	b = make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write nonce key: %w", err)
	}
	return b, nil
}

// gatewayAliases lists the names a Request-URI may use for the gateway
// itself besides its domain: its listening addresses.
func gatewayAliases(cfg Config, httpAddr net.Addr) []string {
	seen := map[string]bool{cfg.Domain: true}
	var out []string
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, a := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.SIPTLS, httpAddr.String()} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			add(host)
		}
	}
	add(cfg.PublicIP)
	return out
}

// wsHosts lists the names by which clients may reach /ws: the domain,
// the gateway's addresses, and SWITCHBOARD_WS_HOSTS. A wildcard listen
// address names nothing; sipws allows the address each connection came in
// on anyway.
func wsHosts(cfg Config, aliases []string) []string {
	var out []string
	for _, h := range append(append([]string{cfg.Domain}, aliases...), cfg.WSHosts...) {
		if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() {
			continue
		}
		out = append(out, h)
	}
	return out
}

// redirectDomains lists the domain when the config file asks for redirect
// mode (302 with the contacts instead of proxying).
func redirectDomains(domain string, f *config.File) []string {
	if f != nil && f.Domain.Redirect {
		return []string{domain}
	}
	return nil
}

// endpoints lists the gateway's own SIP addresses, as peers must see them:
// the announced address (SWITCHBOARD_PUBLIC_IP, or the default route's for
// a listener on every interface) when there is one, else the listening
// address.
func endpoints(l listening, ws netip.AddrPort, announce netip.Addr) []identity.Endpoint {
	var out []identity.Endpoint
	add := func(transport string, ap netip.AddrPort) {
		if !ap.IsValid() {
			return
		}
		host := ap.Addr()
		if announce.IsValid() {
			host = announce
		}
		out = append(out, identity.Endpoint{Transport: transport, Host: host.String(), Port: int(ap.Port())})
	}
	add(sip.UDP, l.UDP)
	add(sip.TCP, l.TCP)
	add(sip.TLS, l.TLS)
	add(sip.WS, ws)
	return out
}

// locator adapts the location store to the proxy.
type locator struct{ store location.Store }

func (l locator) Lookup(ctx context.Context, aor string) ([]proxy.Target, error) {
	bindings, err := l.store.Get(ctx, aor)
	if err != nil {
		return nil, err
	}
	out := make([]proxy.Target, 0, len(bindings))
	for i := range bindings {
		b := &bindings[i]
		t := proxy.Target{URI: b.Contact.URI, Q: b.Q, Path: b.Path, Expires: b.Expires}
		if b.NeedsFlow() {
			t.Dest = b.Source
		}
		out = append(out, t)
	}
	return out, nil
}

// credentials adapts the account store to the proxy.
type credentials struct{ store *accounts.Store }

func (c credentials) HA1(user, algorithm string) (string, bool) {
	a, ok := c.store.Lookup(user)
	if !ok {
		return "", false
	}
	return a.HA1(algorithm)
}

// proxyThrottle adapts the gateway's throttle to the proxy: its failures
// and its probes count under their own origins.
type proxyThrottle struct{ *accounts.Throttle }

func (t proxyThrottle) Failure(ip netip.Addr, user string) bool {
	return t.Throttle.Failure(accounts.OriginProxy, ip, user)
}

func (t proxyThrottle) Probe(ip netip.Addr) bool {
	return t.Throttle.Failure(accounts.OriginProbe, ip, "")
}

// refuseThrottled is the transaction layer's Admit: each new out-of-dialog
// request from a source that the authentication throttles block is refused
// before any transaction or handler, so that an address guessing
// passwords costs no memory while it is refused. Over UDP it is dropped:
// answering would cost a send per junk datagram (at 25,000 a second, CPU
// that the other sources need) and would reflect the flood to whatever
// address the datagrams claim. Over TCP, TLS and WebSocket, where the
// source is a connection and the rate is bounded by it, it gets 403 with
// Retry-After, statelessly. Requests inside a dialog (with a To tag) go
// on: the gateway never authenticates them, and a call in progress from
// that address can still end. A REGISTER is refused with or without one.
func refuseThrottled(th *accounts.Throttle) func(*sip.Request) (*sip.Response, bool) {
	return func(req *sip.Request) (*sip.Response, bool) {
		if req.Method != sip.MethodRegister && req.To().Tag() != "" {
			return nil, false
		}
		wait, blocked := th.Blocked(req.Source.AddrPort.Addr())
		if !blocked {
			return nil, false
		}
		if !req.Source.Reliable() {
			return nil, true
		}
		res := sip.NewResponse(req, 403, "Too Many Failed Attempts")
		res.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		return res, false
	}
}
