package accounts

import (
	"container/list"
	"crypto/sha256"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Defaults for zero fields of Throttle.
const (
	DefaultMaxFailures     = 10
	DefaultUserMaxFailures = 20
	DefaultWindow          = time.Minute
	DefaultBlockFor        = 5 * time.Minute
	DefaultTrustFor        = 7 * 24 * time.Hour
	DefaultMaxSources      = 10000
)

// knownPerUser bounds the addresses remembered per user as ones it
// authenticated from: a desk phone, a browser at work and one at home,
// a mobile.
const knownPerUser = 4

// Origin says where a failure was seen, for logs and metrics.
type Origin uint8

// The origins of failures.
const (
	// OriginRegister is a REGISTER whose digest credentials failed.
	OriginRegister Origin = iota
	// OriginProxy is a request whose Proxy-Authorization failed.
	OriginProxy
	// OriginAdmin is a wrong or missing bearer token at the admin API.
	OriginAdmin
	// OriginProbe is an anonymous request for an address of ours that
	// has no target: what a scan for user names gets.
	OriginProbe
	// OriginHTTP is a request to the gateway's HTTP API whose Digest
	// credentials (of a SIP account) failed: /api/ice-servers.
	OriginHTTP

	numOrigins
)

// originBlockedUser is the origin of the failures Allow records for a
// source that goes on trying a blocked name: counted for the source, not
// in Stats.
const originBlockedUser = numOrigins + 1

// String returns the origin's metric label: register, proxy, admin,
// probe or http.
func (o Origin) String() string {
	switch o {
	case OriginRegister:
		return "register"
	case OriginProxy:
		return "proxy"
	case OriginAdmin:
		return "admin"
	case OriginProbe:
		return "probe"
	case OriginHTTP:
		return "http"
	case originBlockedUser:
		return "blocked user"
	}
	return "unknown"
}

// Throttle slows down guessing: of passwords (REGISTER and proxy digest
// credentials, admin API tokens) and of user names (anonymous requests
// for addresses with no target). One Throttle serves every origin, so that
// a source refused by one is refused by all.
//
// Per source: after MaxFailures failures of any origin within Window, a
// source is refused for BlockFor, whatever user it names. Sources are IP
// addresses; IPv6 addresses count per /64, the block one subscriber
// usually gets, so that an attacker cannot rotate through it.
//
// Per user: after UserMaxFailures failures against one user name within
// Window, from any number of sources, that name is refused for BlockFor to
// every source that has not authenticated as that user within TrustFor.
// A guesser spread over many addresses is slowed down, while the user's
// own phones and browsers, at an address they authenticated from before,
// go on working: an attacker cannot lock a user out from their usual
// address, only from a new one while the attack lasts. Unknown user names
// count like real ones, so the per-user refusal tells nothing either.
//
// Callers ask Allow before verifying credentials, so that a refused
// attempt costs no hashing, report each wrong password (or unknown user:
// the two must look the same) with Failure and each success with Success.
// A success does not clear the count, so one valid account cannot launder
// guesses at others from the same address.
//
// At most MaxSources sources, MaxSources user names and the known
// addresses of MaxSources users are tracked; beyond that the least
// recently seen is forgotten. Set the fields before first use. The zero
// value uses the defaults and the system clock. Methods are safe for
// concurrent use; while nothing is blocked Allow and Blocked take no lock.
// A nil *Throttle allows everything.
type Throttle struct {
	// MaxFailures is how many failures of one source within Window get
	// it blocked; default DefaultMaxFailures.
	MaxFailures int
	// UserMaxFailures is how many failures against one user name within
	// Window get the name blocked for unknown sources; default
	// DefaultUserMaxFailures.
	UserMaxFailures int
	// Window is the sliding window failures are counted in; default
	// DefaultWindow.
	Window time.Duration
	// BlockFor is how long a source or user name is refused; default
	// DefaultBlockFor.
	BlockFor time.Duration
	// TrustFor is how long an address a user authenticated from stays
	// exempt from that user's blocks; default DefaultTrustFor.
	TrustFor time.Duration
	// MaxSources bounds each of the tables; default DefaultMaxSources.
	MaxSources int
	// Clock is the time source; nil means the system clock.
	Clock clock.Clock
	// Logger receives a warning each time a source or user name is
	// blocked; nil discards them.
	Logger *slog.Logger

	mu      sync.RWMutex
	sources table[netip.Addr]
	users   table[string]
	known   knownTable

	failures [numOrigins]atomic.Uint64
	refused  atomic.Uint64
	// sourceUntil and userUntil are the latest end of any source or user
	// block (Unix ns): past it nothing of that kind is blocked, and
	// Allow and Blocked answer without the lock. 0 once seen passed (see
	// expired), or before any block: then they need no clock either.
	sourceUntil, userUntil atomic.Int64
}

// ThrottleStats counts a Throttle's work, for metrics.
type ThrottleStats struct {
	// Failures counts the failures reported, indexed by Origin.
	Failures [numOrigins]uint64
	// Refused counts the attempts Allow and Blocked refused.
	Refused uint64
	// BlockedSources is the number of sources refused now.
	BlockedSources int
	// BlockedUsers is the number of user names refused now to sources
	// their user never authenticated from.
	BlockedUsers int
}

// Stats returns the Throttle's counters.
func (t *Throttle) Stats() ThrottleStats {
	var st ThrottleStats
	if t == nil {
		return st
	}
	for i := range st.Failures {
		st.Failures[i] = t.failures[i].Load()
	}
	st.Refused = t.refused.Load()
	now := t.now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	st.BlockedSources = t.sources.blocked(now)
	st.BlockedUsers = t.users.blocked(now)
	return st
}

func (t *Throttle) maxFailures() int     { return orInt(t.MaxFailures, DefaultMaxFailures) }
func (t *Throttle) userMaxFailures() int { return orInt(t.UserMaxFailures, DefaultUserMaxFailures) }
func (t *Throttle) window() int64        { return int64(orDur(t.Window, DefaultWindow)) }
func (t *Throttle) blockFor() int64      { return int64(orDur(t.BlockFor, DefaultBlockFor)) }
func (t *Throttle) trustFor() int64      { return int64(orDur(t.TrustFor, DefaultTrustFor)) }
func (t *Throttle) maxSources() int      { return orInt(t.MaxSources, DefaultMaxSources) }
func (t *Throttle) now() int64           { return clock.Or(t.Clock).Now().UnixNano() }

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// sourceKey is what a source counts as: its IPv4 address, or the /64 of
// its IPv6 address.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			ip = p.Addr()
		}
	}
	return ip
}

