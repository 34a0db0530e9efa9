package trunk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

const ourContact = "Contact: <sip:gw@192.0.2.10:5070;transport=tcp>"

// The whole life of a registration against a scripted provider: challenge,
// grant, refresh at 90% with the cached challenge, 423, failures with
// backoff and Retry-After, a stale nonce, and the unregistration.
func TestRegistrationLifecycle(t *testing.T) {
	h := newHarness(t, testTrunk(), nil)
	h.start()
	if st := h.waitState(StateRegistering); !st.expires.IsZero() || st.err != nil {
		t.Errorf("registering: %+v", st)
	}

	var all []sent
	next := func() sent {
		t.Helper()
		s := h.next()
		all = append(all, s)
		return s
	}

	// 1: no credentials yet.
	r1 := next()
	if r1.req.Method != sip.MethodRegister || r1.req.URI.String() != "sip:voip.example" || r1.dst != prov1 {
		t.Fatalf("first request %s %s to %v", r1.req.Method, r1.req.URI.String(), r1.dst)
	}
	via, _ := r1.req.TopVia()
	if via.Transport != sip.TCP || via.SentBy() != "192.0.2.10:5070" || !strings.HasPrefix(via.Branch(), sip.BranchCookie) || !via.Params.Has("rport") {
		t.Errorf("Via: %s", via.String())
	}
	from := r1.req.From()
	if from.URI.String() != "sip:acct-4711@voip.example" || from.Tag() == "" {
		t.Errorf("From: %s", r1.req.Get("From"))
	}
	expect(t, r1, map[string]string{
		"To":            "<sip:acct-4711@voip.example>",
		"Contact":       "<sip:gw@192.0.2.10:5070;transport=tcp>",
		"Expires":       "120",
		"CSeq":          "1 REGISTER",
		"Max-Forwards":  "70",
		"User-Agent":    "switchboard-test",
		"Authorization": "",
	})
	h.challenge(r1, false)

	// 2: answers the challenge.
	r2 := next()
	if err := h.verify(r2); err != nil || nc(r2) != "00000001" {
		t.Errorf("credentials: %v, nc %s", err, nc(r2))
	}
	expect(t, r2, map[string]string{"CSeq": "2 REGISTER", "Call-ID": r1.req.CallID(), "From": r1.req.Get("From"), "Expires": "120"})
	// The registrar lists another device's binding too, and a default
	// Expires: our Contact's parameter is what counts.
	h.reply(r2, 200, "Contact: <sip:other@203.0.113.9>;expires=30", ourContact+";expires=120", "Expires: 3600")
	st := h.waitState(StateRegistered)
	if !st.expires.Equal(epoch.Add(120*time.Second)) || st.err != nil {
		t.Errorf("registered: %+v", st)
	}
	if d := h.nextArmed(); d != 108*time.Second {
		t.Errorf("refresh in %v, want 108s", d)
	}
	if state, exp, err := h.reg.Status(); state != StateRegistered || !exp.Equal(st.expires) || err != nil {
		t.Errorf("Status() = %s, %v, %v", state, exp, err)
	}

	// 3: the refresh at 108 s reuses the challenge (nc 2); the provider
	// now wants at least 300 s.
	h.clk.Advance(107 * time.Second)
	h.noRequest()
	h.clk.Advance(1 * time.Second)
	r3 := next()
	if r3.at != 108*time.Second || r3.dst != prov1 {
		t.Errorf("refresh at %v to %v", r3.at, r3.dst)
	}
	if err := h.verify(r3); err != nil || nc(r3) != "00000002" {
		t.Errorf("refresh credentials: %v, nc %s", err, nc(r3))
	}
	expect(t, r3, map[string]string{"CSeq": "3 REGISTER", "Call-ID": r1.req.CallID(), "From": r1.req.Get("From"), "Expires": "120"})
	h.reply(r3, 423, "Min-Expires: 300")

	// 4: asks for the Min-Expires at once.
	r4 := next()
	expect(t, r4, map[string]string{"CSeq": "4 REGISTER", "Expires": "300"})
	if err := h.verify(r4); err != nil {
		t.Errorf("credentials after 423: %v", err)
	}
	h.reply(r4, 200, ourContact+";expires=300")
	st = h.waitState(StateRegistered)
	if want := epoch.Add(408 * time.Second); !st.expires.Equal(want) {
		t.Errorf("expires %v, want %v", st.expires, want)
	}
	if d := h.nextArmed(); d != 270*time.Second {
		t.Errorf("refresh in %v, want 270s", d)
	}

	// 5: the next refresh keeps 300 s; the provider fails with 503. The
	// binding is still good until 408 s.
	h.clk.Advance(270 * time.Second)
	r5 := next()
	expect(t, r5, map[string]string{"CSeq": "5 REGISTER", "Expires": "300"})
	h.reply(r5, 503)
	st = h.waitState(StateFailed)
	var se *StatusError
	if !errors.As(st.err, &se) || se.StatusCode != 503 || !errors.Is(st.err, ErrRejected) || !st.expires.Equal(epoch.Add(408*time.Second)) {
		t.Errorf("failed: %+v", st)
	}
	if d := h.nextArmed(); d != 7500*time.Millisecond {
		t.Errorf("first retry in %v, want 7.5s (10s, jittered)", d)
	}

	// 6, 7: the retry resolves again and walks the addresses: a 503 moves
	// on to the next one, whose 500 with Retry-After ends the attempt.
	h.clk.Advance(7500 * time.Millisecond)
	h.waitState(StateRegistering)
	r6 := next()
	if r6.dst != prov1 {
		t.Errorf("retry went to %v", r6.dst)
	}
	h.reply(r6, 503)
	r7 := next()
	if r7.dst != prov2 {
		t.Errorf("failover went to %v", r7.dst)
	}
	h.reply(r7, 500, "Retry-After: 25 (maintenance)")
	if st := h.waitState(StateFailed); !errors.Is(st.err, ErrRejected) {
		t.Errorf("failed: %+v", st)
	}
	if d := h.nextArmed(); d != 25*time.Second {
		t.Errorf("second retry in %v, want Retry-After's 25s over the backoff's 15s", d)
	}

	// 8: a 403 is a credential failure; the backoff grows to its cap.
	h.clk.Advance(25 * time.Second)
	r8 := next()
	h.reply(r8, 403)
	if st := h.waitState(StateFailed); !errors.Is(st.err, ErrAuthFailed) {
		t.Errorf("failed: %+v", st)
	}
	if d := h.nextArmed(); d != 30*time.Second {
		t.Errorf("third retry in %v, want 30s (40s cap, jittered)", d)
	}

	// 9, 10: the cached nonce is now too old for the provider: 401 stale,
	// answered without counting as a refusal.
	h.clk.Advance(30 * time.Second)
	r9 := next()
	if err := h.verify(r9); !errors.Is(err, digest.ErrStale) {
		t.Fatalf("verify after 440 s: %v", err)
	}
	h.challenge(r9, true)
	r10 := next()
	if err := h.verify(r10); err != nil || nc(r10) != "00000001" {
		t.Errorf("credentials for the new nonce: %v, nc %s", err, nc(r10))
	}
	h.reply(r10, 200, ourContact+";expires=300")
	if st := h.waitState(StateRegistered); st.err != nil {
		t.Errorf("registered: %+v", st)
	}
	if d := h.nextArmed(); d != 270*time.Second {
		t.Errorf("refresh in %v", d)
	}

	// 11: Stop unregisters, at the registrar that last answered.
	h.stop()
	h.waitState(StateUnregistering)
	r11 := next()
	expect(t, r11, map[string]string{"Expires": "0", "Contact": "<sip:gw@192.0.2.10:5070;transport=tcp>", "Call-ID": r1.req.CallID()})
	if r11.dst != prov1 {
		t.Errorf("unregistration to %v", r11.dst)
	}
	if err := h.verify(r11); err != nil {
		t.Errorf("unregistration credentials: %v", err)
	}
	if d := h.nextArmed(); d != DefaultUnregisterTimeout {
		t.Errorf("unregistration bounded by %v", d)
	}
	h.reply(r11, 200)
	if err := h.finished(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if state, exp, err := h.reg.Status(); state != StateStopped || !exp.IsZero() || err != nil {
		t.Errorf("Status() = %s, %v, %v", state, exp, err)
	}

	// One Call-ID and From tag; CSeq grows by one; every branch is new.
	branches := make(map[string]bool)
	for i, s := range all {
		if got := s.req.CSeq(); got.Seq != uint32(i+1) || got.Method != sip.MethodRegister {
			t.Errorf("request %d: CSeq %v", i+1, got)
		}
		if s.req.CallID() != r1.req.CallID() || s.req.From().Tag() != from.Tag() {
			t.Errorf("request %d: Call-ID %s, From %s", i+1, s.req.CallID(), s.req.Get("From"))
		}
		v, _ := s.req.TopVia()
		if branches[v.Branch()] {
			t.Errorf("request %d: branch %s reused", i+1, v.Branch())
		}
		branches[v.Branch()] = true
	}
	if len(h.res.asked) != 4 {
		t.Errorf("resolved %d times, want 4 (at start and for each of the three retries)", len(h.res.asked))
	}
}

// A transport error or a timeout moves on to the provider's next address;
// refreshes stick to the address that answered.
func TestRegistrationFailover(t *testing.T) {
	h := newHarness(t, testTrunk(), nil)
	h.net.setDown(prov1, true)
	h.start()

	r1 := h.next() // prov1's send failed: this is prov2
	if r1.dst != prov2 {
		t.Fatalf("sent to %v", r1.dst)
	}
	h.challenge(r1, false)
	r2 := h.next()
	h.reply(r2, 200, ourContact+";expires=120")
	h.waitState(StateRegistered)
	if d := h.nextArmed(); d != 108*time.Second {
		t.Errorf("refresh in %v", d)
	}

	h.net.setDown(prov1, false)
	h.clk.Advance(108 * time.Second)
	r3 := h.next()
	if r3.dst != prov2 || len(h.res.asked) != 1 {
		t.Errorf("refresh to %v after %d lookups", r3.dst, len(h.res.asked))
	}
	// No answer: Timer F (32 s) ends the transaction, and the attempt,
	// as the last good address was the only one tried. The binding
	// lapsed at 120 s meanwhile.
	h.clk.Advance(32 * time.Second)
	st := h.waitState(StateFailed)
	if !errors.Is(st.err, transaction.ErrTimeout) || !st.expires.IsZero() {
		t.Errorf("failed: %+v", st)
	}
	if d := h.nextArmed(); d != 7500*time.Millisecond {
		t.Errorf("retry in %v", d)
	}
	h.clk.Advance(7500 * time.Millisecond)
	r4 := h.next()
	if r4.dst != prov1 || len(h.res.asked) != 2 {
		t.Errorf("retry to %v after %d lookups", r4.dst, len(h.res.asked))
	}
	h.reply(r4, 200, ourContact+";expires=120")
	h.waitState(StateRegistered)
	h.nextArmed()

	h.stop()
	r5 := h.next()
	if r5.dst != prov1 || r5.req.Get("Expires") != "0" {
		t.Errorf("unregistration to %v, Expires %s", r5.dst, r5.req.Get("Expires"))
	}
	h.reply(r5, 200)
	if err := h.finished(); err != nil {
		t.Error(err)
	}
}

func TestRegistrationAuthFailures(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		tr := testTrunk()
		tr.Password = "wrong"
		h := newHarness(t, tr, nil)
		h.start()
		r1 := h.next()
		h.challenge(r1, false)
		r2 := h.next()
		if err := h.verify(r2); !errors.Is(err, digest.ErrBadResponse) {
			t.Fatalf("verify: %v", err)
		}
		h.challenge(r2, false)
		st := h.waitState(StateFailed)
		if !errors.Is(st.err, ErrAuthFailed) || !strings.Contains(st.err.Error(), "credentials refused") {
			t.Errorf("failed: %+v", st)
		}
		h.nextArmed()
		h.noRequest()

		// The retry starts with the cached challenge; a fresh challenge is
		// answered once more, then it fails again.
		h.clk.Advance(7500 * time.Millisecond)
		r3 := h.next()
		if nc(r3) != "00000002" {
			t.Errorf("retry nc %s", nc(r3))
		}
		h.challenge(r3, false)
		r4 := h.next()
		h.challenge(r4, false)
		if st := h.waitState(StateFailed); !errors.Is(st.err, ErrAuthFailed) {
			t.Errorf("failed: %+v", st)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		tr := testTrunk()
		tr.Username, tr.Password = "", ""
		h := newHarness(t, tr, nil)
		h.start()
		h.challenge(h.next(), false)
		st := h.waitState(StateFailed)
		if !errors.Is(st.err, ErrAuthFailed) || !strings.Contains(st.err.Error(), "no username") {
			t.Errorf("failed: %+v", st)
		}
		h.nextArmed()
		h.noRequest()
	})

	t.Run("unanswerable challenge", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.start()
		h.reply(h.next(), 401, `WWW-Authenticate: Basic realm="x"`, `WWW-Authenticate: Digest realm="x", nonce="n", qop="auth-int"`)
		if st := h.waitState(StateFailed); !errors.Is(st.err, ErrAuthFailed) {
			t.Errorf("failed: %+v", st)
		}
	})

	t.Run("proxy and registrar", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.start()
		r1 := h.next()
		h.reply(r1, 407, `Proxy-Authenticate: Digest realm="proxy.example", nonce="p1", qop="auth"`)
		r2 := h.next()
		pa, err := digest.ParseCredentials(r2.req.Get("Proxy-Authorization"))
		if err != nil || pa.Realm != "proxy.example" || r2.req.Get("Authorization") != "" {
			t.Fatalf("after 407: %v\n%s", err, r2.req)
		}
		h.challenge(r2, false) // a 401 after a 407 is not a refusal
		r3 := h.next()
		if r3.req.Get("Proxy-Authorization") == "" {
			t.Error("Proxy-Authorization dropped")
		}
		if err := h.verify(r3); err != nil {
			t.Errorf("verify: %v", err)
		}
		h.reply(r3, 200, ourContact+";expires=120")
		h.waitState(StateRegistered)
	})
}

