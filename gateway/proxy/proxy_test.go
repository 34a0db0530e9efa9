package proxy

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/locate"
)

// A local user calls another through the proxy: 407, then the INVITE with
// credentials reaches the registered contact record-routed; 180 and 200 come
// back; ACK and BYE follow the route set.
func TestInviteThroughRecordRoute(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
	bob.register(1000)

	inv := alice.request(sip.MethodInvite, "sip:bob@"+testDomain)
	res, _ := alice.final(alice.send(inv))
	if res.StatusCode != 407 {
		t.Fatalf("first INVITE: got %d, want 407", res.StatusCode)
	}
	if n := len(res.Values("Proxy-Authenticate")); n != 2 {
		t.Errorf("407 has %d Proxy-Authenticate, want 2 (SHA-256, MD5)", n)
	}
	inv = alice.authorize(inv, res)
	res, prov := alice.final(alice.send(inv))
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: got %d, want 200", res.StatusCode)
	}
	if len(prov) == 0 || prov[len(prov)-1].StatusCode != 180 {
		t.Errorf("provisional responses %v, want a 180", prov)
	}
	// One line for the operator, written before the answer went out.
	if log := f.logBuf.String(); !strings.Contains(log, `level=INFO msg="proxy: invite settled" call_id=`+inv.CallID()+" status=200 from=sip:alice@") {
		t.Errorf("no info line with the call's outcome in the log:\n%s", log)
	}

	got := bob.waitRequest(sip.MethodInvite)
	if want := bob.contact(); got.URI.String() != want {
		t.Errorf("Request-URI at bob %q, want %q", got.URI.String(), want)
	}
	if got.Has("Proxy-Authorization") {
		t.Error("credentials for the proxy's realm were forwarded")
	}
	if mf, _ := got.MaxForwards(); mf != 69 {
		t.Errorf("Max-Forwards %d, want 69", mf)
	}
	rr, err := got.RecordRoutes()
	if err != nil || len(rr) != 1 {
		t.Fatalf("Record-Route %v (%v), want one entry", got.Values("Record-Route"), err)
	}
	if u := rr[0].URI; u.Host != "192.0.2.10" || u.Port != 5060 || !u.Params.Has("lr") || u.User != "" {
		t.Errorf("Record-Route %s", u.String())
	}
	if v, _ := got.TopVia(); !strings.HasPrefix(v.Branch(), branchPrefix) || v.Host != "192.0.2.10" {
		t.Errorf("top Via %s", v.String())
	}

	d := uacDialog(t, inv, res)
	ack, err := d.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	alice.sendStateless(ack)
	gotAck := bob.waitRequest(sip.MethodAck)
	if gotAck.URI.String() != bob.contact() || gotAck.Has("Route") {
		t.Errorf("ACK at bob: %s with Route %q", gotAck.URI.String(), gotAck.Values("Route"))
	}

	bye, err := d.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := alice.final(alice.send(bye)); res.StatusCode != 200 {
		t.Errorf("BYE: got %d, want 200", res.StatusCode)
	}
	bob.waitRequest(sip.MethodBye)
}

// settled lets the transactions' timers run out (Timers D, I, J, K, L
// and M) until the proxy has no request in hand: every handler has
// returned and every server transaction has ended. A transaction arms its
// timer just after it delivers a response, so the clock is advanced again
// until then.
func (f *fixture) settled() {
	f.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		f.clk.Advance(64*transaction.DefaultT1 + transaction.DefaultT4)
		if f.layer.Stats().Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("proxy still busy: %+v", f.layer.Stats())
		}
		runtime.Gosched()
	}
}