// userKey bounds the memory a user name takes in the tables: a digest
// username can be kilobytes long, an account's name is at most MaxUserLen.
func userKey(user string) string {
	if len(user) <= MaxUserLen {
		return user
	}
	sum := sha256.Sum256([]byte(user))
	return "\x00" + string(sum[:])
}

// Blocked reports whether ip is refused as a source now, whatever user it
// names, and for how long still. It is cheap enough to ask for every
// message; a refusal counts in Stats.
func (t *Throttle) Blocked(ip netip.Addr) (retryAfter time.Duration, blocked bool) {
	if t == nil {
		return 0, false
	}
	su := t.sourceUntil.Load()
	if su == 0 {
		return 0, false
	}
	now := t.now()
	if expired(&t.sourceUntil, su, now) {
		return 0, false
	}
	t.mu.RLock()
	until := t.sources.until(sourceKey(ip))
	t.mu.RUnlock()
	if until <= now {
		return 0, false
	}
	t.refused.Add(1)
	return time.Duration(until - now), true
}

// Allow reports whether ip may try to authenticate as user now (user ""
// asks about the source alone); if not, retryAfter says for how long it is
// still refused. A refusal counts in Stats.
func (t *Throttle) Allow(ip netip.Addr, user string) (retryAfter time.Duration, ok bool) {
	if t == nil {
		return 0, true
	}
	su, uu := t.sourceUntil.Load(), t.userUntil.Load()
	if su == 0 && (uu == 0 || user == "") {
		return 0, true
	}
	now := t.now()
	checkUser := user != "" && !expired(&t.userUntil, uu, now)
	if expired(&t.sourceUntil, su, now) && !checkUser {
		return 0, true
	}
	src := sourceKey(ip)
	t.mu.RLock()
	until := t.sources.until(src)
	byUser := false
	if until <= now && checkUser {
		k := userKey(user)
		if u := t.users.until(k); u > now && !t.known.has(k, src, now-t.trustFor()) {
			until, byUser = u, true
		}
	}
	t.mu.RUnlock()
	if until <= now {
		return 0, true
	}
	t.refused.Add(1)
	if byUser {
		// A source that goes on trying a blocked name fails as if it had
		// guessed: otherwise a flood at one name, refused here one
		// request at a time, would never get its sources blocked, and so
		// never dropped before any work (the transaction layer's Admit
		// asks Blocked, which knows sources only).
		t.Failure(originBlockedUser, ip, "")
	}
	return time.Duration(until - now), false
}

