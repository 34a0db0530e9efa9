package registrar_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

const aliceAOR = "sip:alice@example.com"

// TestRegisterFlow walks a phone through its life: challenge, register,
// refresh, query, unregister.
func TestRegisterFlow(t *testing.T) {
	for _, alg := range []string{"SHA-256", "MD5"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t)
			contact := "<sip:alice@192.0.2.10:5060>"
			first := msg{callID: "flow-1", cseq: 1, contacts: []string{contact}}

			// REGISTER → 401 with SHA-256 then MD5 challenges.
			req := parse(t, first.bytes())
			req.Source = udpSource
			res := e.serve(req)
			want(t, res, 401, "Unauthorized")
			chs := challenges(t, res)
			if len(chs) != 2 || chs[0].Algorithm != "SHA-256" || chs[1].Algorithm != "MD5" {
				t.Fatalf("challenges %+v, want SHA-256 then MD5", chs)
			}
			for _, ch := range chs {
				if ch.Realm != domain || !slices.Equal(ch.QOP, []string{"auth"}) || ch.Stale {
					t.Errorf("challenge %+v", ch)
				}
			}
			if len(e.bindings(aliceAOR)) != 0 {
				t.Fatal("a challenged REGISTER made a binding")
			}

			// REGISTER with Authorization → 200 listing the binding.
			ch := chs[0]
			if alg == "MD5" {
				ch = chs[1]
			}
			cl := &digest.Client{Username: "alice", Password: "secret"}
			second := first
			second.cseq = 2
			req = parse(t, second.bytes())
			req.Source = udpSource
			cred, err := cl.Authorize(ch, "REGISTER", req.URI.String())
			if err != nil {
				t.Fatal(err)
			}
			req.Add("Authorization", cred.String())
			res = e.serve(req)
			want(t, res, 200, "OK")
			wantListed(t, res, "sip:alice@192.0.2.10:5060 3600")
			if d := res.Get("Date"); d != "Wed, 06 May 2026 07:08:09 GMT" {
				t.Errorf("Date: %q", d)
			}
			if res.Has("Require") || res.Has("Flow-Timer") {
				t.Errorf("outbound headers without outbound:\n%s", res)
			}
			bs := e.bindings(aliceAOR)
			if len(bs) != 1 {
				t.Fatalf("%d bindings", len(bs))
			}
			b := bs[0]
			if b.CallID != "flow-1" || b.CSeq != 2 || b.Q != 1000 || b.Source != udpSource ||
				!b.Expires.Equal(start.Add(time.Hour)) || !b.Received.Equal(start) || b.NeedsFlow() {
				t.Errorf("binding %+v", b)
			}

			// Refresh with a shorter expiry, reusing the nonce (nc=2).
			e.clock.Advance(2 * time.Minute)
			third := first
			third.cseq, third.expires = 3, "600"
			req = parse(t, third.bytes())
			req.Source = udpSource
			cred, _ = cl.Authorize(ch, "REGISTER", req.URI.String())
			req.Add("Authorization", cred.String())
			res = e.serve(req)
			want(t, res, 200, "OK")
			wantListed(t, res, "sip:alice@192.0.2.10:5060 600")

			// Query: no Contact lists what is there, time having passed.
			e.clock.Advance(100 * time.Second)
			query := msg{callID: "flow-1", cseq: 4}
			req = parse(t, query.bytes())
			cred, _ = cl.Authorize(ch, "REGISTER", req.URI.String())
			req.Add("Authorization", cred.String())
			res = e.serve(req)
			want(t, res, 200, "OK")
			wantListed(t, res, "sip:alice@192.0.2.10:5060 500")

			// Unregister with expires=0.
			gone := msg{callID: "flow-1", cseq: 5, contacts: []string{contact + ";expires=0"}}
			req = parse(t, gone.bytes())
			cred, _ = cl.Authorize(ch, "REGISTER", req.URI.String())
			req.Add("Authorization", cred.String())
			res = e.serve(req)
			want(t, res, 200, "OK")
			wantListed(t, res)
			if len(e.bindings(aliceAOR)) != 0 {
				t.Error("binding survived expires=0")
			}
		})
	}
}

