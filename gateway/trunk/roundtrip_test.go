package trunk

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport/locate"
)

// pipe is a Sender that delivers to another Layer as a network would: the
// receiver parses its own copy of the bytes, with Source set.
type pipe struct {
	to   *transaction.Layer
	from sip.Addr
}

func (p *pipe) Send(_ context.Context, msg sip.Message, _ sip.Addr) error {
	m, err := sip.ParseMessage([]byte(msg.String()))
	if err != nil {
		return err
	}
	switch x := m.(type) {
	case *sip.Request:
		x.Source = p.from
	case *sip.Response:
		x.Source = p.from
	}
	p.to.HandleMessage(m)
	return nil
}

// registrar is a provider's registrar: digest authentication with a
// digest.Server, Min-Expires, and a cap on the lifetime it grants.
type registrar struct {
	srv        *digest.Server
	minExpires uint32
	maxExpires uint32

	mu         sync.Mutex
	challenges int
	stale      int
	bindings   map[string]uint32 // contact → seconds granted
}

func (p *registrar) ServeSIP(_ context.Context, tx *transaction.ServerTx, req *sip.Request) {
	if tx == nil {
		return
	}
	_ = tx.Respond(p.handle(req))
}

func (p *registrar) handle(req *sip.Request) *sip.Response {
	if req.Method != sip.MethodRegister {
		return sip.NewResponse(req, 405, "")
	}
	challenge := func(stale bool) *sip.Response {
		p.mu.Lock()
		p.challenges++
		if stale {
			p.stale++
		}
		p.mu.Unlock()
		res := sip.NewResponse(req, 401, "")
		res.SetToTag("reg")
		ch, _ := p.srv.Challenge("SHA-256", stale)
		res.Add("WWW-Authenticate", ch.String())
		return res
	}
	auth := req.Get("Authorization")
	if auth == "" {
		return challenge(false)
	}
	cr, err := digest.ParseCredentials(auth)
	if err != nil || cr.URI != req.URI.String() || cr.Username != user {
		return sip.NewResponse(req, 400, "Bad Authorization")
	}
	err = p.srv.Verify(cr, req.Method, func(alg string) (string, bool) {
		return digest.HA1(alg, user, realm, password), true
	})
	switch {
	case errors.Is(err, digest.ErrStale), errors.Is(err, digest.ErrReplay):
		return challenge(true)
	case err != nil:
		return challenge(false)
	}
	expires, _, _ := req.Expires()
	if expires > 0 && expires < p.minExpires {
		res := sip.NewResponse(req, 423, "")
		res.Add("Min-Expires", strconv.FormatUint(uint64(p.minExpires), 10))
		return res
	}
	contacts, err := req.Contacts()
	if err != nil || len(contacts) != 1 {
		return sip.NewResponse(req, 400, "One Contact Please")
	}
	key := contacts[0].URI.String()
	res := sip.NewResponse(req, 200, "")
	res.SetToTag("reg")
	p.mu.Lock()
	defer p.mu.Unlock()
	if expires == 0 {
		delete(p.bindings, key)
		return res
	}
	granted := min(expires, p.maxExpires)
	p.bindings[key] = granted
	res.Add("Contact", "<"+key+">;expires="+strconv.FormatUint(uint64(granted), 10))
	return res
}

func (p *registrar) counts() (challenges, stale, bindings int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.challenges, p.stale, len(p.bindings)
}

// A real digest round trip: the gateway's transaction layer talks to the
// provider's over an in-memory network; the provider verifies with
// digest.Server, so nonce counts, replay protection and stale nonces are
// the real ones.
func TestRegistrationDigestRoundTrip(t *testing.T) {
	clk := clock.NewFake(epoch)
	toProvider, toGateway := &pipe{from: gwTCP}, &pipe{from: prov1}
	reg := &registrar{
		srv:        &digest.Server{Realm: realm, Now: clk.Now}, // nonces live 5 min
		minExpires: 60,
		maxExpires: 120,
		bindings:   make(map[string]uint32),
	}
	provider := transaction.New(context.Background(), toGateway, reg, transaction.Config{Clock: clk})
	defer provider.Close()
	gateway := transaction.New(context.Background(), toProvider, nil, transaction.Config{Clock: clk})
	defer gateway.Close()
	toProvider.to, toGateway.to = provider, gateway

	armed := make(chan time.Duration, 16)
	changes := make(chan status, 64)
	tr := testTrunk()
	tr.RegisterExpires = time.Hour
	r, err := NewRegistration(RegistrationOptions{
		Trunk:     tr,
		Requester: gateway,
		Resolver: locate.ResolverFunc(func(_ context.Context, u sip.URI) ([]sip.Addr, error) {
			if u.Host != tr.Host {
				t.Errorf("resolving %s", u.String())
			}
			return []sip.Addr{prov1}, nil
		}),
		Identity: gwIdentity(),
		Clock:    armClock{clk, armed},
		OnChange: func(state string, expires time.Time, err error) { changes <- status{state, expires, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clk: clk, armed: armed, changes: changes, reg: r}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// 401, then 200 granting 120 of the 3600 s asked.
	st := h.waitState(StateRegistered)
	if !st.expires.Equal(epoch.Add(120 * time.Second)) {
		t.Errorf("expires %v", st.expires)
	}
	if c, _, b := reg.counts(); c != 1 || b != 1 {
		t.Errorf("challenges %d, bindings %d", c, b)
	}
	if d := h.nextArmed(); d != 108*time.Second {
		t.Errorf("refresh in %v", d)
	}

	// Refreshes while the nonce lives go through at once (nc 2, 3).
	for i := 1; i <= 2; i++ {
		clk.Advance(108 * time.Second)
		st = h.waitState(StateRegistered)
		if want := epoch.Add(time.Duration(108*i+120) * time.Second); !st.expires.Equal(want) {
			t.Errorf("refresh %d: expires %v, want %v", i, st.expires, want)
		}
		if c, _, _ := reg.counts(); c != 1 {
			t.Errorf("refresh %d was challenged", i)
		}
		h.nextArmed()
	}

	// At 324 s the nonce is stale: one stale challenge, answered.
	clk.Advance(108 * time.Second)
	st = h.waitState(StateRegistered)
	if want := epoch.Add(444 * time.Second); !st.expires.Equal(want) || st.err != nil {
		t.Errorf("after stale nonce: %+v", st)
	}
	if c, s, _ := reg.counts(); c != 2 || s != 1 {
		t.Errorf("challenges %d (stale %d), want 2 (1)", c, s)
	}
	h.nextArmed()

	// Stop removes the binding.
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	done <- nil
	if _, _, b := reg.counts(); b != 0 {
		t.Errorf("%d bindings left after unregistering", b)
	}
	if state, _, _ := r.Status(); state != StateStopped {
		t.Errorf("state %s", state)
	}
}
