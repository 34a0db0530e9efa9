package transaction

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/waitfor"
	"github.com/switchboard/switchboard/sip"
)

// TestMain fails the run if any goroutine started by this package (the
// layer's handler goroutines, or the tests' own) outlives the tests.
func TestMain(m *testing.M) {
	os.Exit(leakcheck.Main(m, 5*time.Second, ownGoroutines))
}

// ownGoroutines matches the goroutines created by this package's code.
var ownGoroutines = leakcheck.CreatedBy("github.com/switchboard/switchboard/sip/transaction.")

// eventually waits until cond holds, failing the test after a deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitfor.Until(t, what, 5*time.Second, cond)
}

const waitLimit = 5 * time.Second

var (
	epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The phone that sends requests to the server side.
	phoneUDP = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")}
	phoneTCP = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:40000"), Flow: 7}
	// The next hop of the client side.
	peerUDP = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.2:5060")}
	peerTCP = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.2:5060")}
)

// sentMsg is a message the layer handed to the Sender.
type sentMsg struct {
	msg sip.Message
	dst sip.Addr
	at  time.Duration // fake time since epoch
}

func (s sentMsg) String() string { return label(s.msg) }

// label names a message: the method of a request, "code method" of a
// response.
func label(m sip.Message) string {
	switch m := m.(type) {
	case *sip.Request:
		return m.Method
	case *sip.Response:
		return strconv.Itoa(m.StatusCode) + " " + m.CSeq().Method
	}
	return "?"
}

// netRec is the in-memory Sender: it records what is sent, and fails sends
// on demand.
type netRec struct {
	clk    clock.Clock
	mu     sync.Mutex
	sent   []sentMsg
	failN  int // fail the next failN sends, with errNetDown
	notify chan struct{}
}

var errNetDown = errors.New("network down")

func newNetRec(clk clock.Clock) *netRec {
	return &netRec{clk: clk, notify: make(chan struct{}, 1)}
}

func (n *netRec) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	// Read the message as a real transport would, from several goroutines.
	_ = msg.String()
	msg.Header().TopVia()
	n.mu.Lock()
	if n.failN > 0 {
		n.failN--
		n.mu.Unlock()
		return errNetDown
	}
	n.sent = append(n.sent, sentMsg{msg, dst, n.clk.Now().Sub(epoch)})
	n.mu.Unlock()
	select {
	case n.notify <- struct{}{}:
	default:
	}
	return nil
}

// failNext makes the next k sends fail.
func (n *netRec) failNext(k int) {
	n.mu.Lock()
	n.failN = k
	n.mu.Unlock()
}

// take returns what was sent since the last take.
func (n *netRec) take() []sentMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.sent
	n.sent = nil
	return s
}

// wait waits until at least k messages were sent since the last take, and
// takes them.
func (n *netRec) wait(t testing.TB, k int) []sentMsg {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		n.mu.Lock()
		if len(n.sent) >= k {
			s := n.sent
			n.sent = nil
			n.mu.Unlock()
			return s
		}
		n.mu.Unlock()
		select {
		case <-n.notify:
		case <-timeout:
			t.Fatalf("timed out waiting for %d sent messages", k)
		}
	}
}

func labels(ms []sentMsg) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, ",")
}

// harness is a Layer on a fake clock and a recording network, whose
// Handler hands each server transaction to the test and then waits for it
// to end, so that the test drives Respond itself.
type harness struct {
	t    testing.TB
	clk  *clock.Fake
	net  *netRec
	l    *Layer
	txs  chan *ServerTx
	acks chan *sip.Request
}

func newHarness(t testing.TB, cfg Config) *harness { return newHarnessOn(t, cfg, false) }

// newHarnessOn is newHarness, on a network that is a Resender when kept.
func newHarnessOn(t testing.TB, cfg Config, kept bool) *harness {
	h := &harness{
		t:    t,
		clk:  clock.NewFake(epoch),
		txs:  make(chan *ServerTx, 64),
		acks: make(chan *sip.Request, 64),
	}
	h.net = newNetRec(h.clk)
	cfg.Clock = h.clk
	var s Sender = h.net
	if kept {
		s = &keptNet{netRec: h.net}
	}
	h.l = New(context.Background(), s, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			h.acks <- req
			return
		}
		h.txs <- tx
		<-tx.Done()
	}), cfg)
	t.Cleanup(func() { h.l.Close() })
	return h
}

