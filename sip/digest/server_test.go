package digest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests advance by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testRealm = "example.com"

func newTestServer() (*Server, *fakeClock) {
	clock := newFakeClock()
	return &Server{
		Realm:  testRealm,
		Secret: []byte("0123456789abcdef0123456789abcdef"),
		Now:    clock.Now,
	}, clock
}

// users is an account store keeping HA1 values per algorithm.
var users = map[string]string{"alice": "secret", "bob": "hunter2"}

func lookup(username string) func(string) (string, bool) {
	return func(alg string) (string, bool) {
		pass, ok := users[username]
		if !ok {
			return "", false
		}
		return HA1(alg, username, testRealm, pass), true
	}
}

// answer gets a challenge from srv and answers it as alice would.
func answer(t testing.TB, srv *Server, alg string) (*Client, Challenge, Credentials) {
	t.Helper()
	ch, err := srv.Challenge(alg, false)
	if err != nil {
		t.Fatal(err)
	}
	cl := &Client{Username: "alice", Password: users["alice"]}
	cr, err := cl.Authorize(ch, "REGISTER", "sip:"+testRealm)
	if err != nil {
		t.Fatal(err)
	}
	return cl, ch, cr
}

func TestServerAlgorithms(t *testing.T) {
	for _, alg := range []string{"", "MD5", "md5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess"} {
		t.Run(alg, func(t *testing.T) {
			srv, _ := newTestServer()
			_, ch, cr := answer(t, srv, alg)
			if want := lookupAlgorithm(alg).name; alg != "" && ch.Algorithm != want {
				t.Errorf("challenge algorithm %q, want %q", ch.Algorithm, want)
			}
			var asked string
			err := srv.Verify(cr, "REGISTER", func(a string) (string, bool) {
				asked = a
				return lookup(cr.Username)(a)
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := lookupAlgorithm(alg).base; asked != want {
				t.Errorf("lookup asked for %q, want %q", asked, want)
			}
		})
	}
}

func TestServerChallenge(t *testing.T) {
	srv, _ := newTestServer()
	ch, err := srv.Challenge("", true)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Realm != testRealm || ch.Algorithm != "" || !ch.Stale || len(ch.QOP) != 1 || ch.QOP[0] != "auth" || len(ch.Nonce) != nonceLen {
		t.Errorf("unexpected challenge %#v", ch)
	}
	ch2, _ := srv.Challenge("", true)
	if ch2.Nonce == ch.Nonce {
		t.Error("two challenges share a nonce")
	}
	if _, err := srv.Challenge("SHA-1", false); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("SHA-1: error %v", err)
	}
}

// ChallengeHeader writes what Challenge and String write, byte for byte
// but the nonce, and its nonce is one the server accepts.
func TestChallengeHeader(t *testing.T) {
	srv, _ := newTestServer()
	testChallengeHeader(t, srv)
	// A realm to escape: the head of every challenge is written once.
	odd, _ := newTestServer()
	odd.Realm = "a \"quoted\" \\realm\x01"
	testChallengeHeader(t, odd)
}

func testChallengeHeader(t *testing.T, srv *Server) {
	for _, alg := range []string{"", "MD5", "md5", "MD5-sess", "SHA-256", "SHA-512-256-sess"} {
		for _, stale := range []bool{false, true} {
			h, err := srv.ChallengeHeader(alg, stale)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseChallenge(h)
			if err != nil {
				t.Fatalf("%s: %v", h, err)
			}
			ch, _ := srv.Challenge(alg, stale)
			if len(got.Nonce) != nonceLen || got.Nonce == ch.Nonce {
				t.Fatalf("%s: nonce %q", h, got.Nonce)
			}
			if want := strings.Replace(ch.String(), ch.Nonce, got.Nonce, 1); h != want {
				t.Errorf("ChallengeHeader(%q, %v)\n got %s\nwant %s", alg, stale, h, want)
			}
			cl := &Client{Username: "alice", Password: users["alice"]}
			cr, err := cl.Authorize(got, "REGISTER", "sip:"+testRealm)
			if err != nil {
				t.Fatal(err)
			}
			if srv.Realm != testRealm {
				continue // the test's HA1s are for testRealm
			}
			if err := srv.Verify(cr, "REGISTER", lookup("alice")); err != nil {
				t.Errorf("%s: answer refused: %v", h, err)
			}
		}
	}
	if _, err := srv.ChallengeHeader("SHA-1", false); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("SHA-1: error %v", err)
	}
}

