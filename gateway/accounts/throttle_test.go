package accounts

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard/switchboard/clock"
)

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

func newThrottle() (*Throttle, *clock.Fake) {
	c := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return &Throttle{MaxFailures: 3, UserMaxFailures: 5, Window: time.Minute, BlockFor: 5 * time.Minute, Clock: c}, c
}

func TestThrottleBlocksAfterMaxFailures(t *testing.T) {
	th, c := newThrottle()
	for i := range 2 {
		if th.Failure(OriginRegister, ip1, "alice") {
			t.Fatalf("blocked after %d failures", i+1)
		}
		c.Advance(10 * time.Second)
	}
	if _, ok := th.Allow(ip1, "alice"); !ok {
		t.Fatal("refused before the limit")
	}
	if !th.Failure(OriginProxy, ip1, "mallory") {
		t.Fatal("third failure within the window did not block")
	}
	retry, ok := th.Allow(ip1, "bob")
	if ok || retry != 5*time.Minute {
		t.Fatalf("Allow after block = %v, %v; want refused for 5m", retry, ok)
	}
	if retry, blocked := th.Blocked(ip1); !blocked || retry != 5*time.Minute {
		t.Fatalf("Blocked after block = %v, %v; want blocked for 5m", retry, blocked)
	}
	if _, ok := th.Allow(ip2, "alice"); !ok {
		t.Error("another address is refused")
	}
	if _, blocked := th.Blocked(ip2); blocked {
		t.Error("Blocked: another address is blocked")
	}
	want := ThrottleStats{Refused: 2, BlockedSources: 1}
	want.Failures[OriginRegister] = 2
	want.Failures[OriginProxy] = 1
	if got := th.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	c.Advance(5*time.Minute - time.Second)
	if retry, ok := th.Allow(ip1, ""); ok || retry != time.Second {
		t.Errorf("Allow 1s before the end = %v, %v", retry, ok)
	}
	c.Advance(time.Second)
	if _, ok := th.Allow(ip1, ""); !ok {
		t.Error("still refused after BlockFor")
	}
	if _, blocked := th.Blocked(ip1); blocked {
		t.Error("Blocked after BlockFor")
	}
	if got := th.Stats().BlockedSources; got != 0 {
		t.Errorf("Stats().BlockedSources after BlockFor = %d, want 0", got)
	}
	// Counting starts afresh after a block.
	for range 2 {
		if th.Failure(OriginAdmin, ip1, "") {
			t.Error("blocked again before MaxFailures new failures")
		}
	}
}

// Every origin counts in the one per-source count: a source that failed
// at the registrar, the proxy, the admin API and the HTTP API, and
// probed, is blocked everywhere.
func TestThrottleOriginsShareTheSourceCount(t *testing.T) {
	th, _ := newThrottle()
	th.MaxFailures = 5
	th.Failure(OriginRegister, ip1, "alice")
	th.Failure(OriginProxy, ip1, "bob")
	th.Failure(OriginAdmin, ip1, "")
	th.Failure(OriginHTTP, ip1, "carol")
	if !th.Failure(OriginProbe, ip1, "") {
		t.Fatal("five failures of five origins did not block the source")
	}
	st := th.Stats()
	for o := range Origin(len(st.Failures)) {
		if st.Failures[o] != 1 {
			t.Errorf("Failures[%s] = %d, want 1", o, st.Failures[o])
		}
	}
	if got := Origin(len(st.Failures)).String(); got != "unknown" {
		t.Errorf("an origin out of range is %q", got)
	}
	if strings.Join([]string{OriginRegister.String(), OriginProxy.String(), OriginAdmin.String(), OriginProbe.String(), OriginHTTP.String()}, ",") != "register,proxy,admin,probe,http" {
		t.Error("origin labels changed")
	}
}

