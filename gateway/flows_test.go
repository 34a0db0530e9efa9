package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

const domain = "example.com"

// stack is a gateway on a TCP listener on loopback, with a fake clock
// for expiry.
type stack struct {
	clk *clock.Fake
	tcp *siptcp.Transport
	gw  *gateway.Gateway
	// closed hears of each flow after the gateway has dropped its
	// bindings.
	closed chan sip.Addr
}

// closeWatch is a location store that tells when the gateway dropped the
// bindings of a closed connection.
type closeWatch struct {
	*location.Memory
	closed chan sip.Addr
}

func (w closeWatch) DeleteFlow(ctx context.Context, flow sip.Addr) ([]location.Binding, error) {
	b, err := w.Memory.DeleteFlow(ctx, flow)
	w.closed <- flow
	return b, err
}

func newStack(t *testing.T, opts ...func(*gateway.Config)) *stack {
	t.Helper()
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	st := &stack{clk: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), closed: make(chan sip.Addr, 16)}
	accts, err := accounts.NewStore([]accounts.Account{accounts.FromPassword("alice", domain, "alice-secret")})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := location.Open(location.Options{Clock: st.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loc.Close() })
	id, err := identity.New(identity.Config{Domains: []string{domain},
		Endpoints: []identity.Endpoint{{Transport: sip.TCP, Host: "127.0.0.1", Port: 5060}}})
	if err != nil {
		t.Fatal(err)
	}
	if st.tcp, err = siptcp.Listen(context.Background(), "127.0.0.1:0", siptcp.Options{}); err != nil {
		t.Fatal(err)
	}
	layer := transport.NewLayer(transport.Config{})
	layer.Add(st.tcp)
	cfg := gateway.Config{
		Identity:   id,
		Transports: layer,
		Location:   closeWatch{loc, st.closed},
		Accounts:   accts,
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
		Algorithms: []string{"MD5"},
		Clock:      st.clk,
	}
	for _, o := range opts {
		o(&cfg)
	}
	st.gw, err = gateway.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- st.gw.Serve(context.Background()) }()
	t.Cleanup(func() {
		st.gw.Close(context.Background())
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return st
}

// registered checks how many connections the transport counts as
// registered. Marks are made before the REGISTER is answered, so a test
// that has read the answer sees them.
func (st *stack) registered(t *testing.T, want int) {
	t.Helper()
	if got := st.tcp.Stats().Registered; got != want {
		t.Errorf("%d connections registered, want %d", got, want)
	}
}

// phone is a SIP client on one TCP connection.
type phone struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	cseq int
}

func (st *stack) dial(t *testing.T) *phone {
	t.Helper()
	c, err := net.DialTimeout("tcp", st.tcp.LocalAddr().AddrPort.String(), transporttest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{t: t, conn: c, r: bufio.NewReader(c)}
}

// register REGISTERs contact for alice with expires, answering the
// challenge with password, and returns the final status.
func (p *phone) register(contact string, expires int, password string) int {
	p.t.Helper()
	auth := ""
	for range 2 {
		res := p.registerOnce(contact, expires, auth)
		if res.StatusCode != 401 {
			return res.StatusCode
		}
		auth = "Authorization: " + answer(p.t, res.Get("WWW-Authenticate"), password, sip.MethodRegister, "sip:"+domain) + "\r\n"
	}
	return 401
}

// answer returns alice's credentials, with password, for challenge (a
// WWW-Authenticate or Proxy-Authenticate value) and a request of method
// for uri.
func answer(t *testing.T, challenge, password, method, uri string) string {
	t.Helper()
	ch, err := digest.ParseChallenge(challenge)
	if err != nil {
		t.Fatalf("challenge: %v", err)
	}
	cl := digest.Client{Username: "alice", Password: password}
	cr, err := cl.Authorize(ch, method, uri)
	if err != nil {
		t.Fatal(err)
	}
	return cr.String()
}

// registerOnce sends one REGISTER of contact for alice with expires and
// the Authorization line auth ("" for none), and returns its response.
func (p *phone) registerOnce(contact string, expires int, auth string) *sip.Response {
	p.t.Helper()
	p.cseq++
	p.send(fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP phone.invalid;branch=%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@%s>;tag=ph1\r\n"+
		"To: <sip:alice@%s>\r\n"+
		"Call-ID: phone-%p\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <%s>;expires=%d\r\n%s"+
		"Content-Length: 0\r\n\r\n", domain, sip.NewBranch(), domain, domain, p, p.cseq, contact, expires, auth))
	return p.response()
}

func (p *phone) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatal(err)
	}
}

func (p *phone) response() *sip.Response {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(transporttest.Timeout))
	var head strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("read response: %v", err)
		}
		head.WriteString(line)
		if line == "\r\n" && head.Len() > 2 {
			break
		}
	}
	m, err := sip.ParseMessage([]byte(head.String()))
	if err != nil {
		p.t.Fatalf("response does not parse: %v\n%s", err, head.String())
	}
	return m.(*sip.Response)
}

func TestRegistrationHoldsItsConnection(t *testing.T) {
	st := newStack(t)
	const contact = "sip:alice@phone.invalid;transport=tcp"

	// A wrong password registers nothing.
	a := st.dial(t)
	if code := a.register(contact, 600, "wrong"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	st.registered(t, 0)

	if code := a.register(contact, 600, "alice-secret"); code != 200 {
		t.Fatalf("REGISTER: %d", code)
	}
	st.registered(t, 1)

	// The same contact registered over another connection moves there:
	// the first connection carries nothing any more.
	b := st.dial(t)
	if code := b.register(contact, 600, "alice-secret"); code != 200 {
		t.Fatalf("REGISTER over b: %d", code)
	}
	st.registered(t, 1)
	if s := st.tcp.Stats(); s.Unregistered != 1 {
		t.Errorf("%d unregistered connections, want a", s.Unregistered)
	}

	// Unregistering lets b go.
	if code := b.register(contact, 0, "alice-secret"); code != 200 {
		t.Fatalf("unREGISTER: %d", code)
	}
	st.registered(t, 0)

	// A binding that lapses lets its connection go.
	if code := b.register(contact, 120, "alice-secret"); code != 200 {
		t.Fatalf("REGISTER: %d", code)
	}
	st.registered(t, 1)
	st.clk.Advance(119 * time.Second)
	st.registered(t, 1)
	st.clk.Advance(time.Second)
	st.registered(t, 0)
	if n := st.gw.HeldFlows(); n != 0 {
		t.Errorf("%d flows held after the lapse", n)
	}

	// A connection that closes is forgotten.
	if code := b.register(contact, 600, "alice-secret"); code != 200 {
		t.Fatalf("REGISTER: %d", code)
	}
	if n := st.gw.HeldFlows(); n != 1 {
		t.Fatalf("%d flows held, want 1", n)
	}
	b.conn.Close()
	select {
	case <-st.closed:
	case <-time.After(transporttest.Timeout):
		t.Fatal("the gateway did not hear of the close")
	}
	if n := st.gw.HeldFlows(); n != 0 {
		t.Errorf("%d flows held after the close, want 0", n)
	}
}
