// Package gateway assembles Switchboard's SIP roles into one gateway:
// New builds the registrar, the proxy, the B2BUA, trunk routing and the
// authentication policy from a Config, on the transport layer the caller
// opened, and the Gateway then dispatches every request the transaction
// layer hands up: REGISTER to the registrar, a request for the gateway
// itself (OPTIONS pings) to its own answers, in-dialog requests of bridged
// calls to the B2BUA, and everything else to the proxy, which forks to the
// callee's contacts and has the B2BUA run each branch that crosses between
// WebRTC and plain RTP.
//
// The roles themselves live in the subpackages: identity (who the gateway
// is), registrar, location, accounts, proxy, b2bua, trunk and config. The
// binary (cmd/switchboard) only reads settings, opens listeners, serves
// HTTP and exports metrics.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/gateway/transfer"
	"github.com/switchboard/switchboard/gateway/trunk"
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/locate"
)

// Config is what a Gateway is made of. Identity, Transports, Location,
// Accounts and Secret are required; every other zero field has a working
// default.
type Config struct {
	// Identity is who the gateway is: its domain (the digest realm), the
	// names and addresses it answers to, and its advertised endpoints.
	Identity *identity.Identity
	// Transports are the gateway's listening transports. The Gateway owns
	// them from New on: Close closes them.
	Transports *transport.Layer
	// Location stores the registrations. The caller closes it after Close.
	Location location.Store
	// Accounts are the users that register and call; Reload replaces
	// them.
	Accounts *accounts.Store
	// Throttle limits authentication failures across the registrar, the
	// proxy and the admin API; nil makes one of the gateway's own.
	Throttle *accounts.Throttle
	// Media relays the calls that cross between browsers and phones. Nil
	// bridges nothing: a branch that crosses gets 488.
	Media *media.Engine
	// MaxCalls bounds the bridged calls in progress; beyond it a call
	// that would cross gets 503 with Retry-After (b2bua.Options.MaxCalls).
	// Zero: no bound.
	MaxCalls int
	// FlowGrace is how long a bridged call waits for a browser whose
	// WebSocket closed to register again over a new one
	// (b2bua.Options.FlowGrace); zero: b2bua.DefaultFlowGrace.
	FlowGrace time.Duration
	// Secret keys the digest nonces, the proxy's Record-Route stamps and
	// the flow tokens: 32 random bytes, kept across restarts so that
	// nonces and dialogs survive them.
	Secret []byte
	// Algorithms are the digest algorithms challenged with; nil means
	// digest.DefaultAlgorithms().
	Algorithms []string
	// AuthenticateAll challenges every out-of-dialog request that is not
	// from a trusted trunk, not only those that claim one of our users:
	// strangers cannot reach users anonymously.
	AuthenticateAll bool
	// LocalOnly keeps authenticated users from sending requests to other
	// domains directly: only the Routes lead out, through trunks.
	LocalOnly bool
	// Cluster, when set, is the gateway's place among the instances that
	// share its Location (cluster mode, a *cluster.Membership): a binding
	// whose connection another live instance holds is reached through
	// that instance, one whose instance is gone is skipped, and Secret
	// must be the cluster's. Nil: the gateway runs alone.
	Cluster Cluster

	// Trunks and Routes are the trunks (with their DIDs and trusted
	// sources) and the outbound dial rules; Redirect serves the domain in
	// redirect mode (302 with the contacts). Reload replaces the first
	// two; trunk registrations change only with a restart.
	Trunks   []trunk.Trunk
	Routes   []trunk.Route
	Redirect bool

	// UserAgent is sent in User-Agent and Server headers.
	UserAgent string
	// Transaction tunes the transaction layer (timers, bounds, OnFinal
	// for metrics). Its Admit and OnStrayResponse are the gateway's own.
	Transaction transaction.Config
	// Clock runs every role's timers and dates expiries; nil is the
	// system clock.
	Clock clock.Clock
	// Logger receives every role's logs, each with its component; nil
	// discards them.
	Logger *slog.Logger
}

// Cluster is what the gateway needs to know of the other instances that
// share its location store.
type Cluster interface {
	// Node is this instance's name in the bindings it stores: the SIP URI
	// the other instances reach it at ("sip:10.0.0.2:5060;transport=tcp").
	Node() string
	// Alive reports whether the instance named node is running, or was
	// at at (when a binding names it: when the binding was made), later
	// than this instance last learnt otherwise.
	Alive(node string, at time.Time) bool
}

// ErrInvalidConfig is wrapped by New's errors about its Config.
var ErrInvalidConfig = errors.New("gateway: invalid config")