func TestServerVerify(t *testing.T) {
	other := &Server{Realm: testRealm, Secret: []byte("another secret, another server!!")}
	otherRealm := &Server{Realm: "example.net", Secret: []byte("0123456789abcdef0123456789abcdef")}
	tests := []struct {
		name   string
		alg    string
		modify func(t *testing.T, srv *Server, cr *Credentials)
		method string
		lookup func(string) (string, bool)
		want   error
	}{
		{name: "good", want: nil},
		{name: "uppercase response", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.Response = strings.ToUpper(cr.Response) }},
		{name: "wrong password", lookup: func(a string) (string, bool) { return HA1(a, "alice", testRealm, "wrong"), true }, want: ErrBadResponse},
		{name: "unknown user", lookup: func(string) (string, bool) { return "", false }, want: ErrBadResponse},
		{name: "nil lookup", lookup: nil, want: ErrBadResponse},
		{name: "corrupt stored HA1", lookup: func(string) (string, bool) { return "xyz", true }, want: ErrBadResponse},
		{name: "uppercase stored HA1", lookup: func(a string) (string, bool) {
			return strings.ToUpper(HA1(a, "alice", testRealm, users["alice"])), true
		}},
		{name: "empty stored HA1", lookup: func(string) (string, bool) { return "", true }, want: ErrBadResponse},
		{name: "wrong method", method: "INVITE", want: ErrBadResponse},
		{name: "wrong uri", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.URI = "sip:evil.example" }, want: ErrBadResponse},
		{name: "other realm", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.Realm = "example.net" }, want: ErrBadResponse},
		{name: "garbled nonce", modify: func(_ *testing.T, _ *Server, cr *Credentials) {
			b := []byte(cr.Nonce)
			b[20] ^= 1
			cr.Nonce = string(b)
		}, want: ErrBadNonce},
		{name: "short nonce", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.Nonce = cr.Nonce[:40] }, want: ErrBadNonce},
		{name: "non-base64 nonce", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.Nonce = strings.Repeat("!", nonceLen) }, want: ErrBadNonce},
		{name: "nonce of another secret", modify: func(t *testing.T, _ *Server, cr *Credentials) { *cr = reanswer(t, other, "", *cr) }, want: ErrBadNonce},
		{name: "nonce of another realm", modify: func(t *testing.T, _ *Server, cr *Credentials) {
			ch, _ := otherRealm.Challenge("", false)
			ch.Realm = testRealm
			*cr, _ = Answer(ch, "REGISTER", cr.URI, "alice", users["alice"])
		}, want: ErrBadNonce},
		{name: "nonce of another algorithm", alg: "SHA-256", modify: func(_ *testing.T, _ *Server, cr *Credentials) {
			cr.Algorithm = "MD5"
			ch := Challenge{Realm: testRealm, Nonce: cr.Nonce, QOP: []string{"auth"}}
			*cr, _ = Answer(ch, "REGISTER", cr.URI, "alice", users["alice"])
		}, want: ErrBadNonce},
		{name: "unsupported algorithm", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.Algorithm = "SHA-1" }, want: ErrUnsupportedAlgorithm},
		{name: "no qop", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.QOP, cr.NC, cr.CNonce = "", "", "" }, want: ErrUnsupportedQOP},
		{name: "auth-int", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.QOP = "auth-int" }, want: ErrUnsupportedQOP},
		{name: "missing cnonce", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.CNonce = "" }, want: ErrMalformed},
		{name: "short nc", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.NC = "1" }, want: ErrMalformed},
		{name: "non-hex nc", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.NC = "0000000g" }, want: ErrMalformed},
		{name: "zero nc", modify: func(_ *testing.T, _ *Server, cr *Credentials) { cr.NC = "00000000" }, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newTestServer()
			_, _, cr := answer(t, srv, tt.alg)
			if tt.modify != nil {
				tt.modify(t, srv, &cr)
			}
			method := tt.method
			if method == "" {
				method = "REGISTER"
			}
			lk := tt.lookup
			if lk == nil && tt.name != "nil lookup" {
				lk = lookup("alice")
			}
			err := srv.Verify(cr, method, lk)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			// An unknown user gets the error a wrong password gets.
			if tt.want != nil {
				srv2, _ := newTestServer()
				if err2 := srv2.VerifyUnknown(cr, method); err2 == nil || err2.Error() != errorForWrongPassword(srv2, cr, method).Error() {
					t.Errorf("VerifyUnknown = %v, wrong password gives %v", err2, errorForWrongPassword(srv2, cr, method))
				}
			}
		})
	}
}

