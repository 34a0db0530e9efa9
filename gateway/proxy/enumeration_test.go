package proxy

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Success and Probe complete testThrottle (proxy_test.go) as a Throttle:
// probes count as failures.
func (th *testThrottle) Success(netip.Addr, string) {}

func (th *testThrottle) Probe(ip netip.Addr) bool { return th.Failure(ip, "") }

// recordingThrottle records what the proxy reports and blocks every
// source once blockAfter reports (failures and probes) came in; zero never
// blocks.
type recordingThrottle struct {
	mu         sync.Mutex
	blockAfter int
	allowed    []string // "ip user" of each Allow
	failures   []string // "ip user"
	successes  []string // "ip user"
	probes     []netip.Addr
}

func (th *recordingThrottle) Allow(ip netip.Addr, user string) (time.Duration, bool) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.allowed = append(th.allowed, ip.String()+" "+user)
	if th.blockAfter > 0 && len(th.failures)+len(th.probes) >= th.blockAfter {
		return 42 * time.Second, false
	}
	return 0, true
}

func (th *recordingThrottle) Failure(ip netip.Addr, user string) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.failures = append(th.failures, ip.String()+" "+user)
	return false
}

func (th *recordingThrottle) Success(ip netip.Addr, user string) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.successes = append(th.successes, ip.String()+" "+user)
}

func (th *recordingThrottle) Probe(ip netip.Addr) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.probes = append(th.probes, ip)
	return false
}

func (th *recordingThrottle) counts() (failures, successes, probes int) {
	th.mu.Lock()
	defer th.mu.Unlock()
	return len(th.failures), len(th.successes), len(th.probes)
}

// A stranger (anonymous, untrusted) gets the same answer for an account
// that exists but is not registered and for a made-up name, whatever the
// method: same status, reason and header names.
func TestAnonymousCannotTellAccountsApart(t *testing.T) {
	for _, method := range []string{sip.MethodInvite, sip.MethodMessage, sip.MethodOptions, sip.MethodSubscribe, "PUBLISH", "FOOBAR"} {
		t.Run(method, func(t *testing.T) {
			th := &recordingThrottle{}
			f := newFixture(t, func(o *Options) { o.Throttle = th })
			dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
			answer := func(user string) *sip.Response {
				req := dave.request(method, "sip:"+user+"@"+testDomain)
				if method == sip.MethodSubscribe {
					req.Set("Event", "presence")
				}
				res, _ := dave.final(dave.send(req))
				return res
			}
			real, madeUp := answer("carol"), answer("nobody-at-all")
			if real.StatusCode != 480 || madeUp.StatusCode != 480 {
				t.Fatalf("carol (real, unregistered): %d; made-up name: %d; want 480 for both", real.StatusCode, madeUp.StatusCode)
			}
			if real.Reason != madeUp.Reason {
				t.Errorf("reasons differ: %q, %q", real.Reason, madeUp.Reason)
			}
			if a, b := responseHeaderNames(real), responseHeaderNames(madeUp); !slices.Equal(a, b) {
				t.Errorf("header names differ:\n%v\n%v", a, b)
			}
			if _, _, probes := th.counts(); probes != 2 {
				t.Errorf("%d probes reported, want 2", probes)
			}
		})
	}
}

// An authenticated user of ours, and a trusted trunk, still learn whether
// the account exists; their answers are no probes.
func TestInformedCallersTellAccountsApart(t *testing.T) {
	trunk := mustAddr(sip.UDP, "192.0.2.99:5060")
	th := &recordingThrottle{}
	f := newFixture(t, func(o *Options) {
		o.Throttle = th
		o.Trusted = trustedFunc(func(src sip.Addr) (string, bool) { return "carrier", src.AddrPort == trunk.AddrPort })
	})
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
	pbx := f.newUA("pbx", otherDomain, trunk, nil)
	for _, tc := range []struct {
		name string
		ask  func(ruri string) *sip.Response
	}{
		{"authenticated user", func(ruri string) *sip.Response {
			_, res := alice.do(alice.request(sip.MethodMessage, ruri))
			return res
		}},
		{"trusted trunk", func(ruri string) *sip.Response {
			res, _ := pbx.final(pbx.send(pbx.request(sip.MethodMessage, ruri)))
			return res
		}},
	} {
		if got := tc.ask("sip:carol@" + testDomain).StatusCode; got != 480 {
			t.Errorf("%s to carol (real, unregistered): %d, want 480", tc.name, got)
		}
		if got := tc.ask("sip:nobody@" + testDomain).StatusCode; got != 404 {
			t.Errorf("%s to a made-up name: %d, want 404", tc.name, got)
		}
	}
	failures, successes, probes := th.counts()
	if probes != 0 || failures != 0 {
		t.Errorf("%d probes and %d failures reported, want none", probes, failures)
	}
	if successes != 2 {
		t.Errorf("%d successes reported, want alice's 2", successes)
	}
}

