package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// TestMain fails the run if a goroutine started by this module's code (the
// layers' handlers, the proxy's relays, the network) outlives the tests.
func TestMain(m *testing.M) {
	os.Exit(leakcheck.Main(m, waitLimit, leakcheck.CreatedBy("github.com/switchboard/switchboard/")))
}

// waitLimit bounds every wait of the tests: a test that waits longer has
// failed, not become slow.
const waitLimit = 5 * time.Second

const (
	testDomain  = "switchboard.test"
	otherDomain = "elsewhere.test"
)

var (
	epoch    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	proxyUDP = mustAddr(sip.UDP, "192.0.2.10:5060")
	proxyTCP = mustAddr(sip.TCP, "192.0.2.10:5060")
	proxyWS  = mustAddr(sip.WS, "192.0.2.10:8080")
	// testSecret makes stamps and tokens repeatable across a test's proxies.
	testSecret = []byte("0123456789abcdef0123456789abcdef")
)

// testIdentity is the identity of the fixture's proxy, serving domains.
func testIdentity(domains ...string) *identity.Identity {
	id, err := identity.New(identity.Config{Domains: domains, Endpoints: []identity.Endpoint{
		{Transport: sip.UDP, Host: "192.0.2.10", Port: 5060},
		{Transport: sip.TCP, Host: "192.0.2.10", Port: 5060},
		{Transport: sip.WS, Host: "192.0.2.10", Port: 8080},
	}})
	if err != nil {
		panic(err)
	}
	return id
}

func mustAddr(tr, ap string) sip.Addr {
	return sip.Addr{Transport: tr, AddrPort: netip.MustParseAddrPort(ap)}
}

// fixture is a proxy on an in-memory network with a fake clock, a location
// service, accounts and user agents.
type fixture struct {
	t      testing.TB
	clk    *clock.Fake
	net    *network
	node   *node
	layer  *transaction.Layer
	proxy  *Proxy
	loc    *testLocator
	users  map[string]string // user → password
	logBuf *transporttest.Logs
	uas    []*ua
	// uaConfig is the transaction.Config of the UAs made from now on
	// (Clock and OnStrayResponse are set for them).
	uaConfig transaction.Config
}

// newFixture starts a proxy for testDomain; tweak may change its Options.
func newFixture(t testing.TB, tweak func(*Options)) *fixture {
	f := &fixture{
		t:      t,
		clk:    clock.NewFake(epoch),
		net:    sipnet.New(),
		loc:    &testLocator{targets: make(map[string][]Target)},
		users:  map[string]string{"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"},
		logBuf: &transporttest.Logs{},
	}
	f.node = f.net.AddNode("proxy", proxyUDP, proxyTCP, proxyWS)
	var p *Proxy
	f.layer = transaction.New(context.Background(), f.node,
		transaction.HandlerFunc(func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) { p.ServeSIP(ctx, tx, req) }),
		transaction.Config{
			Clock:           f.clk,
			OnStrayResponse: func(ctx context.Context, res *sip.Response) { p.ForwardResponse(ctx, res) },
			// As the gateway does: the proxy learns the order in which
			// the requests of a dialog arrived.
			Admit: func(req *sip.Request, _ time.Duration) (*sip.Response, bool) { return p.Arrive(req), false },
		})
	f.node.Recv = f.layer.HandleMessage
	opts := Options{
		Transactions: f.layer,
		Sender:       f.node,
		Identity:     testIdentity(testDomain),
		Locator:      f.loc,
		Credentials:  f,
		Secret:       testSecret,
		Algorithms:   []string{"SHA-256", "MD5"},
		Clock:        f.clk,
		Logger:       slog.New(slog.NewTextHandler(f.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&opts)
	}
	var err error
	if p, err = New(opts); err != nil {
		t.Fatal(err)
	}
	f.proxy = p
	t.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	for _, u := range f.uas {
		u.layer.Close()
	}
	f.layer.Close()
	f.net.Close()
	if f.t.Failed() {
		f.t.Logf("proxy log:\n%s", f.logBuf.String())
		for _, d := range f.net.Log.All() {
			f.t.Logf("net: %s", d)
		}
	}
}