// The checks of §16.3 and the policy answer before any forwarding.
func TestRejections(t *testing.T) {
	tests := []struct {
		name   string
		method string
		ruri   string
		edit   func(*sip.Request)
		code   int
		check  func(t *testing.T, res *sip.Response)
	}{
		{name: "max-forwards exhausted", method: sip.MethodInvite, ruri: "sip:bob@" + testDomain,
			edit: func(r *sip.Request) { r.Set("Max-Forwards", "0") }, code: 483},
		{name: "options to the gateway with max-forwards 0", method: sip.MethodOptions, ruri: "sip:" + testDomain,
			edit: func(r *sip.Request) { r.Set("Max-Forwards", "0") }, code: 200,
			check: func(t *testing.T, res *sip.Response) {
				if !res.HasToken("Allow", "INVITE") || res.Get("Accept") == "" || res.Get("Supported") == "" {
					t.Errorf("OPTIONS answer lacks Allow, Accept or Supported:\n%s", res)
				}
			}},
		{name: "options to the gateway", method: sip.MethodOptions, ruri: "sip:192.0.2.10:5060", code: 200},
		{name: "proxy-require", method: sip.MethodInvite, ruri: "sip:bob@" + testDomain,
			edit: func(r *sip.Request) { r.Set("Proxy-Require", "foo, bar") }, code: 420,
			check: func(t *testing.T, res *sip.Response) {
				if got := res.Tokens("Unsupported"); strings.Join(got, ",") != "foo,bar" {
					t.Errorf("Unsupported %q, want foo, bar", got)
				}
			}},
		{name: "unknown scheme", method: sip.MethodInvite, ruri: "nobodyKnowsThisScheme:totallyopaque", code: 416},
		{name: "tel without a router", method: sip.MethodInvite, ruri: "tel:+15551234567", code: 416},
		{name: "relay to a foreign domain", method: sip.MethodInvite, ruri: "sip:dave@" + otherDomain, code: 403},
		{name: "relay by a pre-loaded route", method: sip.MethodMessage, ruri: "sip:bob@" + testDomain,
			edit: func(r *sip.Request) { r.Set("Route", "<sip:198.51.100.7;lr>") }, code: 403},
		{name: "in-dialog request with a forged route", method: sip.MethodInvite, ruri: "sip:+1900555@198.51.100.7",
			edit: func(r *sip.Request) {
				r.Set("To", "<sip:+1900555@198.51.100.7>;tag=abc")
				r.Set("Route", "<sip:192.0.2.10;lr;sbdlg=AAAAAAAAAAAA>")
			}, code: 403},
		{name: "known user not registered", method: sip.MethodInvite, ruri: "sip:carol@" + testDomain, code: 480},
		{name: "unknown user, to a stranger", method: sip.MethodInvite, ruri: "sip:nobody@" + testDomain, code: 480},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
			req := dave.request(tt.method, tt.ruri)
			if tt.edit != nil {
				tt.edit(req)
			}
			res, _ := dave.final(dave.send(req))
			if res.StatusCode != tt.code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if res.To().Tag() == "" {
				t.Error("response without To tag")
			}
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
}

// Requests of any method pass through to a registered user, unknown ones
// too (a proxy does not answer 501).
func TestPassThrough(t *testing.T) {
	for _, method := range []string{sip.MethodMessage, sip.MethodOptions, "FOOBAR", sip.MethodInfo} {
		t.Run(method, func(t *testing.T) {
			f := newFixture(t, nil)
			dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
			bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
			bob.register(1000)
			req := dave.request(method, "sip:bob@"+testDomain)
			req.SetBody([]byte("hello"), "text/plain")
			if res, _ := dave.final(dave.send(req)); res.StatusCode != 200 {
				t.Fatalf("got %d, want 200", res.StatusCode)
			}
			if got := bob.waitRequest(method); string(got.Body) != "hello" {
				t.Errorf("body %q", got.Body)
			}
		})
	}
}

// MESSAGE (RFC 3428) between two registered local users: authenticated,
// delivered, answered.
func TestMessageBetweenUsers(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(202))
	bob.register(1000)
	req := alice.request(sip.MethodMessage, "sip:bob@"+testDomain)
	req.SetBody([]byte("lunch?"), "text/plain")
	if _, res := alice.do(req); res.StatusCode != 202 {
		t.Fatalf("MESSAGE: got %d, want 202", res.StatusCode)
	}
	got := bob.waitRequest(sip.MethodMessage)
	if string(got.Body) != "lunch?" || got.ContentType() != "text/plain" || got.Has("Proxy-Authorization") {
		t.Errorf("MESSAGE at bob:\n%s", got)
	}
}