// Gateway is Switchboard's SIP side. Make it with New, run it with Serve,
// stop it with Close. It is safe for concurrent use.
type Gateway struct {
	cfg       Config
	base      *slog.Logger // Config.Logger, or a discarding one
	log       *slog.Logger
	tx        *transaction.Layer
	registrar *registrar.Registrar
	proxy     *proxy.Proxy
	calls     *b2bua.B2BUA // nil without Config.Media
	routing   *routingTable
	dns       *locate.Locator
	flows     *transport.FlowHolds
	throttle  *accounts.Throttle
	// instances follows outbound user agents (browsers) from connection
	// to connection, for the bridged calls and the proxy's flow tokens.
	instances *location.Instances
	// node is this instance's name in the bindings it stores; "" alone.
	node     string
	transfer *transfer.Policy

	// shed counts the requests refused for overload; retryAfter is their
	// Retry-After.
	shed       atomic.Uint64
	retryAfter string

	// ctx is the context of the work the gateway does on its own (the
	// handlers, the bindings of a closed connection): New's, canceled by
	// Close.
	ctx    context.Context
	cancel context.CancelFunc

	// draining holds the Retry-After of the 503 that refuses new calls
	// while the gateway drains; zero while it takes calls.
	draining atomic.Int64

	mu       sync.Mutex
	stopRegs context.CancelFunc // set while Serve runs
	regs     sync.WaitGroup     // the trunk registrations
	serving  sync.WaitGroup     // Serve
	closed   bool
}

// New builds the gateway's roles from cfg. Nothing is sent or received
// before Serve. ctx is the parent of the gateway's own work (the handlers
// of requests, what it does when a connection closes): its values reach
// them, and its end, or Close, ends them.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	switch {
	case cfg.Identity == nil:
		return nil, fmt.Errorf("%w: no identity", ErrInvalidConfig)
	case cfg.Transports == nil:
		return nil, fmt.Errorf("%w: no transports", ErrInvalidConfig)
	case cfg.Location == nil:
		return nil, fmt.Errorf("%w: no location store", ErrInvalidConfig)
	case cfg.Accounts == nil:
		return nil, fmt.Errorf("%w: no accounts", ErrInvalidConfig)
	case len(cfg.Secret) < 16:
		return nil, fmt.Errorf("%w: a secret of %d bytes, want 16 or more", ErrInvalidConfig, len(cfg.Secret))
	}
	var node string
	if cfg.Cluster != nil {
		node = cfg.Cluster.Node()
		if u, err := sip.ParseURI(node); err != nil || !u.IsSIP() || u.User != "" {
			return nil, fmt.Errorf("%w: cluster node %q is not a SIP URI of a host", ErrInvalidConfig, node)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		cfg:       cfg,
		base:      log,
		log:       log.With("component", "gateway"),
		dns:       &locate.Locator{},
		throttle:  cfg.Throttle,
		instances: &location.Instances{Clock: cfg.Clock},
		node:      node,
	}
	if g.throttle == nil {
		g.throttle = &accounts.Throttle{Logger: log.With("component", "throttle")}
	}
	domain := cfg.Identity.Domain()
	// The connection transports shed connections without a registration
	// first.
	g.flows = transport.NewFlowHolds(cfg.Transports, cfg.Clock)

	var err error
	g.registrar, err = registrar.New(registrar.Options{
		Identity:   cfg.Identity,
		Accounts:   cfg.Accounts,
		Location:   cfg.Location,
		Digest:     &digest.Server{Realm: domain, Secret: cfg.Secret},
		Throttle:   g.throttle,
		Algorithms: cfg.Algorithms,
		Clock:      cfg.Clock,
		Logger:     log.With("component", "registrar"),
		Node:       g.node,
		Changed:    g.holdFlows,
	})
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}

	txc := cfg.Transaction
	if txc.Logger == nil {
		txc.Logger = log.With("component", "transaction")
	}
	if txc.Clock == nil {
		txc.Clock = cfg.Clock
	}
	g.retryAfter = strconv.Itoa(max(1, int(cmp.Or(txc.RetryAfter, transaction.DefaultRetryAfter).Seconds())))
	txc.Admit = g.admit
	txc.OnStrayResponse = g.forwardStray
	if txc.QueueDelay == nil {
		txc.QueueDelay = cfg.Transports.QueueDelay
	}
	if txc.QueueLen == nil {
		txc.QueueLen = cfg.Transports.QueueLen
	}
	// The trunk routing is built below; the layer asks for a weight only
	// once requests come, after New.
	txc.SourceWeight = func(src netip.Addr) int { return g.routing.weight(src) }
	g.ctx, g.cancel = context.WithCancel(ctx)
	g.tx = transaction.New(g.ctx, cfg.Transports, g, txc)

	g.transfer = &transfer.Policy{Reachable: g.reachable, Logger: log.With("component", "transfer")}
	// One order of in-dialog requests for the proxy and the B2BUA: admit
	// gives the places (proxy.Proxy.Arrive), and whichever of the two
	// serves a request waits there for its turn.
	order := inorder.New(inorder.Options{Clock: cfg.Clock})
	if cfg.Media != nil {
		g.calls, err = b2bua.New(b2bua.Options{
			Order:        order,
			Transfer:     g.transfer,
			Engine:       cfg.Media,
			Transactions: g.tx,
			Sender:       cfg.Transports,
			Identity:     cfg.Identity,
			MaxCalls:     cfg.MaxCalls,
			FlowGrace:    cfg.FlowGrace,
			UserAgent:    cfg.UserAgent,
			Clock:        cfg.Clock,
			Logger:       log.With("component", "b2bua"),
		})
		if err != nil {
			g.abandon()
			return nil, fmt.Errorf("b2bua: %w", err)
		}
	}

	routing, err := newTrunkRouting(domain, cfg.Trunks, cfg.Routes)
	if err != nil {
		g.abandon()
		return nil, fmt.Errorf("trunks: %w", err)
	}
	g.routing = newRoutingTable(routing)
	var redirect []string
	if cfg.Redirect {
		redirect = []string{domain}
	}
	var replaces func(sip.Replaces) (proxy.Target, string, bool)
	if g.calls != nil {
		replaces = g.replaces
	}
	g.proxy, err = proxy.New(proxy.Options{
		Order:           order,
		Bridge:          g.bridge,
		Transfer:        g.transfer,
		Replaces:        replaces,
		Transactions:    g.tx,
		Sender:          cfg.Transports,
		Identity:        cfg.Identity,
		Realm:           domain,
		Locator:         locator{g},
		Resolver:        g.dns,
		Router:          g.routing,
		Trusted:         g.routing,
		RedirectDomains: redirect,
		Credentials:     credentials{cfg.Accounts},
		Throttle:        proxyThrottle{g.throttle},
		Secret:          cfg.Secret,
		Reconnects:      g.instances,
		Algorithms:      cfg.Algorithms,
		AuthenticateAll: cfg.AuthenticateAll,
		LocalOnly:       cfg.LocalOnly,
		Clock:           cfg.Clock,
		Logger:          log.With("component", "proxy"),
	})
	if err != nil {
		g.abandon()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return g, nil
}