func TestExpires(t *testing.T) {
	tests := []struct {
		name     string
		contacts []string
		expires  string
		code     int
		reason   string
		listed   []string
	}{
		{"default", []string{"<sip:a@192.0.2.1>"}, "", 200, "", []string{"sip:a@192.0.2.1 3600"}},
		{"header", []string{"<sip:a@192.0.2.1>"}, "120", 200, "", []string{"sip:a@192.0.2.1 120"}},
		{"param beats header", []string{"<sip:a@192.0.2.1>;expires=300"}, "120", 200, "", []string{"sip:a@192.0.2.1 300"}},
		{"per contact", []string{"<sip:a@192.0.2.1>;expires=300", "<sip:b@192.0.2.1>"}, "", 200, "",
			[]string{"sip:a@192.0.2.1 300", "sip:b@192.0.2.1 3600"}},
		{"clamped", []string{"<sip:a@192.0.2.1>;expires=86400"}, "", 200, "", []string{"sip:a@192.0.2.1 3600"}},
		{"overlarge header (RFC 4475 scalar02)", []string{"<sip:a@192.0.2.1>"}, "1" + strings.Repeat("0", 100), 200, "", []string{"sip:a@192.0.2.1 3600"}},
		{"overlarge param", []string{"<sip:a@192.0.2.1>;expires=280297596632815"}, "", 200, "", []string{"sip:a@192.0.2.1 3600"}},
		{"too brief", []string{"<sip:a@192.0.2.1>;expires=30"}, "", 423, "Interval Too Brief", nil},
		{"too brief header", []string{"<sip:a@192.0.2.1>"}, "59", 423, "Interval Too Brief", nil},
		{"one too brief fails all", []string{"<sip:a@192.0.2.1>", "<sip:b@192.0.2.1>;expires=1"}, "", 423, "", nil},
		{"zero is removal, not too brief", []string{"<sip:a@192.0.2.1>;expires=0"}, "", 200, "", nil},
		{"malformed param", []string{"<sip:a@192.0.2.1>;expires=soon"}, "", 400, "Malformed Contact expires", nil},
		{"malformed header", []string{"<sip:a@192.0.2.1>"}, "-5", 400, "Malformed Expires", nil},
		{"q", []string{"<sip:a@192.0.2.1>;q=0.1", "<sip:b@192.0.2.1>;q=1.0", "<sip:c@192.0.2.1>;q=0.75"}, "", 200, "",
			[]string{"sip:b@192.0.2.1 3600", "sip:c@192.0.2.1 3600", "sip:a@192.0.2.1 3600"}},
		{"bad q", []string{"<sip:a@192.0.2.1>;q=1.5"}, "", 400, "Malformed Contact q", nil},
		{"not SIP", []string{"<mailto:alice@example.com>"}, "", 400, "Contact Is Not a SIP URI", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			res := e.ua("alice").register(msg{contacts: tt.contacts, expires: tt.expires})
			want(t, res, tt.code, tt.reason)
			switch tt.code {
			case 200:
				wantListed(t, res, tt.listed...)
			case 423:
				if res.Get("Min-Expires") != "60" {
					t.Errorf("Min-Expires %q", res.Get("Min-Expires"))
				}
				fallthrough
			default:
				if n := len(e.bindings(aliceAOR)); n != 0 {
					t.Errorf("a refused REGISTER left %d bindings", n)
				}
			}
		})
	}
}

func TestWildcard(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.1>", "<sip:b@192.0.2.1>"}}), 200, "")
	other := e.ua("alice") // another device, another Call-ID
	want(t, other.register(msg{contacts: []string{"<sip:c@192.0.2.2>"}}), 200, "")

	for _, tt := range []struct {
		m      msg
		reason string
	}{
		{msg{contacts: []string{"*"}}, "Wildcard Contact Needs Expires 0"},
		{msg{contacts: []string{"*"}, expires: "60"}, "Wildcard Contact Needs Expires 0"},
		{msg{contacts: []string{"*", "<sip:a@192.0.2.1>"}, expires: "0"}, "Wildcard Contact Not Alone"},
	} {
		want(t, phone.send(tt.m), 400, tt.reason)
	}
	if n := len(e.bindings(aliceAOR)); n != 3 {
		t.Fatalf("%d bindings after refused wildcards", n)
	}

	// Out of order: the phone's bindings were made with a higher CSeq.
	stale := msg{contacts: []string{"*"}, expires: "0", callID: phone.callID, cseq: 1}
	req := parse(t, stale.bytes())
	phone.authorize(req)
	want(t, e.serve(req), 500, "Out of Order")

	res := phone.send(msg{contacts: []string{"*"}, expires: "0"})
	want(t, res, 200, "OK")
	wantListed(t, res)
	if n := len(e.bindings(aliceAOR)); n != 0 {
		t.Errorf("%d bindings after Contact: *", n)
	}
}