func TestRegistrationRejections(t *testing.T) {
	for _, tt := range []struct {
		name    string
		code    int
		headers []string
		is      error
		text    string
	}{
		{"404", 404, nil, ErrRejected, "registrar answered 404 Not Found"},
		{"423 without Min-Expires", 423, nil, ErrRejected, "423"},
		{"423 not longer", 423, []string{"Min-Expires: 60"}, ErrRejected, "423"},
		{"2xx with no time", 200, []string{ourContact + ";expires=0"}, ErrRejected, "granted no time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testTrunk(), nil)
			h.start()
			h.reply(h.next(), tt.code, tt.headers...)
			st := h.waitState(StateFailed)
			if !errors.Is(st.err, tt.is) || !strings.Contains(st.err.Error(), tt.text) {
				t.Errorf("failed: %v", st.err)
			}
			h.nextArmed()
			h.noRequest()
		})
	}

	t.Run("second 423", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.start()
		h.reply(h.next(), 423, "Min-Expires: 300")
		r2 := h.next()
		expect(t, r2, map[string]string{"Expires": "300"})
		h.reply(r2, 423, "Min-Expires: 600")
		if st := h.waitState(StateFailed); !errors.Is(st.err, ErrRejected) {
			t.Errorf("failed: %v", st.err)
		}
	})

	t.Run("no local address", func(t *testing.T) {
		tr := testTrunk()
		tr.Transport = sip.UDP
		h := newHarness(t, tr, nil)
		h.res.addrs[tr.Host] = []sip.Addr{{Transport: sip.UDP, AddrPort: prov1.AddrPort}}
		h.start()
		if st := h.waitState(StateFailed); st.err == nil || !strings.Contains(st.err.Error(), "no local address for UDP") {
			t.Errorf("failed: %v", st.err)
		}
	})

	t.Run("unresolvable", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.res.addrs = nil
		h.start()
		if st := h.waitState(StateFailed); !errors.Is(st.err, ErrNoTarget) {
			t.Errorf("failed: %v", st.err)
		}
		// Nothing was registered: stopping sends nothing.
		h.stop()
		if err := h.finished(); err != nil {
			t.Error(err)
		}
		h.noRequest()
		if state, _, _ := h.reg.Status(); state != StateStopped {
			t.Errorf("state %s", state)
		}
	})
}

