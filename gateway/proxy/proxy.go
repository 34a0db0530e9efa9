package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/transfer"
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/locate"
)

// Defaults for zero fields of Options.
const (
	// DefaultTimerC is Timer C, which RFC 3261 §16.6 step 11 wants above
	// three minutes.
	DefaultTimerC = 3*time.Minute + 30*time.Second
	// DefaultCancelTimeout is how long a canceled branch may take to
	// answer before the proxy gives up on it: 64*T1, as §9.1 advises.
	DefaultCancelTimeout = 64 * transaction.DefaultT1
	// DefaultMaxTargets bounds the targets of one request.
	DefaultMaxTargets = 16
)

// Options configure a Proxy. Transactions, Sender and Identity are
// required; every other zero field has a working default.
type Options struct {
	// Transactions starts the client transactions of forwarded requests:
	// the *transaction.Layer whose Handler is the Proxy.
	Transactions transaction.Requester
	// Sender sends what has no transaction: ACKs for 2xx responses and
	// stray responses (§16.11). Normally the transaction layer's Sender.
	Sender transaction.Sender
	// Identity is who the gateway is: the domains whose AORs are looked
	// up in the Locator and whose users authenticate, the names and
	// addresses that mean the gateway in Route headers and Request-URIs,
	// and the endpoints its Via and Record-Route name.
	Identity *identity.Identity
	// RedirectDomains are the domains (among the Identity's) served in redirect
	// mode: a request for one of their AORs is answered 302 with the
	// targets as Contacts instead of being proxied.
	RedirectDomains []string
	// Realm is the digest realm; default the first domain.
	Realm string

	// Locator finds the targets of our AORs; nil finds none (480).
	Locator Locator
	// Resolver finds next-hop addresses (a *locate.Locator); nil resolves
	// IP literals only.
	Resolver locate.Resolver
	// Credentials authenticate our users; nil authenticates nobody.
	Credentials Credentials
	// Trusted names the trunks trusted by address; nil trusts none.
	Trusted TrustedSources
	// Throttle limits authentication failures; nil limits nothing.
	Throttle Throttle
	// Router is the trunk and dial-plan hook; nil routes by domain only.
	Router Router
	// FlowTokens encode flows in Record-Route and Via; nil means
	// HMACTokens keyed with Secret.
	FlowTokens FlowTokens
	// Reconnects follows the flow a token names to the connection that
	// replaced it, so that the route set of a dialog, fixed at its start,
	// still reaches a browser that reconnected; nil: a token leads to the
	// flow it names.
	Reconnects Reconnects

	// Secret keys the stamps of Record-Route entries, the digest nonces and
	// the default flow tokens. Instances that must understand each other's
	// routes (a cluster, a restart) share it. Empty: 32 random bytes, so
	// dialogs and nonces do not survive a restart.
	Secret []byte

	// AuthenticateAll challenges every out-of-dialog request that is not
	// from a trusted trunk, not only those from our domains: callers from
	// other domains cannot reach our users anonymously.
	AuthenticateAll bool
	// Algorithms are the digest algorithms challenged with, in the order
	// offered; nil means digest.DefaultAlgorithms().
	Algorithms []string

	// Bridge is asked about each target of an authorized initial INVITE
	// (no To tag) as the proxy forks to it. When it returns true it took
	// the target: the branch's responses come from the BridgedBranch
	// rather than from a client transaction — a B2BUA runs the branches
	// that cross between WebRTC and plain RTP endpoints this way — and
	// the proxy forwards nothing to the target itself. req is the INVITE
	// as the proxy received it, after its own Routes were removed; it must
	// be read only. ctx ends when the proxy is done with the request.
	// caller is who the proxy established sent req.
	Bridge func(ctx context.Context, req *sip.Request, caller Caller, t Target) (BridgedBranch, bool)
	// Transfer is the transfer policy applied to every REFER the proxy
	// forwards, in a dialog or out of one; nil is a zero transfer.Policy
	// (only our users transfer).
	Transfer *transfer.Policy
	// Replaces is asked about each INVITE with a Replaces header (RFC
	// 3891) outside a dialog before any other routing: when the dialog it
	// names is one whose party the hook knows how to reach (a leg of a
	// call the B2BUA bridges), the INVITE goes to that party alone, with
	// its Replaces header set to replaces, the dialog as that party knows
	// it. Dialogs the proxy record-routed itself are matched without it.
	Replaces func(r sip.Replaces) (t Target, replaces string, ok bool)
	// LocalOnly forbids authenticated users to reach other domains
	// directly: only the Router can send requests out.
	LocalOnly bool

	// TimerC is Timer C of INVITE branches (§16.6 step 11), reset by every
	// provisional response; default DefaultTimerC.
	TimerC time.Duration
	// CancelTimeout is how long a canceled INVITE branch may take to send
	// its final response; default DefaultCancelTimeout.
	CancelTimeout time.Duration
	// MaxTargets bounds the targets one request forks to (and the
	// Contacts of a 302); default DefaultMaxTargets.
	MaxTargets int
	// MaxDialogs bounds the dialogs the proxy record-routes at once;
	// default DefaultMaxDialogs. Beyond it the oldest ended dialog (its
	// BYE passed) is forgotten, else the oldest early one, and when all
	// are confirmed and under way a new one gets 503.
	MaxDialogs int
	// DialogLifetime is how long a record-routed dialog stays known after
	// its last in-dialog request; default DefaultDialogLifetime. A
	// request that arrives later is authorised as if out of dialog.
	DialogLifetime time.Duration
	// MaxQueued bounds the in-dialog requests of one dialog, from one
	// side, that the proxy holds to forward them in the order they
	// arrived (see Arrive); default DefaultMaxQueued. Beyond it Arrive
	// answers 503.
	MaxQueued int
	// OrderWait is how long an in-dialog request waits for one of its
	// dialog that arrived before it and never reached ServeSIP; default
	// DefaultOrderWait.
	OrderWait time.Duration
	// Order, when set, is the ordering of in-dialog requests that the
	// proxy shares with another handler of the same transaction layer
	// (the B2BUA): Arrive gives places in it, and MaxQueued and
	// OrderWait are its own.
	Order *inorder.Order

	// Clock runs Timer C and dates nonces; nil is the system clock.
	Clock clock.Clock
	// Logger receives debug and warning events; nil discards them.
	Logger *slog.Logger
}