func reanswer(t *testing.T, srv *Server, alg string, cr Credentials) Credentials {
	ch, err := srv.Challenge(alg, false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Answer(ch, "REGISTER", cr.URI, "alice", users["alice"])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func errorForWrongPassword(srv *Server, cr Credentials, method string) error {
	return srv.Verify(cr, method, func(a string) (string, bool) { return HA1(a, "alice", testRealm, "wrong"), true })
}

func TestServerLookupOnlyAfterNonceCheck(t *testing.T) {
	srv, _ := newTestServer()
	_, _, cr := answer(t, srv, "SHA-256")
	cr.Nonce = strings.Repeat("A", nonceLen)
	called := false
	err := srv.Verify(cr, "REGISTER", func(string) (string, bool) { called = true; return "", false })
	if !errors.Is(err, ErrBadNonce) || called {
		t.Fatalf("Verify = %v, lookup called %v", err, called)
	}
}

func TestServerStale(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		advance time.Duration
		want    error
	}{
		{"fresh", 0, 0, nil},
		{"at default TTL", 0, DefaultNonceTTL, nil},
		{"past default TTL", 0, DefaultNonceTTL + time.Nanosecond, ErrStale},
		{"past custom TTL", time.Second, time.Second + 1, ErrStale},
		{"within custom TTL", time.Hour, 59 * time.Minute, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clock := newTestServer()
			srv.NonceTTL = tt.ttl
			_, _, cr := answer(t, srv, "SHA-256")
			clock.Advance(tt.advance)
			if err := srv.Verify(cr, "REGISTER", lookup("alice")); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("stale needs a correct response", func(t *testing.T) {
		srv, clock := newTestServer()
		_, _, cr := answer(t, srv, "MD5")
		clock.Advance(time.Hour)
		if err := srv.VerifyUnknown(cr, "REGISTER"); !errors.Is(err, ErrBadResponse) {
			t.Fatalf("VerifyUnknown = %v, want ErrBadResponse", err)
		}
	})
}

func TestServerReplay(t *testing.T) {
	srv, _ := newTestServer()
	ch, _ := srv.Challenge("SHA-256", false)
	alice := &Client{Username: "alice", Password: users["alice"]}
	var sent []Credentials
	for i := range 3 {
		cr, err := alice.Authorize(ch, "REGISTER", "sip:"+testRealm)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%08x", i+1); cr.NC != want {
			t.Fatalf("nc = %s, want %s", cr.NC, want)
		}
		if err := srv.Verify(cr, "REGISTER", lookup("alice")); err != nil {
			t.Fatalf("nc %s: %v", cr.NC, err)
		}
		sent = append(sent, cr)
	}
	for _, cr := range sent {
		if err := srv.Verify(cr, "REGISTER", lookup("alice")); !errors.Is(err, ErrReplay) {
			t.Errorf("replayed nc %s: %v, want ErrReplay", cr.NC, err)
		}
	}
	// Counts are per user: bob's first use of the same nonce is fine.
	bob, err := Answer(ch, "REGISTER", "sip:"+testRealm, "bob", users["bob"])
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Verify(bob, "REGISTER", lookup("bob")); err != nil {
		t.Errorf("bob: %v", err)
	}
	// A wrong response does not advance the count.
	next, _ := alice.Authorize(ch, "REGISTER", "sip:"+testRealm)
	bad := next
	bad.NC = "ffffffff"
	if err := srv.Verify(bad, "REGISTER", lookup("alice")); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("forged nc: %v", err)
	}
	if err := srv.Verify(next, "REGISTER", lookup("alice")); err != nil {
		t.Errorf("after forged nc: %v", err)
	}
}

// TestServerResent: a request sent again unchanged, its credentials
// accepted once already, is accepted again within the resend window; the
// same credentials with any other request (another byte, another source),
// or after the window, are a replay, and so is an older count.
func TestServerResent(t *testing.T) {
	srv, clock := newTestServer()
	ch, _ := srv.Challenge("SHA-256", false)
	alice := &Client{Username: "alice", Password: users["alice"]}
	first, err := alice.Authorize(ch, "INVITE", "sip:bob@"+testRealm)
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("UDP 192.0.2.1:5060\nINVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\nCall-ID: call-1\r\nCSeq: 2 INVITE\r\n\r\n")
	if resent, err := srv.VerifyResent(first, "INVITE", bytesOf(req), lookup("alice")); err != nil || resent {
		t.Fatalf("first copy: resent %v, %v", resent, err)
	}
	clock.Advance(DefaultResendWindow / 2)
	if resent, err := srv.VerifyResent(first, "INVITE", bytesOf(append([]byte(nil), req...)), lookup("alice")); err != nil || !resent {
		t.Errorf("copy sent again: resent %v, %v, want accepted as resent", resent, err)
	}
	replays := map[string][]byte{
		"other branch":              []byte(strings.Replace(string(req), "z9hG4bK-1", "z9hG4bK-2", 1)),
		"other source":              []byte(strings.Replace(string(req), "UDP 192.0.2.1:5060", "UDP 192.0.2.9:5060", 1)),
		"one byte more":             append(append([]byte(nil), req...), 'x'),
		"one byte less":             req[:len(req)-1],
		"no request named (Verify)": nil,
	}
	for name, other := range replays {
		var err error
		if other == nil {
			err = srv.Verify(first, "INVITE", lookup("alice"))
		} else {
			_, err = srv.VerifyResent(first, "INVITE", bytesOf(other), lookup("alice"))
		}
		if !errors.Is(err, ErrReplay) {
			t.Errorf("%s: %v, want ErrReplay", name, err)
		}
	}
	// Credentials that fail cost no copy of their request.
	noCopy := func(b []byte) []byte {
		t.Error("the request was asked for to fingerprint credentials that fail")
		return append(b, req...)
	}
	if _, err := srv.VerifyResent(first, "BYE", noCopy, lookup("alice")); !errors.Is(err, ErrBadResponse) {
		t.Errorf("other method: %v, want ErrBadResponse", err)
	}
	// A higher count moves the window to its own request; the first is
	// then a replay, however unchanged.
	next, _ := alice.Authorize(ch, "INVITE", "sip:bob@"+testRealm)
	req2 := []byte(strings.Replace(string(req), "call-1", "call-3", 1))
	if resent, err := srv.VerifyResent(next, "INVITE", bytesOf(req2), lookup("alice")); err != nil || resent {
		t.Fatalf("next count: resent %v, %v", resent, err)
	}
	if _, err := srv.VerifyResent(first, "INVITE", bytesOf(req), lookup("alice")); !errors.Is(err, ErrReplay) {
		t.Errorf("older count sent again: %v, want ErrReplay", err)
	}
	if resent, err := srv.VerifyResent(next, "INVITE", bytesOf(req2), lookup("alice")); err != nil || !resent {
		t.Errorf("next count sent again: resent %v, %v", resent, err)
	}
	clock.Advance(DefaultResendWindow + time.Millisecond)
	if _, err := srv.VerifyResent(next, "INVITE", bytesOf(req2), lookup("alice")); !errors.Is(err, ErrReplay) {
		t.Errorf("sent again past the window: %v, want ErrReplay", err)
	}
}

// bytesOf is a request for VerifyResent: it appends req.
func bytesOf(req []byte) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, req...) }
}

