package registrar_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// withThrottle gives the registrar th, on the env's clock.
func withThrottle(th *accounts.Throttle) func(*registrar.Options, *location.Options) {
	return func(o *registrar.Options, _ *location.Options) {
		th.Clock = o.Clock
		o.Throttle = th
	}
}

func addrFrom(t *testing.T, ip string) sip.Addr {
	return sip.Addr{Transport: sip.UDP, AddrPort: netipAddrPort(t, ip+":5060")}
}

// An unknown user is verified against a dummy HA1: it counts as a failure
// like a wrong password, gets blocked after as many, and the refusal looks
// the same.
func TestUnknownUserIsThrottledLikeWrongPassword(t *testing.T) {
	th := &accounts.Throttle{MaxFailures: 3, Window: time.Minute, BlockFor: time.Minute}
	e := newEnv(t, withThrottle(th))
	refusal := func(user, password, ip string) *sip.Response {
		u := e.ua(user)
		u.client.Password = password
		u.source = addrFrom(t, ip)
		u.challenge(u.send(msg{}))
		for i := range 3 {
			if res := u.send(msg{contacts: []string{"<sip:x@192.0.2.1>"}}); res.StatusCode != 401 {
				t.Fatalf("%s attempt %d: %d %s, want 401", user, i+1, res.StatusCode, res.Reason)
			}
		}
		res := u.send(msg{contacts: []string{"<sip:x@192.0.2.1>"}})
		want(t, res, 403, "Too Many Failed Attempts")
		return res
	}
	wrong := refusal("alice", "not-the-password", "203.0.113.1")
	unknown := refusal("mallory", "whatever", "203.0.113.2")
	if !slices.Equal(headerNames(wrong), headerNames(unknown)) {
		t.Errorf("header sets of the refusals differ:\n%v\n%v", headerNames(wrong), headerNames(unknown))
	}
	if wrong.Get("Retry-After") != "60" || unknown.Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q and %q, want 60", wrong.Get("Retry-After"), unknown.Get("Retry-After"))
	}
	st := th.Stats()
	if st.Failures[accounts.OriginRegister] != 6 || st.BlockedSources != 2 || st.Refused != 2 {
		t.Errorf("Stats = %+v, want 6 register failures, 2 sources blocked, 2 refusals", st)
	}
}

// Guesses at alice from many addresses get her name blocked, but not at
// the address she registered from before: the attacker slows guessing
// down without locking her out.
func TestUserBlockSparesUsualAddress(t *testing.T) {
	th := &accounts.Throttle{MaxFailures: 3, UserMaxFailures: 5, Window: time.Minute, BlockFor: time.Minute}
	e := newEnv(t, withThrottle(th))
	phone := e.ua("alice") // at udpSource
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.10>"}}), 200, "")

	for i := range 5 {
		guesser := e.ua("alice")
		guesser.client.Password = fmt.Sprintf("guess-%d", i)
		guesser.source = addrFrom(t, fmt.Sprintf("203.0.113.%d", 10+i))
		want(t, guesser.register(msg{contacts: []string{"<sip:g@203.0.113.1>"}}), 401, "")
	}
	// A new address of alice's, with the right password, is refused
	// while the block lasts...
	laptop := e.ua("alice")
	laptop.source = addrFrom(t, "198.51.100.50")
	res := laptop.register(msg{contacts: []string{"<sip:l@198.51.100.50>"}})
	want(t, res, 403, "Too Many Failed Attempts")
	// ...her phone refreshes as usual, and other users are not affected.
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.10>"}}), 200, "")
	bob := e.ua("bob")
	bob.source = addrFrom(t, "203.0.113.10")
	want(t, bob.register(msg{contacts: []string{"<sip:b@203.0.113.10>"}}), 200, "")
	if st := th.Stats(); st.BlockedUsers != 1 || st.BlockedSources != 0 {
		t.Errorf("Stats = %+v, want alice's name blocked and no source", st)
	}

	e.clock.Advance(time.Minute)
	want(t, laptop.register(msg{contacts: []string{"<sip:l@198.51.100.50>"}}), 200, "")
}

// The registrar's throttle is the one the proxy and the admin API report
// to: a source blocked by their failures is refused at REGISTER too, and
// the registrar's failures are counted under their own origin.
func TestThrottleSharedWithOtherOrigins(t *testing.T) {
	th := &accounts.Throttle{MaxFailures: 3, Window: time.Minute, BlockFor: time.Minute}
	e := newEnv(t, withThrottle(th))
	bad := netip.MustParseAddr("203.0.113.66")
	th.Failure(accounts.OriginProxy, bad, "alice")
	th.Failure(accounts.OriginAdmin, bad, "")
	th.Failure(accounts.OriginProbe, bad, "")

	u := e.ua("alice")
	u.source = addrFrom(t, bad.String())
	want(t, u.register(msg{contacts: []string{"<sip:a@203.0.113.66>"}}), 403, "Too Many Failed Attempts")
	if got := th.Stats().Failures[accounts.OriginRegister]; got != 0 {
		t.Errorf("register failures %d, want 0", got)
	}

	other := e.ua("bob")
	other.client.Password = "wrong"
	other.source = addrFrom(t, "203.0.113.67")
	want(t, other.register(msg{contacts: []string{"<sip:b@203.0.113.67>"}}), 401, "")
	if got := th.Stats().Failures[accounts.OriginRegister]; got != 1 {
		t.Errorf("register failures %d, want 1", got)
	}
}

// BenchmarkAuthFailure compares the cost of a wrong password and of an
// unknown user: the dummy HA1 makes them the same work, which is what
// keeps timing from telling names apart.
func BenchmarkAuthFailure(b *testing.B) {
	for _, tc := range []struct{ name, user, password string }{
		{"wrong-password", "alice", "not-the-password"},
		{"unknown-user", "mallory", "whatever"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store, _ := accounts.NewStore([]accounts.Account{accounts.FromPassword("alice", domain, "secret")})
			loc, err := location.Open(location.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer loc.Close()
			srv := &digest.Server{Realm: domain, Secret: []byte("0123456789abcdef0123456789abcdef")}
			// A throttle that never blocks (no two failures fall within a
			// nanosecond): the benchmark measures the verification, not
			// the refusal.
			th := &accounts.Throttle{MaxFailures: 2, UserMaxFailures: 2, Window: time.Nanosecond}
			reg, err := registrar.New(registrar.Options{Identity: registrar.DomainIdentity(domain), Accounts: store, Location: loc, Digest: srv, Throttle: th})
			if err != nil {
				b.Fatal(err)
			}
			ch, _ := srv.Challenge("MD5", false)
			client := &digest.Client{Username: tc.user, Password: tc.password}
			m := msg{user: tc.user, contacts: []string{"<sip:x@192.0.2.1>"}}
			reqs := make([]*sip.Request, 0, 1024)
			for range cap(reqs) {
				req := parse(b, m.bytes())
				cred, err := client.Authorize(ch, "REGISTER", req.URI.String())
				if err != nil {
					b.Fatal(err)
				}
				req.Add("Authorization", cred.String())
				req.Source = udpSource
				reqs = append(reqs, req)
			}
			i := 0
			for b.Loop() {
				if res := reg.ServeRegister(ctx, reqs[i%len(reqs)]); res.StatusCode != 401 {
					b.Fatalf("%d %s", res.StatusCode, res.Reason)
				}
				i++
			}
		})
	}
}
