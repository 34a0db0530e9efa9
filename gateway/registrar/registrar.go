package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/internal/ascii"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// Defaults for zero fields of Options.
const (
	DefaultMinExpires = 60 * time.Second
	DefaultMaxExpires = 3600 * time.Second
	DefaultExpires    = 3600 * time.Second
	DefaultFlowTimer  = 120 * time.Second
	// DefaultUnavailableRetry is long enough for a Redis failover, short
	// enough that registrations come back soon after.
	DefaultUnavailableRetry = 10 * time.Second
)

// Options configure a Registrar. Domain, Accounts and Location are
// required; every other zero field takes its default.
type Options struct {
	// Identity is who the gateway is. Its primary domain is the digest
	// realm and the host of every AOR; a Request-URI or To may name any
	// of its domains, aliases or endpoint hosts (AORs there are stored
	// under the primary domain).
	Identity *identity.Identity
	// Accounts authenticates users.
	Accounts *accounts.Store
	// Location stores the bindings.
	Location location.Store
	// Digest issues and checks challenges. Its Realm must be Domain. Nil
	// means a Server with a random secret and Clock's time: nonces then die
	// with the process, and clients answer one extra 401 after a restart.
	Digest *digest.Server
	// MinExpires is the shortest registration accepted (423 below it);
	// default DefaultMinExpires.
	MinExpires time.Duration
	// MaxExpires is the longest registration granted; longer requests are
	// shortened to it. Default DefaultMaxExpires.
	MaxExpires time.Duration
	// DefaultExpires applies when a REGISTER gives no expiry; default
	// DefaultExpires.
	DefaultExpires time.Duration
	// FlowTimer is sent in Flow-Timer to outbound user agents on
	// connection-oriented transports: how often to send keep-alives (RFC
	// 5626 §4.4.1). Default DefaultFlowTimer. Over UDP no Flow-Timer is
	// sent, and the UA keeps its own default.
	FlowTimer time.Duration
	// Throttle refuses sources after repeated authentication failures. Nil
	// means a Throttle with its defaults on Clock.
	Throttle *accounts.Throttle
	// Algorithms are the digest algorithms challenged with, in the order
	// offered; nil means digest.DefaultAlgorithms().
	Algorithms []string
	// Clock is the time source; nil means the system clock.
	Clock clock.Clock
	// Logger receives registrations and authentication failures; nil
	// discards.
	Logger *slog.Logger
	// Node names the gateway instance in the bindings it stores
	// (location.Binding.Node): its address on the SIP listener the other
	// instances of a cluster reach it at. Empty when it runs alone.
	Node string
	// Changed, if not nil, is called after a REGISTER changed the
	// bindings of aor, with the bindings after the change, before the
	// 200 is returned.
	Changed func(aor string, bindings []location.Binding)
	// UnavailableRetry is the Retry-After of the 503 that answers a
	// REGISTER while a shared location store is out of reach; default
	// DefaultUnavailableRetry.
	UnavailableRetry time.Duration
}

// Registrar answers REGISTER requests. Create it with New; its methods are
// safe for concurrent use.
type Registrar struct {
	domain     string // canonical host of AORs, lower case
	id         *identity.Identity
	accounts   *accounts.Store
	loc        location.Store
	digest     *digest.Server
	throttle   *accounts.Throttle
	clock      clock.Clock
	algorithms []string
	log        *slog.Logger

	minSecs, maxSecs, defSecs uint64
	flowTimer                 string

	node             string
	changed          func(aor string, bindings []location.Binding)
	unavailableRetry time.Duration

	date atomic.Pointer[sipDate] // the last Date header written
}

