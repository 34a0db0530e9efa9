package accounts

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
)

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

func newThrottle() (*Throttle, *clock.Fake) {
	c := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return &Throttle{MaxFailures: 3, Window: time.Minute, BlockFor: 5 * time.Minute, Clock: c}, c
}

func TestThrottleBlocksAfterMaxFailures(t *testing.T) {
	th, c := newThrottle()
	for i := range 2 {
		if th.Failure(ip1, "alice") {
			t.Fatalf("blocked after %d failures", i+1)
		}
		c.Advance(10 * time.Second)
	}
	if _, ok := th.Allow(ip1, "alice"); !ok {
		t.Fatal("refused before the limit")
	}
	if !th.Failure(ip1, "mallory") {
		t.Fatal("third failure within the window did not block")
	}
	retry, ok := th.Allow(ip1, "bob")
	if ok || retry != 5*time.Minute {
		t.Fatalf("Allow after block = %v, %v; want refused for 5m", retry, ok)
	}
	if _, ok := th.Allow(ip2, "alice"); !ok {
		t.Error("another address is refused")
	}
	if got, want := th.Stats(), (ThrottleStats{Failures: 3, Refused: 1, Blocked: 1}); got != want {
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
	if got := th.Stats().Blocked; got != 0 {
		t.Errorf("Stats().Blocked after BlockFor = %d, want 0", got)
	}
	// Counting starts afresh after a block.
	for range 2 {
		if th.Failure(ip1, "") {
			t.Error("blocked again before MaxFailures new failures")
		}
	}
}

func TestThrottleSlidingWindow(t *testing.T) {
	th, c := newThrottle()
	// Failures 31 s apart: never three within one minute.
	for i := range 10 {
		if th.Failure(ip1, "") {
			t.Fatalf("blocked at failure %d, spread over more than the window", i+1)
		}
		c.Advance(31 * time.Second)
	}
	// Two quick ones after a slow one: the window holds three.
	th.Failure(ip1, "")
	c.Advance(29 * time.Second)
	if !th.Failure(ip1, "") {
		t.Error("three failures within 60 s did not block")
	}
}

func TestThrottlePerUserAndIPv6(t *testing.T) {
	th, _ := newThrottle()
	th.PerUser = true
	for range 3 {
		th.Failure(ip1, "alice")
	}
	if _, ok := th.Allow(ip1, "alice"); ok {
		t.Error("alice at ip1 not refused")
	}
	if _, ok := th.Allow(ip1, "bob"); !ok {
		t.Error("PerUser: bob at the same address refused")
	}

	th, _ = newThrottle()
	th.Failure(netip.MustParseAddr("2001:db8:1:2::1"), "")
	th.Failure(netip.MustParseAddr("2001:db8:1:2:ffff::9"), "")
	th.Failure(netip.MustParseAddr("2001:db8:1:2:aaaa::1%eth0"), "")
	if _, ok := th.Allow(netip.MustParseAddr("2001:db8:1:2::77"), ""); ok {
		t.Error("IPv6 addresses of one /64 are not counted together")
	}
	if _, ok := th.Allow(netip.MustParseAddr("2001:db8:1:3::1"), ""); !ok {
		t.Error("another /64 refused")
	}
	// An IPv4-mapped address is the IPv4 address.
	th.Failure(netip.MustParseAddr("::ffff:192.0.2.9"), "")
	th.Failure(netip.MustParseAddr("192.0.2.9"), "")
	if !th.Failure(netip.MustParseAddr("192.0.2.9"), "") {
		t.Error("IPv4-mapped and plain IPv4 counted apart")
	}
}

func TestThrottleBounded(t *testing.T) {
	th, c := newThrottle()
	th.MaxSources = 100
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		th.Failure(ip, "")
		if th.Len() > 100 {
			t.Fatalf("%d sources tracked, cap 100", th.Len())
		}
	}
	// Stale sources are forgotten without waiting for the cap.
	c.Advance(6 * time.Minute)
	th.Failure(ip1, "")
	if th.Len() != 1 {
		t.Errorf("%d sources after everything went stale, want 1", th.Len())
	}
}

func TestThrottleNilAndZero(t *testing.T) {
	var nilT *Throttle
	if _, ok := nilT.Allow(ip1, ""); !ok || nilT.Failure(ip1, "") || nilT.Len() != 0 {
		t.Error("a nil Throttle must allow everything")
	}
	var zero Throttle // defaults, system clock
	for range DefaultMaxFailures - 1 {
		zero.Failure(ip1, "")
	}
	if !zero.Failure(ip1, "") {
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
				th.Allow(ip, "")
				th.Failure(ip, "")
			}
		}()
	}
	for range 100 {
		c.Advance(time.Second)
	}
	wg.Wait()
	if th.Len() > 50 {
		t.Errorf("%d sources, cap 50", th.Len())
	}
}