// abandon undoes a New that failed half way.
func (g *Gateway) abandon() {
	g.tx.Close()
	g.cancel()
}

// Serve serves the gateway's transports and keeps the registrations of the
// trunks that ask for one, until Close; it returns Close's nil, or the
// error that stopped a transport. Trunk hosts named by DNS are resolved
// first, for the trusted sources; a failure there is logged, not fatal: a
// trunk is trusted once its host resolves. ctx bounds that resolution and
// the registrations; the transports serve until Close, so that BYEs and
// unregisters still go out while the gateway stops.
func (g *Gateway) Serve(ctx context.Context) error {
	g.mu.Lock()
	if g.closed || g.stopRegs != nil {
		g.mu.Unlock()
		return errors.New("gateway: Serve called twice or after Close")
	}
	regCtx, stop := context.WithCancel(ctx)
	g.stopRegs = stop
	g.serving.Add(1)
	g.mu.Unlock()
	defer g.serving.Done()

	if err := g.routing.cur.Load().resolveTrusted(ctx, g.dns); err != nil {
		g.log.Warn("resolve trunk hosts", "err", err)
	}
	for _, t := range g.cfg.Trunks {
		if t.Register {
			if err := g.startRegistration(regCtx, t); err != nil {
				return err
			}
		}
	}
	return g.cfg.Transports.Serve(context.WithoutCancel(ctx), transport.HandlerFuncs{
		Message:     g.tx.HandleMessage,
		Waited:      g.tx.HandleWaited,
		FlowClosed:  g.FlowClosed,
		Unreachable: g.tx.HandleUnreachable,
	})
}

// startRegistration keeps t registered with its provider until ctx ends,
// when it unregisters.
func (g *Gateway) startRegistration(ctx context.Context, t trunk.Trunk) error {
	reg, err := trunk.NewRegistration(trunk.RegistrationOptions{
		Trunk:     t,
		Requester: g.tx,
		Resolver:  g.dns,
		Identity:  g.cfg.Identity,
		UserAgent: g.cfg.UserAgent,
		Logger:    g.base.With("component", "trunk", "trunk", t.Name),
	})
	if err != nil {
		return fmt.Errorf("trunk %s: %w", t.Name, err)
	}
	g.regs.Add(1)
	go func() {
		defer g.regs.Done()
		if err := reg.Run(ctx); err != nil {
			g.log.Warn("trunk registration", "trunk", t.Name, "err", err)
		}
	}()
	return nil
}

