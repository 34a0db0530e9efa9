package transport

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// fakeTransport records what is sent through it and lets a test feed
// messages to the Layer as if it had read them.
type fakeTransport struct {
	network string
	local   sip.Addr

	mu      sync.Mutex
	sent    []sent
	sendErr func(dst sip.Addr) error
	h       Handler
	serving chan struct{} // closed when Serve has its handler
	closed  chan struct{}
	once    sync.Once
	serveFn func(ctx context.Context) error
}

type sent struct {
	wire string
	dst  sip.Addr
}

func newFake(network, local string) *fakeTransport {
	return &fakeTransport{
		network: network,
		local:   sip.Addr{Transport: network, AddrPort: netip.MustParseAddrPort(local)},
		serving: make(chan struct{}),
		closed:  make(chan struct{}),
	}
}

func (f *fakeTransport) Network() string     { return f.network }
func (f *fakeTransport) LocalAddr() sip.Addr { return f.local }

func (f *fakeTransport) Send(_ context.Context, msg sip.Message, dst sip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		if err := f.sendErr(dst); err != nil {
			return err
		}
	}
	f.sent = append(f.sent, sent{msg.String(), dst})
	return nil
}

func (f *fakeTransport) Serve(ctx context.Context, h Handler) error {
	f.mu.Lock()
	f.h = h
	f.mu.Unlock()
	close(f.serving)
	if f.serveFn != nil {
		return f.serveFn(ctx)
	}
	select {
	case <-ctx.Done():
	case <-f.closed:
	}
	return nil
}

func (f *fakeTransport) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeTransport) handler(t *testing.T) Handler {
	t.Helper()
	<-f.serving
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h
}

func (f *fakeTransport) sends() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.sent...)
}

const testRequest = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"From: <sip:alice@example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"Content-Length: 0\r\n\r\n"

// request parses testRequest with its Via replaced by via (when not
// empty), and sets its source.
func request(t testing.TB, via string, src sip.Addr) *sip.Request {
	t.Helper()
	s := testRequest
	if via != "" {
		s = strings.Replace(s, "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport", via, 1)
	}
	m, err := sip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := m.(*sip.Request)
	req.Source = src
	return req
}

func udpAddr(s string) sip.Addr {
	return sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort(s)}
}

// chanHandler passes what the Layer delivers to channels.
type chanHandler struct {
	msgs   chan sip.Message
	closed chan sip.Addr
	// block, when set, is received from before each message is passed on.
	block chan struct{}
}

func newChanHandler() *chanHandler {
	return &chanHandler{msgs: make(chan sip.Message, 1024), closed: make(chan sip.Addr, 1024)}
}

func (h *chanHandler) HandleMessage(m sip.Message) {
	h.msgs <- m
	if h.block != nil {
		<-h.block
	}
}

func (h *chanHandler) HandleFlowClosed(a sip.Addr) { h.closed <- a }
