package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/locate"
)

// Registration states, as Status reports them.
const (
	// StateIdle: Run has not been called.
	StateIdle = "idle"
	// StateRegistering: the first REGISTER (or the first after a failure)
	// is under way.
	StateRegistering = "registering"
	// StateRegistered: the provider accepted the binding, which is
	// refreshed before it expires.
	StateRegistered = "registered"
	// StateFailed: the last attempt failed; the next one waits for the
	// backoff. A binding from an earlier success may still be valid until
	// the expiry Status reports.
	StateFailed = "failed"
	// StateUnregistering: Run's context ended and the binding is being
	// removed.
	StateUnregistering = "unregistering"
	// StateStopped: Run has returned.
	StateStopped = "stopped"
)

// Defaults of RegistrationOptions.
const (
	DefaultRetryMin          = 5 * time.Second
	DefaultRetryMax          = 5 * time.Minute
	DefaultUnregisterTimeout = 5 * time.Second
	// MaxRetryAfter bounds the Retry-After of a provider that is obeyed.
	MaxRetryAfter = time.Hour
)

// RegistrationOptions configure a Registration.
type RegistrationOptions struct {
	// Trunk is the trunk to register: Host, Port and Transport say where,
	// FromUser@FromDomain is the address of record, ContactUser the user of
	// the Contact, Username and Password answer challenges, and
	// RegisterExpires is the lifetime asked for (DefaultRegisterExpires
	// when zero).
	Trunk Trunk

	// Requester sends the REGISTERs: the gateway's *transaction.Layer.
	Requester transaction.Requester
	// Resolver finds the provider's addresses from NextHop(Trunk).
	Resolver locate.Resolver
	// Identity is who the gateway is: its endpoint on the provider's
	// transport, as the provider must see it, makes the top Via's sent-by
	// and the Contact. A transport the gateway has no endpoint of makes
	// the attempt fail.
	Identity *identity.Identity

	// Clock runs the refresh and retry timers; nil means the real clock.
	Clock clock.Clock
	// Logger receives the registration's events; nil discards them.
	Logger *slog.Logger
	// UserAgent, when set, is sent in a User-Agent header.
	UserAgent string

	// RetryMin and RetryMax bound the wait after a failure: it doubles
	// from RetryMin with each failure in a row, up to RetryMax, and is
	// then drawn at random between half of it and all of it (RFC 5626
	// §4.5 does the same). A longer Retry-After from the provider is
	// obeyed, up to MaxRetryAfter. Zero means DefaultRetryMin and
	// DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// UnregisterTimeout bounds the unregistration when Run's context ends;
	// zero means DefaultUnregisterTimeout.
	UnregisterTimeout time.Duration
	// Rand returns a uniform float64 in [0, 1) for the jitter; nil means
	// math/rand/v2.
	Rand func() float64

	// OnChange, when set, is called with the new status (as Status
	// returns it) whenever Run updates it: at each attempt that starts
	// from no registration, each success (a refresh moves the expiry),
	// each failure, and when stopping. It runs in Run's goroutine: a
	// metric hook, which must not block.
	OnChange func(state string, expires time.Time, err error)
}

// Registration keeps the gateway registered at a trunk's provider for as
// long as Run runs (RFC 3261 §10.2): one Call-ID and From tag for its
// lifetime and a CSeq that grows by one per REGISTER (§10.2.4). It
// answers 401 and 407 with digest credentials and reuses the challenge for
// refreshes, so that they go through without a new challenge while the
// nonce lasts (the nonce count grows); answers 423 Interval Too Brief by
// asking for the Min-Expires given; refreshes at 90% of the lifetime the
// provider granted (the expires of its Contact in the 2xx, else the
// Expires header); on failure retries after a capped, jittered backoff;
// and, when Run's context ends, removes its binding (Expires: 0).
//
// A REGISTER goes to the address that accepted the last one; the first,
// and the first after a failure, go to the Resolver's addresses in order,
// moving to the next one on a timeout, a transport error or a 503.
type Registration struct {
	opts    RegistrationOptions
	clk     clock.Clock
	log     *slog.Logger
	running atomic.Bool

	// Owned by Run's goroutine.
	client     digest.Client
	aor        sip.URI // sip:FromUser@FromDomain
	registrar  sip.URI // sip:FromDomain, the Request-URI
	callID     string
	fromTag    string
	cseq       uint32
	expires    uint32                      // seconds to ask for; raised by 423
	challenges map[string]digest.Challenge // by the header that answers it
	dst        sip.Addr                    // where the last success went
	boundUntil time.Time                   // expiry of the binding we know of

	mu      sync.Mutex
	state   string
	until   time.Time
	lastErr error
}