// expired reports whether the end of blocks until, loaded from a, has
// passed at now (0: none was in force), and then sets a to 0 unless a
// new block changed it: from then on Allow and Blocked answer without
// reading the clock, as they do before any block: three of a
// registration's clock reads (the transaction layer asks Blocked for each
// request), about 0.1 µs each on a virtual machine.
func expired(a *atomic.Int64, until, now int64) bool {
	if now < until {
		return false
	}
	if until != 0 {
		a.CompareAndSwap(until, 0)
	}
	return true
}

// Failure records a failure of origin o from ip against user ("" when no
// user was named) and reports whether ip is now refused for user.
func (t *Throttle) Failure(o Origin, ip netip.Addr, user string) (blocked bool) {
	if t == nil {
		return false
	}
	if o < numOrigins {
		t.failures[o].Add(1)
	}
	src := sourceKey(ip)
	now := t.now()
	keep := max(t.window(), t.blockFor())
	var userBlocked, userNew bool
	t.mu.Lock()
	until, srcNew := t.sources.fail(src, now, t.maxFailures(), t.window(), t.blockFor(), keep, t.maxSources())
	srcBlocked := until > now
	t.users.prune(now - keep)
	if srcNew && until > t.sourceUntil.Load() {
		t.sourceUntil.Store(until)
	}
	if !srcBlocked && user != "" {
		k := userKey(user)
		var u int64
		u, userNew = t.users.fail(k, now, t.userMaxFailures(), t.window(), t.blockFor(), keep, t.maxSources())
		userBlocked = u > now && !t.known.has(k, src, now-t.trustFor())
		if userNew && u > t.userUntil.Load() {
			t.userUntil.Store(u)
		}
	}
	t.mu.Unlock()

	if srcNew {
		t.log().Warn("auth throttle: source blocked after repeated failures",
			"source", sourceString(src), "origin", o.String(), "failures", t.maxFailures(),
			"window", time.Duration(t.window()), "blocked_for", time.Duration(t.blockFor()))
	}
	if userNew {
		t.log().Warn("auth throttle: user blocked for addresses it never authenticated from",
			"user", logUser(user), "origin", o.String(), "source", sourceString(src),
			"failures", t.userMaxFailures(), "window", time.Duration(t.window()), "blocked_for", time.Duration(t.blockFor()))
	}
	return srcBlocked || userBlocked
}

// Success records that ip authenticated as user: the address becomes one
// of the user's known ones, exempt from the user's blocks for TrustFor.
func (t *Throttle) Success(ip netip.Addr, user string) {
	if t == nil || user == "" {
		return
	}
	src := sourceKey(ip)
	now := t.now()
	k := userKey(user)
	// Nearly every success is a user agent refreshing from where it
	// authenticated last time. While that time is recent, a fraction of
	// TrustFor, it is left as it is: under the read lock, with no write
	// to the table. The trust then ends up to that fraction early, never
	// late, and the user's place among the most recently successful, which
	// only matters when more than MaxSources users are remembered, is
	// that old.
	t.mu.RLock()
	fresh := t.known.has(k, src, now-t.trustFor()/knownRefresh)
	t.mu.RUnlock()
	if fresh {
		return
	}
	t.mu.Lock()
	t.known.add(k, src, now, now-t.trustFor(), t.maxSources())
	t.mu.Unlock()
}

// knownRefresh is the fraction of TrustFor (its inverse) within which a
// success from a known address does not record its time again.
const knownRefresh = 64

// Len returns the number of sources and user names tracked for failures.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.sources.m) + len(t.users.m)
}