func TestOutOfOrder(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.1>"}, expires: "600"}), 200, "")
	stored := phone.cseq

	for _, cseq := range []uint32{stored, stored - 1} {
		m := msg{contacts: []string{"<sip:a@192.0.2.1>"}, expires: "1200", callID: phone.callID, cseq: cseq}
		req := parse(t, m.bytes())
		phone.authorize(req)
		want(t, e.serve(req), 500, "Out of Order")
	}
	// Removal is held to the same rule.
	m := msg{contacts: []string{"<sip:a@192.0.2.1>;expires=0"}, callID: phone.callID, cseq: stored}
	req := parse(t, m.bytes())
	phone.authorize(req)
	want(t, e.serve(req), 500, "Out of Order")

	bs := e.bindings(aliceAOR)
	if len(bs) != 1 || bs[0].CSeq != stored || !bs[0].Expires.Equal(start.Add(600*time.Second)) {
		t.Fatalf("an out-of-order REGISTER changed the binding: %+v", bs)
	}
	// Another Call-ID may replace the binding whatever its CSeq.
	m = msg{contacts: []string{"<sip:a@192.0.2.1>"}, expires: "1200", callID: "another", cseq: 1}
	req = parse(t, m.bytes())
	phone.authorize(req)
	res := e.serve(req)
	want(t, res, 200, "")
	wantListed(t, res, "sip:a@192.0.2.1 1200")
}

// TestUnknownUserLooksLikeWrongPassword: an attacker must not tell the
// two apart by the response.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	e := newEnv(t)
	attempt := func(user, password string) *sip.Response {
		u := e.ua(user)
		u.client.Password = password
		u.source.AddrPort = netipAddrPort(t, "203.0.113."+string(rune('1'+len(user)%8))+":5060")
		return u.register(msg{contacts: []string{"<sip:x@192.0.2.1>"}})
	}
	wrong := attempt("alice", "not-the-password")
	unknown := attempt("mallory", "whatever")
	want(t, wrong, 401, "Unauthorized")
	want(t, unknown, 401, "Unauthorized")
	if !slices.Equal(headerNames(wrong), headerNames(unknown)) {
		t.Errorf("header sets differ:\n%v\n%v", headerNames(wrong), headerNames(unknown))
	}
	cw, cu := challenges(t, wrong), challenges(t, unknown)
	for i := range cw {
		cw[i].Nonce, cu[i].Nonce = "", ""
	}
	if !slices.EqualFunc(cw, cu, func(a, b digest.Challenge) bool {
		return a.Realm == b.Realm && a.Algorithm == b.Algorithm && a.Stale == b.Stale && slices.Equal(a.QOP, b.QOP)
	}) {
		t.Errorf("challenges differ:\n%+v\n%+v", cw, cu)
	}
}

func TestThrottle(t *testing.T) {
	e := newEnv(t, func(o *registrar.Options, _ *location.Options) {
		o.Throttle = &accounts.Throttle{MaxFailures: 3, Window: time.Minute, BlockFor: time.Minute, Clock: o.Clock}
	})
	good := e.ua("alice")
	want(t, good.send(msg{}), 401, "")
	good.challenge(e.serve(parse(t, msg{}.bytes())))

	// The good client's next REGISTER is built now and sent after the
	// block: if the blocked attempt had been verified, its nonce count
	// would have been used and this would be a replay.
	held := parse(t, msg{callID: good.callID, cseq: 10, contacts: []string{"<sip:a@192.0.2.1>"}}.bytes())
	held.Source = good.source
	good.authorize(held)

	bad := e.ua("alice")
	bad.client.Password = "guess"
	bad.challenge(e.serve(parse(t, msg{}.bytes())))
	for range 3 {
		want(t, bad.send(msg{contacts: []string{"<sip:a@192.0.2.1>"}}), 401, "")
	}
	res := e.serve(held)
	want(t, res, 403, "Too Many Failed Attempts")
	if res.Get("Retry-After") != "60" {
		t.Errorf("Retry-After %q", res.Get("Retry-After"))
	}
	// Other sources are not affected.
	other := e.ua("bob")
	other.source.AddrPort = netipAddrPort(t, "198.51.100.99:5060")
	want(t, other.register(msg{contacts: []string{"<sip:b@198.51.100.99>"}}), 200, "")

	e.clock.Advance(time.Minute)
	want(t, e.serve(held), 200, "OK")
}