func TestRegistrationStop(t *testing.T) {
	t.Run("during the first register", func(t *testing.T) {
		// The provider may have accepted a REGISTER whose answer was not
		// awaited: remove the binding anyway.
		h := newHarness(t, testTrunk(), nil)
		h.start()
		r1 := h.next()
		h.stop()
		r2 := h.next()
		expect(t, r2, map[string]string{"Expires": "0", "CSeq": "2 REGISTER"})
		h.reply(r2, 200)
		h.reply(r1, 200, ourContact+";expires=120") // too late: ignored
		if err := h.finished(); err != nil {
			t.Error(err)
		}
	})

	t.Run("unregistration times out", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.start()
		h.reply(h.next(), 200, ourContact+";expires=120")
		h.waitState(StateRegistered)
		h.nextArmed()
		h.stop()
		h.next() // never answered
		if d := h.nextArmed(); d != DefaultUnregisterTimeout {
			t.Fatalf("unregistration timer %v", d)
		}
		h.clk.Advance(DefaultUnregisterTimeout)
		err := h.finished()
		if !errors.Is(err, errUnregisterTimeout) {
			t.Errorf("Run = %v", err)
		}
		if state, _, lastErr := h.reg.Status(); state != StateStopped || lastErr != err {
			t.Errorf("Status = %s, %v", state, lastErr)
		}
	})

	t.Run("run twice", func(t *testing.T) {
		h := newHarness(t, testTrunk(), nil)
		h.start()
		h.next()
		if err := h.reg.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v", err)
		}
	})
}