// A request that reaches a registered user is no probe: only "no target"
// answers to strangers count.
func TestReachingAUserIsNoProbe(t *testing.T) {
	th := &recordingThrottle{}
	f := newFixture(t, func(o *Options) { o.Throttle = th })
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
	bob.register(1000)
	if res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain))); res.StatusCode != 200 {
		t.Fatalf("MESSAGE to registered bob: %d, want 200", res.StatusCode)
	}
	if _, _, probes := th.counts(); probes != 0 {
		t.Errorf("%d probes reported for a request that reached bob", probes)
	}
}

// Once the throttle refuses a source, every out-of-dialog request from it
// gets 403 with Retry-After before any lookup, for real and made-up names
// and registered users alike; trusted trunks are not asked about.
func TestBlockedSourceRefusedBeforeLookup(t *testing.T) {
	trunk := mustAddr(sip.UDP, "192.0.2.99:5060")
	th := &recordingThrottle{blockAfter: 3}
	f := newFixture(t, func(o *Options) {
		o.Throttle = th
		o.Trusted = trustedFunc(func(src sip.Addr) (string, bool) { return "carrier", src.AddrPort == trunk.AddrPort })
	})
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
	bob.register(1000)
	for i := range 3 {
		res, _ := dave.final(dave.send(dave.request(sip.MethodOptions, "sip:probe"+string(rune('a'+i))+"@"+testDomain)))
		if res.StatusCode != 480 {
			t.Fatalf("probe %d: %d, want 480", i+1, res.StatusCode)
		}
	}
	var first []string
	for _, user := range []string{"carol", "nobody", "bob"} {
		res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:"+user+"@"+testDomain)))
		if res.StatusCode != 403 || res.Reason != "Too Many Failed Attempts" || res.Get("Retry-After") != "42" {
			t.Errorf("blocked source to %s: %d %s Retry-After %q, want 403 Too Many Failed Attempts, 42", user, res.StatusCode, res.Reason, res.Get("Retry-After"))
		}
		if first == nil {
			first = responseHeaderNames(res)
		} else if got := responseHeaderNames(res); !slices.Equal(got, first) {
			t.Errorf("header names to %s differ: %v, %v", user, got, first)
		}
	}
	if f.sent("proxy", "bob", isRequest(sip.MethodInvite)) {
		t.Error("a blocked source's INVITE reached bob")
	}
	if _, _, probes := th.counts(); probes != 3 {
		t.Errorf("%d probes, want 3: refusals must not count again", probes)
	}
	pbx := f.newUA("pbx", otherDomain, trunk, nil)
	if res, _ := pbx.final(pbx.send(pbx.request(sip.MethodMessage, "sip:bob@"+testDomain))); res.StatusCode != 200 {
		t.Errorf("trusted trunk: %d, want 200", res.StatusCode)
	}
}

// Credentials are checked only if the throttle allows the source as
// their user; a wrong password reports a failure, good ones a success.
func TestAuthenticationReportsToThrottle(t *testing.T) {
	th := &recordingThrottle{}
	f := newFixture(t, func(o *Options) { o.Throttle = th })
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
	bob.register(1000)
	alice.client.Password = "wrong"
	if _, res := alice.do(alice.request(sip.MethodMessage, "sip:bob@"+testDomain)); res.StatusCode != 407 {
		t.Fatalf("wrong password: %d, want 407", res.StatusCode)
	}
	alice.client.Password = f.users["alice"]
	if _, res := alice.do(alice.request(sip.MethodMessage, "sip:bob@"+testDomain)); res.StatusCode != 200 {
		t.Fatalf("right password: %d, want 200", res.StatusCode)
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if want := []string{"192.0.2.21 alice"}; !slices.Equal(th.failures, want) || !slices.Equal(th.successes, want) {
		t.Errorf("failures %q, successes %q, want %q each", th.failures, th.successes, want)
	}
	// Each attempt with credentials, before they are checked: the source
	// as the user.
	want := []string{"192.0.2.21 alice", "192.0.2.21 alice"}
	if !slices.Equal(th.allowed, want) {
		t.Errorf("Allow asked about %q, want %q", th.allowed, want)
	}
}

func responseHeaderNames(res *sip.Response) []string {
	var names []string
	for _, f := range res.Fields() {
		names = append(names, f.Name)
	}
	return names
}