// HA1 makes the fixture the proxy's Credentials.
func (f *fixture) HA1(user, algorithm string) (string, bool) {
	pw, ok := f.users[user]
	if !ok {
		return "", false
	}
	return digest.HA1(algorithm, user, testDomain, pw), true
}

// testLocator is a Locator over a map; any, when set, is the target of
// every AOR that the map lacks.
type testLocator struct {
	mu      sync.Mutex
	targets map[string][]Target
	any     *Target
}

func (l *testLocator) Lookup(_ context.Context, aor string) ([]Target, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ts, ok := l.targets[aor]; ok || l.any == nil {
		return append([]Target(nil), ts...), nil
	}
	return []Target{*l.any}, nil
}

func (l *testLocator) add(aor string, t Target) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets[aor] = append(l.targets[aor], t)
}

// ua is a user agent on the network: a transaction layer whose handler
// records every request and then behaves as told.
type ua struct {
	f      *fixture
	name   string
	domain string // of its AOR
	node   *node
	layer  *transaction.Layer
	addr   sip.Addr // where it listens; its Contact and Via say so
	toward sip.Addr // where it sends requests: the proxy, over its flow if any
	tag    string   // To tag of its responses
	reqs   recorder[*sip.Request]
	strays recorder[*sip.Response]
	client digest.Client
	mu     sync.Mutex
	behave behaviour
	quiet  bool // record nothing (benchmarks)
}

// behaviour answers a request at a UA. It runs in the handler goroutine
// and must end when tx does.
type behaviour func(u *ua, tx *transaction.ServerTx, req *sip.Request)

// newUA adds a user agent listening at a (UDP or TCP).
func (f *fixture) newUA(name, domain string, a sip.Addr, b behaviour) *ua {
	u := f.makeUA(name, domain, b, a)
	u.toward = proxyUDP
	if a.Transport != sip.UDP {
		u.toward = proxyTCP
	}
	return u
}

// newWSUA adds a browser: it listens nowhere and talks to the proxy over
// a WebSocket connection.
func (f *fixture) newWSUA(name, domain, ap string, b behaviour) *ua {
	u := f.makeUA(name, domain, b, mustAddr(sip.WS, ap))
	flow := f.net.Connect(u.node, sip.WS, proxyWS)
	u.toward = sip.Addr{Transport: sip.WS, AddrPort: proxyWS.AddrPort, Flow: flow}
	return u
}

func (f *fixture) makeUA(name, domain string, b behaviour, a sip.Addr) *ua {
	u := &ua{f: f, name: name, domain: domain, addr: a, tag: sip.NewTag(), behave: b}
	u.client = digest.Client{Username: name, Password: f.users[name]}
	u.node = f.net.AddNode(name, a)
	cfg := f.uaConfig
	cfg.Clock = f.clk
	cfg.OnStrayResponse = func(_ context.Context, res *sip.Response) { u.strays.add(res) }
	u.layer = transaction.New(context.Background(), u.node, transaction.HandlerFunc(u.serve), cfg)
	u.node.Recv = u.layer.HandleMessage
	f.uas = append(f.uas, u)
	return u
}

func (u *ua) serve(_ context.Context, tx *transaction.ServerTx, req *sip.Request) {
	if !u.quiet {
		u.reqs.add(req.Clone())
	}
	u.mu.Lock()
	b := u.behave
	u.mu.Unlock()
	if tx != nil && b != nil {
		b(u, tx, req)
	}
}

// aor returns the UA's address of record.
func (u *ua) aor() string { return "sip:" + u.name + "@" + u.domain }

// contact returns the UA's Contact URI: its address, or a .invalid host for
// a browser (RFC 7118).
func (u *ua) contact() string {
	if u.addr.Transport == sip.WS {
		return "sip:" + u.name + "@" + u.name + "-df7jal23.invalid;transport=ws"
	}
	c := "sip:" + u.name + "@" + u.addr.AddrPort.String()
	if u.addr.Transport != sip.UDP {
		c += ";transport=" + strings.ToLower(u.addr.Transport)
	}
	return c
}

