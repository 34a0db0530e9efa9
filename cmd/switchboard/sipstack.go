package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/config"
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

// sipStack is the running SIP side of the gateway: transports, the
// transaction layer and the roles behind them.
type sipStack struct {
	transports *transport.Layer
	tx         *transaction.Layer
	ws         *sipws.Transport
	location   *location.Memory
	media      *media.Engine
	calls      *b2bua.B2BUA
	accounts   *accounts.Store
	server     *gateway.Server
	routing    *routingTable
	dns        *locate.Locator
	addrs      listening

	// registering are the trunks registered with their providers, as
	// started; a reload does not change them.
	registering []config.Trunk

	regThrottle, proxyThrottle *accounts.Throttle

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
		served:        make(chan error, 1),
		regThrottle:   &accounts.Throttle{},
		proxyThrottle: &accounts.Throttle{},
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
	reg, err := registrar.New(registrar.Options{
		Domain:     cfg.Domain,
		Aliases:    aliases,
		Accounts:   s.accounts,
		Location:   s.location,
		Digest:     &digest.Server{Realm: cfg.Domain, Secret: secret},
		Throttle:   s.regThrottle,
		Algorithms: cfg.DigestAlgorithms,
		Logger:     logger.With("component", "registrar"),
	})
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	s.server = gateway.New(gateway.Options{
		Domain:    cfg.Domain,
		Aliases:   aliases,
		Registrar: reg,
		Location:  s.location,
		Logger:    logger.With("component", "gateway"),
	})

	s.transports = transport.NewLayer(transport.Config{Logger: logger.With("component", "transport"), Trace: cfg.SIPTrace})
	if cfg.SIPUDP != "" {
		t, err := sipudp.Listen(ctx, cfg.SIPUDP, sipudp.Options{Logger: logger.With("component", "udp")})
		if err != nil {
			return nil, fmt.Errorf("listen sip udp: %w", err)
		}
		s.transports.Add(t)
		s.addrs.UDP = t.LocalAddr().AddrPort
	}
	if cfg.SIPTCP != "" {
		t, err := siptcp.Listen(ctx, cfg.SIPTCP, siptcp.Options{Logger: logger.With("component", "tcp")})
		if err != nil {
			return nil, fmt.Errorf("listen sip tcp: %w", err)
		}
		s.transports.Add(t)
		s.addrs.TCP = t.LocalAddr().AddrPort
	}
	if cfg.SIPTLS != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load tls certificate: %w", err)
		}
		t, err := siptcp.Listen(ctx, cfg.SIPTLS, siptcp.Options{
			TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			Logger: logger.With("component", "tls"),
		})
		if err != nil {
			return nil, fmt.Errorf("listen sip tls: %w", err)
		}
		s.transports.Add(t)
		s.addrs.TLS = t.LocalAddr().AddrPort
	}
	httpAP, _ := netip.ParseAddrPort(httpAddr.String())
	s.ws, err = sipws.New(sipws.Options{
		LocalAddr:      httpAP,
		AllowedOrigins: cfg.WSOrigins,
		Logger:         logger.With("component", "ws"),
	})
	if err != nil {
		return nil, fmt.Errorf("websocket transport: %w", err)
	}
	s.transports.Add(s.ws)

	dns := &locate.Locator{}
	if err := trunks.resolveTrusted(ctx, dns.Locate); err != nil {
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
		OnStrayResponse: func(res *sip.Response) {
			if px != nil {
				px.ForwardResponse(res)
			}
		},
	})
	eps := endpoints(s.addrs, httpAP, cfg.PublicIP)
	s.media, s.calls, err = startCalls(cfg, s.tx, s.transports, eps, logger)
	if err != nil {
		return nil, err
	}
	px, err = proxy.New(proxy.Options{
		Bridge:          bridge(s.calls, dns, logger.With("component", "b2bua")),
		Transactions:    s.tx,
		Sender:          s.transports,
		Endpoints:       endpoints(s.addrs, httpAP, cfg.PublicIP),
		Domains:         []string{cfg.Domain},
		Aliases:         aliases,
		Realm:           cfg.Domain,
		Locator:         locator{s.location},
		Resolver:        proxy.ResolverFunc(dns.Locate),
		Router:          s.routing,
		Trusted:         s.routing,
		RedirectDomains: redirectDomains(cfg.Domain, file),
		Credentials:     credentials{s.accounts},
		Throttle:        s.proxyThrottle,
		Secret:          secret,
		Algorithms:      cfg.DigestAlgorithms,
		Logger:          logger.With("component", "proxy"),
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
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
				Resolver:  trunk.ResolverFunc(dns.Locate),
				LocalAddr: localAddrFor(eps),
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
			Message:    s.tx.HandleMessage,
			FlowClosed: s.server.FlowClosed,
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

// redirectDomains lists the domain when the config file asks for redirect
// mode (302 with the contacts instead of proxying).
func redirectDomains(domain string, f *config.File) []string {
	if f != nil && f.Domain.Redirect {
		return []string{domain}
	}
	return nil
}

// endpoints lists the gateway's own SIP addresses for the proxy's Via and
// Record-Route: the public IP when one is set, else the listening address.
func endpoints(l listening, ws netip.AddrPort, publicIP string) []proxy.Endpoint {
	var out []proxy.Endpoint
	add := func(transport string, ap netip.AddrPort) {
		if !ap.IsValid() {
			return
		}
		host := ap.Addr().String()
		if publicIP != "" {
			host = publicIP
		}
		out = append(out, proxy.Endpoint{Transport: transport, Host: host, Port: int(ap.Port())})
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

// localAddrFor gives a trunk registration the gateway's address on a
// transport, as the provider must see it (the advertised endpoint).
func localAddrFor(eps []proxy.Endpoint) func(transport string) sip.Addr {
	return func(tr string) sip.Addr {
		for _, e := range eps {
			if e.Transport != tr {
				continue
			}
			ip, err := netip.ParseAddr(e.Host)
			if err != nil {
				return sip.Addr{}
			}
			return sip.Addr{Transport: tr, AddrPort: netip.AddrPortFrom(ip, uint16(e.Port))}
		}
		return sip.Addr{}
	}
}