func TestServerTrackedNoncesBounded(t *testing.T) {
	srv, clock := newTestServer()
	srv.MaxTrackedNonces = 3
	var clients []*Client
	var challenges []Challenge
	for range 6 {
		ch, _ := srv.Challenge("MD5", false)
		clock.Advance(time.Second) // distinct issue times
		challenges = append(challenges, ch)
		clients = append(clients, &Client{Username: "alice", Password: users["alice"]})
	}
	use := func(i int) error {
		cr, err := clients[i].Authorize(challenges[i], "REGISTER", "sip:"+testRealm)
		if err != nil {
			t.Fatal(err)
		}
		return srv.Verify(cr, "REGISTER", lookup("alice"))
	}
	for _, i := range []int{1, 2, 3, 4} {
		if err := use(i); err != nil {
			t.Fatalf("nonce %d: %v", i, err)
		}
		if n := trackedCount(srv); n > 3 {
			t.Fatalf("tracking %d nonces, cap 3", n)
		}
	}
	// Nonce 1 was evicted: its count is unknown, so a reuse must not pass
	// as fresh. Nonce 0, issued earlier and never used, is refused too.
	for _, i := range []int{1, 0} {
		if err := use(i); !errors.Is(err, ErrStale) {
			t.Errorf("nonce %d after eviction: %v, want ErrStale", i, err)
		}
	}
	// Tracked and newer nonces still work.
	for _, i := range []int{4, 5} {
		if err := use(i); err != nil {
			t.Errorf("nonce %d: %v", i, err)
		}
	}
	// Entries go when their nonce expires.
	clock.Advance(DefaultNonceTTL)
	ch, _ := srv.Challenge("MD5", false)
	cr, _ := Answer(ch, "REGISTER", "sip:"+testRealm, "alice", users["alice"])
	if err := srv.Verify(cr, "REGISTER", lookup("alice")); err != nil {
		t.Fatal(err)
	}
	if n := trackedCount(srv); n != 1 {
		t.Errorf("tracking %d nonces after expiry, want 1", n)
	}
}

func trackedCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) != s.age.n {
		panic("map and queue disagree")
	}
	// Every entry is where the map says, under its own key.
	for key, seq := range s.seen {
		if e := s.age.at(seq); e.key != key {
			panic(fmt.Sprintf("map and queue disagree on %x", key))
		}
	}
	return len(s.seen)
}

func TestServerRandomSecret(t *testing.T) {
	a, b := &Server{Realm: testRealm}, &Server{Realm: testRealm}
	ch, _ := a.Challenge("MD5", false)
	cr, _ := Answer(ch, "REGISTER", "sip:"+testRealm, "alice", users["alice"])
	if err := b.Verify(cr, "REGISTER", lookup("alice")); !errors.Is(err, ErrBadNonce) {
		t.Errorf("other server: %v, want ErrBadNonce", err)
	}
	if err := a.Verify(cr, "REGISTER", lookup("alice")); err != nil {
		t.Errorf("own server: %v", err)
	}
}

func TestServerConcurrent(t *testing.T) {
	srv, clock := newTestServer()
	srv.MaxTrackedNonces = 50 // force evictions under contention
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			cl := &Client{Username: "alice", Password: users["alice"]}
			for r := range rounds {
				if r%10 == 0 {
					clock.Advance(time.Millisecond)
				}
				ch, err := srv.Challenge("SHA-256", false)
				if err != nil {
					errs <- err
					return
				}
				for range 2 {
					cr, err := cl.Authorize(ch, "REGISTER", "sip:"+testRealm)
					if err == nil {
						err = srv.Verify(cr, "REGISTER", lookup("alice"))
					}
					// Other workers may evict this nonce between its uses.
					if err != nil && !errors.Is(err, ErrStale) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := trackedCount(srv); n > 50 {
		t.Errorf("tracking %d nonces, cap 50", n)
	}

	// The same credentials sent at once are accepted exactly once.
	_, _, cr := answer(t, srv, "MD5")
	var ok sync.WaitGroup
	results := make(chan error, workers)
	for range workers {
		ok.Go(func() { results <- srv.Verify(cr, "REGISTER", lookup("alice")) })
	}
	ok.Wait()
	close(results)
	accepted := 0
	for err := range results {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, ErrReplay):
			t.Error(err)
		}
	}
	if accepted != 1 {
		t.Errorf("accepted %d times, want once", accepted)
	}
}