func TestThrottleSlidingWindow(t *testing.T) {
	th, c := newThrottle()
	// Failures 31 s apart: never three within one minute.
	for i := range 10 {
		if th.Failure(OriginRegister, ip1, "") {
			t.Fatalf("blocked at failure %d, spread over more than the window", i+1)
		}
		c.Advance(31 * time.Second)
	}
	// Two quick ones after a slow one: the window holds three.
	th.Failure(OriginRegister, ip1, "")
	c.Advance(29 * time.Second)
	if !th.Failure(OriginRegister, ip1, "") {
		t.Error("three failures within 60 s did not block")
	}
}

func TestThrottleIPv6(t *testing.T) {
	th, _ := newThrottle()
	th.Failure(OriginProbe, netip.MustParseAddr("2001:db8:1:2::1"), "")
	th.Failure(OriginProbe, netip.MustParseAddr("2001:db8:1:2:ffff::9"), "")
	th.Failure(OriginProbe, netip.MustParseAddr("2001:db8:1:2:aaaa::1%eth0"), "")
	if _, ok := th.Allow(netip.MustParseAddr("2001:db8:1:2::77"), ""); ok {
		t.Error("IPv6 addresses of one /64 are not counted together")
	}
	if _, blocked := th.Blocked(netip.MustParseAddr("2001:db8:1:2::78")); !blocked {
		t.Error("Blocked: IPv6 addresses of one /64 are not counted together")
	}
	if _, ok := th.Allow(netip.MustParseAddr("2001:db8:1:3::1"), ""); !ok {
		t.Error("another /64 refused")
	}
	// An IPv4-mapped address is the IPv4 address.
	th.Failure(OriginProbe, netip.MustParseAddr("::ffff:192.0.2.9"), "")
	th.Failure(OriginProbe, netip.MustParseAddr("192.0.2.9"), "")
	if !th.Failure(OriginProbe, netip.MustParseAddr("192.0.2.9"), "") {
		t.Error("IPv4-mapped and plain IPv4 counted apart")
	}
}

// Failures against one user from many sources, each below the source
// limit, block the user name for the sources that never authenticated as
// the user, and only for them.
func TestThrottlePerUser(t *testing.T) {
	th, c := newThrottle() // 3 per source, 5 per user
	home := netip.MustParseAddr("198.51.100.7")
	v6home := netip.MustParseAddr("2001:db8:7::1")
	th.Success(home, "alice")
	th.Success(v6home, "alice")
	c.Advance(time.Hour)

	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	for i := range 4 {
		if th.Failure(OriginRegister, src(i), "alice") {
			t.Fatalf("blocked after %d failures from as many sources", i+1)
		}
	}
	if !th.Failure(OriginProxy, src(4), "alice") {
		t.Fatal("the fifth failure against alice did not block her name for its source")
	}
	for _, tc := range []struct {
		name string
		ip   netip.Addr
		user string
		ok   bool
	}{
		{"a new source as alice", src(9), "alice", false},
		{"a guessing source as alice", src(0), "alice", false},
		{"a guessing source as bob", src(0), "bob", true},
		{"a guessing source alone", src(0), "", true},
		{"alice's usual address", home, "alice", true},
		{"alice's usual /64", netip.MustParseAddr("2001:db8:7::99"), "alice", true},
		{"alice's usual address as bob", home, "bob", true},
	} {
		if _, ok := th.Allow(tc.ip, tc.user); ok != tc.ok {
			t.Errorf("%s: Allow = %v, want %v", tc.name, ok, tc.ok)
		}
	}
	if _, blocked := th.Blocked(src(9)); blocked {
		t.Error("a user block blocks a source")
	}
	if got := th.Stats(); got.BlockedUsers != 1 || got.BlockedSources != 0 {
		t.Errorf("Stats = %+v, want one user and no source blocked", got)
	}
	// alice's own failure from her usual address does not lock her out
	// there either (it counts for the source like any other).
	if th.Failure(OriginRegister, home, "alice") {
		t.Error("a failure at alice's usual address reports it blocked")
	}
	c.Advance(5 * time.Minute)
	if _, ok := th.Allow(src(9), "alice"); !ok {
		t.Error("alice's name still refused after BlockFor")
	}
}

