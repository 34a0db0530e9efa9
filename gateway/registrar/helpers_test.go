package registrar_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

const domain = "example.com"

var (
	ctx   = context.Background()
	start = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	// passwords of the test accounts.
	passwords = map[string]string{
		"alice": "secret", "bob": "hunter2",
		// RFC 4475 users.
		"watson": "w", "user": "u", "j.user": "j", "null-%00-null": "n",
	}
)

// env is a registrar on a fake clock with a real location.Memory under a
// temporary directory.
type env struct {
	t     *testing.T
	clock *clock.Fake
	dir   string
	loc   *location.Memory
	accts *accounts.Store
	reg   *registrar.Registrar
	opts  registrar.Options
}

func newEnv(t *testing.T, configure ...func(*registrar.Options, *location.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: clock.NewFake(start), dir: t.TempDir()}
	var list []accounts.Account
	for user, pass := range passwords {
		list = append(list, accounts.FromPassword(user, domain, pass))
	}
	var err error
	if e.accts, err = accounts.NewStore(list); err != nil {
		t.Fatal(err)
	}
	// Both algorithms, strongest first, so the tests cover SHA-256 too;
	// TestDefaultAlgorithms checks the default.
	e.opts = registrar.Options{Identity: registrar.DomainIdentity(domain), Accounts: e.accts, Clock: e.clock, Algorithms: []string{"SHA-256", "MD5"}}
	lopts := location.Options{Dir: e.dir, Clock: e.clock}
	for _, f := range configure {
		f(&e.opts, &lopts)
	}
	e.open(lopts)
	return e
}

// open (re)opens the location store and builds a registrar on it.
func (e *env) open(lopts location.Options) {
	e.t.Helper()
	lopts.Dir, lopts.Clock = e.dir, e.clock
	loc, err := location.Open(lopts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { loc.Close() })
	e.loc = loc
	e.opts.Location = loc
	if e.reg, err = registrar.New(e.opts); err != nil {
		e.t.Fatal(err)
	}
}

// restart closes the store, as a stopping gateway does, and opens a new
// store and registrar on the same directory.
func (e *env) restart() {
	e.t.Helper()
	if err := e.loc.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.opts.Digest = nil // a new process has a new nonce secret
	e.open(location.Options{})
}

func (e *env) serve(req *sip.Request) *sip.Response {
	e.t.Helper()
	res := e.reg.ServeRegister(ctx, req)
	if res == nil {
		e.t.Fatal("ServeRegister returned nil")
	}
	// Every response must be a well-formed message with a To tag.
	if _, err := sip.ParseMessage(res.AppendTo(nil)); err != nil {
		e.t.Fatalf("response does not parse: %v\n%s", err, res)
	}
	if res.To().Tag() == "" {
		e.t.Errorf("%d response without a To tag", res.StatusCode)
	}
	return res
}

func (e *env) bindings(aor string) []location.Binding {
	e.t.Helper()
	bs, err := e.loc.Get(ctx, aor)
	if err != nil {
		e.t.Fatal(err)
	}
	return bs
}

// msg describes a REGISTER; zero fields take defaults.
type msg struct {
	ruri     string // "sip:example.com"
	user     string // To and From user, "alice"
	toHost   string // domain
	callID   string
	cseq     uint32
	vias     int // 1
	contacts []string
	expires  string // Expires header value, none if ""
	headers  []string
}

func (m msg) bytes() []byte {
	ruri := cmpOr(m.ruri, "sip:"+domain)
	user := cmpOr(m.user, "alice")
	host := cmpOr(m.toHost, domain)
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", ruri)
	for i := range max(m.vias, 1) {
		fmt.Fprintf(&b, "Via: SIP/2.0/UDP 192.0.2.%d:5060;branch=z9hG4bK%s\r\n", 10+i, sip.NewTag())
	}
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n", user, host, sip.NewTag(), user, host)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d REGISTER\r\n", cmpOr(m.callID, "call-"+user), max(m.cseq, 1))
	for _, c := range m.contacts {
		fmt.Fprintf(&b, "Contact: %s\r\n", c)
	}
	if m.expires != "" {
		fmt.Fprintf(&b, "Expires: %s\r\n", m.expires)
	}
	for _, h := range m.headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func cmpOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func parse(t testing.TB, data []byte) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	return m.(*sip.Request)
}

var udpSource = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5060")}

func wsSource(flow uint64) sip.Addr {
	return sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:51000"), Flow: flow}
}

// ua is a user agent that answers challenges: it keeps its Call-ID,
// counts CSeq and reuses the last challenge, as phones and JsSIP do.
type ua struct {
	e      *env
	user   string
	client *digest.Client
	ch     *digest.Challenge
	cseq   uint32
	callID string
	source sip.Addr
}

func (e *env) ua(user string) *ua {
	return &ua{e: e, user: user, client: &digest.Client{Username: user, Password: passwords[user]},
		callID: "ua-" + user + "-" + sip.NewTag(), source: udpSource}
}

// register sends m (its user, Call-ID and CSeq filled in) and answers one
// 401, returning the final response.
func (u *ua) register(m msg) *sip.Response {
	u.e.t.Helper()
	m.user = cmpOr(m.user, u.user)
	m.callID = u.callID
	res := u.send(m)
	if res.StatusCode == 401 {
		u.challenge(res)
		res = u.send(m)
	}
	return res
}

// send sends m once, with credentials if a challenge is known.
func (u *ua) send(m msg) *sip.Response {
	u.e.t.Helper()
	m.user = cmpOr(m.user, u.user)
	m.callID = cmpOr(m.callID, u.callID)
	u.cseq++
	m.cseq = u.cseq
	req := parse(u.e.t, m.bytes())
	req.Source = u.source
	u.authorize(req)
	return u.e.serve(req)
}

func (u *ua) authorize(req *sip.Request) {
	u.e.t.Helper()
	if u.ch == nil {
		return
	}
	cred, err := u.client.Authorize(*u.ch, req.Method, req.URI.String())
	if err != nil {
		u.e.t.Fatal(err)
	}
	req.Add("Authorization", cred.String())
}

// challenge takes the strongest challenge of a 401.
func (u *ua) challenge(res *sip.Response) {
	u.e.t.Helper()
	ch, ok := digest.Select(challenges(u.e.t, res))
	if !ok {
		u.e.t.Fatalf("no usable challenge in\n%s", res)
	}
	u.ch = &ch
}

func challenges(t testing.TB, res *sip.Response) []digest.Challenge {
	t.Helper()
	var out []digest.Challenge
	for _, v := range res.Values("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ch)
	}
	return out
}

// want checks a response's status and reason.
func want(t testing.TB, res *sip.Response, code int, reason string) {
	t.Helper()
	if res.StatusCode != code || reason != "" && res.Reason != reason {
		t.Fatalf("got %d %s, want %d %s\n%s", res.StatusCode, res.Reason, code, reason, res)
	}
}

// listed returns the Contacts of a 200 as "uri expires" strings.
func listed(t testing.TB, res *sip.Response) []string {
	t.Helper()
	cs, err := res.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		exp, _ := c.Params.Get("expires")
		out = append(out, c.URI.String()+" "+exp)
	}
	return out
}

func wantListed(t testing.TB, res *sip.Response, want ...string) {
	t.Helper()
	got := listed(t, res)
	if !slices.Equal(got, want) {
		t.Fatalf("200 lists\n  %q\nwant\n  %q\n%s", got, want, res)
	}
}

func headerNames(res *sip.Response) []string {
	var names []string
	for _, f := range res.Fields() {
		names = append(names, f.Name)
	}
	return names
}

func netipAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