// SUBSCRIBE (RFC 6665) is record-routed like INVITE, and the NOTIFY the
// notifier sends in the dialog follows the route back without a challenge,
// although its From names a local user.
func TestSubscribeNotify(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))
	bob := f.newUA("bob", testDomain, mustAddr(sip.TCP, "192.0.2.22:5070"), respond(200))
	bob.register(1000)
	alice.register(1000)

	sub := alice.request(sip.MethodSubscribe, "sip:bob@"+testDomain)
	sub.Set("Event", "presence")
	sub.Set("Expires", "600")
	sub, res := alice.do(sub)
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: got %d", res.StatusCode)
	}
	atBob := bob.waitRequest(sip.MethodSubscribe)
	d, err := dialog.NewUAS(atBob, bob.response(atBob, 200))
	if err != nil {
		t.Fatal(err)
	}
	notify, err := d.NewRequest(sip.MethodNotify)
	if err != nil {
		t.Fatal(err)
	}
	notify.Set("Event", "presence")
	notify.Set("Subscription-State", "active;expires=600")
	if res, _ := bob.final(bob.send(notify)); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: got %d, want 200", res.StatusCode)
	}
	got := alice.waitRequest(sip.MethodNotify)
	if got.CallID() != sub.CallID() || got.Has("Route") {
		t.Errorf("NOTIFY at alice:\n%s", got)
	}
}

// Authentication: challenges, wrong passwords and the throttle, stale
// nonces, a From that is not the authenticated user, trusted trunks.
func TestAuthentication(t *testing.T) {
	t.Run("wrong password then throttled", func(t *testing.T) {
		th := &testThrottle{max: 2}
		f := newFixture(t, func(o *Options) { o.Throttle = th })
		alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
		alice.client.Password = "wrong"
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		bob.register(1000)
		req := alice.request(sip.MethodMessage, "sip:bob@"+testDomain)
		for i, want := range []int{407, 407, 403} {
			res, _ := alice.final(alice.send(req))
			if res.StatusCode != 407 {
				t.Fatalf("attempt %d: unauthenticated got %d", i, res.StatusCode)
			}
			req = alice.authorize(req, res)
			res, _ = alice.final(alice.send(req))
			if res.StatusCode != want {
				t.Fatalf("attempt %d: got %d, want %d", i, res.StatusCode, want)
			}
			if want == 403 && res.Get("Retry-After") == "" {
				t.Error("403 of the throttle without Retry-After")
			}
			req = req.Clone()
			req.PopVia()
			req.Del("Proxy-Authorization")
		}
		if th.failures() != 2 {
			t.Errorf("throttle saw %d failures, want 2", th.failures())
		}
		if f.sent("proxy", "bob", isRequest(sip.MethodMessage)) {
			t.Error("a request with a wrong password was forwarded")
		}
	})
	t.Run("stale nonce", func(t *testing.T) {
		f := newFixture(t, nil)
		alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		bob.register(1000)
		req := alice.request(sip.MethodMessage, "sip:bob@"+testDomain)
		res, _ := alice.final(alice.send(req))
		req = alice.authorize(req, res)
		f.clk.Advance(digest.DefaultNonceTTL + time.Second)
		res, _ = alice.final(alice.send(req))
		if res.StatusCode != 407 || !strings.Contains(res.Get("Proxy-Authenticate"), "stale=true") {
			t.Fatalf("old nonce: got %d %q, want 407 with stale=true", res.StatusCode, res.Values("Proxy-Authenticate"))
		}
	})
	t.Run("from is another user", func(t *testing.T) {
		f := newFixture(t, nil)
		alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
		alice.client = digest.Client{Username: "carol", Password: f.users["carol"]}
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		bob.register(1000)
		if _, res := alice.do(alice.request(sip.MethodInvite, "sip:bob@"+testDomain)); res.StatusCode != 403 {
			t.Fatalf("got %d, want 403", res.StatusCode)
		}
	})
	t.Run("authenticated user reaches another domain", func(t *testing.T) {
		f := newFixture(t, nil)
		alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
		far := f.newUA("far", otherDomain, mustAddr(sip.UDP, "198.51.100.7:5060"), respond(200))
		_, res := alice.do(alice.request(sip.MethodMessage, "sip:far@198.51.100.7"))
		if res.StatusCode != 200 {
			t.Fatalf("got %d, want 200", res.StatusCode)
		}
		far.waitRequest(sip.MethodMessage)
	})
	t.Run("local only", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.LocalOnly = true })
		alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
		f.newUA("far", otherDomain, mustAddr(sip.UDP, "198.51.100.7:5060"), respond(200))
		if _, res := alice.do(alice.request(sip.MethodMessage, "sip:far@198.51.100.7")); res.StatusCode != 403 {
			t.Fatalf("got %d, want 403", res.StatusCode)
		}
	})
	t.Run("authenticate all", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.AuthenticateAll = true })
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		bob.register(1000)
		if res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain))); res.StatusCode != 407 {
			t.Fatalf("got %d, want 407", res.StatusCode)
		}
	})
	t.Run("trusted trunk", func(t *testing.T) {
		trunkAddr := mustAddr(sip.UDP, "203.0.113.5:5060")
		var asked []Caller
		var mu sync.Mutex
		f := newFixture(t, func(o *Options) {
			o.Trusted = trustedFunc(func(src sip.Addr) (string, bool) {
				return "carrier", src.AddrPort == trunkAddr.AddrPort
			})
			o.Router = RouterFunc(func(_ context.Context, req *sip.Request, c Caller) ([]Target, bool) {
				mu.Lock()
				asked = append(asked, c)
				mu.Unlock()
				if c.Trunk == "" || req.URI.User != "+15550100" {
					return nil, false
				}
				// DID routing: the number rings bob, wherever he is.
				return []Target{{URI: mustURI("sip:bob@" + testDomain)}}, true
			})
		})
		trunk := f.newUA("trunk", testDomain, trunkAddr, nil) // claims a local From
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		bob.register(1000)
		if res, _ := trunk.final(trunk.send(trunk.request(sip.MethodInvite, "sip:+15550100@"+testDomain))); res.StatusCode != 200 {
			t.Fatalf("DID call: got %d, want 200", res.StatusCode)
		}
		if got := bob.waitRequest(sip.MethodInvite); got.URI.String() != bob.contact() {
			t.Errorf("DID call reached bob at %s", got.URI.String())
		}
		if res, _ := trunk.final(trunk.send(trunk.request(sip.MethodInvite, "sip:dave@"+otherDomain))); res.StatusCode != 403 {
			t.Fatalf("trunk relaying out: got %d, want 403", res.StatusCode)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(asked) == 0 || asked[0].Trunk != "carrier" || asked[0].Source.AddrPort != trunkAddr.AddrPort {
			t.Errorf("router saw callers %+v", asked)
		}
	})
}