// Names the throttle has never seen an account for are counted and
// blocked like real ones: the per-user block tells nothing about which
// names exist.
func TestThrottlePerUserUnknownNames(t *testing.T) {
	th, _ := newThrottle()
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	long := strings.Repeat("x", 8000)
	for i := range 5 {
		th.Failure(OriginRegister, src(i), "no-such-user")
		th.Failure(OriginRegister, src(i+10), long)
	}
	for _, u := range []string{"no-such-user", long} {
		if _, ok := th.Allow(src(50), u); ok {
			t.Errorf("user %.20q not blocked after 5 failures", u)
		}
	}
	for k := range th.users.m {
		if len(k) > MaxUserLen+1 {
			t.Errorf("a user name of %d bytes is kept whole", len(k))
		}
	}
}

// Trust in an address lasts TrustFor after the user's last success there.
func TestThrottleTrustExpires(t *testing.T) {
	th, c := newThrottle()
	th.TrustFor = time.Hour
	home := netip.MustParseAddr("198.51.100.7")
	th.Success(home, "alice")
	c.Advance(time.Hour + time.Second)
	for i := range 5 {
		th.Failure(OriginRegister, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	if _, ok := th.Allow(home, "alice"); ok {
		t.Error("an address alice last authenticated from over TrustFor ago is still exempt")
	}
}

// A user keeps its last knownPerUser addresses; a new one replaces the
// least recent.
func TestThrottleKnownAddressesBounded(t *testing.T) {
	th, c := newThrottle()
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	for i := range knownPerUser + 1 {
		th.Success(addr(i), "alice")
		c.Advance(time.Second)
	}
	th.Success(addr(1), "alice") // refreshed: not the least recent any more
	for i := range 5 {
		th.Failure(OriginRegister, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	for i := range knownPerUser + 1 {
		_, ok := th.Allow(addr(i), "alice")
		if want := i != 0; ok != want {
			t.Errorf("address %d: Allow = %v, want %v", i, ok, want)
		}
	}
}

func TestThrottleBounded(t *testing.T) {
	th, c := newThrottle()
	th.MaxSources = 100
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		th.Failure(OriginProbe, ip, "")
		th.Failure(OriginRegister, ip, strings.Repeat("u", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
		th.Success(ip, strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
		if n := len(th.sources.m); n > 100 {
			t.Fatalf("%d sources tracked, cap 100", n)
		}
		if n := len(th.users.m); n > 100 {
			t.Fatalf("%d user names tracked, cap 100", n)
		}
		if n := len(th.known.m); n > 100 {
			t.Fatalf("%d users' known addresses tracked, cap 100", n)
		}
		c.Advance(time.Millisecond)
	}
	if th.Len() < 100 {
		t.Errorf("Len = %d: the caps were not reached, the test proves nothing", th.Len())
	}
	// Stale entries are forgotten without waiting for the caps.
	c.Advance(6 * time.Minute)
	th.Failure(OriginProbe, ip2, "")
	if th.Len() != 1 {
		t.Errorf("%d entries after everything went stale, want 1", th.Len())
	}
	c.Advance(DefaultTrustFor)
	th.Success(ip2, "alice")
	if n := len(th.known.m); n != 1 {
		t.Errorf("%d users' known addresses after TrustFor, want 1", n)
	}
}

// Each block is logged once, with the source, the origin of the failure
// that tipped it and the limits.
func TestThrottleLogs(t *testing.T) {
	th, _ := newThrottle()
	var buf bytes.Buffer
	th.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	for range 4 {
		th.Failure(OriginProbe, netip.MustParseAddr("2001:db8:1:2::1"), "")
	}
	for i := range 5 {
		th.Failure(OriginAdmin, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "bob")
	}
	log := buf.String()
	for _, want := range []string{
		`level=WARN msg="auth throttle: source blocked after repeated failures" source=2001:db8:1:2::/64 origin=probe failures=3 window=1m0s blocked_for=5m0s`,
		`msg="auth throttle: user blocked for addresses it never authenticated from" user=bob origin=admin source=203.0.113.4 failures=5`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "source blocked"); n != 1 {
		t.Errorf("%d source block lines, want 1 (failures of a blocked source add nothing)", n)
	}
}

func TestThrottleNilAndZero(t *testing.T) {
	var nilT *Throttle
	if _, ok := nilT.Allow(ip1, ""); !ok || nilT.Failure(OriginRegister, ip1, "") || nilT.Len() != 0 {
		t.Error("a nil Throttle must allow everything")
	}
	if _, blocked := nilT.Blocked(ip1); blocked {
		t.Error("a nil Throttle blocks")
	}
	nilT.Success(ip1, "alice")
	if nilT.Stats() != (ThrottleStats{}) {
		t.Error("a nil Throttle has stats")
	}
	var zero Throttle // defaults, system clock
	for range DefaultMaxFailures - 1 {
		zero.Failure(OriginRegister, ip1, "")
	}
	if !zero.Failure(OriginRegister, ip1, "") {
		t.Error("zero Throttle: DefaultMaxFailures failures did not block")
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th, c := newThrottle()
	th.MaxSources = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{10, byte(g), 0, byte(i % 64)})
				user := string(rune('a' + i%26))
				th.Allow(ip, user)
				th.Blocked(ip)
				th.Failure(Origin(i%4), ip, user)
				th.Success(ip, user)
				th.Stats()
			}
		}()
	}
	for range 100 {
		c.Advance(time.Second)
	}
	wg.Wait()
	if th.Len() > 100 {
		t.Errorf("%d entries, cap 50 each", th.Len())
	}
}

// Allow and Blocked while nothing is blocked: the question asked for
// every request.
func BenchmarkThrottleAllow(b *testing.B) {
	th := &Throttle{}
	for i := range 1000 {
		th.Failure(OriginRegister, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "")
	}
	b.Run("nothing-blocked", func(b *testing.B) {
		for b.Loop() {
			th.Allow(ip1, "alice")
		}
	})
	for range DefaultMaxFailures {
		th.Failure(OriginRegister, ip2, "")
	}
	b.Run("a-source-blocked", func(b *testing.B) {
		for b.Loop() {
			th.Allow(ip1, "alice")
		}
	})
	b.Run("blocked-source", func(b *testing.B) {
		for b.Loop() {
			th.Blocked(ip2)
		}
	})
}

// A source that goes on trying a blocked name is blocked itself after
// MaxFailures refusals, so that a flood at one name ends up refused by
// source, before any work, rather than one request at a time.
func TestThrottleBlockedUserBlocksItsGuessers(t *testing.T) {
	th, _ := newThrottle() // 3 per source, 5 per user
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	for i := range 5 {
		th.Failure(OriginRegister, src(i), "alice")
	}
	guesser := netip.MustParseAddr("198.51.100.9")
	for i := range 3 {
		if _, blocked := th.Blocked(guesser); blocked {
			t.Fatalf("source blocked after %d refusals", i)
		}
		if _, ok := th.Allow(guesser, "alice"); ok {
			t.Fatal("alice's blocked name allowed to a new source")
		}
	}
	if _, blocked := th.Blocked(guesser); !blocked {
		t.Error("a source that tried a blocked name 3 times is not blocked")
	}
}

// TestSuccessCopiesUser: the table of known sources keeps a copy of the
// user name, not the request's buffer it was parsed from.
func TestSuccessCopiesUser(t *testing.T) {
	th := &Throttle{Clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	buf := []byte("Authorization: Digest username=\"alice\"" + strings.Repeat(" ", 4000))
	user := unsafe.String(&buf[len("Authorization: Digest username=\"")], len("alice"))
	th.Success(ip1, user)
	th.mu.RLock()
	defer th.mu.RUnlock()
	e, ok := th.known.m["alice"]
	if !ok {
		t.Fatal("alice not known")
	}
	if kept := e.Value.(*knownUser).user; unsafe.StringData(kept) == unsafe.StringData(user) {
		t.Error("the table keeps the request's buffer alive")
	}
}

// A success from an address the user authenticated from lately records
// nothing, but trust still lasts TrustFor from the success recorded,
// ending up to TrustFor/knownRefresh early, never late: one past that
// records again and so extends it.
func TestThrottleSuccessRefresh(t *testing.T) {
	th, c := newThrottle()
	th.TrustFor = 64 * time.Minute // successes within a minute are not recorded again
	home := netip.MustParseAddr("198.51.100.7")
	blockAlice := func() {
		for i := range 5 {
			th.Failure(OriginRegister, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
		}
	}
	th.Success(home, "alice")
	c.Advance(30 * time.Second)
	th.Success(home, "alice") // lately: not recorded
	c.Advance(64*time.Minute - 30*time.Second + time.Nanosecond)
	blockAlice()
	if _, ok := th.Allow(home, "alice"); ok {
		t.Error("trust outlived TrustFor after the success it recorded")
	}

	th, c = newThrottle()
	th.TrustFor = 64 * time.Minute
	th.Success(home, "alice")
	c.Advance(time.Minute + time.Second)
	th.Success(home, "alice") // over a minute later: recorded
	c.Advance(64*time.Minute - time.Second)
	blockAlice()
	if _, ok := th.Allow(home, "alice"); !ok {
		t.Error("a success past TrustFor/knownRefresh did not extend the trust")
	}
}

// BenchmarkThrottleSuccess is the success of a user agent refreshing its
// registration from its usual address.
func BenchmarkThrottleSuccess(b *testing.B) {
	th := &Throttle{}
	for i := range 1000 {
		th.Success(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), fmt.Sprint("user", i))
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		th.Success(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), users[i])
		i = (i + 1) % len(users)
	}
}

// countingClock counts the reads of a Fake clock.
type countingClock struct {
	*clock.Fake
	reads int
}

func (c *countingClock) Now() time.Time {
	c.reads++
	return c.Fake.Now()
}

// Allow and Blocked read no clock while nothing is blocked: before any
// block, and again once the blocks in force have been seen to end.
func TestThrottleIdleReadsNoClock(t *testing.T) {
	th, fake := newThrottle()
	c := &countingClock{Fake: fake}
	th.Clock = c
	quiet := func(when string) {
		t.Helper()
		c.reads = 0
		if _, ok := th.Allow(ip1, "alice"); !ok {
			t.Fatalf("%s: Allow refused", when)
		}
		if _, blocked := th.Blocked(ip1); blocked {
			t.Fatalf("%s: Blocked", when)
		}
		if c.reads != 0 {
			t.Errorf("%s: %d clock reads, want 0", when, c.reads)
		}
	}
	quiet("before any block")
	for range 3 {
		th.Failure(OriginRegister, ip2, "bob")
	}
	for i := range 5 {
		th.Failure(OriginRegister, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	if _, ok := th.Allow(ip2, "carol"); ok {
		t.Fatal("a blocked source allowed")
	}
	if _, ok := th.Allow(ip1, "alice"); ok {
		t.Fatal("a blocked name allowed to a new source")
	}
	fake.Advance(5*time.Minute + time.Second)
	if _, ok := th.Allow(ip1, "alice"); !ok { // sees both blocks ended
		t.Fatal("Allow refused after the blocks ended")
	}
	quiet("after the blocks ended")
	// A new block is seen at once.
	for range 3 {
		th.Failure(OriginRegister, ip2, "bob")
	}
	if _, blocked := th.Blocked(ip2); !blocked {
		t.Error("a source blocked again is not Blocked")
	}
}
