package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/cluster"
	"github.com/switchboard/switchboard/gateway/config"
	"github.com/switchboard/switchboard/gateway/iceservers"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/location/redisstore"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/sipws"
	"github.com/switchboard/switchboard/transport"
)

// udpReadBuffer is the SO_RCVBUF asked for the SIP UDP socket.
const udpReadBuffer = 4 << 20

// sipStack is the running SIP side of the binary: the listeners, the
// stores and the media engine it opens, and the gateway built on them.
type sipStack struct {
	gw         *gateway.Gateway
	transports *transport.Layer
	tcp, tls   *siptcp.Transport // nil when off
	ws         *sipws.Transport
	location   location.Store
	media      *media.Engine
	accounts   *accounts.Store
	addrs      listening
	// secret keys the digest nonces, of SIP and of /api/ice-servers.
	secret []byte
	// ice hands out the STUN and TURN servers of browsers; nil: none.
	ice *iceservers.Issuer

	// memory is the embedded store, nil in cluster mode; shared, member
	// and redis are cluster mode's store, heartbeat and client, nil alone.
	memory *location.Memory
	shared *redisstore.Store
	member *cluster.Membership
	redis  *redis.Client

	served  chan error
	stopped bool
}

// startSIP opens the SIP listeners, builds the gateway on them and starts
// serving. web is where the web listeners (and so the WebSocket
// transport) are bound; certs, nil without TLS, has the certificate of
// the SIP TLS listener.
func startSIP(ctx context.Context, cfg Config, web webAddrs, certs *certSource, logger *slog.Logger, metrics *sipMetrics) (*sipStack, error) {
	s := &sipStack{served: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	file, err := loadFile(cfg)
	if err != nil {
		return nil, err
	}
	if s.accounts, err = accounts.NewStore(loadAccounts(cfg, file)); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if s.ice, err = iceIssuer(cfg); err != nil {
		return nil, err
	}
	aliases := gatewayAliases(cfg, web)
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
		t, err := siptcp.Listen(ctx, cfg.SIPTLS, siptcp.Options{
			TLS:                     certs.tlsConfig(),
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
	s.ws, err = sipws.New(sipws.Options{
		LocalAddr:               web.http,
		Forwarded:               cfg.trust(),
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

	bind, announce, guessed, err := mediaAddrs(cfg)
	if err != nil {
		return nil, err
	}
	if guessed {
		logger.Warn("SWITCHBOARD_PUBLIC_IP is not set; announcing the address of the default route in SIP, SDP and ICE. Set it to the address peers reach the gateway on",
			"address", announce)
	}
	ident, err := identity.New(identity.Config{
		Domains:   []string{cfg.Domain},
		Aliases:   aliases,
		Endpoints: endpoints(s.addrs, web, announce),
	})
	if err != nil {
		return nil, err
	}
	// After the listeners: in cluster mode this instance is named by its
	// TCP listener's address.
	if err := s.openLocation(ctx, cfg, ident, logger); err != nil {
		return nil, err
	}
	s.media, err = media.NewEngine(ctx, mediaOptions(cfg, bind, announce, logger))
	if err != nil {
		return nil, fmt.Errorf("media engine: %w", err)
	}
	s.addrs.ICE = s.media.ICEAddr()
	gc := gateway.Config{
		Identity:        ident,
		Transports:      s.transports,
		Location:        s.location,
		Accounts:        s.accounts,
		Throttle:        &accounts.Throttle{Logger: logger.With("component", "throttle")},
		Media:           s.media,
		MaxCalls:        cfg.MaxCalls,
		FlowGrace:       cfg.flowGrace(),
		Secret:          s.secret,
		Algorithms:      cfg.DigestAlgorithms,
		AuthenticateAll: cfg.AuthenticateAll,
		LocalOnly:       cfg.LocalOnly,
		UserAgent:       "Switchboard " + version,
		Transaction:     transaction.Config{OnFinal: metrics.onFinal},
		Logger:          logger,
	}
	if m := s.gatewayCluster(); m != nil {
		gc.Cluster = m
	}
	if file != nil {
		gc.Trunks, gc.Routes, gc.Redirect = file.Trunks, file.Routes, file.Domain.Redirect
	}
	// Not ctx itself: a stop drains, and the calls and requests in
	// progress go on until Close.
	if s.gw, err = gateway.New(context.WithoutCancel(ctx), gc); err != nil {
		return nil, err
	}
	go func() { s.served <- s.gw.Serve(ctx) }()
	ok = true
	return s, nil
}

// close stops the SIP side: the gateway (registrations, calls, transports,
// transactions), then the media engine, then the store, which flushes its
// bindings.
func (s *sipStack) close() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.gw != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.gw.Close(ctx)
		cancel()
	} else if s.transports != nil {
		s.transports.Close()
	}
	if s.media != nil {
		s.media.Close()
	}
	s.closeCluster()
	if s.location != nil {
		s.location.Close()
	}
}

// loadFile loads the config file, if there is one.
func loadFile(cfg Config) (*config.File, error) {
	if cfg.ConfigFile == "" {
		return nil, nil
	}
	return config.Options{Domain: cfg.Domain}.Load(cfg.ConfigFile)
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
// itself besides its domain: its listening addresses and its ACME names.
func gatewayAliases(cfg Config, web webAddrs) []string {
	seen := map[string]bool{cfg.Domain: true}
	var out []string
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, a := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.SIPTLS, web.http.String(), cfg.HTTPS} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			add(host)
		}
	}
	add(cfg.PublicIP)
	add(cfg.ClusterHost)
	for _, d := range cfg.ACMEDomains {
		add(d)
	}
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

// endpoints lists the gateway's own SIP addresses, as peers must see them:
// the announced address (SWITCHBOARD_PUBLIC_IP, or the default route's for
// a listener on every interface) when there is one, else the listening
// address.
func endpoints(l listening, web webAddrs, announce netip.Addr) []identity.Endpoint {
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
	add(sip.WS, web.http)
	// A WSS flow's Via, Contact and Record-Route name the HTTPS port:
	// that is where a browser reaches the gateway over TLS.
	add(sip.WSS, web.https)
	return out
}