type trustedFunc func(sip.Addr) (string, bool)

func (f trustedFunc) Trusted(a sip.Addr) (string, bool) { return f(a) }

// testThrottle blocks a source after max failures.
type testThrottle struct {
	mu  sync.Mutex
	max int
	n   int
}

func (th *testThrottle) Allow(netip.Addr, string) (time.Duration, bool) {
	th.mu.Lock()
	defer th.mu.Unlock()
	return 90 * time.Second, th.n < th.max
}

func (th *testThrottle) Failure(netip.Addr, string) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.n++
	return th.n >= th.max
}

func (th *testThrottle) failures() int {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.n
}

func mustURI(s string) sip.URI {
	u, err := sip.ParseURI(s)
	if err != nil {
		panic(err)
	}
	return u
}

// A request that comes back unchanged loops (482); one that comes back
// with another Request-URI spirals and is served. Bob's contact is the
// proxy itself: the first pass retargets (spiral), the second forwards
// the same request to the same place, and the third sees the loop.
func TestLoopDetection(t *testing.T) {
	f := newFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@192.0.2.10:5060"), Q: 1000})
	res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
	if res.StatusCode != 482 {
		t.Fatalf("got %d, want 482", res.StatusCode)
	}
	passes := 0
	for _, d := range f.net.Log.All() {
		if d.To == "proxy" && label(d.Message()) == sip.MethodInvite {
			passes++
		}
	}
	if passes != 3 {
		t.Errorf("the INVITE reached the proxy %d times, want 3", passes)
	}
}

// Contacts of equal q ring in parallel; the first 200 wins, the other
// branch is canceled (with a Reason) and its 487 goes no further.
func TestParallelFork(t *testing.T) {
	f := newFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	release := make(chan struct{})
	bob1 := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), ringUntil(release, 200))
	bob2 := f.newUA("bob", testDomain, mustAddr(sip.TCP, "192.0.2.23:5060"), ringUntil(nil, 200))
	bob1.register(1000)
	bob2.register(1000)

	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	close(release)
	if res, _ := dave.final(ct); res.StatusCode != 200 {
		t.Fatalf("got %d, want 200", res.StatusCode)
	}
	cancel := f.netLog("proxy", "bob", isRequest(sip.MethodCancel)).(*sip.Request)
	if !strings.Contains(cancel.Get("Reason"), "cause=200") {
		t.Errorf("CANCEL Reason %q", cancel.Get("Reason"))
	}
	if cancel.Source.Transport != sip.TCP {
		t.Errorf("CANCEL went to the wrong branch")
	}
	f.netLog("bob", "proxy", isResponse(487, sip.MethodInvite))
	f.settled()
	if f.sent("proxy", "dave", isResponse(487, sip.MethodInvite)) {
		t.Error("the 487 of the canceled branch reached the caller")
	}
}

