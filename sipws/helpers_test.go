package sipws

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// wait bounds every blocking step of a test: no test should come near it.
const wait = transporttest.Timeout

// server is a Transport serving behind an httptest server on loopback.
type server struct {
	tr      *Transport
	srv     *httptest.Server
	rec     *transporttest.Recorder
	serving *transporttest.Serving
}

// start serves a Transport made from opts; everything is closed, and
// checked for leaks, when the test ends.
func start(t *testing.T, opts Options) *server {
	return startWith(t, opts, httptest.NewServer, 256)
}

// startWith is start with the HTTP server newServer makes, and a Recorder
// that holds at most maxWaiting messages (transporttest.Recorder.Max).
func startWith(t *testing.T, opts Options, newServer func(http.Handler) *httptest.Server, maxWaiting int) *server {
	t.Helper()
	checkLeaks(t) // first, so that it runs after every other cleanup
	s := &server{rec: transporttest.NewRecorder(t)}
	s.rec.Max = maxWaiting
	tr, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.tr = tr
	s.srv = newServer(tr)
	t.Cleanup(s.srv.Close)
	s.serving = transporttest.Serve(t, tr, s.rec)
	select {
	case <-tr.Serving():
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