// Close stops the gateway: the trunk registrations unregister, the bridged
// calls get their BYE while the transports can still carry them (ctx
// bounds the wait), then the transports close, Serve returns, and the
// transactions end. It may be called more than once.
func (g *Gateway) Close(ctx context.Context) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	stop := g.stopRegs
	g.mu.Unlock()
	if stop != nil {
		stop() // each registration unregisters, within its timeout
		g.regs.Wait()
	}
	if g.calls != nil {
		_ = g.calls.Close(ctx)
	}
	g.cfg.Transports.Close()
	g.serving.Wait()
	g.tx.Close()
	g.cancel()
}

// Drain makes the gateway refuse new calls — INVITEs outside a dialog —
// with 503 and a Retry-After of retryAfter (at least a second), so that
// callers try another server while the calls in progress end. Requests
// within dialogs, registrations and pings are still served. It is the
// first step of a graceful shutdown and cannot be undone. The bridged
// calls in progress are Calls().Drain's to wait for.
func (g *Gateway) Drain(retryAfter time.Duration) {
	g.draining.Store(int64(max(retryAfter, time.Second)))
}

// Reload puts new accounts, trunks and routes in force, whole or not at
// all: when one of them is bad nothing changes and the error says why.
// Trunk hosts are resolved again for the trusted sources (a failure is
// logged). Calls and registrations in progress are kept; trunk
// registrations change only with a restart, and Reload logs so when the
// new trunks ask for another.
func (g *Gateway) Reload(ctx context.Context, accts []accounts.Account, trunks []trunk.Trunk, routes []trunk.Route) error {
	routing, err := newTrunkRouting(g.cfg.Identity.Domain(), trunks, routes)
	if err != nil {
		return fmt.Errorf("trunks: %w", err)
	}
	if err := routing.resolveTrusted(ctx, g.dns); err != nil {
		g.log.Warn("reload: resolve trunk hosts", "err", err)
	}
	// Set changes nothing when an account is bad: the routing is swapped
	// only after it succeeded.
	if err := g.cfg.Accounts.Set(accts); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	g.routing.cur.Store(routing)
	if !sameRegistrations(g.cfg.Trunks, trunks) {
		g.log.Warn("reload: trunk registrations changed in the config file; they take effect at the next restart")
	}
	g.log.Info("config reloaded", "accounts", len(accts), "trunks", len(trunks), "routes", len(routes))
	return nil
}

// Calls returns the B2BUA of the bridged calls, nil without Config.Media.
func (g *Gateway) Calls() *b2bua.B2BUA { return g.calls }

// Throttle returns the authentication throttle of the gateway, which the
// admin API shares.
func (g *Gateway) Throttle() *accounts.Throttle { return g.throttle }

// TransactionStats returns the load of the transaction layer.
func (g *Gateway) TransactionStats() transaction.Stats { return g.tx.Stats() }

// Shed returns how many new requests were refused with 503 for overload
// (see admit).
func (g *Gateway) Shed() uint64 { return g.shed.Load() }

// TransferStats returns the counters of the transfer policy: the REFERs
// let through and refused, and the INVITEs with Replaces routed to the
// party of a dialog the gateway knows.
func (g *Gateway) TransferStats() transfer.Stats { return g.transfer.Stats() }

// DialogStats returns the counters of the proxy's dialog table.
func (g *Gateway) DialogStats() proxy.DialogStats { return g.proxy.DialogStats() }

// OrderStats returns the counters of the ordering of in-dialog requests that
// the proxy and the B2BUA share.
func (g *Gateway) OrderStats() proxy.OrderStats { return g.proxy.OrderStats() }

// HeldFlows returns how many connections the gateway holds now because
// registrations came over them.
func (g *Gateway) HeldFlows() int { return g.flows.Len() }

// InstanceStats returns the counters of the user agents the gateway
// follows from connection to connection (reconnects).
func (g *Gateway) InstanceStats() location.InstanceStats { return g.instances.Stats() }

// forwardStray is the transaction layer's OnStrayResponse: a callee's 2xx
// to a call of the B2BUA's, come after the INVITE's transaction ended,
// goes to its call; the proxy forwards the rest of what matches no client
// transaction.
func (g *Gateway) forwardStray(ctx context.Context, res *sip.Response) {
	if g.calls != nil && g.calls.HandleStray(res) {
		return
	}
	g.proxy.ForwardResponse(ctx, res)
}