func TestStaleAndReplay(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.1>"}}), 200, "")

	// Replaying an accepted Authorization: stale=true.
	m := msg{callID: phone.callID, cseq: 50, contacts: []string{"<sip:a@192.0.2.1>"}}
	req := parse(t, m.bytes())
	phone.authorize(req)
	want(t, e.serve(req), 200, "")
	phone.cseq = m.cseq
	again := parse(t, m.bytes())
	again.Add("Authorization", req.Get("Authorization"))
	res := e.serve(again)
	want(t, res, 401, "")
	if chs := challenges(t, res); !chs[0].Stale || !chs[1].Stale {
		t.Errorf("replay: challenges not stale: %+v", chs)
	}

	// The nonce grows old (digest.DefaultNonceTTL): stale=true, and the
	// new nonce works.
	e.clock.Advance(digest.DefaultNonceTTL + time.Second)
	res = phone.send(msg{contacts: []string{"<sip:a@192.0.2.1>"}})
	want(t, res, 401, "")
	if chs := challenges(t, res); !chs[0].Stale {
		t.Errorf("old nonce: challenge not stale: %+v", chs)
	}
	phone.challenge(res)
	want(t, phone.send(msg{contacts: []string{"<sip:a@192.0.2.1>"}}), 200, "")
}

func TestAuthorizationChecks(t *testing.T) {
	e := newEnv(t)
	bob := e.ua("bob")
	want(t, bob.send(msg{}), 401, "")
	bob.challenge(e.serve(parse(t, msg{}.bytes())))

	// bob's credentials for alice's AOR.
	want(t, bob.send(msg{user: "alice", contacts: []string{"<sip:a@192.0.2.1>"}}), 403, "User Does Not Match To")

	// A digest uri naming another domain.
	req := parse(t, msg{user: "bob", cseq: 9}.bytes())
	cred, _ := bob.client.Authorize(*bob.ch, "REGISTER", "sip:other.example.net")
	req.Add("Authorization", cred.String())
	want(t, e.serve(req), 400, "Authorization URI Mismatch")

	// Malformed Digest credentials.
	req = parse(t, msg{user: "bob"}.bytes())
	req.Add("Authorization", `Digest username="bob", realm="example.com"`)
	want(t, e.serve(req), 400, "Malformed Authorization")

	// Credentials for another realm only: challenged.
	req = parse(t, msg{user: "bob"}.bytes())
	cred, _ = digest.Answer(digest.Challenge{Realm: "elsewhere", Nonce: "n", QOP: []string{"auth"}}, "REGISTER", "sip:example.com", "bob", "hunter2")
	req.Add("Authorization", cred.String())
	want(t, e.serve(req), 401, "")

	// A forged nonce: a fresh challenge, not stale, and no failure counted.
	req = parse(t, msg{user: "bob"}.bytes())
	forged := *bob.ch
	forged.Nonce = strings.Repeat("A", len(forged.Nonce))
	cred, _ = bob.client.Authorize(forged, "REGISTER", "sip:example.com")
	req.Add("Authorization", cred.String())
	res := e.serve(req)
	want(t, res, 401, "")
	if challenges(t, res)[0].Stale {
		t.Error("forged nonce answered with stale=true")
	}
}