// serverTx waits for the handler to be given a transaction.
func (h *harness) serverTx() *ServerTx {
	h.t.Helper()
	select {
	case tx := <-h.txs:
		return tx
	case <-time.After(waitLimit):
		h.t.Fatal("timed out waiting for the handler")
	}
	return nil
}

// noServerTx checks that no transaction reached the handler (yet).
func (h *harness) noServerTx() {
	h.t.Helper()
	select {
	case tx := <-h.txs:
		h.t.Fatalf("unexpected transaction for %s", tx.Request().Method)
	default:
	}
}

func (h *harness) ack() *sip.Request {
	h.t.Helper()
	select {
	case req := <-h.acks:
		return req
	case <-time.After(waitLimit):
		h.t.Fatal("timed out waiting for an ack at the handler")
	}
	return nil
}

// msgSpec describes a request of the tests.
type msgSpec struct {
	method  string
	uri     string
	branch  string // full branch value; "-" for no branch parameter
	sentBy  string
	toTag   string
	fromTag string
	callID  string
	cseq    uint32
	src     sip.Addr
	extra   string // more header lines, each ending in CRLF
	body    string
}

func (s msgSpec) text() string {
	if s.uri == "" {
		s.uri = "sip:bob@example.com"
	}
	if s.sentBy == "" {
		s.sentBy = "192.0.2.1:5060"
	}
	if s.fromTag == "" {
		s.fromTag = "ft1"
	}
	if s.callID == "" {
		s.callID = "call-1@192.0.2.1"
	}
	if s.cseq == 0 {
		s.cseq = 1
	}
	transport := s.src.Transport
	if transport == "" {
		transport = sip.UDP
	}
	cseqMethod := s.method
	branch := ";branch=" + s.branch
	if s.branch == "-" {
		branch = ""
	}
	to := "<sip:bob@example.com>"
	if s.toTag != "" {
		to += ";tag=" + s.toTag
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", s.method, s.uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s%s\r\n", transport, s.sentBy, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "From: <sip:alice@example.com>;tag=%s\r\n", s.fromTag)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", s.callID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", s.cseq, cseqMethod)
	b.WriteString(s.extra)
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(s.body), s.body)
	return b.String()
}

// req parses the request as the transport would deliver it.
func (s msgSpec) req(t testing.TB) *sip.Request {
	t.Helper()
	m, err := sip.ParseDatagram([]byte(s.text()))
	if err != nil {
		t.Fatalf("parse %q: %v", s.text(), err)
	}
	r := m.(*sip.Request)
	r.Source = s.src
	if !r.Source.IsValid() {
		r.Source = phoneUDP
	}
	return r
}

// wire sends m through serialisation and parsing, as the network would,
// with src as its Source.
func wire(t testing.TB, m sip.Message, src sip.Addr) sip.Message {
	t.Helper()
	out, err := sip.ParseDatagram([]byte(m.String()))
	if err != nil {
		t.Fatalf("parse %q: %v", m.String(), err)
	}
	switch x := out.(type) {
	case *sip.Request:
		x.Source = src
	case *sip.Response:
		x.Source = src
	}
	return out
}

// response builds a response to req with a To tag (but for 100).
func response(req *sip.Request, code int, toTag string) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if code != 100 && toTag != "" {
		res.SetToTag(toTag)
	}
	return res
}

// clientReq is a request of the client side, with our own Via.
func clientReq(t testing.TB, method string, transport string) *sip.Request {
	t.Helper()
	return msgSpec{
		method: method,
		branch: sip.NewBranch(),
		sentBy: "203.0.113.5:5060",
		src:    sip.Addr{Transport: transport, AddrPort: netip.MustParseAddrPort("203.0.113.5:5060")},
		callID: sip.NewCallID(),
	}.req(t)
}

// drain returns the responses delivered so far, without waiting, and
// whether the channel is closed.
func drain(tx *ClientTx) (got []string, closed bool) {
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				return got, true
			}
			got = append(got, strconv.Itoa(res.StatusCode))
		default:
			return got, false
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