// TestCMAC checks the nonce MAC against RFC 4493 §4, its subkey K1 and
// Example 2 (one whole block; AES-128, as the RFC's examples are).
func TestCMAC(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	blk, k1 := newCMAC(unhex("2b7e151628aed2a6abf7158809cf4f3c"))
	if got, want := hex.EncodeToString(k1[:]), "fbeed618357133667c85e08f7236a8de"; got != want {
		t.Fatalf("K1 = %s, want %s", got, want)
	}
	m := &macState{blk: blk, k1: k1}
	copy(m.in[:], unhex("6bc1bee22e409f96e93d7e117393172a"))
	m.cmac()
	if got, want := hex.EncodeToString(m.out[:]), "070a16b46b4d4144f79bdd9dd04a287c"; got != want {
		t.Fatalf("CMAC = %s, want %s", got, want)
	}
}

// TestNonceEncodingStrict: the nonce's last character carries two padding
// bits; a nonce that differs from a good one only there is refused, so
// that one nonce has one spelling (its nonce counts are tracked by it).
func TestNonceEncodingStrict(t *testing.T) {
	srv, _ := newTestServer()
	_, _, cr := answer(t, srv, "")
	last := cr.Nonce[len(cr.Nonce)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	if i < 0 || i&3 != 0 {
		t.Fatalf("last character %q has padding bits set", last)
	}
	for pad := 1; pad < 4; pad++ {
		c := cr
		c.Nonce = cr.Nonce[:len(cr.Nonce)-1] + string(alphabet[i|pad])
		c, _ = Answer(Challenge{Realm: testRealm, Nonce: c.Nonce, QOP: []string{"auth"}}, "REGISTER", cr.URI, "alice", users["alice"])
		if err := srv.Verify(c, "REGISTER", lookup("alice")); !errors.Is(err, ErrBadNonce) {
			t.Errorf("nonce with padding bits %d: Verify = %v, want ErrBadNonce", pad, err)
		}
	}
	if err := srv.Verify(cr, "REGISTER", lookup("alice")); err != nil {
		t.Fatalf("good nonce: %v", err)
	}
}

// TestLookupAlgorithm: names in any ASCII case, and nothing else: a
// non-ASCII letter that folds to an ASCII one (U+017F to s, U+212A to k)
// does not make a name.
func TestLookupAlgorithm(t *testing.T) {
	for name, want := range map[string]string{
		"": "MD5", "md5": "MD5", "sha-256": "SHA-256", "Sha-512-256-Sess": "SHA-512-256-sess",
		"\u017fHA-256": "", "SHA-256 ": "", "SHA-25": "", "SHA-1": "",
	} {
		got := ""
		if a := lookupAlgorithm(name); a != nil {
			got = a.name
		}
		if got != want {
			t.Errorf("lookupAlgorithm(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestServerTrackQueue drives the replay table through many turns of its
// ring at a cap of 5: each tracked nonce's count moves on and a replay is
// refused wherever its entry sits, an evicted nonce is refused as stale,
// and the map and the queue agree throughout (trackedCount).
func TestServerTrackQueue(t *testing.T) {
	srv, _ := newTestServer()
	srv.MaxTrackedNonces = 5
	srv.once.Do(srv.init)
	nonce := func(i int) string { return fmt.Sprintf("%043d", i) }
	counts := map[int]uint32{}
	for i := range 300 {
		now := int64(time.Second) * int64(i)
		if _, err := srv.track(nonce(i), "u", now, 1, 0, now); err != nil {
			t.Fatalf("new nonce %d: %v", i, err)
		}
		counts[i] = 1
		for j := max(0, i-4); j <= i; j++ {
			counts[j]++
			if _, err := srv.track(nonce(j), "u", int64(time.Second)*int64(j), counts[j], 0, now); err != nil {
				t.Fatalf("nonce %d, count %d, at %d: %v", j, counts[j], i, err)
			}
			if _, err := srv.track(nonce(j), "u", int64(time.Second)*int64(j), counts[j], 0, now); !errors.Is(err, ErrReplay) {
				t.Fatalf("nonce %d replayed at %d: %v", j, i, err)
			}
		}
		if i >= 5 {
			if _, err := srv.track(nonce(i-5), "v", int64(time.Second)*int64(i-5), 1, 0, now); !errors.Is(err, ErrStale) {
				t.Fatalf("evicted nonce %d at %d: %v, want ErrStale", i-5, i, err)
			}
		}
		if n := trackedCount(srv); n != min(i+1, 5) {
			t.Fatalf("tracking %d at %d", n, i)
		}
	}
}

// TestServerTrackLongUser: user names too long for seenKey's stack buffer
// are hashed whole, so that names differing only past it are told apart,
// and their replays are refused as others are.
func TestServerTrackLongUser(t *testing.T) {
	srv, _ := newTestServer()
	srv.once.Do(srv.init)
	nonce := strings.Repeat("n", nonceLen)
	long := strings.Repeat("u", 2*maxInlineUser)
	users := []string{long + "a", long + "b", strings.Repeat("u", maxInlineUser), strings.Repeat("u", maxInlineUser+1)}
	for _, u := range users {
		if _, err := srv.track(nonce, u, 1, 1, 0, 1); err != nil {
			t.Errorf("first use by a user of %d bytes: %v", len(u), err)
		}
	}
	for _, u := range users {
		if _, err := srv.track(nonce, u, 1, 1, 0, 1); !errors.Is(err, ErrReplay) {
			t.Errorf("replay by a user of %d bytes: %v, want ErrReplay", len(u), err)
		}
	}
	if n := trackedCount(srv); n != len(users) {
		t.Errorf("tracking %d, want %d", n, len(users))
	}
}

// TestNormalizeHA1 checks every byte in every place of a stored HA1:
// hex digits in either case are good (and lowercased), anything else is
// refused.
func TestNormalizeHA1(t *testing.T) {
	for i := range algorithms {
		if n := algorithms[i].hexLen; n%8 != 0 {
			t.Errorf("%s: %d hex digits, not whole words of 8 for normalizeHA1", algorithms[i].name, n)
		}
	}
	a := lookupAlgorithm("MD5")
	good := HA1("MD5", "alice", testRealm, users["alice"])
	for i := range good {
		for c := range 256 {
			ha1 := good[:i] + string([]byte{byte(c)}) + good[i+1:]
			got, ok := normalizeHA1(ha1, true, a)
			isHex := strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) && c < 0x80
			if ok != isHex || ok && got != strings.ToLower(ha1) {
				t.Fatalf("normalizeHA1(%q) = %q, %v", ha1, got, ok)
			}
		}
	}
	if _, ok := normalizeHA1(good, false, a); ok {
		t.Error("an HA1 not found is good")
	}
}
