package accounts

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Defaults for zero fields of Throttle.
const (
	DefaultMaxFailures = 10
	DefaultWindow      = time.Minute
	DefaultBlockFor    = 5 * time.Minute
	DefaultMaxSources  = 10000
)

// Throttle refuses sources that failed authentication too often: after
// MaxFailures failures within Window, a source is refused for BlockFor.
// The registrar asks Allow before verifying credentials, so a refused
// source costs no hashing, and reports each wrong password (or unknown
// user: the two are indistinguishable) with Failure. A success does not
// clear the count, so one valid account cannot launder guesses at others
// from the same address.
//
// Sources are IP addresses; IPv6 addresses count per /64, the block one
// subscriber usually gets, so that an attacker cannot rotate through it.
// With PerUser set, failures count per address and digest username
// instead, so that one misconfigured phone behind an office NAT does not
// lock out its colleagues — at the price of letting one address guess at
// many accounts, MaxFailures per account per Window.
//
// At most MaxSources sources are tracked; beyond that the least recently
// failed is forgotten. Set the fields before first use. The zero value
// uses the defaults and the system clock. Methods are safe for concurrent
// use; a nil *Throttle allows everything.
type Throttle struct {
	// MaxFailures is how many failures within Window get a source blocked;
	// default DefaultMaxFailures.
	MaxFailures int
	// Window is the sliding window failures are counted in; default
	// DefaultWindow.
	Window time.Duration
	// BlockFor is how long a source is refused; default DefaultBlockFor.
	BlockFor time.Duration
	// MaxSources bounds the sources tracked; default DefaultMaxSources.
	MaxSources int
	// PerUser counts failures per (address, username) instead of per
	// address.
	PerUser bool
	// Clock is the time source; nil means the system clock.
	Clock clock.Clock

	mu       sync.Mutex
	sources  map[throttleKey]*list.Element // of *source
	lru      list.List                     // front: most recent failure
	failures uint64
	refused  uint64
}

// ThrottleStats counts a Throttle's work, for metrics.
type ThrottleStats struct {
	// Failures counts the failed authentications reported.
	Failures uint64
	// Refused counts the attempts Allow refused.
	Refused uint64
	// Blocked is the number of sources refused now.
	Blocked int
}

// Stats returns the Throttle's counters.
func (t *Throttle) Stats() ThrottleStats {
	if t == nil {
		return ThrottleStats{}
	}
	now := clock.Or(t.Clock).Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	st := ThrottleStats{Failures: t.failures, Refused: t.refused}
	for _, e := range t.sources {
		if e.Value.(*source).blockedUntil > now {
			st.Blocked++
		}
	}
	return st
}

type throttleKey struct {
	ip   netip.Addr
	user string
}

// source is the failure history of one key: the times of its last
// MaxFailures failures in a ring, which is all an exact sliding window
// needs.
type source struct {
	key          throttleKey
	times        []int64 // Unix ns, ring of len MaxFailures
	n            int     // failures in the ring, up to len(times)
	next         int     // ring index of the next write
	last         int64   // newest failure
	blockedUntil int64
}

func (t *Throttle) maxFailures() int { return orInt(t.MaxFailures, DefaultMaxFailures) }
func (t *Throttle) window() int64    { return int64(orDur(t.Window, DefaultWindow)) }
func (t *Throttle) blockFor() int64  { return int64(orDur(t.BlockFor, DefaultBlockFor)) }
func (t *Throttle) maxSources() int  { return orInt(t.MaxSources, DefaultMaxSources) }

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

func (t *Throttle) key(ip netip.Addr, user string) throttleKey {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			ip = p.Addr()
		}
	}
	if !t.PerUser {
		user = ""
	}
	return throttleKey{ip, user}
}

// Allow reports whether ip (and user, with PerUser) may try to
// authenticate now; if not, retryAfter says for how long it is still
// refused.
func (t *Throttle) Allow(ip netip.Addr, user string) (retryAfter time.Duration, ok bool) {
	if t == nil {
		return 0, true
	}
	k := t.key(ip, user)
	now := clock.Or(t.Clock).Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.sources[k]
	if !found {
		return 0, true
	}
	s := e.Value.(*source)
	if s.blockedUntil > now {
		t.refused++
		return time.Duration(s.blockedUntil - now), false
	}
	return 0, true
}

// Failure records a failed authentication from ip (and user, with PerUser)
// and reports whether the source is now blocked.
func (t *Throttle) Failure(ip netip.Addr, user string) (blocked bool) {
	if t == nil {
		return false
	}
	k := t.key(ip, user)
	now := clock.Or(t.Clock).Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures++
	t.prune(now)
	if t.sources == nil {
		t.sources = make(map[throttleKey]*list.Element)
	}
	var s *source
	if e, ok := t.sources[k]; ok {
		s = e.Value.(*source)
		t.lru.MoveToFront(e)
	} else {
		for len(t.sources) >= t.maxSources() {
			t.remove(t.lru.Back())
		}
		s = &source{key: k, times: make([]int64, t.maxFailures())}
		t.sources[k] = t.lru.PushFront(s)
	}
	s.last = now
	if s.blockedUntil > now {
		return true // a race with Allow: already refused, nothing to add
	}
	s.times[s.next] = now
	s.next = (s.next + 1) % len(s.times)
	if s.n < len(s.times) {
		s.n++
	}
	// The ring is full: its oldest entry, the one next overwrites, is the
	// MaxFailures-th most recent failure.
	if s.n == len(s.times) && now-s.times[s.next] <= t.window() {
		s.blockedUntil = now + t.blockFor()
		s.n, s.next = 0, 0 // count afresh once the block ends
		return true
	}
	return false
}

// prune forgets sources with nothing left to remember: no failure within
// Window and no block in force. The list is ordered by last failure, so
// they are all at the back.
func (t *Throttle) prune(now int64) {
	keep := max(t.window(), t.blockFor())
	for e := t.lru.Back(); e != nil; e = t.lru.Back() {
		s := e.Value.(*source)
		if now-s.last <= keep {
			return
		}
		t.remove(e)
	}
}

func (t *Throttle) remove(e *list.Element) {
	delete(t.sources, e.Value.(*source).key)
	t.lru.Remove(e)
}

// Len returns the number of sources tracked.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sources)
}