// NewRegistration checks opts and returns a Registration; Run starts it.
func NewRegistration(opts RegistrationOptions) (*Registration, error) {
	t := opts.Trunk
	switch {
	case opts.Requester == nil, opts.Resolver == nil, opts.Identity == nil:
		return nil, errors.New("trunk: registration needs a Requester, a Resolver and an Identity")
	case t.Host == "" || t.FromDomain == "" || t.FromUser == "":
		return nil, fmt.Errorf("trunk %q: registration needs a host, from_domain and from_user (or username)", t.Name)
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	if opts.UnregisterTimeout <= 0 {
		opts.UnregisterTimeout = DefaultUnregisterTimeout
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if t.RegisterExpires <= 0 {
		t.RegisterExpires = DefaultRegisterExpires
	}
	if t.ContactUser == "" {
		t.ContactUser = t.FromUser
	}
	opts.Trunk = t
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registration{
		opts:       opts,
		clk:        clock.Or(opts.Clock),
		log:        log.With("trunk", t.Name),
		client:     digest.Client{Username: t.Username, Password: t.Password},
		aor:        sip.URI{Scheme: "sip", User: t.FromUser, Host: t.FromDomain},
		registrar:  sip.URI{Scheme: "sip", Host: t.FromDomain},
		callID:     sip.NewCallID(),
		fromTag:    sip.NewTag(),
		expires:    uint32(min(t.RegisterExpires/time.Second, 1<<31-1)),
		challenges: make(map[string]digest.Challenge),
		state:      StateIdle,
	}
	return r, nil
}

// Status returns the state (one of the State constants), when the binding
// expires (zero when there is none), and the error of the last attempt
// (nil after a success).
func (r *Registration) Status() (state string, expires time.Time, lastErr error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.until, r.lastErr
}

func (r *Registration) set(state string, until time.Time, err error) {
	r.mu.Lock()
	r.state, r.until, r.lastErr = state, until, err
	r.mu.Unlock()
	if r.opts.OnChange != nil {
		r.opts.OnChange(state, until, err)
	}
}

// Run registers and keeps the registration fresh until ctx ends, then
// unregisters (waiting at most UnregisterTimeout) and returns. It returns
// nil, the error of the unregistration, or ErrRunning if Run is already
// running. Run may be called again after it has returned: the Call-ID
// stays and the CSeq goes on.
func (r *Registration) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	interrupted := false // a REGISTER may have been accepted unseen
	failures := 0
	for ctx.Err() == nil {
		if st, _, _ := r.Status(); st != StateRegistered {
			r.set(StateRegistering, r.liveUntil(), nil)
		}
		granted, err := r.register(ctx, r.expires)
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		var wait time.Duration
		if err == nil {
			failures = 0
			r.boundUntil = r.clk.Now().Add(granted)
			wait = granted * 9 / 10
		} else {
			failures++
			wait = r.backoff(failures, err)
		}
		// The timer is armed before the new state is published, so that
		// whoever watches the state (a test advancing a fake clock) knows
		// the next attempt is scheduled.
		fired := make(chan struct{})
		timer := r.clk.AfterFunc(wait, func() { close(fired) })
		if err == nil {
			level := slog.LevelDebug // a refresh
			if st, _, _ := r.Status(); st != StateRegistered {
				level = slog.LevelInfo
			}
			r.log.Log(ctx, level, "trunk registered", "expires", granted, "refresh_in", wait, "registrar", r.dst)
			r.set(StateRegistered, r.boundUntil, nil)
		} else {
			r.log.Warn("trunk registration failed", "err", err, "retry_in", wait, "failures", failures)
			r.set(StateFailed, r.liveUntil(), err)
		}
		select {
		case <-fired:
		case <-ctx.Done():
			timer.Stop()
		}
	}
	return r.unregister(ctx, interrupted)
}

// liveUntil returns the expiry of a binding still in force, or zero.
func (r *Registration) liveUntil() time.Time {
	if r.boundUntil.After(r.clk.Now()) {
		return r.boundUntil
	}
	return time.Time{}
}

var errUnregisterTimeout = errors.New("unregistration timed out")

func (r *Registration) unregister(ctx context.Context, interrupted bool) error {
	if !interrupted && r.liveUntil().IsZero() {
		r.set(StateStopped, time.Time{}, nil)
		return nil
	}
	r.set(StateUnregistering, r.liveUntil(), nil)
	uctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	timer := r.clk.AfterFunc(r.opts.UnregisterTimeout, func() { cancel(errUnregisterTimeout) })
	_, err := r.register(uctx, 0)
	timer.Stop()
	cancel(nil)
	r.boundUntil = time.Time{}
	if err != nil {
		err = fmt.Errorf("trunk %q: unregistering: %w", r.opts.Trunk.Name, err)
		r.log.Warn("trunk unregistration failed", "err", err)
	} else {
		r.log.Info("trunk unregistered")
	}
	r.set(StateStopped, time.Time{}, err)
	return err
}

// backoff returns the wait before the next attempt after failures
// failures in a row.
func (r *Registration) backoff(failures int, err error) time.Duration {
	d := r.opts.RetryMin
	for i := 1; i < failures && d < r.opts.RetryMax; i++ {
		d = min(2*d, r.opts.RetryMax)
	}
	d = d/2 + time.Duration(r.opts.Rand()*float64(d/2))
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > d {
		d = min(se.RetryAfter, MaxRetryAfter)
	}
	return d
}

// register runs one REGISTER exchange asking for expires seconds, and
// returns the lifetime granted.
func (r *Registration) register(ctx context.Context, expires uint32) (time.Duration, error) {
	targets := []sip.Addr{r.dst}
	if !r.dst.IsValid() {
		uri := NextHop(r.opts.Trunk)
		addrs, err := r.opts.Resolver.Resolve(ctx, uri)
		if err != nil {
			return 0, fmt.Errorf("resolving %s: %w", uri.String(), err)
		}
		if len(addrs) == 0 {
			return 0, fmt.Errorf("resolving %s: %w", uri.String(), ErrNoTarget)
		}
		targets = addrs
	}
	var err error
	for _, dst := range targets {
		var granted time.Duration
		granted, err = r.exchange(ctx, dst, expires)
		if err == nil {
			r.dst = dst
			return granted, nil
		}
		r.dst = sip.Addr{}
		if ctx.Err() != nil || !failover(err) {
			break
		}
		r.log.Debug("trunk registrar failed, trying the next", "registrar", dst, "err", err)
	}
	return 0, err
}

// failover reports whether another address of the provider should be
// tried after err (RFC 3263 §4.3).
func failover(err error) bool {
	var se *StatusError
	return errors.Is(err, transaction.ErrTimeout) || errors.Is(err, transaction.ErrTransport) ||
		errors.As(err, &se) && se.StatusCode == 503
}

// exchange sends REGISTERs to dst until one gets a final answer that is
// not a challenge or a 423 it can satisfy.
func (r *Registration) exchange(ctx context.Context, dst sip.Addr, expires uint32) (time.Duration, error) {
	if !r.opts.Identity.Serves(dst.Transport) {
		return 0, fmt.Errorf("no local address for %s", dst.Transport)
	}
	contact := r.opts.Identity.URI(r.opts.Trunk.ContactUser, dst.Transport)
	var authRounds [2]int // challenges answered: 401, 407
	briefRounds := 0
	for {
		req, err := r.build(dst, contact, expires)
		if err != nil {
			return 0, err
		}
		res, err := r.send(ctx, req, dst)
		if err != nil {
			return 0, err
		}
		switch code := res.StatusCode; {
		case code >= 200 && code < 300:
			if expires == 0 {
				return 0, nil
			}
			granted := grantedExpires(res, contact, expires)
			if granted == 0 {
				return 0, fmt.Errorf("%w: %d %s granted no time", ErrRejected, code, res.Reason)
			}
			return time.Duration(granted) * time.Second, nil
		case code == 401 || code == 407:
			n := &authRounds[code/407]
			if err := r.challenged(res, *n); err != nil {
				return 0, err
			}
			*n++
		case code == 423 && expires > 0:
			m, ok, err := res.MinExpires()
			if !ok || err != nil || m <= expires || briefRounds > 0 {
				return 0, newStatusError(res)
			}
			briefRounds++
			r.log.Debug("trunk registrar asks for a longer interval", "min_expires", m)
			expires = m
			r.expires = max(r.expires, m)
		default:
			return 0, newStatusError(res)
		}
	}
}

// challenged takes the challenge of a 401 or 407 for the next request, or
// tells why it must not be answered; rounds is how many challenges of the
// same kind the exchange has answered.
func (r *Registration) challenged(res *sip.Response, rounds int) error {
	header, answer := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		header, answer = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var chs []digest.Challenge
	for _, v := range res.Values(header) {
		if ch, err := digest.ParseChallenge(v); err == nil {
			chs = append(chs, ch)
		}
	}
	ch, ok := digest.Select(chs)
	switch {
	case !ok:
		return fmt.Errorf("%w: %d %s has no digest challenge that can be answered", ErrAuthFailed, res.StatusCode, res.Reason)
	case r.client.Username == "":
		return fmt.Errorf("%w: the provider asks for credentials (%d) and the trunk has no username", ErrAuthFailed, res.StatusCode)
	case rounds >= 2, rounds == 1 && !ch.Stale:
		// A fresh challenge to credentials just computed from a fresh
		// challenge means they are wrong.
		return fmt.Errorf("%w: %d %s: credentials refused", ErrAuthFailed, res.StatusCode, res.Reason)
	}
	r.challenges[answer] = ch
	return nil
}

// build makes the next REGISTER (§10.2): a new branch and CSeq, the same
// Call-ID and From tag, and credentials for every challenge kept.
func (r *Registration) build(dst sip.Addr, contact sip.URI, expires uint32) (*sip.Request, error) {
	r.cseq++
	req := sip.NewRequest(sip.MethodRegister, r.registrar)
	via := r.opts.Identity.Via(dst.Transport, sip.Params(";branch="+sip.NewBranch()+";rport"))
	req.Add("Via", via.String())
	req.Add("Max-Forwards", "70")
	from := sip.Address{URI: r.aor, Params: sip.Params(";tag=" + r.fromTag)}
	req.Add("From", from.String())
	to := sip.Address{URI: r.aor}
	req.Add("To", to.String())
	req.Add("Call-ID", r.callID)
	req.Add("CSeq", sip.CSeq{Seq: r.cseq, Method: sip.MethodRegister}.String())
	c := sip.Address{URI: contact}
	req.Add("Contact", c.String())
	req.Add("Expires", strconv.FormatUint(uint64(expires), 10))
	if r.opts.UserAgent != "" {
		req.Add("User-Agent", r.opts.UserAgent)
	}
	uri := r.registrar.String()
	for _, h := range [...]string{"Authorization", "Proxy-Authorization"} {
		ch, ok := r.challenges[h]
		if !ok {
			continue
		}
		cr, err := r.client.Authorize(ch, sip.MethodRegister, uri)
		if err != nil {
			return nil, fmt.Errorf("answering the challenge of realm %q: %w", ch.Realm, err)
		}
		req.Add(h, cr.String())
	}
	req.Add("Content-Length", "0")
	return req, nil
}

// send starts a transaction and waits for its final response.
func (r *Registration) send(ctx context.Context, req *sip.Request, dst sip.Addr) (*sip.Response, error) {
	tx, err := r.opts.Requester.Request(ctx, req, dst)
	if err != nil {
		return nil, fmt.Errorf("sending register to %s: %w", dst, err)
	}
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				if err := tx.Err(); err != nil {
					return nil, fmt.Errorf("register to %s: %w", dst, err)
				}
				return nil, fmt.Errorf("register to %s: %w", dst, transaction.ErrTerminated)
			}
			if res.IsProvisional() {
				continue
			}
			// A timeout or a transport error comes as a synthesized 408
			// or 503, with Err set.
			if err := tx.Err(); err != nil {
				return nil, fmt.Errorf("register to %s: %w", dst, err)
			}
			return res, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// grantedExpires returns the lifetime a 2xx grants (§10.2.4): the expires
// parameter of our Contact in it, else the shortest of the other
// lifetimes it states (a registrar may rewrite the Contact), else the
// Expires header, else what was asked. Never more than asked.
func grantedExpires(res *sip.Response, contact sip.URI, asked uint32) uint32 {
	contacts, _ := res.Contacts()
	var shortest uint32
	found := false
	for _, c := range contacts {
		v, ok := c.Params.Get("expires")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			continue
		}
		if sameContact(&c.URI, &contact) {
			return min(uint32(n), asked)
		}
		if !found || uint32(n) < shortest {
			shortest, found = uint32(n), true
		}
	}
	if found {
		return min(shortest, asked)
	}
	if e, ok, err := res.Expires(); ok && err == nil {
		return min(e, asked)
	}
	return asked
}

// sameContact compares a Contact of a 2xx with ours: equal URIs, or the
// same user, host and port (a registrar may add or drop parameters).
func sameContact(a, b *sip.URI) bool {
	return a.Equal(b) || a.User == b.User && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

// StatusError is a final response that refused a REGISTER. It wraps
// ErrAuthFailed for 401, 403 and 407, and ErrRejected otherwise.
type StatusError struct {
	StatusCode int
	Reason     string
	// RetryAfter is the response's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

func newStatusError(res *sip.Response) *StatusError {
	e := &StatusError{StatusCode: res.StatusCode, Reason: res.Reason}
	if v := res.Get("Retry-After"); v != "" {
		// "120 (I'm in a meeting);duration=3600": the number comes first.
		n := 0
		for n < len(v) && v[n] >= '0' && v[n] <= '9' {
			n++
		}
		if s, err := strconv.ParseUint(v[:n], 10, 32); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("registrar answered %d %s", e.StatusCode, e.Reason)
}

// Unwrap returns ErrAuthFailed or ErrRejected.
func (e *StatusError) Unwrap() error {
	switch e.StatusCode {
	case 401, 403, 407:
		return ErrAuthFailed
	}
	return ErrRejected
}
