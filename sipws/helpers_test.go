package sipws

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
)

// wait bounds every blocking step of a test: no test should come near it.
const wait = 10 * time.Second

// recorder is a transport.Handler that hands what it gets to the test.
type recorder struct {
	msgs   chan sip.Message
	closed chan sip.Addr

	mu     sync.Mutex
	closes map[uint64]int
}

func newRecorder(buffer int) *recorder {
	return &recorder{
		msgs:   make(chan sip.Message, buffer),
		closed: make(chan sip.Addr, 64),
		closes: make(map[uint64]int),
	}
}

func (r *recorder) HandleMessage(m sip.Message) { r.msgs <- m }

func (r *recorder) HandleFlowClosed(a sip.Addr) {
	r.mu.Lock()
	r.closes[a.Flow]++
	r.mu.Unlock()
	r.closed <- a
}

// message returns the next message delivered to the handler.
func (r *recorder) message(t *testing.T) sip.Message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no message reached the handler")
		return nil
	}
}

// flowClosed returns the next flow reported closed.
func (r *recorder) flowClosed(t *testing.T) sip.Addr {
	t.Helper()
	select {
	case a := <-r.closed:
		return a
	case <-time.After(wait):
		t.Fatal("no flow was reported closed")
		return sip.Addr{}
	}
}

// noMessage checks that nothing was delivered so far.
func (r *recorder) noMessage(t *testing.T) {
	t.Helper()
	select {
	case m := <-r.msgs:
		t.Fatalf("unexpected message delivered:\n%s", m)
	default:
	}
}

// checkOnce fails the test if a flow was reported closed twice.
func (r *recorder) checkOnce(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for flow, n := range r.closes {
		if n != 1 {
			t.Errorf("flow %d reported closed %d times", flow, n)
		}
	}
}

// server is a Transport serving behind an httptest server on loopback.
type server struct {
	tr  *Transport
	srv *httptest.Server
	rec *recorder
	// served receives Serve's result.
	served chan error
	cancel context.CancelFunc
}

// start serves a Transport made from opts; everything is closed, and
// checked for leaks, when the test ends.
func start(t *testing.T, opts Options) *server {
	return startWith(t, opts, httptest.NewServer, 256)
}

func startWith(t *testing.T, opts Options, newServer func(http.Handler) *httptest.Server, buffer int) *server {
	t.Helper()
	checkLeaks(t) // first, so that it runs after every other cleanup
	s := &server{rec: newRecorder(buffer), served: make(chan error, 1)}
	t.Cleanup(func() { s.rec.checkOnce(t) })
	tr, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.tr = tr
	s.srv = newServer(tr)
	t.Cleanup(s.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.served <- tr.Serve(ctx, s.rec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-tr.ready:
	case <-time.After(wait):
		t.Fatal("Serve did not start")
	}
	return s
}

func (s *server) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

// dial opens a SIP WebSocket to s, closed when the test ends.
func (s *server) dial(t *testing.T, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := s.tryDial(header, []string{"sip"})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func (s *server) tryDial(header http.Header, protocols []string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return websocket.Dial(ctx, s.url(), &websocket.DialOptions{
		HTTPClient:   s.srv.Client(),
		HTTPHeader:   header,
		Subprotocols: protocols,
	})
}

// dialStatus dials and returns the HTTP status of a refused handshake.
func (s *server) dialStatus(t *testing.T, header http.Header, protocols []string) int {
	t.Helper()
	c, resp, err := s.tryDial(header, protocols)
	if err == nil {
		c.CloseNow()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode
}

func send(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(msg)); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

func recv(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return typ, string(b)
}

// recvResponse reads a SIP response from c.
func recvResponse(t *testing.T, c *websocket.Conn) *sip.Response {
	t.Helper()
	_, data := recv(t, c)
	m, err := sip.ParseMessage([]byte(data))
	if err != nil {
		t.Fatalf("client got unparseable %q: %v", data, err)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("client got a request, want a response:\n%s", data)
	}
	return res
}

// request returns a REGISTER as JsSIP sends it.
func request(callID string, cseq int) string {
	return fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK%s%d;rport\r\n"+
		"Max-Forwards: 69\r\n"+
		"To: <sip:alice@example.com>\r\n"+
		"From: \"Alice\" <sip:alice@example.com>;tag=4e8hfkq2j1\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <sip:k3bd9q2r@df7jal23ls0d.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:0f6e3c2a-5b1d-4e7f-9a8c-3d2b1e0f4a5b>\";expires=600\r\n"+
		"Expires: 600\r\n"+
		"Content-Length: 0\r\n\r\n", callID, cseq, callID, cseq)
}

// message returns a MESSAGE request carrying body.
func messageWithBody(callID string, body string) string {
	return fmt.Sprintf("MESSAGE sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"To: <sip:bob@example.com>\r\n"+
		"From: <sip:alice@example.com>;tag=88sja8x\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 MESSAGE\r\n"+
		"Content-Type: text/plain\r\n"+
		"Content-Length: %d\r\n\r\n%s", callID, callID, len(body), body)
}

// checkLeaks fails the test if a goroutine of this package, of the
// WebSocket library or of an HTTP server connection outlives it. Tests in
// this package do not run in parallel, so any such goroutine is this
// test's.
func checkLeaks(t *testing.T) { leakcheck.Check(t, wait, watchedGoroutines) }

// leakedGoroutines returns the stacks of the goroutines checkLeaks looks for.
func leakedGoroutines() []string { return leakcheck.Goroutines(watchedGoroutines) }

var watchedGoroutines = leakcheck.Running(
	"github.com/coder/websocket.",
	"sipws.(*conn)",
	"sipws.(*Transport)",
	"net/http.(*conn).serve",
)
