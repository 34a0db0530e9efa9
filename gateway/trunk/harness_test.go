package trunk

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

// waitLimit fails a test that waits for an event that never comes; it is
// never a synchronisation delay.
const waitLimit = 5 * time.Second

var (
	epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The gateway's TCP listener, its only endpoint (gwIdentity).
	gwTCP = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5070")}
	// Two addresses of the provider.
	prov1 = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.1:5060")}
	prov2 = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.2:5060")}
)

const (
	realm    = "voip.example"
	user     = "acct-4711"
	password = "provider-secret"
)

func testTrunk() Trunk {
	return Trunk{
		Name:            "voipco",
		Host:            "sip.voip.example",
		Transport:       sip.TCP,
		Username:        user,
		Password:        password,
		Register:        true,
		RegisterExpires: 120 * time.Second,
		FromUser:        user,
		FromDomain:      realm,
		ContactUser:     "gw",
	}
}

// armClock records the durations the Registration arms timers for, so a
// test can check the refresh and retry schedule exactly; the transaction
// layer runs on the underlying clock.Fake directly.
type armClock struct {
	*clock.Fake
	armed chan time.Duration
}

func (c armClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.armed <- d
	return c.Fake.AfterFunc(d, f)
}

// sent is a request the gateway's transaction layer sent.
type sent struct {
	req *sip.Request
	dst sip.Addr
	at  time.Duration // fake time since epoch
}

var errNetDown = errors.New("network down")

// fakeNet is the Sender of the gateway's Layer: it hands each request to
// the test, which answers it with reply, and fails sends to the addresses
// marked down.
type fakeNet struct {
	clk  *clock.Fake
	reqs chan sent
	mu   sync.Mutex
	down map[sip.Addr]bool
}

func (n *fakeNet) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	n.mu.Lock()
	down := n.down[dst]
	n.mu.Unlock()
	if down {
		return errNetDown
	}
	// A copy, parsed as the far end would.
	m, err := sip.ParseMessage([]byte(msg.String()))
	if err != nil {
		return err
	}
	req, ok := m.(*sip.Request)
	if !ok {
		return errors.New("the gateway sent a response")
	}
	n.reqs <- sent{req, dst, n.clk.Now().Sub(epoch)}
	return nil
}

func (n *fakeNet) setDown(a sip.Addr, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[a] = down
}

// status is one call of OnChange.
type status struct {
	state   string
	expires time.Time
	err     error
}

// harness runs a Registration against a scripted provider: the test reads
// each REGISTER with next and answers it with reply.
type harness struct {
	t       *testing.T
	clk     *clock.Fake
	armed   chan time.Duration
	net     *fakeNet
	layer   *transaction.Layer
	reg     *Registration
	changes chan status
	res     *resolverMap
	srv     *digest.Server // the provider's, to challenge and verify
	cancel  context.CancelFunc
	done    chan error
}

func newHarness(t *testing.T, tr Trunk, mod func(*RegistrationOptions)) *harness {
	t.Helper()
	clk := clock.NewFake(epoch)
	h := &harness{
		t:       t,
		clk:     clk,
		armed:   make(chan time.Duration, 64),
		net:     &fakeNet{clk: clk, reqs: make(chan sent, 64), down: make(map[sip.Addr]bool)},
		changes: make(chan status, 256),
		res:     &resolverMap{addrs: map[string][]sip.Addr{tr.Host: {prov1, prov2}}},
		srv:     &digest.Server{Realm: realm, Secret: []byte("0123456789abcdef0123456789abcdef"), Now: clk.Now},
	}
	h.layer = transaction.New(context.Background(), h.net, nil, transaction.Config{Clock: clk})
	t.Cleanup(func() { h.layer.Close() })
	opts := RegistrationOptions{
		Trunk:     tr,
		Requester: h.layer,
		Resolver:  h.res,
		Identity:  gwIdentity(),
		Clock:     armClock{clk, h.armed},
		UserAgent: "switchboard-test",
		RetryMin:  10 * time.Second,
		RetryMax:  40 * time.Second,
		Rand:      func() float64 { return 0.5 },
		OnChange: func(state string, expires time.Time, err error) {
			h.changes <- status{state, expires, err}
		},
	}
	if mod != nil {
		mod(&opts)
	}
	reg, err := NewRegistration(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.reg.Run(ctx) }()
	h.t.Cleanup(func() {
		// A test that ends with Run running lets it unregister: answer
		// what it sends until it returns.
		cancel()
		timeout := time.After(waitLimit)
		for {
			select {
			case <-h.done:
				return
			case s := <-h.net.reqs:
				h.reply(s, 200)
			case <-timeout:
				h.t.Error("Run did not return")
				return
			}
		}
	})
}