// Groups of decreasing q are tried in turn: the second group is only tried
// once the first has failed.
func TestSequentialFork(t *testing.T) {
	f := newFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	first := f.newUA("first", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(486))
	second := f.newUA("second", testDomain, mustAddr(sip.UDP, "192.0.2.23:5060"), respond(180, 200))
	for _, r := range []struct {
		u *ua
		q int
	}{{second, 500}, {first, 1000}} {
		uri := mustURI(r.u.contact())
		f.loc.add("sip:bob@"+testDomain, Target{URI: uri, Q: r.q})
	}
	res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
	if res.StatusCode != 200 {
		t.Fatalf("got %d, want 200", res.StatusCode)
	}
	busy, invite := -1, -1
	for i, d := range f.net.Log.All() {
		switch {
		case busy < 0 && d.From == "first" && label(d.Message()) == "486 INVITE":
			busy = i
		case invite < 0 && d.To == "second" && label(d.Message()) == sip.MethodInvite:
			invite = i
		}
	}
	if busy < 0 || invite < busy {
		t.Errorf("q=0.5 was tried at %d, before q=1 answered 486 at %d", invite, busy)
	}
}

// The best final response of several branches (§16.7 steps 6 and 7).
func TestBestResponse(t *testing.T) {
	challenge := func(code int, name, realm string) behaviour {
		return func(u *ua, tx *transaction.ServerTx, req *sip.Request) {
			res := u.response(req, code)
			res.Add(name, `Digest realm="`+realm+`", nonce="n1", qop="auth"`)
			_ = tx.Respond(res)
		}
	}
	tests := []struct {
		name     string
		branches []behaviour
		code     int
		check    func(t *testing.T, f *fixture, res *sip.Response)
	}{
		{name: "486 beats 404", branches: []behaviour{respond(404), respond(486)}, code: 486},
		{name: "4xx beats 5xx", branches: []behaviour{respond(500), respond(404)}, code: 404},
		{name: "3xx beats 4xx", branches: []behaviour{respond(486), respond(302)}, code: 302},
		{name: "503 becomes 500", branches: []behaviour{respond(503)}, code: 500},
		{name: "6xx ends forking", branches: []behaviour{respond(603), ringUntil(nil, 200)}, code: 603,
			check: func(t *testing.T, f *fixture, _ *sip.Response) {
				f.netLog("proxy", "b1", isRequest(sip.MethodCancel))
			}},
		{name: "challenges merged", branches: []behaviour{
			challenge(401, "WWW-Authenticate", "one.test"),
			challenge(407, "Proxy-Authenticate", "two.test"),
			challenge(407, "Proxy-Authenticate", "three.test"),
		}, code: 407, check: func(t *testing.T, _ *fixture, res *sip.Response) {
			www, pa := res.Values("WWW-Authenticate"), res.Values("Proxy-Authenticate")
			if len(www) != 1 || len(pa) != 2 || !strings.Contains(www[0], "one.test") {
				t.Errorf("WWW-Authenticate %q, Proxy-Authenticate %q", www, pa)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
			for i, b := range tt.branches {
				u := f.newUA("b"+strconv.Itoa(i), testDomain, mustAddr(sip.UDP, "192.0.2."+strconv.Itoa(40+i)+":5060"), b)
				f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI(u.contact()), Q: 1000})
			}
			res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
			if res.StatusCode != tt.code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if v, _ := res.TopVia(); v.Host != "192.0.2.31" {
				t.Errorf("response's top Via %s: the proxy's was not removed", v.String())
			}
			if tt.check != nil {
				tt.check(t, f, res)
			}
		})
	}
}