// New returns a registrar, checking opts.
func New(opts Options) (*Registrar, error) {
	switch {
	case opts.Identity == nil:
		return nil, errors.New("registrar: no identity")
	case opts.Accounts == nil:
		return nil, errors.New("registrar: no account store")
	case opts.Location == nil:
		return nil, errors.New("registrar: no location store")
	case opts.Digest != nil && opts.Digest.Realm != opts.Identity.Domain():
		return nil, fmt.Errorf("registrar: digest realm %q is not the domain %q", opts.Digest.Realm, opts.Identity.Domain())
	}
	r := &Registrar{
		id:         opts.Identity,
		domain:     opts.Identity.Domain(),
		accounts:   opts.Accounts,
		loc:        opts.Location,
		digest:     opts.Digest,
		throttle:   opts.Throttle,
		clock:      clock.Or(opts.Clock),
		algorithms: opts.Algorithms,
		log:        opts.Logger,
		node:       opts.Node,
		changed:    opts.Changed,

		unavailableRetry: orDur(opts.UnavailableRetry, DefaultUnavailableRetry),
	}
	if len(r.algorithms) == 0 {
		r.algorithms = digest.DefaultAlgorithms()
	}
	if r.digest == nil {
		r.digest = &digest.Server{Realm: r.domain, Now: r.clock.Now}
	}
	if r.throttle == nil {
		r.throttle = &accounts.Throttle{Clock: r.clock}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	minE := orDur(opts.MinExpires, DefaultMinExpires)
	maxE := orDur(opts.MaxExpires, DefaultMaxExpires)
	defE := orDur(opts.DefaultExpires, DefaultExpires)
	if minE > maxE {
		return nil, fmt.Errorf("registrar: MinExpires %v is above MaxExpires %v", minE, maxE)
	}
	r.minSecs, r.maxSecs = seconds(minE), seconds(maxE)
	r.defSecs = min(max(seconds(defE), r.minSecs), r.maxSecs)
	r.flowTimer = strconv.FormatUint(seconds(orDur(opts.FlowTimer, DefaultFlowTimer)), 10)
	return r, nil
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) uint64 {
	return max(1, uint64((d+time.Second-1)/time.Second))
}

// ours reports whether host names the gateway: a domain, an alias or an
// endpoint host.
func (r *Registrar) ours(host string) bool { return r.id.IsLocalHost(host) }

// aorOf returns the canonical AOR of a user of the domain.
func (r *Registrar) aorOf(user string) string {
	u := sip.URI{Scheme: "sip", User: user, Host: r.domain}
	return u.String()
}

// AOR returns the address of record under which a REGISTER whose To names
// user of the domain stores its bindings.
func (r *Registrar) AOR(user string) string { return r.aorOf(user) }

// reply builds a response to req with a To tag, which every final
// response of a UAS carries (§8.2.6.2).
func reply(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	setToTag(res)
	return res
}

// setToTag sets a new To tag on res, which Response.SetToTag appends to
// the To as received (one allocation; the To stays parsed for the
// transaction layer). The To of a REGISTER is read on every request, two
// responses to each registration.
func setToTag(res *sip.Response) { res.SetToTag(sip.NewTag()) }

// ServeRegister processes a REGISTER and returns the response to send; it
// never returns nil. The steps and the status of each refusal are listed in
// the package documentation. Store failures give 500; ctx bounds the store
// calls.
func (r *Registrar) ServeRegister(ctx context.Context, req *sip.Request) *sip.Response {
	if req.Method != sip.MethodRegister {
		res := reply(req, 405, "")
		res.Add("Allow", sip.MethodRegister)
		return res
	}
	// §10.3 step 1: the Request-URI names this domain.
	if !req.URI.IsSIP() {
		return reply(req, 416, "")
	}
	if !r.ours(req.URI.Host) {
		return reply(req, 404, "Domain Not Served")
	}
	// Step 2: extensions the request requires.
	if tags := unsupported(req); tags != "" {
		res := reply(req, 420, "")
		res.Add("Unsupported", tags)
		return res
	}
	// Step 5, early: syntax and domain only, nothing about users.
	to := req.To()
	switch {
	case !to.URI.IsSIP():
		return reply(req, 400, "To Is Not a SIP URI")
	case to.URI.User == "":
		return reply(req, 404, "No User in To")
	case !r.ours(to.URI.Host):
		return reply(req, 404, "AOR Not in Domain")
	}
	// Steps 3 and 4: who is asking, and may they change this AOR.
	res, resent := r.authenticate(req, to.URI.User)
	if res != nil {
		return res
	}
	// Steps 6 to 8. The AOR is written only now: a challenge, the answer
	// to half of all REGISTERs, does not need it.
	return r.update(ctx, req, r.aorOf(to.URI.User), resent)
}

// unsupported returns the option tags of Require this registrar does not
// know, comma-separated.
func unsupported(req *sip.Request) string {
	if !req.Has("Require") {
		return ""
	}
	var out []string
	for _, t := range req.Tokens("Require") {
		if !ascii.EqualFold("path", t) && !ascii.EqualFold("outbound", t) {
			out = append(out, t)
		}
	}
	return strings.Join(out, ", ")
}
