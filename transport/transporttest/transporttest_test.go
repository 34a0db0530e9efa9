package transporttest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// fakeT records what the harness reports, running cleanups on demand.
type fakeT struct {
	testing.TB
	ctx      context.Context
	cleanups []func()
	errors   []string
}

func (f *fakeT) Helper()                  {}
func (f *fakeT) Context() context.Context { return f.ctx }
func (f *fakeT) Cleanup(fn func())        { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestRecorderFlowClosedOnce(t *testing.T) {
	ft := &fakeT{ctx: t.Context()}
	rec := transporttest.NewRecorder(ft)
	once, twice := sip.Addr{Transport: sip.TCP, Flow: 1}, sip.Addr{Transport: sip.TCP, Flow: 2}
	rec.HandleFlowClosed(once)
	rec.HandleFlowClosed(twice)
	rec.HandleFlowClosed(twice)
	if got := rec.FlowClosed(t); got != once {
		t.Errorf("first closed %v, want %v", got, once)
	}
	ft.finish()
	if len(ft.errors) != 1 || !strings.Contains(ft.errors[0], "flow 2 reported closed 2 times") {
		t.Errorf("reports %q, want flow 2's only", ft.errors)
	}
}

// TestRecorderMax: a producer faster than the consumer never has more
// than Max messages waiting, and none is lost or reordered.
func TestRecorderMax(t *testing.T) {
	rec := transporttest.NewRecorder(t)
	rec.Max = 2
	const n = 200
	go func() {
		for i := range n {
			rec.HandleMessage(request(fmt.Sprint(i)))
		}
	}()
	for i := range n {
		if waiting, _ := rec.Counts(); waiting > rec.Max {
			t.Fatalf("%d messages waiting, Max is %d", waiting, rec.Max)
		}
		if got := rec.Message(t).Header().CallID(); got != fmt.Sprint(i) {
			t.Fatalf("message %d is %s", i, got)
		}
	}
	rec.NoMessage(t)
}

func TestRecorderNextEndsWithContext(t *testing.T) {
	rec := transporttest.NewRecorder(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := rec.Next(ctx); !errors.Is(err, context.Canceled) || m != nil {
		t.Errorf("Next on an empty Recorder with a canceled context: %v, %v", m, err)
	}
}

func request(callID string) sip.Message {
	m, err := sip.ParseMessage([]byte(transporttest.OptionsRequest(callID, sip.UDP)))
	if err != nil {
		panic(err)
	}
	return m
}

// TestTCPPeerFraming: Message passes over keep-alive answers and reads a
// body by its Content-Length, so that the next message starts in step.
func TestTCPPeerFraming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := transporttest.DialTCP(t, sip.Addr{Transport: sip.TCP, AddrPort: ln.Addr().(*net.TCPAddr).AddrPort()})
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKa\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n" +
		"Content-Type: text/plain\r\nl: %d\r\n\r\n%s"
	fmt.Fprintf(c, "\r\n\r\n"+res+res, "one", 7, "\r\n\r\nxyz", "two", 0, "")
	if m := p.Response(); m.CallID() != "one" || string(m.Payload()) != "\r\n\r\nxyz" {
		t.Errorf("first message %s with body %q", m.CallID(), m.Payload())
	}
	if m := p.Response(); m.CallID() != "two" {
		t.Errorf("second message %s", m.CallID())
	}
	c.Close()
	p.EOF()
}

// serverFunc adapts a function to a Server.
type serverFunc func(ctx context.Context, h transport.Handler) error

func (f serverFunc) Serve(ctx context.Context, h transport.Handler) error { return f(ctx, h) }

func TestServeReportsError(t *testing.T) {
	ft := &fakeT{ctx: t.Context()}
	sv := transporttest.Serve(ft, serverFunc(func(ctx context.Context, _ transport.Handler) error {
		<-ctx.Done()
		return errors.New("broken listener")
	}), transport.HandlerFuncs{})
	sv.Cancel()
	if err := sv.Wait(t); err == nil {
		t.Error("Wait returned no error")
	}
	ft.finish()
	if len(ft.errors) != 1 || !strings.Contains(ft.errors[0], "broken listener") {
		t.Errorf("reports %q, want Serve's error", ft.errors)
	}
}

func TestUDPPeer(t *testing.T) {
	a := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	b := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	a.Send(sip.Addr{Transport: sip.UDP, AddrPort: b.Addr()}, "ping")
	if data, from := b.Read(); string(data) != "ping" || from != a.Addr() {
		t.Errorf("read %q from %v, want ping from %v", data, from, a.Addr())
	}
	if !a.Addr().Addr().Is4() || a.Addr().Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Addr %v", a.Addr())
	}
}

// TestLogsLine: Line waits for a line written later, takes alike lines
// in turn, and passes over the others for good.
func TestLogsLine(t *testing.T) {
	var logs transporttest.Logs
	log := logs.Logger()
	log.Debug("dropped message", "source", "192.0.2.1:5060")
	log.Info("other")
	log.Debug("dropped message", "source", "192.0.2.2:5060")
	if got := logs.Line(t, `msg="dropped message"`); !strings.Contains(got, "source=192.0.2.1:5060") {
		t.Errorf("first line %q", got)
	}
	if got := logs.Line(t, `msg="dropped message"`); !strings.Contains(got, "source=192.0.2.2:5060") {
		t.Errorf("second line %q", got)
	}
	go log.Warn("late", "n", 1)
	if got := logs.Line(t, "msg=late"); !strings.Contains(got, "level=WARN") {
		t.Errorf("late line %q", got)
	}
	if all := logs.String(); strings.Count(all, "\n") != 4 || !strings.Contains(all, "msg=other") {
		t.Errorf("String() =\n%s", all)
	}
}

// TestTCPPeerClosed: EOF takes only a clean close, Closed a reset too.
func TestTCPPeerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	to := sip.Addr{Transport: sip.TCP, AddrPort: ln.Addr().(*net.TCPAddr).AddrPort()}
	accept := func() *net.TCPConn {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	clean := transporttest.DialTCP(t, to)
	accept().Close()
	clean.EOF()
	reset := transporttest.DialTCP(t, to)
	c := accept()
	c.SetLinger(0) // Close sends a RST
	c.Close()
	reset.Closed()
}

func TestDialWS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/full" {
			http.Error(w, "full", http.StatusServiceUnavailable)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"sip"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, m, err := c.Read(context.Background())
		if err == nil {
			c.Write(context.Background(), websocket.MessageText, m)
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	if c, status := transporttest.DialWS(t, url+"/full", netip.Addr{}); c != nil || status != http.StatusServiceUnavailable {
		t.Errorf("refused handshake: %v, HTTP %d", c, status)
	}
	c, status := transporttest.DialWS(t, url, netip.MustParseAddr("127.0.0.2"))
	if c == nil || status != http.StatusSwitchingProtocols || c.Subprotocol() != "sip" {
		t.Fatalf("handshake: HTTP %d", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), transporttest.Timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.Read(ctx); err != nil || string(m) != "hello" {
		t.Errorf("echo %q, %v", m, err)
	}
}