func TestRequestChecks(t *testing.T) {
	e := newEnv(t, func(o *registrar.Options, _ *location.Options) {
		o.Identity = registrar.DomainIdentity(domain, "192.0.2.53", "[2001:db8::53]", "SIP.Example.com")
	})
	tests := []struct {
		name   string
		m      msg
		code   int
		reason string
	}{
		{"other domain", msg{ruri: "sip:example.net"}, 404, "Domain Not Served"},
		{"tel Request-URI", msg{ruri: "tel:+15551234"}, 416, "Unsupported URI Scheme"},
		{"To in other domain", msg{toHost: "example.net"}, 404, "AOR Not in Domain"},
		{"required extension", msg{headers: []string{"Require: path, foo, gruu"}}, 420, "Bad Extension"},
		{"IPv4 alias", msg{ruri: "sip:192.0.2.53:5060"}, 401, ""},
		{"IPv6 alias", msg{ruri: "sip:[2001:DB8:0::53]"}, 401, ""},
		{"name alias", msg{ruri: "sip:sip.example.COM;transport=tcp"}, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.serve(parse(t, tt.m.bytes()))
			want(t, res, tt.code, tt.reason)
			if tt.code == 420 && res.Get("Unsupported") != "foo, gruu" {
				t.Errorf("Unsupported: %q", res.Get("Unsupported"))
			}
		})
	}
	// An AOR written with an alias is stored under the domain.
	res := e.ua("alice").register(msg{ruri: "sip:192.0.2.53", toHost: "SIP.EXAMPLE.COM", contacts: []string{"<sip:a@192.0.2.1>"}})
	want(t, res, 200, "")
	if n := len(e.bindings(aliceAOR)); n != 1 {
		t.Errorf("binding not stored under %s", aliceAOR)
	}
	// Not a REGISTER.
	req := parse(t, []byte("OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	res = e.serve(req)
	want(t, res, 405, "")
	if res.Get("Allow") != "REGISTER" {
		t.Errorf("Allow %q", res.Get("Allow"))
	}
}

// jssip is the Contact and headers of a JsSIP registration over WebSocket.
const instance = `"<urn:uuid:5c3f1d4e-7f1a-4e1b-9b9a-1f2e3d4c5b6a>"`

func jssip(host string) msg {
	return msg{
		contacts: []string{"<sip:k2v8q1@" + host + ";transport=ws>;+sip.ice;reg-id=1;+sip.instance=" + instance + ";expires=600"},
		headers:  []string{"Supported: path, gruu, outbound", "User-Agent: JsSIP 3.10.1"},
	}
}

func TestOutbound(t *testing.T) {
	e := newEnv(t)
	browser := e.ua("alice")
	browser.source = wsSource(1)
	res := browser.register(jssip("a1b2c3d4e5f6.invalid"))
	want(t, res, 200, "OK")
	if res.Get("Require") != "outbound" || res.Get("Supported") != "outbound" || res.Get("Flow-Timer") != "120" {
		t.Errorf("outbound headers missing:\n%s", res)
	}
	cs, _ := res.Contacts()
	if len(cs) != 1 {
		t.Fatalf("200 lists %d contacts", len(cs))
	}
	if inst, _ := cs[0].Params.Get("+sip.instance"); inst != instance {
		t.Errorf("+sip.instance echoed as %q", inst)
	}
	if rid, _ := cs[0].Params.Get("reg-id"); rid != "1" {
		t.Errorf("reg-id echoed as %q", rid)
	}
	if exp, _ := cs[0].Params.Get("expires"); exp != "600" {
		t.Errorf("expires %q", exp)
	}
	b := e.bindings(aliceAOR)[0]
	if b.RegID != 1 || b.Instance != sip.Unquote(instance) || b.Source != wsSource(1) || !b.NeedsFlow() || b.UserAgent != "JsSIP 3.10.1" {
		t.Errorf("binding %+v", b)
	}

	// The WebSocket reconnects: new flow, new .invalid host, same instance
	// and reg-id. The old flow's binding is replaced, not added to.
	browser.source = wsSource(2)
	res = browser.register(jssip("f6e5d4c3b2a1.invalid"))
	want(t, res, 200, "OK")
	wantListed(t, res, "sip:k2v8q1@f6e5d4c3b2a1.invalid;transport=ws 600")
	if removed, _ := e.loc.DeleteFlow(ctx, wsSource(1)); len(removed) != 0 {
		t.Errorf("closing the old flow removed %d bindings", len(removed))
	}
	removed, _ := e.loc.DeleteFlow(ctx, wsSource(2))
	if len(removed) != 1 || len(e.bindings(aliceAOR)) != 0 {
		t.Errorf("closing the current flow removed %d", len(removed))
	}
}

func TestOutboundRules(t *testing.T) {
	t.Run("no Supported: outbound", func(t *testing.T) {
		e := newEnv(t)
		m := jssip("x.invalid")
		m.headers = []string{"Supported: path"}
		res := e.ua("alice").register(m)
		want(t, res, 200, "")
		if res.Has("Require") {
			t.Error("Require: outbound for a registration that did not ask for outbound")
		}
		if b := e.bindings(aliceAOR)[0]; b.RegID != 0 {
			t.Errorf("reg-id kept: %+v", b)
		}
	})
	t.Run("reg-id without instance", func(t *testing.T) {
		e := newEnv(t)
		res := e.ua("alice").register(msg{contacts: []string{"<sip:a@192.0.2.1>;reg-id=1"}, headers: []string{"Supported: outbound"}})
		want(t, res, 200, "")
		if res.Has("Require") || e.bindings(aliceAOR)[0].RegID != 0 {
			t.Error("reg-id without +sip.instance was not ignored")
		}
	})
	t.Run("two flows in one request", func(t *testing.T) {
		e := newEnv(t)
		m := jssip("x.invalid")
		m.contacts = append(m.contacts, "<sip:b@x.invalid>;reg-id=2;+sip.instance="+instance)
		want(t, e.ua("alice").register(m), 400, "More Than One reg-id Contact")
	})
	t.Run("malformed reg-id", func(t *testing.T) {
		e := newEnv(t)
		m := msg{contacts: []string{"<sip:a@x.invalid>;reg-id=0;+sip.instance=" + instance}, headers: []string{"Supported: outbound"}}
		want(t, e.ua("alice").register(m), 400, "Malformed Contact reg-id")
	})
	t.Run("edge proxy without ob", func(t *testing.T) {
		e := newEnv(t)
		m := jssip("x.invalid")
		m.vias = 2
		m.headers = append(m.headers, "Path: <sip:edge.example.com;lr>")
		want(t, e.ua("alice").register(m), 439, "First Hop Lacks Outbound Support")
	})
	t.Run("edge proxy with ob", func(t *testing.T) {
		e := newEnv(t)
		m := jssip("x.invalid")
		m.vias = 2
		m.headers = append(m.headers, "Path: <sip:tok@edge.example.com;lr;ob>")
		res := e.ua("alice").register(m)
		want(t, res, 200, "")
		if res.Get("Require") != "outbound" || res.Get("Path") != "<sip:tok@edge.example.com;lr;ob>" {
			t.Errorf("outbound through an edge:\n%s", res)
		}
		if res.Has("Flow-Timer") {
			t.Error("Flow-Timer for a UDP source")
		}
	})
}

func TestPath(t *testing.T) {
	for _, supported := range []bool{true, false} {
		name := "without Supported: path"
		if supported {
			name = "with Supported: path"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			m := msg{vias: 3, contacts: []string{"<sip:a@192.0.2.1>"},
				headers: []string{"Path: <sip:p1.example.com;lr>", "Path: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>"}}
			if supported {
				m.headers = append(m.headers, "Supported: path")
			}
			res := e.ua("alice").register(m)
			want(t, res, 200, "")
			wantPath := []string{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"}
			if b := e.bindings(aliceAOR)[0]; !slices.Equal(b.Path, wantPath) {
				t.Errorf("stored Path %q", b.Path)
			}
			got := res.Values("Path")
			if supported && !slices.Equal(got, wantPath) || !supported && len(got) != 0 {
				t.Errorf("200 Path %q", got)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:short@192.0.2.1>;expires=60", "<sip:long@192.0.2.1>;expires=3600"}}), 200, "")
	e.clock.Advance(61 * time.Second)
	res := phone.send(msg{})
	want(t, res, 200, "")
	wantListed(t, res, "sip:long@192.0.2.1 3539")
	e.clock.Advance(location.DefaultSweepInterval)
	if e.loc.Len() != 1 {
		t.Errorf("%d bindings held after the sweep, want 1", e.loc.Len())
	}
}

func TestRestartKeepsRegistrations(t *testing.T) {
	e := newEnv(t)
	want(t, e.ua("alice").register(msg{contacts: []string{"<sip:a@198.51.100.4:5060>;expires=1800"}}), 200, "")
	browser := e.ua("bob")
	browser.source = wsSource(3)
	want(t, browser.register(jssip("z.invalid")), 200, "")

	e.restart()
	e.clock.Advance(5 * time.Minute)
	phone := e.ua("alice")
	res := phone.register(msg{}) // a query, with a fresh challenge
	want(t, res, 200, "")
	wantListed(t, res, "sip:a@198.51.100.4:5060 1500")
	if n := len(e.bindings("sip:bob@example.com")); n != 0 {
		t.Errorf("a WebSocket binding survived the restart (%d)", n)
	}
}

func TestTooManyBindings(t *testing.T) {
	e := newEnv(t, func(_ *registrar.Options, l *location.Options) { l.MaxBindingsPerAOR = 2 })
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.1>;expires=600", "<sip:b@192.0.2.1>"}}), 200, "")
	e.clock.Advance(100 * time.Second)
	// One refresh and one new binding: the new one is one too many, and
	// the whole request is refused (RFC 3261 §10.3 step 8: all or
	// nothing), the refresh with it.
	res := phone.send(msg{contacts: []string{"<sip:c@192.0.2.1>", "<sip:b@192.0.2.1>;expires=120"}})
	want(t, res, 503, "Too Many Registrations")
	if ra := res.Get("Retry-After"); ra != "500" {
		t.Errorf("Retry-After %q, want 500 (when the first binding expires)", ra)
	}
	res = phone.send(msg{})
	wantListed(t, res, "sip:a@192.0.2.1 500", "sip:b@192.0.2.1 3500")
	// A refresh alone is never too many.
	want(t, phone.send(msg{contacts: []string{"<sip:b@192.0.2.1>;expires=120"}}), 200, "")
}

func TestNew(t *testing.T) {
	accts := &accounts.Store{}
	loc, _ := location.Open(location.Options{})
	defer loc.Close()
	for name, o := range map[string]registrar.Options{
		"no identity":  {Accounts: accts, Location: loc},
		"no accounts":  {Identity: registrar.DomainIdentity(domain), Location: loc},
		"no location":  {Identity: registrar.DomainIdentity(domain), Accounts: accts},
		"realm":        {Identity: registrar.DomainIdentity(domain), Accounts: accts, Location: loc, Digest: &digest.Server{Realm: "other"}},
		"min over max": {Identity: registrar.DomainIdentity(domain), Accounts: accts, Location: loc, MinExpires: time.Hour, MaxExpires: time.Minute},
	} {
		if _, err := registrar.New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := registrar.New(registrar.Options{Identity: registrar.DomainIdentity(domain), Accounts: accts, Location: loc}); err != nil {
		t.Error(err)
	}
}

// TestStoreFailure: a store error is a 500, never a panic or a 200.
func TestStoreFailure(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.send(msg{}), 401, "")
	phone.challenge(e.serve(parse(t, msg{}.bytes())))
	e.loc.Close()
	res := phone.send(msg{contacts: []string{"<sip:a@192.0.2.1>"}})
	want(t, res, 500, "")
	if _, err := e.loc.Get(ctx, aliceAOR); !errors.Is(err, location.ErrClosed) {
		t.Fatal(err)
	}
}

// TestConcurrentRegisters: devices of one AOR refresh at once (for -race,
// and the per-AOR lock): each keeps its own binding, none is lost.
func TestConcurrentRegisters(t *testing.T) {
	e := newEnv(t)
	const devices, refreshes = 4, 25
	type device struct {
		client *digest.Client
		ch     digest.Challenge
	}
	var ds []device
	for range devices {
		res := e.serve(parse(t, msg{}.bytes()))
		ch, _ := digest.Select(challenges(t, res))
		ds = append(ds, device{&digest.Client{Username: "alice", Password: "secret"}, ch})
	}
	errs := make(chan error, devices)
	for i, d := range ds {
		go func() {
			errs <- func() error {
				for n := range refreshes {
					m := msg{callID: fmt.Sprintf("dev-%d", i), cseq: uint32(n + 1),
						contacts: []string{fmt.Sprintf("<sip:dev%d@192.0.2.%d>", i, i+1)}}
					parsed, err := sip.ParseMessage(m.bytes())
					if err != nil {
						return err
					}
					req := parsed.(*sip.Request)
					cred, err := d.client.Authorize(d.ch, "REGISTER", req.URI.String())
					if err != nil {
						return err
					}
					req.Add("Authorization", cred.String())
					if res := e.reg.ServeRegister(ctx, req); res.StatusCode != 200 {
						return fmt.Errorf("device %d refresh %d: %d %s", i, n, res.StatusCode, res.Reason)
					}
				}
				return nil
			}()
		}()
	}
	for range devices {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("registrations did not finish")
		}
	}
	bs := e.bindings(aliceAOR)
	if len(bs) != devices {
		t.Fatalf("%d bindings, want %d", len(bs), devices)
	}
	for _, b := range bs {
		if b.CSeq != refreshes {
			t.Errorf("binding %s at CSeq %d, want %d", b.Contact.URI.String(), b.CSeq, refreshes)
		}
	}
}

// TestMalformedPath: a header the parser left unchecked (added after
// parsing here) that fails to parse gets the parser's own 400.
func TestMalformedPath(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	phone.challenge(e.serve(parse(t, msg{}.bytes())))
	req := parse(t, msg{callID: phone.callID, contacts: []string{"<sip:a@192.0.2.1>"}}.bytes())
	req.Add("Path", "<sip:edge.example.com;lr")
	phone.authorize(req)
	want(t, e.serve(req), 400, "Malformed Path")
}

// TestDefaultAlgorithms: without Options.Algorithms the 401 carries one MD5
// challenge, the only one that sipp, JsSIP and most phones all answer.
func TestDefaultAlgorithms(t *testing.T) {
	e := newEnv(t)
	e.opts.Algorithms = nil
	e.open(location.Options{})
	req := parse(t, msg{callID: "default-alg", cseq: 1, contacts: []string{"<sip:alice@192.0.2.10>"}}.bytes())
	req.Source = udpSource
	res := e.serve(req)
	if chs := challenges(t, res); len(chs) != 1 || chs[0].Algorithm != "MD5" {
		t.Fatalf("challenges %+v, want one MD5", chs)
	}
}

// TestRegisterSentAgain: a REGISTER whose answer was lost with its server
// transaction (ended early under load) comes again byte for byte from the
// same place; it is answered as the first was, with the bindings as they
// are, instead of a stale challenge that would fail the client (§10.3
// step 7 refuses the CSeq it reuses), or refused again if the first was.
// Nothing is applied again: a copy that comes after the binding was
// removed does not bring it back. The same credentials on an altered
// request are still a replay.
func TestRegisterSentAgain(t *testing.T) {
	e := newEnv(t)
	phone := e.ua("alice")
	want(t, phone.register(msg{contacts: []string{"<sip:a@192.0.2.1>"}, expires: "600"}), 200, "")

	copyOf := func(raw []byte, src sip.Addr) *sip.Request {
		c := parse(t, raw)
		c.Source = src
		return c
	}
	// next is the phone's next REGISTER of the Contact for expires, with
	// credentials, and its bytes.
	next := func(expires string) (*sip.Request, []byte) {
		phone.cseq++
		m := msg{callID: phone.callID, cseq: phone.cseq, contacts: []string{"<sip:a@192.0.2.1>"}, expires: expires}
		req := copyOf(m.bytes(), phone.source)
		phone.authorize(req)
		return req, req.AppendTo(nil)
	}
	req, raw := next("1200")
	wantListed(t, e.serve(req), "sip:a@192.0.2.1 1200")
	e.clock.Advance(10 * time.Second)
	res := e.serve(copyOf(raw, phone.source))
	want(t, res, 200, "")
	wantListed(t, res, "sip:a@192.0.2.1 1190") // as they are: 10 s later
	if bs := e.bindings(aliceAOR); len(bs) != 1 || !bs[0].Expires.Equal(start.Add(1200*time.Second)) {
		t.Fatalf("the copy was applied again: %+v", bs)
	}

	// Altered, or from elsewhere: a replay of the credentials.
	altered := copyOf(raw, phone.source)
	altered.Set("Expires", "3600")
	other := phone.source
	other.AddrPort = netip.MustParseAddrPort("203.0.113.9:5060")
	for name, r := range map[string]*sip.Request{"altered": altered, "from elsewhere": copyOf(raw, other)} {
		res := e.serve(r)
		want(t, res, 401, "")
		if chs := challenges(t, res); !chs[0].Stale {
			t.Errorf("%s: challenge not stale: %+v", name, chs)
		}
	}

	// Removed by another user agent of the user (its own nonce); a copy
	// that comes late brings nothing back.
	want(t, e.ua("alice").register(msg{contacts: []string{"*"}, expires: "0"}), 200, "")
	res = e.serve(copyOf(raw, phone.source))
	want(t, res, 200, "")
	wantListed(t, res)
	if bs := e.bindings(aliceAOR); len(bs) != 0 {
		t.Fatalf("a late copy brought back %+v", bs)
	}

	// A copy of a REGISTER that was refused is refused again.
	briefReq, briefRaw := next("1")
	want(t, e.serve(briefReq), 423, "")
	want(t, e.serve(copyOf(briefRaw, phone.source)), 423, "")
}