func TestNewRegistration(t *testing.T) {
	h := newHarness(t, testTrunk(), nil)
	good := RegistrationOptions{Trunk: testTrunk(), Requester: h.layer, Resolver: h.res, Identity: gwIdentity()}
	if _, err := NewRegistration(good); err != nil {
		t.Fatal(err)
	}
	noHost := good
	noHost.Trunk.Host = ""
	noUser := good
	noUser.Trunk.FromUser = ""
	noRequester := good
	noRequester.Requester = nil
	for name, o := range map[string]RegistrationOptions{"no host": noHost, "no user": noUser, "no requester": noRequester} {
		if _, err := NewRegistration(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if state, exp, err := h.reg.Status(); state != StateIdle || !exp.IsZero() || err != nil {
		t.Errorf("Status before Run = %s, %v, %v", state, exp, err)
	}
}

func TestGrantedExpires(t *testing.T) {
	contact, _ := sip.ParseURI("sip:gw@192.0.2.10:5070;transport=tcp")
	tests := []struct {
		name    string
		headers []string
		asked   uint32
		want    uint32
	}{
		{"our contact", []string{"Contact: <sip:a@x>;expires=10", "Contact: <sip:gw@192.0.2.10:5070;transport=tcp>;expires=120", "Expires: 60"}, 3600, 120},
		{"our contact, params differ", []string{"Contact: <sip:gw@192.0.2.10:5070;transport=tcp;ob>;expires=90"}, 3600, 90},
		{"our contact rewritten: shortest", []string{"Contact: <sip:gw@203.0.113.1:4000>;expires=300, <sip:b@y>;expires=200"}, 3600, 200},
		{"expires header", []string{"Contact: <sip:gw@192.0.2.10:5070;transport=tcp>", "Expires: 600"}, 3600, 600},
		{"nothing said", nil, 3600, 3600},
		{"never more than asked", []string{"Contact: <sip:gw@192.0.2.10:5070;transport=tcp>;expires=7200"}, 3600, 3600},
		{"bad parameter ignored", []string{"Contact: <sip:gw@192.0.2.10:5070;transport=tcp>;expires=soon", "Expires: 100"}, 3600, 100},
	}
	for _, tt := range tests {
		req := sip.NewRequest(sip.MethodRegister, sip.URI{Scheme: "sip", Host: "x"})
		res := sip.NewResponse(req, 200, "")
		for _, hd := range tt.headers {
			name, value, _ := strings.Cut(hd, ": ")
			res.Add(name, value)
		}
		if got := grantedExpires(res, contact, tt.asked); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestStatusError(t *testing.T) {
	req := sip.NewRequest(sip.MethodRegister, sip.URI{Scheme: "sip", Host: "x"})
	for _, tt := range []struct {
		code  int
		ra    string
		is    error
		after time.Duration
	}{
		{403, "", ErrAuthFailed, 0},
		{401, "", ErrAuthFailed, 0},
		{480, "30", ErrRejected, 30 * time.Second},
		{503, "120 (overloaded);duration=60", ErrRejected, 120 * time.Second},
		{503, "soon", ErrRejected, 0},
	} {
		res := sip.NewResponse(req, tt.code, "")
		if tt.ra != "" {
			res.Add("Retry-After", tt.ra)
		}
		e := newStatusError(res)
		if !errors.Is(e, tt.is) || e.RetryAfter != tt.after {
			t.Errorf("%d %q: %v, retry after %v", tt.code, tt.ra, e, e.RetryAfter)
		}
	}
}

func TestBackoff(t *testing.T) {
	low := func() float64 { return 0 }
	r := &Registration{opts: RegistrationOptions{RetryMin: 10 * time.Second, RetryMax: 40 * time.Second, Rand: low}}
	for failures, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 4: 20 * time.Second, 1000: 20 * time.Second} {
		if got := r.backoff(failures, errors.New("x")); got != want {
			t.Errorf("backoff(%d) = %v, want %v", failures, got, want)
		}
	}
	r.opts.Rand = func() float64 { return 0.999 }
	if got := r.backoff(3, nil); got < 39*time.Second || got >= 40*time.Second {
		t.Errorf("backoff(3) with high jitter = %v", got)
	}
	long := &StatusError{StatusCode: 503, RetryAfter: 3 * time.Hour}
	if got := r.backoff(1, fmt.Errorf("wrapped: %w", long)); got != MaxRetryAfter {
		t.Errorf("backoff with Retry-After 3h = %v", got)
	}
	huge := &Registration{opts: RegistrationOptions{RetryMin: time.Hour, RetryMax: 1 << 62, Rand: low}}
	if got := huge.backoff(1000, nil); got != 1<<61 {
		t.Errorf("backoff near the limits = %v", got)
	}
}