// A CANCEL from the caller cancels every branch, and the caller gets 487.
func TestCancelPropagates(t *testing.T) {
	f := newFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	for i := range 3 {
		u := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2."+strconv.Itoa(22+i)+":5060"), ringUntil(nil, 200))
		u.register(1000)
	}
	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	for range 3 {
		f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	}
	// Let the caller see a provisional response, so that it may cancel.
	for res := range ct.Responses() {
		if res.StatusCode == 180 {
			break
		}
	}
	if err := ct.Cancel(); err != nil {
		t.Fatal(err)
	}
	if res, _ := dave.final(ct); res.StatusCode != 487 {
		t.Fatalf("got %d, want 487", res.StatusCode)
	}
	for range 3 {
		f.netLog("proxy", "bob", isRequest(sip.MethodCancel))
		f.netLog("bob", "proxy", isResponse(487, sip.MethodInvite))
	}
	f.settled()
}

// Timer C (§16.8): a branch that rings too long is canceled and the caller
// gets 408; a branch that never answers at all counts as a 408.
func TestTimerC(t *testing.T) {
	t.Run("ringing", func(t *testing.T) {
		f := newFixture(t, nil)
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), ringUntil(nil, 200))
		bob.register(1000)
		ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
		for res := range ct.Responses() {
			if res.StatusCode == 180 {
				break
			}
		}
		f.clk.Advance(DefaultTimerC - time.Second)
		if f.sent("proxy", "bob", isRequest(sip.MethodCancel)) {
			t.Fatal("canceled before Timer C")
		}
		f.clk.Advance(time.Second)
		f.netLog("proxy", "bob", isRequest(sip.MethodCancel))
		if res, _ := dave.final(ct); res.StatusCode != 408 {
			t.Fatalf("got %d, want 408", res.StatusCode)
		}
		f.settled()
	})
	t.Run("silent", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.TimerC = 10 * time.Second })
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		f.uaConfig.TryingDelay = time.Hour // bob sends not even 100 Trying
		bob := f.newUA("bob", testDomain, mustAddr(sip.TCP, "192.0.2.22:5060"), silent)
		bob.register(1000)
		ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
		bob.waitRequest(sip.MethodInvite)
		f.clk.Advance(10 * time.Second)
		res, _ := dave.final(ct)
		if res.StatusCode != 408 {
			t.Fatalf("got %d, want 408", res.StatusCode)
		}
		if f.sent("proxy", "bob", isRequest(sip.MethodCancel)) {
			t.Error("CANCEL sent to a branch that never answered")
		}
	})
}