// stop cancels Run's context; the test then answers the unregistration,
// if any, and calls finished.
func (h *harness) stop() { h.cancel() }

// finished waits for Run to return.
func (h *harness) finished() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(waitLimit):
		h.t.Fatal("Run did not return")
		return nil
	}
}

// next waits for the next REGISTER.
func (h *harness) next() sent {
	h.t.Helper()
	select {
	case s := <-h.net.reqs:
		return s
	case <-time.After(waitLimit):
		h.t.Fatal("timed out waiting for a REGISTER")
		return sent{}
	}
}

// noRequest checks that nothing was sent.
func (h *harness) noRequest() {
	h.t.Helper()
	select {
	case s := <-h.net.reqs:
		h.t.Fatalf("unexpected request:\n%s", s.req)
	default:
	}
}

// reply answers s with code and extra header lines ("Name: value"), as the
// provider would over the network.
func (h *harness) reply(s sent, code int, headers ...string) {
	h.t.Helper()
	res := sip.NewResponse(s.req, code, "")
	res.SetToTag("prov-tag")
	for _, hd := range headers {
		name, value, _ := strings.Cut(hd, ": ")
		res.Add(name, value)
	}
	m, err := sip.ParseMessage([]byte(res.String()))
	if err != nil {
		h.t.Fatalf("bad response: %v\n%s", err, res)
	}
	m.(*sip.Response).Source = s.dst
	h.layer.HandleMessage(m)
}

// challenge answers s with 401 and a fresh challenge of the provider.
func (h *harness) challenge(s sent, stale bool) {
	h.t.Helper()
	ch, err := h.srv.Challenge("SHA-256", stale)
	if err != nil {
		h.t.Fatal(err)
	}
	h.reply(s, 401, "WWW-Authenticate: "+ch.String())
}

// verify checks the Authorization of s as the provider would.
func (h *harness) verify(s sent) error {
	h.t.Helper()
	v := s.req.Get("Authorization")
	if v == "" {
		return errors.New("no authorization")
	}
	cr, err := digest.ParseCredentials(v)
	if err != nil {
		return err
	}
	if cr.URI != s.req.URI.String() {
		h.t.Errorf("digest uri %q, request-uri %q", cr.URI, s.req.URI.String())
	}
	return h.srv.Verify(cr, s.req.Method, func(alg string) (string, bool) {
		return digest.HA1(alg, user, realm, password), true
	})
}

// nc returns the nonce count of the request's credentials.
func nc(s sent) string {
	cr, err := digest.ParseCredentials(s.req.Get("Authorization"))
	if err != nil {
		return ""
	}
	return cr.NC
}

// waitState reads OnChange calls until one reports state.
func (h *harness) waitState(state string) status {
	h.t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case st := <-h.changes:
			if st.state == state {
				return st
			}
		case <-timeout:
			got, _, err := h.reg.Status()
			h.t.Fatalf("timed out waiting for state %s; it is %s (%v)", state, got, err)
			return status{}
		}
	}
}

// nextArmed returns the duration of the next timer the Registration arms.
func (h *harness) nextArmed() time.Duration {
	h.t.Helper()
	select {
	case d := <-h.armed:
		return d
	case <-time.After(waitLimit):
		h.t.Fatal("timed out waiting for a timer")
		return 0
	}
}

// expect checks header values of a REGISTER.
func expect(t *testing.T, s sent, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got := s.req.Get(name); got != v {
			t.Errorf("%s: %q, want %q", name, got, v)
		}
	}
}

// gwIdentity is the identity of the gateway of the tests: one TCP
// endpoint, gwTCP.
func gwIdentity() *identity.Identity {
	id, err := identity.New(identity.Config{Domains: []string{"gw.example"}, Endpoints: []identity.Endpoint{
		{Transport: sip.TCP, Host: gwTCP.AddrPort.Addr().String(), Port: int(gwTCP.AddrPort.Port())},
	}})
	if err != nil {
		panic(err)
	}
	return id
}