// register puts the UA in the proxy's location service with q (thousandths):
// by its flow for a browser, by Contact otherwise.
func (u *ua) register(q int) {
	uri, err := sip.ParseURI(u.contact())
	if err != nil {
		panic(err)
	}
	t := Target{URI: uri, Q: q, Expires: epoch.Add(time.Hour)}
	if u.toward.Flow != 0 {
		t.Dest = sip.Addr{Transport: u.addr.Transport, AddrPort: u.addr.AddrPort, Flow: u.toward.Flow}
	}
	u.f.loc.add("sip:"+u.name+"@"+testDomain, t)
}

// request builds an out-of-dialog request from the UA to ruri.
func (u *ua) request(method, ruri string) *sip.Request {
	uri, err := sip.ParseURI(ruri)
	if err != nil {
		panic(err)
	}
	req := sip.NewRequest(method, uri)
	to := sip.URI{Scheme: "sip", User: "someone", Host: otherDomain}
	if uri.IsSIP() {
		to = sip.URI{Scheme: uri.Scheme, User: uri.User, Host: uri.Host}
	}
	req.Add("Max-Forwards", "70")
	req.Add("To", "<"+to.String()+">")
	req.Add("From", "<"+u.aor()+">;tag="+sip.NewTag())
	req.Add("Call-ID", sip.NewCallID())
	req.Add("CSeq", "1 "+method)
	req.Add("Contact", "<"+u.contact()+">")
	req.Add("Content-Length", "0")
	return req
}

// stampVia puts a fresh top Via on req.
func (u *ua) stampVia(req *sip.Request) {
	host := u.addr.AddrPort.Addr().String()
	port := int(u.addr.AddrPort.Port())
	if u.addr.Transport == sip.WS {
		host, port = u.name+"-df7jal23.invalid", 0
	}
	req.PrependVia(sip.Via{Transport: u.addr.Transport, Host: host, Port: port,
		Params: sip.Params(";branch=" + sip.NewBranch() + ";rport")})
}

// send starts a client transaction for req (which gets its Via here)
// toward the proxy.
func (u *ua) send(req *sip.Request) *transaction.ClientTx {
	u.f.t.Helper()
	u.stampVia(req)
	ct, err := u.layer.Request(context.Background(), req, u.toward)
	if err != nil {
		u.f.t.Fatalf("%s: sending %s: %v", u.name, req.Method, err)
	}
	return ct
}

// sendStateless sends a request with no transaction (an ACK).
func (u *ua) sendStateless(req *sip.Request) {
	u.f.t.Helper()
	u.stampVia(req)
	if err := u.node.Send(context.Background(), req, u.toward); err != nil {
		u.f.t.Fatalf("%s: sending %s: %v", u.name, req.Method, err)
	}
}

// final waits for ct's final response and returns it with the
// provisional responses before it.
func (u *ua) final(ct *transaction.ClientTx) (*sip.Response, []*sip.Response) {
	u.f.t.Helper()
	var prov []*sip.Response
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		select {
		case res, ok := <-ct.Responses():
			if !ok {
				u.f.t.Fatalf("%s: transaction ended without a final response (%v)", u.name, ct.Err())
			}
			if res.StatusCode >= 200 {
				return res, prov
			}
			prov = append(prov, res)
		case <-deadline.C:
			u.f.t.Fatalf("%s: no final response to %s", u.name, ct.Request().Method)
		}
	}
}

// do sends req and answers one 407 with the UA's credentials, as a UAC
// does (RFC 3261 §22.2). It returns the request last sent and its final
// response.
func (u *ua) do(req *sip.Request) (*sip.Request, *sip.Response) {
	u.f.t.Helper()
	res, _ := u.final(u.send(req))
	if res.StatusCode != 407 {
		return req, res
	}
	retry := u.authorize(req, res)
	res, _ = u.final(u.send(retry))
	return retry, res
}

// authorize returns req again (new CSeq, no Via) with a Proxy-Authorization
// answering the challenge of res.
func (u *ua) authorize(req *sip.Request, res *sip.Response) *sip.Request {
	u.f.t.Helper()
	var chs []digest.Challenge
	for _, v := range res.Values("Proxy-Authenticate") {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			u.f.t.Fatalf("bad challenge %q: %v", v, err)
		}
		chs = append(chs, ch)
	}
	ch, ok := digest.Select(chs)
	if !ok {
		u.f.t.Fatalf("no usable challenge in %q", res.Values("Proxy-Authenticate"))
	}
	cr, err := u.client.Authorize(ch, req.Method, req.URI.String())
	if err != nil {
		u.f.t.Fatal(err)
	}
	retry := req.Clone()
	retry.PopVia()
	cseq := req.CSeq()
	cseq.Seq++
	retry.Set("CSeq", cseq.String())
	retry.Set("Proxy-Authorization", cr.String())
	return retry
}