// A browser over WebSocket calls a phone over UDP: the phone gets one
// Record-Route entry, facing it, with the browser's flow token; the
// browser gets that entry rewritten in the answer, facing it on the
// WebSocket endpoint. The phone's BYE finds the browser's connection
// through the token. And the other way round: the phone calls the browser,
// which gets the entry facing it, and the phone the browser's token.
func TestRecordRouteFacesEachSide(t *testing.T) {
	t.Run("ws to udp", func(t *testing.T) {
		f := newFixture(t, nil)
		alice := f.newWSUA("alice", testDomain, "198.51.100.20:51000", respond(200))
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
		bob.register(1000)
		inv, res := alice.do(alice.request(sip.MethodInvite, "sip:bob@"+testDomain))
		if res.StatusCode != 200 {
			t.Fatalf("INVITE: got %d", res.StatusCode)
		}
		atBob := bob.waitRequest(sip.MethodInvite)
		rr, _ := atBob.RecordRoutes()
		if len(rr) != 1 {
			t.Fatalf("Record-Route at the phone %q, want one entry", atBob.Values("Record-Route"))
		}
		if u := rr[0].URI; u.Port != 5060 || u.User == "" || u.Params.Has("transport") {
			t.Errorf("entry facing the phone: %s", u.String())
		}
		if rr, _ := res.RecordRoutes(); len(rr) != 1 || rr[0].URI.Port != 8080 || rr[0].URI.User != "" || !rr[0].URI.Params.Has("transport") {
			t.Errorf("Record-Route at the browser %q, want one entry facing it", res.Values("Record-Route"))
		}
		d := uacDialog(t, inv, res)
		ack, _ := d.NewAck(inv.CSeq().Seq)
		alice.sendStateless(ack)
		bob.waitRequest(sip.MethodAck)

		ds, err := dialog.NewUAS(atBob, bob.response(atBob, 200))
		if err != nil {
			t.Fatal(err)
		}
		bye, _ := ds.NewRequest(sip.MethodBye)
		if res, _ := bob.final(bob.send(bye)); res.StatusCode != 200 {
			t.Fatalf("BYE from the phone: got %d, want 200", res.StatusCode)
		}
		got := alice.waitRequest(sip.MethodBye)
		if got.Source.Flow != alice.toward.Flow {
			t.Errorf("BYE reached the browser over flow %d, want %d", got.Source.Flow, alice.toward.Flow)
		}
	})
	t.Run("udp to ws", func(t *testing.T) {
		f := newFixture(t, nil)
		alice := f.newWSUA("alice", testDomain, "198.51.100.20:51000", respond(180, 200))
		alice.register(1000)
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		inv, res := bob.do(bob.request(sip.MethodInvite, "sip:alice@"+testDomain))
		if res.StatusCode != 200 {
			t.Fatalf("INVITE: got %d", res.StatusCode)
		}
		atAlice := alice.waitRequest(sip.MethodInvite)
		if atAlice.URI.Host != "alice-df7jal23.invalid" {
			t.Errorf("Request-URI at the browser %s", atAlice.URI.String())
		}
		if rr, _ := atAlice.RecordRoutes(); len(rr) != 1 || rr[0].URI.Port != 8080 || rr[0].URI.User != "" {
			t.Errorf("Record-Route at the browser %q", atAlice.Values("Record-Route"))
		}
		if rr, _ := res.RecordRoutes(); len(rr) != 1 || rr[0].URI.Port != 5060 || rr[0].URI.User == "" {
			t.Errorf("Record-Route at the phone %q, want one entry with the browser's token", res.Values("Record-Route"))
		}
		d := uacDialog(t, inv, res)
		ack, _ := d.NewAck(inv.CSeq().Seq)
		bob.sendStateless(ack)
		alice.waitRequest(sip.MethodAck)
		ds, err := dialog.NewUAS(atAlice, alice.response(atAlice, 200))
		if err != nil {
			t.Fatal(err)
		}
		bye, _ := ds.NewRequest(sip.MethodBye)
		if res, _ := alice.final(alice.send(bye)); res.StatusCode != 200 {
			t.Fatalf("BYE from the browser: got %d, want 200", res.StatusCode)
		}
		bob.waitRequest(sip.MethodBye)
	})
}

// A 2xx retransmitted after the proxy's transactions ended is forwarded
// statelessly by its Via (§16.11); so is one to a browser, over its flow.
func TestStray2xx(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "ws"}[ws], func(t *testing.T) {
			f := newFixture(t, nil)
			var caller *ua
			if ws {
				caller = f.newWSUA("dave", otherDomain, "198.51.100.20:51000", nil)
			} else {
				caller = f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
			}
			bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
			bob.register(1000)
			ct := caller.send(caller.request(sip.MethodInvite, "sip:bob@"+testDomain))
			if res, _ := caller.final(ct); res.StatusCode != 200 {
				t.Fatalf("got %d", res.StatusCode)
			}
			// State waits for the step that delivered the 200, which arms
			// Timer M, to finish.
			if s := ct.State(); s != transaction.StateAccepted {
				t.Fatalf("caller's transaction %v", s)
			}
			atBob := bob.waitRequest(sip.MethodInvite)
			f.settled()
			<-ct.Done()
			if err := bob.node.Send(context.Background(), bob.response(atBob, 200), proxyUDP); err != nil {
				t.Fatal(err)
			}
			got := caller.strays.wait(t, "the retransmitted 200", func(r *sip.Response) bool { return r.StatusCode == 200 })
			if vs := got.Via(); len(vs) != 1 || got.CallID() != atBob.CallID() {
				t.Errorf("stray 200 at the caller:\n%s", got)
			}
		})
	}
}