func (t *Throttle) log() *slog.Logger {
	if t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// sourceString names a source key as it counts: "192.0.2.1" or
// "2001:db8::/64".
func sourceString(src netip.Addr) string {
	if src.Is6() {
		return netip.PrefixFrom(src, 64).String()
	}
	return src.String()
}

// logUser keeps an attacker's kilobyte-long user name out of the log.
func logUser(user string) string {
	if len(user) > MaxUserLen {
		return user[:MaxUserLen] + "…"
	}
	return user
}

// table counts the failures of keys (sources or user names) in a sliding
// window and remembers their blocks.
type table[K comparable] struct {
	m   map[K]*list.Element // of *history[K]
	lru list.List           // front: most recent failure
}

// history is the failure history of one key: the times of its last
// limit failures in a ring, which is all an exact sliding window needs.
type history[K comparable] struct {
	key          K
	times        []int64 // Unix ns, ring of len limit
	n            int     // failures in the ring, up to len(times)
	next         int     // ring index of the next write
	last         int64   // newest failure
	blockedUntil int64
}

// until returns the end of k's block (Unix ns), or 0.
func (tb *table[K]) until(k K) int64 {
	if e, ok := tb.m[k]; ok {
		return e.Value.(*history[K]).blockedUntil
	}
	return 0
}

// fail records a failure of k at now. It returns the end of k's block, 0
// when k is not blocked, and whether this failure blocked it. Keys with
// no failure within keep are forgotten first; then, while the table holds
// capacity keys, the least recently failed.
func (tb *table[K]) fail(k K, now int64, limit int, window, blockFor, keep int64, capacity int) (until int64, newly bool) {
	tb.prune(now - keep)
	if tb.m == nil {
		tb.m = make(map[K]*list.Element)
	}
	var h *history[K]
	if e, ok := tb.m[k]; ok {
		h = e.Value.(*history[K])
		tb.lru.MoveToFront(e)
	} else {
		for len(tb.m) >= capacity {
			tb.remove(tb.lru.Back())
		}
		h = &history[K]{key: k, times: make([]int64, limit)}
		tb.m[k] = tb.lru.PushFront(h)
	}
	h.last = now
	if h.blockedUntil > now {
		return h.blockedUntil, false // a race with Allow: refused already
	}
	h.times[h.next] = now
	h.next = (h.next + 1) % len(h.times)
	if h.n < len(h.times) {
		h.n++
	}
	// The ring is full: its oldest entry, the one next overwrites, is the
	// limit-th most recent failure.
	if h.n == len(h.times) && now-h.times[h.next] <= window {
		h.blockedUntil = now + blockFor
		h.n, h.next = 0, 0 // count afresh once the block ends
		return h.blockedUntil, true
	}
	return 0, false
}

// prune forgets keys whose last failure is before cutoff: they have no
// failure within the window and no block in force. The list is ordered by
// last failure, so they are all at the back.
func (tb *table[K]) prune(cutoff int64) {
	for e := tb.lru.Back(); e != nil; e = tb.lru.Back() {
		if e.Value.(*history[K]).last >= cutoff {
			return
		}
		tb.remove(e)
	}
}

func (tb *table[K]) remove(e *list.Element) {
	delete(tb.m, e.Value.(*history[K]).key)
	tb.lru.Remove(e)
}

// blocked counts the keys blocked at now.
func (tb *table[K]) blocked(now int64) int {
	n := 0
	for _, e := range tb.m {
		if e.Value.(*history[K]).blockedUntil > now {
			n++
		}
	}
	return n
}

// knownTable remembers, per user, the last few sources it authenticated
// from. Only successes fill it, so an attacker without an account cannot
// push real users out of it.
type knownTable struct {
	m   map[string]*list.Element // of *knownUser
	lru list.List                // front: most recent success
}

type knownUser struct {
	user string
	srcs [knownPerUser]netip.Addr
	at   [knownPerUser]int64 // last success from srcs[i], Unix ns; 0: empty
	last int64
}

// has reports whether src authenticated as user since cutoff.
func (kt *knownTable) has(user string, src netip.Addr, cutoff int64) bool {
	e, ok := kt.m[user]
	if !ok {
		return false
	}
	ku := e.Value.(*knownUser)
	for i := range ku.srcs {
		if ku.at[i] >= cutoff && ku.at[i] != 0 && ku.srcs[i] == src {
			return true
		}
	}
	return false
}

// add records a success of user from src at now. Users with no success
// since cutoff are forgotten first; then, while capacity users are
// remembered, the least recently successful. A user's oldest source makes
// room for a new one.
func (kt *knownTable) add(user string, src netip.Addr, now, cutoff int64, capacity int) {
	for e := kt.lru.Back(); e != nil && e.Value.(*knownUser).last < cutoff; e = kt.lru.Back() {
		kt.remove(e)
	}
	if kt.m == nil {
		kt.m = make(map[string]*list.Element)
	}
	var ku *knownUser
	if e, ok := kt.m[user]; ok {
		ku = e.Value.(*knownUser)
		kt.lru.MoveToFront(e)
	} else {
		for len(kt.m) >= capacity {
			kt.remove(kt.lru.Back())
		}
		// user may point into a request's buffer, which the table must
		// not keep alive.
		user = strings.Clone(user)
		ku = &knownUser{user: user}
		kt.m[user] = kt.lru.PushFront(ku)
	}
	ku.last = now
	slot := 0
	for i := range ku.srcs {
		if ku.at[i] != 0 && ku.srcs[i] == src {
			slot = i
			break
		}
		if ku.at[i] < ku.at[slot] {
			slot = i
		}
	}
	ku.srcs[slot], ku.at[slot] = src, now
}

func (kt *knownTable) remove(e *list.Element) {
	delete(kt.m, e.Value.(*knownUser).user)
	kt.lru.Remove(e)
}