// Proxy is the proxy core. Make it with New; it is safe for concurrent
// use.
type Proxy struct {
	algorithms []string
	bridge     func(ctx context.Context, req *sip.Request, caller Caller, t Target) (BridgedBranch, bool)
	transfer   *transfer.Policy
	replaces   func(r sip.Replaces) (Target, string, bool)
	txs        transaction.Requester
	sender     transaction.Sender
	id         *identity.Identity
	redirect   map[string]bool
	realm      string

	locator  Locator
	resolver locate.Resolver
	creds    Credentials
	trusted  TrustedSources
	throttle Throttle
	router   Router
	tokens   FlowTokens
	moved    Reconnects
	auth     *digest.Server
	key      []byte
	macs     sync.Pool // of *stampMAC keyed with key
	dialogs  *dialogs
	order    *inorder.Order

	authAll       bool
	localOnly     bool
	timerC        time.Duration
	cancelTimeout time.Duration
	maxTargets    int
	clk           clock.Clock
	log           *slog.Logger
}

// New returns a Proxy configured by opts. It fails with an error wrapping
// ErrInvalidOptions when Transactions, Sender or Identity are missing.
func New(opts Options) (*Proxy, error) {
	switch {
	case opts.Transactions == nil:
		return nil, fmt.Errorf("%w: no transactions", ErrInvalidOptions)
	case opts.Sender == nil:
		return nil, fmt.Errorf("%w: no sender", ErrInvalidOptions)
	case opts.Identity == nil:
		return nil, fmt.Errorf("%w: no identity", ErrInvalidOptions)
	}
	p := &Proxy{
		txs:           opts.Transactions,
		sender:        opts.Sender,
		id:            opts.Identity,
		redirect:      make(map[string]bool),
		locator:       opts.Locator,
		resolver:      opts.Resolver,
		creds:         opts.Credentials,
		trusted:       opts.Trusted,
		throttle:      opts.Throttle,
		router:        opts.Router,
		tokens:        opts.FlowTokens,
		moved:         opts.Reconnects,
		authAll:       opts.AuthenticateAll,
		algorithms:    opts.Algorithms,
		bridge:        opts.Bridge,
		transfer:      opts.Transfer,
		replaces:      opts.Replaces,
		localOnly:     opts.LocalOnly,
		timerC:        orDuration(opts.TimerC, DefaultTimerC),
		cancelTimeout: orDuration(opts.CancelTimeout, DefaultCancelTimeout),
		maxTargets:    opts.MaxTargets,
		clk:           clock.Or(opts.Clock),
		log:           opts.Logger,
	}
	for _, d := range opts.RedirectDomains {
		p.redirect[strings.ToLower(d)] = true
	}
	p.key = opts.Secret
	if len(p.key) == 0 {
		p.key = make([]byte, 32)
		rand.Read(p.key) // never fails since Go 1.24
	}
	p.macs.New = func() any { return &stampMAC{h: hmac.New(sha256.New, p.key)} }
	if p.tokens == nil {
		p.tokens = HMACTokens{Secret: p.key}
	}
	if p.resolver == nil {
		p.resolver = locate.ResolverFunc(resolveLiteral)
	}
	if p.transfer == nil {
		p.transfer = &transfer.Policy{}
	}
	p.realm = opts.Realm
	if p.realm == "" {
		p.realm = p.id.Domain()
	}
	p.auth = &digest.Server{Realm: p.realm, Secret: p.key, Now: p.clk.Now}
	if len(p.algorithms) == 0 {
		p.algorithms = digest.DefaultAlgorithms()
	}
	if p.maxTargets <= 0 {
		p.maxTargets = DefaultMaxTargets
	}
	maxDialogs := opts.MaxDialogs
	if maxDialogs <= 0 {
		maxDialogs = DefaultMaxDialogs
	}
	p.dialogs = newDialogs(maxDialogs, orDuration(opts.DialogLifetime, DefaultDialogLifetime))
	p.order = opts.Order
	if p.order == nil {
		p.order = inorder.New(inorder.Options{MaxQueued: opts.MaxQueued, Wait: opts.OrderWait, Clock: p.clk})
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// follow returns the connection that now carries what flow carried: flow
// itself, unless its user agent registered again over a new connection.
func (p *Proxy) follow(flow sip.Addr) sip.Addr {
	if p.moved == nil || flow.Flow == 0 {
		return flow
	}
	return p.moved.Follow(flow)
}

func orDuration(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// ServeSIP proxies req. It implements transaction.Handler: it returns once
// the request's fate is settled — for an INVITE, when every branch has
// ended, so that every 2xx is forwarded. A nil tx is an ACK that matched
// no server transaction (the ACK of a 2xx): it is forwarded statelessly.
//
// The in-dialog requests of one dialog from one side that Arrive saw are
// forwarded in the order it saw them: each waits here until the one
// before it was sent.
//
// ctx must end when ServeSIP returns, as a transaction.Handler's does:
// what the request started with it (a bridged branch) ends then.
func (p *Proxy) ServeSIP(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
	if tx == nil {
		if req != nil && req.Method == sip.MethodAck {
			p.forwardAck(ctx, req)
		}
		return
	}
	sent := p.order.Await(ctx, req)
	defer sent()
	p.serve(ctx, tx, req, sent)
}

// serve is ServeSIP for a request with a server transaction; sent passes
// the turn of its dialog on once the request went out.
func (p *Proxy) serve(ctx context.Context, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	// The request is shared with the transaction layer, which indexed its
	// typed headers, so reading it writes nothing. It is changed only in a
	// copy (own), made once it needs a change: Routes to remove,
	// credentials to consume, a Replaces to rewrite. A request forwarded
	// to a single target is that copy (see call.fwdFree); a 407 or an
	// initial INVITE without Routes was never copied at all.
	r := req
	own := func() {
		if r == req {
			r = req.Clone()
		}
	}
	uri := r.URI // as received, which digest credentials name
	if !p.validate(tx, r) {
		return
	}
	hash := loopHash(r)
	if p.looped(r, hash) {
		p.reply(tx, r, 482, "", nil)
		return
	}
	if tags := r.Tokens("Proxy-Require"); len(tags) > 0 {
		// No extension is implemented for proxies (§16.3 step 5).
		p.reply(tx, r, 420, "", func(res *sip.Response) { res.Set("Unsupported", strings.Join(tags, ", ")) })
		return
	}
	if r.Has("Route") {
		own()
	}
	rt, err := p.preprocessRoutes(r)
	if err != nil {
		p.reply(tx, r, 400, "Malformed Route", nil)
		return
	}
	if r.Method == sip.MethodOptions && p.IsForMe(r) {
		p.respond(tx, identity.OptionsResponse(r))
		return
	}

	// A request on one of our Record-Route stamps is in a dialog only if
	// it goes where that dialog's party is; anything else is authorised
	// as a request out of any dialog, so that a replayed stamp relays
	// nothing.
	var dest sip.Addr
	var sender string // the user of ours the dialog recorded for the sending side
	inDialog := false
	if rt.stamped && r.To().Tag() != "" {
		dest, sender, inDialog = p.dialogs.route(r, &rt, p.clk.Now(), p.follow)
	}
	if !inDialog && (rt.stamped || rt.badStamp) {
		if !rt.stamped {
			p.dialogs.noteMismatch()
		}
		p.log.Info("proxy: route stamp does not match the request's dialog, authorizing it as out of dialog",
			"call_id", r.CallID(), "method", r.Method, "uri", r.URI.String(), "source", r.Source.String())
	}
	caller := Caller{Source: r.Source}
	switch {
	case inDialog:
		caller.User = sender
	case rt.peer:
		// Another instance of the cluster authorised it and sends it
		// here for a connection of ours.
		caller.Peer = true
	default:
		var ok bool
		if caller, ok = p.authorize(tx, r, uri); !ok {
			return
		}
		if caller.User != "" && r.Has("Proxy-Authorization") {
			// Authenticated: the credentials for our realm have no use
			// beyond us (§22.3).
			own()
			p.consumeCredentials(r)
		}
	}
	if r.Method == sip.MethodRefer {
		party := transfer.Party{User: caller.User, Trunk: caller.Trunk, Source: r.Source}
		if res := p.transfer.Check(ctx, r, party); res != nil {
			p.respond(tx, res)
			return
		}
	}
	if r.Has("Replaces") {
		own() // replacesTarget may rewrite it
	}
	targets, ok := p.targets(ctx, tx, r, caller, rt, inDialog, dest)
	if !ok {
		return
	}
	c := newCall(p, tx, req, r, hash)
	// The copy is the call's own: its only branch may take it as it is.
	c.fwdFree = r != req && len(targets) == 1
	c.sent = sent
	c.caller = caller
	if caller.Peer {
		// The connection from a peer is no party's: requests within the
		// dialog go back through the peer's Record-Route, over whatever
		// connection reaches it then.
		c.fromPeer, c.inTok = true, ""
	}
	if inDialog {
		c.inDialog(&rt)
	}
	if c.rr && !c.open() {
		p.log.Warn("proxy: no room for one more dialog", "call_id", r.CallID(), "source", r.Source.String())
		p.reply(tx, r, 503, "Too Many Dialogs", func(res *sip.Response) { res.Set("Retry-After", "5") })
		return
	}
	// Only an initial INVITE starts the calls that a bridge may run; an
	// INVITE with a To tag belongs to a dialog, ours or not.
	c.bridging = p.bridge != nil && c.invite && r.To().Tag() == ""
	c.run(ctx, targets)
}

// validate runs the checks of §16.3 steps 2 and 3 and answers a request
// that fails them.
func (p *Proxy) validate(tx *transaction.ServerTx, r *sip.Request) bool {
	switch r.URI.Scheme {
	case "sip", "sips":
	case "tel":
		if p.router == nil {
			p.reply(tx, r, 416, "", nil)
			return false
		}
	default:
		p.reply(tx, r, 416, "", nil)
		return false
	}
	if mf, ok := r.MaxForwards(); ok && mf == 0 {
		// §16.3 step 3: an OPTIONS may be answered by its final
		// recipient, which the gateway is when no user is named.
		if r.Method == sip.MethodOptions && r.URI.User == "" && p.id.IsLocal(&r.URI) {
			p.respond(tx, identity.OptionsResponse(r))
		} else {
			p.reply(tx, r, 483, "", nil)
		}
		return false
	}
	return true
}

// targets builds the target set (§16.5) and answers the request when there
// is none or the policy refuses it. ok is false when it answered.
//
// A request in one of our dialogs goes where the dialog check sent it:
// over dest, the connection of the party, when valid.
func (p *Proxy) targets(ctx context.Context, tx *transaction.ServerTx, r *sip.Request, caller Caller, rt routing, inDialog bool, dest sip.Addr) ([]Target, bool) {
	switch {
	case inDialog:
		return []Target{{URI: r.URI, Dest: dest}}, true
	case r.Method == sip.MethodInvite && r.To().Tag() == "" && r.Has("Replaces"):
		if t, ok := p.replacesTarget(r); ok {
			// A user kept to our domains reaches by Replaces what it could
			// dial: our users and trunks, not a party elsewhere.
			sender := transfer.Party{User: caller.User, Trunk: caller.Trunk, Source: r.Source, LocalOnly: p.localOnly}
			if res := p.transfer.CheckReplaces(r, sender, p.replacedParty(t)); res != nil {
				p.respond(tx, res)
				return nil, false
			}
			p.log.Info("proxy: invite with replaces goes to the party of the dialog it names",
				"call_id", r.CallID(), "replaces", r.Get("Replaces"), "uri", t.URI.String())
			return []Target{t}, true
		}
	}
	switch {
	case rt.flow.IsValid() && (p.mayLeave(caller) || caller.Peer):
		// Out of any dialog we know (one forgotten in a restart, say), a
		// Route of ours named a flow: an authenticated user may follow it
		// as it may go anywhere; a peer route was written for it.
		return []Target{{URI: r.URI, Dest: rt.flow}}, true
	case r.Has("Route"):
		// A route set beyond us, pre-loaded by the caller: the request
		// leaves the gateway.
		if !p.mayLeave(caller) {
			p.reply(tx, r, 403, "Relaying Denied", nil)
			return nil, false
		}
		return []Target{{URI: r.URI}}, true
	}
	if p.router != nil {
		if ts, handled := p.router.Route(ctx, r, caller); handled {
			ts, err := p.expand(ctx, ts)
			if err != nil {
				p.log.Warn("proxy: location lookup", "err", err)
				p.reply(tx, r, 500, "", nil)
				return nil, false
			}
			if len(ts) == 0 {
				p.reply(tx, r, 404, "", nil)
				return nil, false
			}
			return ts, true
		}
	}
	if !p.id.IsLocal(&r.URI) {
		if r.URI.Scheme == "tel" {
			p.reply(tx, r, 404, "", nil)
			return nil, false
		}
		if !p.mayLeave(caller) {
			p.reply(tx, r, 403, "Relaying Denied", nil)
			return nil, false
		}
		return []Target{{URI: r.URI}}, true
	}
	aor := p.id.AOR(&r.URI)
	var ts []Target
	if p.locator != nil {
		var err error
		if ts, err = p.locator.Lookup(ctx, aor); err != nil {
			p.log.Warn("proxy: location lookup", "aor", aor, "err", err)
			p.reply(tx, r, 500, "", nil)
			return nil, false
		}
		registered(ts, r.URI.User)
	}
	if len(ts) == 0 {
		p.reply(tx, r, p.absentStatus(r, caller), "", nil)
		return nil, false
	}
	if p.redirect[p.id.DomainOf(&r.URI)] {
		p.respond(tx, p.redirectResponse(r, ts))
		return nil, false
	}
	return ts, true
}

// expand replaces the targets that are addresses of record of our domains
// (a DID mapped to a local user, say) by their registered targets: the
// proxy recurses on them (§16.5) rather than forwarding to itself.
func (p *Proxy) expand(ctx context.Context, ts []Target) ([]Target, error) {
	local := false
	for i := range ts {
		local = local || p.isAOR(&ts[i])
	}
	if !local {
		return ts, nil
	}
	var out []Target
	for _, t := range ts {
		if !p.isAOR(&t) {
			out = append(out, t)
			continue
		}
		if p.locator == nil {
			continue
		}
		found, err := p.locator.Lookup(ctx, p.id.AOR(&t.URI))
		if err != nil {
			return nil, fmt.Errorf("proxy: targets of %s: %w", p.id.AOR(&t.URI), err)
		}
		registered(found, t.URI.User)
		out = append(out, found...)
	}
	return out, nil
}

// registered marks targets the Locator found for user's address of record
// as that user's registrations.
func registered(ts []Target, user string) {
	for i := range ts {
		if ts[i].User == "" {
			ts[i].User = user
		}
	}
}

// isAOR reports a target that names an address of record of ours rather
// than a place to send to.
func (p *Proxy) isAOR(t *Target) bool {
	return !t.Dest.IsValid() && len(t.Path) == 0 && t.URI.User != "" && p.id.IsDomain(t.URI.Host)
}

// mayLeave reports whether caller may send requests out of our domains.
func (p *Proxy) mayLeave(c Caller) bool { return c.User != "" && !p.localOnly }

// absentStatus is the answer to r, from c, for an AOR of ours with no
// targets. An authenticated user or a trusted trunk learns whether the
// account exists: 480 when it does (it is just not registered), 404 when
// it does not. An anonymous caller gets 480 either way, after the same
// work — no account is looked up for it — so that it cannot tell real
// accounts from made-up names; and the answer counts as a probe in the
// Throttle, so that a source scanning for names is soon refused.
func (p *Proxy) absentStatus(r *sip.Request, c Caller) int {
	if c.Anonymous() {
		if p.throttle != nil {
			p.throttle.Probe(r.Source.AddrPort.Addr())
		}
		return 480
	}
	u := &r.URI
	if p.creds == nil || u.User == "" {
		return 480
	}
	if _, ok := p.creds.HA1(u.User, "MD5"); ok {
		return 480
	}
	if _, ok := p.creds.HA1(u.User, "SHA-256"); ok {
		return 480
	}
	return 404
}

// reply answers a request with a response of the proxy's own.
func (p *Proxy) reply(tx *transaction.ServerTx, r *sip.Request, code int, reason string, decorate func(*sip.Response)) {
	res := sip.NewResponse(r, code, reason)
	res.SetToTag(sip.NewTag())
	if decorate != nil {
		decorate(res)
	}
	p.respond(tx, res)
}

func (p *Proxy) respond(tx *transaction.ServerTx, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		p.log.Debug("proxy: responding", "status", res.StatusCode, "err", err)
	}
}

// IsForMe reports whether req is addressed to the gateway itself rather
// than to a user: its Request-URI has no user part and names one of our
// domains, endpoints or aliases, and it carries no Route beyond our own.
// The gateway answers such an OPTIONS with identity.OptionsResponse
// (ServeSIP does too).
func (p *Proxy) IsForMe(req *sip.Request) bool {
	if !req.URI.IsSIP() || req.URI.User != "" || !p.id.IsLocal(&req.URI) {
		return false
	}
	routes, err := req.Routes()
	if err != nil {
		return false
	}
	for i := range routes {
		if !p.id.IsSelf(&routes[i].URI) {
			return false
		}
	}
	return true
}

// replacesTarget finds where r, an INVITE with Replaces outside a dialog,
// must go: to the party of the dialog it names, when the gateway knows it:
// the other leg of a bridged call (Options.Replaces, which also gives the
// Replaces as that party knows the dialog, set on r), or a party of a
// dialog this proxy record-routed. Such an INVITE joins a call that
// exists; the transfer policy then decides whether its sender may reach
// that party.
func (p *Proxy) replacesTarget(r *sip.Request) (Target, bool) {
	rep, ok, err := r.Replaces()
	if !ok || err != nil {
		return Target{}, false
	}
	if p.replaces != nil {
		if t, value, ok := p.replaces(rep); ok {
			r.Set("Replaces", value)
			return t, true
		}
	}
	s, ok := p.dialogs.replaced(rep, &r.URI, p.clk.Now())
	if !ok {
		return Target{}, false
	}
	t := Target{URI: s.target, Dest: s.flow, User: s.user}
	if s.route != nil {
		t.Path = []string{"<" + s.route.String() + ">"}
	}
	return t, true
}

// replacedParty is the party that an INVITE with Replaces would reach at
// t, for the transfer policy: the user of ours it is, or the trusted
// trunk its address (the connection or the address its leg's requests go
// to, else an IP address in its URI) belongs to.
func (p *Proxy) replacedParty(t Target) transfer.Party {
	party := transfer.Party{User: t.User}
	if party.User != "" || p.trusted == nil {
		return party
	}
	addr := t.Dest
	if !addr.IsValid() {
		ip, err := netip.ParseAddr(strings.Trim(t.URI.Host, "[]"))
		if err != nil {
			return party
		}
		addr = sip.Addr{Transport: sip.UDP, AddrPort: netip.AddrPortFrom(ip, uint16(t.URI.Port))}
	}
	if name, ok := p.trusted.Trusted(addr); ok {
		party.Trunk = name
	}
	return party
}

// DialogStats returns the counters of the proxy's table of record-routed
// dialogs.
func (p *Proxy) DialogStats() DialogStats { return p.dialogs.stats() }