// waitRequest waits for the next request with method that reached the UA.
func (u *ua) waitRequest(method string) *sip.Request {
	u.f.t.Helper()
	return u.reqs.wait(u.f.t, u.name+" to receive "+method, func(r *sip.Request) bool { return r.Method == method })
}

// response builds the UA's response to req: its To tag, and for responses
// that may create a dialog its Contact and the Record-Route of req
// (RFC 3261 §12.1.1).
func (u *ua) response(req *sip.Request, code int) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if code > 100 {
		res.SetToTag(u.tag)
	}
	if code > 100 && code < 300 {
		res.CopyFrom(&req.Headers, "Record-Route")
		res.Add("Contact", "<"+u.contact()+">")
	}
	return res
}

// respond is a behaviour that sends the given responses in order; a
// request other than INVITE gets only the final ones.
func respond(codes ...int) behaviour {
	return func(u *ua, tx *transaction.ServerTx, req *sip.Request) {
		for _, c := range codes {
			if c < 200 && req.Method != sip.MethodInvite {
				continue
			}
			if err := tx.Respond(u.response(req, c)); err != nil {
				return
			}
		}
	}
}

// ringUntil is a behaviour that rings (180), then answers final when
// release is closed, or 487 when the request is canceled.
func ringUntil(release <-chan struct{}, final int) behaviour {
	return func(u *ua, tx *transaction.ServerTx, req *sip.Request) {
		if tx.Respond(u.response(req, 180)) != nil {
			return
		}
		select {
		case <-release:
			_ = tx.Respond(u.response(req, final))
		case <-tx.Canceled():
			_ = tx.Respond(u.response(req, 487))
		case <-tx.Done():
		}
	}
}

// silent is a behaviour that never answers until canceled (when it
// answers 487) or ended.
func silent(u *ua, tx *transaction.ServerTx, req *sip.Request) {
	select {
	case <-tx.Canceled():
		_ = tx.Respond(u.response(req, 487))
	case <-tx.Done():
	}
}

// dialogs returns the dialog of a UAC and of a UAS for an answered request.
func uacDialog(t testing.TB, req *sip.Request, res *sip.Response) *dialog.Dialog {
	t.Helper()
	d, err := dialog.NewUAC(req, res)
	if err != nil {
		t.Fatalf("uac dialog: %v", err)
	}
	return d
}

// netLog waits until a message matching what went from one node to
// another.
func (f *fixture) netLog(from, to string, what func(sip.Message) bool) sip.Message {
	f.t.Helper()
	d := f.net.Log.Wait(f.t, waitLimit, from+" -> "+to, func(d sipnet.Delivery) bool {
		return (from == "" || d.From == from) && (to == "" || d.To == to) && what(d.Message())
	})
	return d.Message()
}

// sent reports whether any message from one node to another matched.
func (f *fixture) sent(from, to string, what func(sip.Message) bool) bool {
	for _, d := range f.net.Log.All() {
		if (from == "" || d.From == from) && (to == "" || d.To == to) && what(d.Message()) {
			return true
		}
	}
	return false
}

// The in-memory network of the tests, and its nodes: the proxy, the UAs.
type (
	network = sipnet.Network
	node    = sipnet.Node
)

// label names a message: "INVITE", "180 INVITE".
func label(m sip.Message) string { return sipnet.Label(m) }

// recorder is sipnet's, waiting at most waitLimit.
type recorder[T any] struct{ sipnet.Recorder[T] }

// wait returns the first item not taken yet that matches, and takes it.
func (r *recorder[T]) wait(t testing.TB, what string, match func(T) bool) T {
	t.Helper()
	return r.Wait(t, waitLimit, what, match)
}

// all returns every item so far.
func (r *recorder[T]) all() []T { return r.All() }

func (r *recorder[T]) add(x T) { r.Add(x) }

func isRequest(method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}
}

func isResponse(code int, method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code && r.CSeq().Method == method
	}
}