// An answered call holds nothing of the proxy's but its lingering server
// transaction: the handler returns once the 2xx went up (no goroutine
// waits for Timer M), the client transaction ends, and a 2xx the callee
// retransmits meanwhile is forwarded all the same, statelessly.
func TestAnsweredCallReleased(t *testing.T) {
	f := newFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
	bob.register(1000)
	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	if res, _ := dave.final(ct); res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	atBob := bob.waitRequest(sip.MethodInvite)
	// The clock stands still: nothing here waits for a timer.
	deadline := time.Now().Add(waitLimit)
	for st := f.layer.Stats(); st.Handlers != 0 || st.ClientTransactions != 0; st = f.layer.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("proxy after the 200: %+v, want no handler and no client transaction", st)
		}
		runtime.Gosched()
	}
	if st := f.layer.Stats(); st.ServerTransactions != 1 {
		t.Fatalf("proxy: %+v, want the INVITE's server transaction kept for Timer L", st)
	}
	if err := bob.node.Send(context.Background(), bob.response(atBob, 200), proxyUDP); err != nil {
		t.Fatal(err)
	}
	// The caller's transaction is in Accepted still: it delivers the 2xx.
	select {
	case got := <-ct.Responses():
		if got.StatusCode != 200 || len(got.Via()) != 1 || got.CallID() != atBob.CallID() || len(got.Values("Record-Route")) == 0 {
			t.Errorf("retransmitted 200 at the caller:\n%s", got)
		}
	case <-time.After(waitLimit):
		t.Fatal("the retransmitted 200 did not reach the caller")
	}
}

// Redirect mode answers 302 with the contacts, their q and expiry.
func TestRedirect(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RedirectDomains = []string{testDomain} })
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@192.0.2.23:5060"), Q: 500, Expires: epoch.Add(time.Hour)})
	f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@192.0.2.22:5060"), Q: 1000, Expires: epoch.Add(90 * time.Second)})
	res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
	if res.StatusCode != 302 {
		t.Fatalf("got %d, want 302", res.StatusCode)
	}
	want := []string{"<sip:bob@192.0.2.22:5060>;q=1;expires=90", "<sip:bob@192.0.2.23:5060>;q=0.5;expires=3600"}
	if got := res.Values("Contact"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Contact %q, want %q", got, want)
	}
	if f.sent("proxy", "", isRequest(sip.MethodInvite)) {
		t.Error("redirect mode forwarded the request")
	}
}

// A target behind a Path (RFC 3327) gets the Path as Route and is reached
// through it; failover moves to the next address when the first fails.
func TestPathAndFailover(t *testing.T) {
	t.Run("path", func(t *testing.T) {
		f := newFixture(t, nil)
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		edge := f.newUA("edge", otherDomain, mustAddr(sip.UDP, "192.0.2.50:5060"), respond(200))
		f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@10.0.0.7:5060"), Q: 1000,
			Path: []string{"<sip:192.0.2.50:5060;lr>"}})
		if res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain))); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		got := edge.waitRequest(sip.MethodMessage)
		if got.URI.String() != "sip:bob@10.0.0.7:5060" || got.Get("Route") != "<sip:192.0.2.50:5060;lr>" {
			t.Errorf("at the edge proxy: %s, Route %q", got.URI.String(), got.Values("Route"))
		}
	})
	t.Run("flow failed", func(t *testing.T) {
		f := newFixture(t, nil)
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		gone := sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.20:51000"), Flow: 999}
		f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@x.invalid;transport=ws"), Q: 1000, Dest: gone})
		if res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))); res.StatusCode != 430 {
			t.Fatalf("got %d, want 430", res.StatusCode)
		}
	})
	t.Run("failover", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.Resolver = locate.ResolverFunc(func(_ context.Context, u sip.URI) ([]sip.Addr, error) {
				return []sip.Addr{mustAddr(sip.UDP, "192.0.2.99:5060"), mustAddr(sip.UDP, "192.0.2.22:5060")}, nil
			})
		})
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
		f.loc.add("sip:bob@"+testDomain, Target{URI: mustURI("sip:bob@bob.example"), Q: 1000})
		if res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain))); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		bob.waitRequest(sip.MethodMessage)
	})
}

func TestNewOptions(t *testing.T) {
	layer := transaction.New(context.Background(), nil, nil, transaction.Config{})
	defer layer.Close()
	sender := &node{}
	for _, o := range []Options{
		{Sender: sender, Identity: testIdentity(testDomain)},
		{Transactions: layer, Identity: testIdentity(testDomain)},
		{Transactions: layer, Sender: sender},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): %v, want ErrInvalidOptions", o, err)
		}
	}
}

func TestFormatQ(t *testing.T) {
	for q, want := range map[int]string{1000: "1", 0: "0", 500: "0.5", 125: "0.125", 10: "0.01", 1200: "1", -3: "0"} {
		if got := formatQ(q); got != want {
			t.Errorf("formatQ(%d) = %q, want %q", q, got, want)
		}
	}
}
