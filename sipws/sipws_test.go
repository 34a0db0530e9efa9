package sipws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

var _ transport.Transport = (*Transport)(nil)
var _ http.Handler = (*Transport)(nil)

func TestSubprotocol(t *testing.T) {
	s := start(t, Options{})
	tests := []struct {
		offer []string
		want  int // HTTP status of the handshake
	}{
		{nil, http.StatusBadRequest},
		{[]string{"chat"}, http.StatusBadRequest},
		{[]string{"sip"}, http.StatusSwitchingProtocols},
		{[]string{"chat", "sip"}, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		c, resp, err := s.tryDial(nil, tt.offer)
		if tt.want != http.StatusSwitchingProtocols {
			if err == nil {
				c.CloseNow()
				t.Errorf("offer %q: handshake accepted, want %d", tt.offer, tt.want)
			} else if resp == nil || resp.StatusCode != tt.want {
				t.Errorf("offer %q: %v, want HTTP %d", tt.offer, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("offer %q: %v", tt.offer, err)
			continue
		}
		if got := c.Subprotocol(); got != "sip" {
			t.Errorf("offer %q: negotiated %q, want sip", tt.offer, got)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "sip" {
			t.Errorf("offer %q: Sec-WebSocket-Protocol: %q, want sip", tt.offer, got)
		}
		c.CloseNow()
	}
}

func TestOrigin(t *testing.T) {
	s := start(t, Options{AllowedOrigins: []string{"https://app.example.com", "*.example.org"}})
	self := s.srv.URL // http://127.0.0.1:port, the Host the client sends
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols}, // not a browser
		{self, http.StatusSwitchingProtocols},
		{strings.ToUpper(self), http.StatusSwitchingProtocols},
		{"https://app.example.com", http.StatusSwitchingProtocols},
		{"https://APP.example.com:443", http.StatusSwitchingProtocols},
		{"http://app.example.com", http.StatusForbidden},       // scheme differs
		{"https://app.example.com:8443", http.StatusForbidden}, // port differs
		{"https://phone.example.org", http.StatusSwitchingProtocols},
		{"https://example.org", http.StatusForbidden},
		{"https://evil.example", http.StatusForbidden},
		{"https://app.example.com.evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"http://localhost:1", http.StatusForbidden},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		if got := s.dialStatus(t, h, []string{"sip"}); got != tt.want {
			t.Errorf("Origin %q: HTTP %d, want %d", tt.origin, got, tt.want)
		}
	}
}

func TestOriginDefaultsToOwnHost(t *testing.T) {
	s := start(t, Options{})
	for origin, want := range map[string]int{
		s.srv.URL:                   http.StatusSwitchingProtocols,
		"https://app.example.com":   http.StatusForbidden,
		"http://127.0.0.1:1":        http.StatusForbidden,
		"http://127.0.0.1.evil.com": http.StatusForbidden,
	} {
		if got := s.dialStatus(t, http.Header{"Origin": {origin}}, []string{"sip"}); got != want {
			t.Errorf("Origin %q: HTTP %d, want %d", origin, got, want)
		}
	}
}

func TestOriginPatterns(t *testing.T) {
	bad := []string{"", "*", "https://*", "ftp://x.example", "https://app.example.com/phone",
		"https://u@app.example.com", "a*.example.com", "*.*.example.com", "https://app.example.com:port", "*."}
	for _, s := range bad {
		if _, err := New(Options{AllowedOrigins: []string{s}}); err == nil {
			t.Errorf("New accepted origin %q", s)
		}
	}
	good := []string{"https://app.example.com", "http://localhost:3000/", "HTTPS://App.Example.com",
		"app.example.com", "*.example.com", "https://*.example.com:8443", "http://[::1]:8080"}
	for _, s := range good {
		if _, err := New(Options{AllowedOrigins: []string{s}}); err != nil {
			t.Errorf("New refused origin %q: %v", s, err)
		}
	}

	tr, err := New(Options{AllowedOrigins: []string{
		"app.example.com", "https://*.example.net", "http://[::1]:8080", "http://gw.example:80",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"http://app.example.com":       true, // host entry: any scheme
		"https://app.example.com":      true,
		"https://app.example.com:8443": false,
		"https://a.b.example.net":      true,
		"http://a.example.net":         false,
		"https://example.net":          false,
		"http://[::1]:8080":            true,
		"http://[::1]:8081":            false,
		"http://gw.example":            true, // default port left out
		"file://":                      false,
		"%zz":                          false,
	} {
		if got := tr.allowOrigin(origin, "gateway.example:8080"); got != want {
			t.Errorf("allowOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		t.Run(typ.String(), func(t *testing.T) {
			s := start(t, Options{})
			c := s.dial(t, nil)
			send(t, c, typ, request("rt1", 1))

			req, ok := s.rec.Message(t).(*sip.Request)
			if !ok {
				t.Fatal("handler got a response, want a request")
			}
			src := req.Source
			if src.Transport != sip.WS || src.Flow == 0 || !src.AddrPort.Addr().IsLoopback() || src.AddrPort.Port() == 0 {
				t.Errorf("Source = %v, want WS from a loopback address with a flow", src)
			}
			if req.Method != sip.MethodRegister || req.CallID() != "rt1" {
				t.Errorf("got %s %s", req.Method, req.CallID())
			}

			res := sip.NewResponse(req, 200, "")
			if err := s.tr.Send(context.Background(), res, src); err != nil {
				t.Fatalf("Send: %v", err)
			}
			gotTyp, data := recv(t, c)
			if gotTyp != websocket.MessageText {
				t.Errorf("response sent as %v, want text", gotTyp)
			}
			if !strings.HasPrefix(data, "SIP/2.0 200 OK\r\n") || !strings.Contains(data, "Call-ID: rt1\r\n") {
				t.Errorf("client got:\n%s", data)
			}
		})
	}
}

func TestSendBinaryBody(t *testing.T) {
	s := start(t, Options{})
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, messageWithBody("bin1", "hello"))
	req := s.rec.Message(t).(*sip.Request)

	res := sip.NewResponse(req, 200, "")
	body := []byte{0xff, 0xfe, 0x00, 0x80} // not UTF-8
	res.SetBody(body, "application/octet-stream")
	if err := s.tr.Send(context.Background(), res, req.Source); err != nil {
		t.Fatal(err)
	}
	typ, data := recv(t, c)
	if typ != websocket.MessageBinary {
		t.Errorf("non-UTF-8 message sent as %v, want binary", typ)
	}
	if !strings.HasSuffix(data, string(body)) {
		t.Errorf("body not kept: %q", data)
	}
}

func TestFrameSize(t *testing.T) {
	const limit = 1024
	s := start(t, Options{MaxFrameSize: limit})
	c := s.dial(t, nil)

	// Exactly at the limit: delivered. (The Content-Length digits grow
	// with the body, hence the search.)
	var body, msg string
	for n := limit - len(messageWithBody("size1", "")); len(msg) != limit; n-- {
		body = strings.Repeat("x", n)
		msg = messageWithBody("size1", body)
	}
	send(t, c, websocket.MessageText, msg)
	if m := s.rec.Message(t); len(m.Payload()) != len(body) {
		t.Fatalf("body of %d bytes, want %d", len(m.Payload()), len(body))
	}

	// One byte over: the connection is closed with 1009.
	send(t, c, websocket.MessageText, messageWithBody("size2", body+"x"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Errorf("read after oversized frame: %v, want close status 1009", err)
	}
	s.rec.FlowClosed(t)
	s.rec.NoMessage(t)
}

func TestKeepalive(t *testing.T) {
	s := start(t, Options{})
	c := s.dial(t, nil)

	send(t, c, websocket.MessageText, "\r\n\r\n")
	if typ, data := recv(t, c); data != "\r\n" || typ != websocket.MessageText {
		t.Fatalf("keep-alive answered with %v %q, want text \"\\r\\n\"", typ, data)
	}
	// A lone CRLF is a pong: no answer. The next thing the client reads
	// must be the answer to what it sends after.
	send(t, c, websocket.MessageText, "\r\n")
	send(t, c, websocket.MessageBinary, "\r\n\r\n")
	if _, data := recv(t, c); data != "\r\n" {
		t.Fatalf("got %q, want one \"\\r\\n\"", data)
	}
	send(t, c, websocket.MessageText, request("ka", 1))
	if m := s.rec.Message(t); m.Header().CallID() != "ka" {
		t.Errorf("got %q", m.Header().CallID())
	}
	s.rec.NoMessage(t)
}

func TestBadMessages(t *testing.T) {
	good := request("bad", 1)
	tests := []struct {
		name  string
		frame string
		want  string // status line of the stateless answer; "" for none
	}{
		{"bad content-length", strings.Replace(good, "Content-Length: 0", "Content-Length: zero", 1),
			"SIP/2.0 400 Malformed Content-Length"},
		{"two messages in one frame (dblreq)", good + request("bad2", 2),
			"SIP/2.0 400 Octets After Body"},
		{"body shorter than content-length", strings.Replace(good, "Content-Length: 0", "Content-Length: 10", 1),
			"SIP/2.0 400 Content-Length Exceeds Message"},
		{"malformed from", strings.Replace(good, "From: \"Alice\" <sip:alice@example.com>", "From: <sip:alice@example.com", 1),
			"SIP/2.0 400 Malformed From"},
		{"headers without end", strings.TrimSuffix(good, "\r\n"), "SIP/2.0 400 Incomplete Message"},
		{"no via", strings.Replace(good, "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKbad1;rport\r\n", "", 1), ""},
		{"garbage", "hello, world", ""},
		{"bad response", "SIP/2.0 2000 OK\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\n\r\n", ""},
		{"nul bytes", "\x00\x00\x00", ""},
		// RejectBytes would copy the stray continuation line into an
		// answer that does not parse (found by FuzzReadFrame).
		{"answer would be malformed", "0\n V:SIP/2.0/0 0", ""},
	}
	s := start(t, Options{})
	c := s.dial(t, nil)
	for _, tt := range tests {
		send(t, c, websocket.MessageText, tt.frame)
		// The keep-alive marks the end: whatever comes before its answer
		// was the answer to the bad frame.
		send(t, c, websocket.MessageText, "\r\n\r\n")
		_, data := recv(t, c)
		if tt.want == "" {
			if data != "\r\n" {
				t.Errorf("%s: answered with\n%s\nwant no answer", tt.name, data)
				recv(t, c)
			}
			continue
		}
		if !strings.HasPrefix(data, tt.want+"\r\n") {
			t.Errorf("%s: answered with\n%s\nwant %s", tt.name, data, tt.want)
		} else if _, err := sip.ParseMessage([]byte(data)); err != nil && !errors.Is(err, sip.ErrMissingHeader) {
			// A malformed From or To is left out of the answer.
			t.Errorf("%s: answer does not parse: %v", tt.name, err)
		} else if !strings.Contains(data, "\r\nCall-ID: bad\r\n") || strings.Count(data, "\r\nVia: ") != 1 {
			t.Errorf("%s: answer lost Call-ID or Via:\n%s", tt.name, data)
		}
		if _, data := recv(t, c); data != "\r\n" {
			t.Errorf("%s: second answer %q", tt.name, data)
		}
	}
	s.rec.NoMessage(t)
	// The connection survived it all.
	send(t, c, websocket.MessageText, good)
	if m := s.rec.Message(t); m.Header().CallID() != "bad" {
		t.Errorf("got %q", m.Header().CallID())
	}
}

func TestAbruptClose(t *testing.T) {
	s := start(t, Options{})
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("ab", 1))
	src := s.rec.Message(t).Src()

	c.CloseNow() // no close handshake, as when a tab is killed
	if got := s.rec.FlowClosed(t); got != src {
		t.Errorf("closed flow %v, want %v", got, src)
	}
	err := s.tr.Send(context.Background(), sip.NewResponse(&sip.Request{}, 200, ""), src)
	if !errors.Is(err, transport.ErrFlowClosed) {
		t.Errorf("Send to closed flow: %v, want ErrFlowClosed", err)
	}
}

func TestPeerCloses(t *testing.T) {
	s := start(t, Options{})
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("pc", 1))
	src := s.rec.Message(t).Src()
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close handshake: %v", err)
	}
	if got := s.rec.FlowClosed(t); got != src {
		t.Errorf("closed flow %v, want %v", got, src)
	}
}

func TestPingTimeout(t *testing.T) {
	s := start(t, Options{PingInterval: 20 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	// coder/websocket answers pings only while reading; this client never
	// reads, like a peer whose network vanished.
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("ping", 1))
	src := s.rec.Message(t).Src()
	if got := s.rec.FlowClosed(t); got != src {
		t.Errorf("closed flow %v, want %v", got, src)
	}
	err := s.tr.Send(context.Background(), sip.NewResponse(&sip.Request{}, 200, ""), src)
	if !errors.Is(err, transport.ErrFlowClosed) {
		t.Errorf("Send after ping timeout: %v, want ErrFlowClosed", err)
	}
}

func TestPingAnswered(t *testing.T) {
	s := start(t, Options{PingInterval: 5 * time.Millisecond, PongTimeout: wait})
	pings := make(chan struct{}, 100)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.url(), &websocket.DialOptions{
		HTTPClient:   s.srv.Client(),
		Subprotocols: []string{"sip"},
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pings <- struct{}{}:
			default:
			}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.CloseRead(ctx) // reads, and so answers pings
	// The pinger waits for each pong before the next ping: the fifth ping
	// means four pongs were taken as proof of life.
	for i := range 5 {
		select {
		case <-pings:
		case <-ctx.Done():
			t.Fatalf("only %d pings arrived", i)
		}
	}
	if _, closed := s.rec.Counts(); closed > 0 {
		t.Fatalf("flow %v closed although it answered pings", s.rec.FlowClosed(t))
	}
}

func TestManyMessages(t *testing.T) {
	const n = 10000
	// A small handler queue: the test also shows that a slow consumer
	// slows the sender down instead of losing messages.
	s := startWith(t, Options{}, httptest.NewServer, 16)
	c := s.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	defer cancel()

	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, []byte(request("many", i+1))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	answered := make(chan error, 1)
	go func() {
		for i := range n {
			m, err := s.rec.Next(ctx)
			if err != nil {
				answered <- fmt.Errorf("message %d never came", i+1)
				return
			}
			req := m.(*sip.Request)
			if got := req.CSeq().Seq; got != uint32(i+1) {
				answered <- fmt.Errorf("message %d has CSeq %d", i+1, got)
				return
			}
			if err := s.tr.Send(ctx, sip.NewResponse(req, 200, ""), req.Source); err != nil {
				answered <- err
				return
			}
		}
		answered <- nil
	}()
	for i := range n {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		if want := fmt.Sprintf("CSeq: %d REGISTER\r\n", i+1); !strings.Contains(string(data), want) {
			t.Fatalf("response %d out of order:\n%s", i+1, data)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}

func TestSend(t *testing.T) {
	s := start(t, Options{})
	c1 := s.dial(t, nil)
	c2 := s.dial(t, nil)
	send(t, c1, websocket.MessageText, request("one", 1))
	req1 := s.rec.Message(t).(*sip.Request)
	send(t, c2, websocket.MessageText, request("two", 1))
	req2 := s.rec.Message(t).(*sip.Request)
	if req1.Source.Flow == req2.Source.Flow {
		t.Fatalf("two connections share flow %d", req1.Source.Flow)
	}
	ctx := context.Background()

	// By address alone: the connection from that address.
	byAddr := req2.Source
	byAddr.Flow = 0
	if err := s.tr.Send(ctx, sip.NewResponse(req2, 200, ""), byAddr); err != nil {
		t.Fatal(err)
	}
	if res := recvResponse(t, c2); res.CallID() != "two" {
		t.Errorf("got response for %q on connection two", res.CallID())
	}

	for _, dst := range []sip.Addr{
		{Transport: sip.WS, AddrPort: req1.Source.AddrPort, Flow: 1 << 62}, // unknown flow
		{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("127.0.0.1:1")},
		{},
	} {
		if err := s.tr.Send(ctx, sip.NewResponse(req1, 200, ""), dst); !errors.Is(err, transport.ErrFlowClosed) {
			t.Errorf("Send to %v: %v, want ErrFlowClosed", dst, err)
		}
	}

	// An expired context fails the send and leaves the flow alone.
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.tr.Send(expired, sip.NewResponse(req1, 200, ""), req1.Source); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with canceled context: %v", err)
	}
	if err := s.tr.Send(ctx, sip.NewResponse(req1, 200, ""), req1.Source); err != nil {
		t.Errorf("Send after a canceled one: %v", err)
	}
	if res := recvResponse(t, c1); res.CallID() != "one" {
		t.Errorf("got response for %q on connection one", res.CallID())
	}
}

func TestNotServing(t *testing.T) {
	checkLeaks(t)
	tr, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tr)
	defer srv.Close()
	s := &server{tr: tr, srv: srv}
	if got := s.dialStatus(t, nil, []string{"sip"}); got != http.StatusServiceUnavailable {
		t.Errorf("before Serve: HTTP %d, want 503", got)
	}
	select {
	case <-tr.Serving():
		t.Error("Serving closed before Serve")
	default:
	}
	tr.Close()
	if err := tr.Serve(context.Background(), transporttest.NewRecorder(t)); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if got := s.dialStatus(t, nil, []string{"sip"}); got != http.StatusServiceUnavailable {
		t.Errorf("after Close: HTTP %d, want 503", got)
	}
}

func TestServeTwice(t *testing.T) {
	s := start(t, Options{})
	if err := s.tr.Serve(context.Background(), transporttest.NewRecorder(t)); err == nil {
		t.Error("second Serve succeeded")
	}
	if err := s.tr.Serve(context.Background(), nil); err == nil {
		t.Error("Serve with a nil handler succeeded")
	}
}

func TestClose(t *testing.T) {
	for _, how := range []string{"Close", "context"} {
		t.Run(how, func(t *testing.T) {
			s := start(t, Options{})
			var conns []*websocket.Conn
			for range 3 {
				conns = append(conns, s.dial(t, nil))
			}
			// Make sure all three are flows before closing.
			for i, c := range conns {
				send(t, c, websocket.MessageText, request("close", i+1))
				s.rec.Message(t)
			}
			// The clients must read to answer the close handshake.
			statuses := make(chan websocket.StatusCode, len(conns))
			for _, c := range conns {
				go func() {
					_, _, err := c.Read(context.Background())
					statuses <- websocket.CloseStatus(err)
				}()
			}
			if how == "Close" {
				if err := s.tr.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				s.serving.Cancel()
			}
			s.serving.Wait(t) // its error is the cleanup's to check
			for range conns {
				if got := <-statuses; got != websocket.StatusGoingAway {
					t.Errorf("client saw close status %v, want 1001", got)
				}
				s.rec.FlowClosed(t)
			}
			if got := s.dialStatus(t, nil, []string{"sip"}); got != http.StatusServiceUnavailable {
				t.Errorf("after Close: HTTP %d, want 503", got)
			}
			dst := sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("127.0.0.1:1"), Flow: 1}
			if err := s.tr.Send(context.Background(), &sip.Response{}, dst); !errors.Is(err, transport.ErrClosed) {
				t.Errorf("Send after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestWSS(t *testing.T) {
	s := startWith(t, Options{}, httptest.NewTLSServer, 16)
	if !strings.HasPrefix(s.url(), "wss://") {
		t.Fatalf("url %s", s.url())
	}
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("wss", 1))
	req := s.rec.Message(t).(*sip.Request)
	if req.Source.Transport != sip.WSS || !req.Source.Secure() {
		t.Errorf("Source = %v, want WSS", req.Source)
	}
	if err := s.tr.Send(context.Background(), sip.NewResponse(req, 200, ""), req.Source); err != nil {
		t.Fatal(err)
	}
	if res := recvResponse(t, c); res.StatusCode != 200 {
		t.Errorf("got %d", res.StatusCode)
	}
}

func TestNetwork(t *testing.T) {
	local := netip.MustParseAddrPort("127.0.0.1:8080")
	for _, secure := range []bool{false, true} {
		tr, err := New(Options{LocalAddr: local, Secure: secure})
		if err != nil {
			t.Fatal(err)
		}
		want := sip.WS
		if secure {
			want = sip.WSS
		}
		if tr.Network() != want || tr.LocalAddr() != (sip.Addr{Transport: want, AddrPort: local}) {
			t.Errorf("Secure=%v: Network %s, LocalAddr %v", secure, tr.Network(), tr.LocalAddr())
		}
	}
	if _, err := New(Options{MaxConns: -1}); err == nil {
		t.Error("negative MaxConns accepted")
	}
}

func TestSecureOptionMarksFlows(t *testing.T) {
	// Behind a TLS-terminating proxy the request is plain HTTP, but the
	// client did use TLS.
	s := start(t, Options{Secure: true})
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("sec", 1))
	if src := s.rec.Message(t).Src(); src.Transport != sip.WSS {
		t.Errorf("Source = %v, want WSS", src)
	}
}

// TestForwardedClient: behind a trusted proxy a flow's source is the
// client the proxy names, and WSS when the client reached the proxy over
// TLS; a client that is no trusted proxy cannot name itself.
func TestForwardedClient(t *testing.T) {
	trust := forwarded.Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	for _, tt := range []struct {
		name  string
		trust forwarded.Trust
		want  sip.Addr
	}{
		{"trusted", trust, sip.Addr{Transport: sip.WSS, AddrPort: netip.MustParseAddrPort("198.51.100.7:0")}},
		{"untrusted", forwarded.Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, sip.Addr{Transport: sip.WS}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{Forwarded: tt.trust})
			c := s.dial(t, http.Header{"X-Forwarded-For": {"198.51.100.7"}, "X-Forwarded-Proto": {"https"}})
			send(t, c, websocket.MessageText, request("fwd", 1))
			src := s.rec.Message(t).Src()
			want := tt.want
			if !want.AddrPort.IsValid() {
				want.AddrPort = src.AddrPort
				if !src.AddrPort.Addr().IsLoopback() {
					t.Errorf("Source = %v, want the loopback peer", src)
				}
			}
			if src.Transport != want.Transport || src.AddrPort != want.AddrPort {
				t.Errorf("Source = %v, want %v", src, want)
			}
		})
	}
}

func TestNotAWebSocket(t *testing.T) {
	s := start(t, Options{MaxConns: 1})
	req, err := http.NewRequest("GET", s.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-WebSocket-Protocol", "sip")
	for range 2 {
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Errorf("plain GET: HTTP %d, want 426", resp.StatusCode)
		}
	}
	s.dial(t, nil) // the failed handshakes gave their slot back
}

// TestLeakCheckSeesConnections keeps checkLeaks honest: an open flow's
// goroutines must be among the ones it looks for.
func TestLeakCheckSeesConnections(t *testing.T) {
	s := start(t, Options{})
	c := s.dial(t, nil)
	send(t, c, websocket.MessageText, request("leak", 1))
	s.rec.Message(t)
	var reader, pinger bool
	for _, g := range leakedGoroutines() {
		reader = reader || strings.Contains(g, "sipws.(*conn).read")
		pinger = pinger || strings.Contains(g, "sipws.(*conn).keepalive")
	}
	if !reader || !pinger {
		t.Errorf("leak check misses a flow's goroutines: reader %v, pinger %v", reader, pinger)
	}
}
