package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
)

const wait = 10 * time.Second

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing received within %v", wait)
		panic("unreachable")
	}
}

func none[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %v", v)
	default:
	}
}

// serve runs l with h until the test ends.
func serve(t *testing.T, l *Layer, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := recv(t, done); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func TestStampReceived(t *testing.T) {
	src := udpAddr("198.51.100.7:40000")
	for _, tc := range []struct{ name, via, want string }{
		{"same ip no rport", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKa",
			"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKa"},
		{"other ip", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa",
			"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=198.51.100.7"},
		{"name", "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKa",
			"SIP/2.0/UDP pc33.example.com;branch=z9hG4bKa;received=198.51.100.7"},
		{"bare rport same ip", "SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bKa",
			"SIP/2.0/UDP 198.51.100.7:5060;rport=40000;branch=z9hG4bKa;received=198.51.100.7"},
		{"bare rport behind nat", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport",
			"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=40000;received=198.51.100.7"},
		{"forged rport and received", "SIP/2.0/UDP 10.0.0.1;rport=9;received=203.0.113.9;branch=z9hG4bKa",
			"SIP/2.0/UDP 10.0.0.1;rport=40000;received=198.51.100.7;branch=z9hG4bKa"},
		{"forged received same host", "SIP/2.0/UDP 198.51.100.7;received=203.0.113.9;branch=z9hG4bKa",
			"SIP/2.0/UDP 198.51.100.7;received=198.51.100.7;branch=z9hG4bKa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, tc.via, src)
			StampReceived(req)
			v, _ := req.TopVia()
			if got := v.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	t.Run("ipv6 and second via kept", func(t *testing.T) {
		req := request(t, "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP p.example.com;branch=z9hG4bKb",
			udpAddr("[2001:db8::1]:5070"))
		StampReceived(req)
		vias := req.Via()
		if len(vias) != 2 {
			t.Fatalf("vias: %v", vias)
		}
		if got, want := vias[0].String(), "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKa;rport=5070;received=2001:db8::1"; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if vias[1].Host != "p.example.com" {
			t.Errorf("second via changed: %v", vias[1])
		}
		// What was written must parse again.
		if _, err := sip.ParseMessage([]byte(req.String())); err != nil {
			t.Errorf("re-parse: %v", err)
		}
	})
	t.Run("ipv4-mapped source", func(t *testing.T) {
		req := request(t, "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKa",
			sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1234")})
		StampReceived(req)
		if v, _ := req.TopVia(); v.Received() != "" {
			t.Errorf("received added for the same address: %s", v.String())
		}
	})
}

func TestResponseAddr(t *testing.T) {
	for _, tc := range []struct {
		via  string
		want string
		ok   bool
	}{
		{"SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.7;rport=40000", "UDP 198.51.100.7:40000", true},
		{"SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.7", "UDP 198.51.100.7:5062", true},
		{"SIP/2.0/UDP 10.0.0.1;received=198.51.100.7", "UDP 198.51.100.7:5060", true},
		{"SIP/2.0/UDP 10.0.0.1:5062;rport=7000", "UDP 10.0.0.1:7000", true},
		{"SIP/2.0/UDP 10.0.0.1:5062;rport", "UDP 10.0.0.1:5062", true},
		{"SIP/2.0/TCP 10.0.0.1:5062;received=198.51.100.7;rport=40000", "TCP 198.51.100.7:5062", true},
		{"SIP/2.0/TLS 10.0.0.1;received=198.51.100.7", "TLS 198.51.100.7:5061", true},
		{"SIP/2.0/tcp [2001:db8::1]", "TCP [2001:db8::1]:5060", true},
		{"SIP/2.0/UDP pc33.example.com;received=2001:db8::7;rport=9", "UDP [2001:db8::7]:9", true},
		{"SIP/2.0/UDP pc33.example.com:5062", "", false},
		{"SIP/2.0/UDP 10.0.0.1:5062;maddr=224.0.1.75;ttl=1", "UDP 10.0.0.1:5062", true},
	} {
		vs, err := sip.ParseVia(tc.via)
		if err != nil {
			t.Fatalf("%s: %v", tc.via, err)
		}
		a, ok := ResponseAddr(vs[0])
		if ok != tc.ok || ok && a.String() != tc.want {
			t.Errorf("%s: got %v %v, want %q %v", tc.via, a, ok, tc.want, tc.ok)
		}
	}
}

func TestReject(t *testing.T) {
	bad := strings.Replace(testRequest, "Max-Forwards: 70", "Max-Forwards: many", 1)
	_, err := sip.ParseMessage([]byte(bad))
	if err == nil {
		t.Fatal("malformed request parsed")
	}
	resp, ok := Reject([]byte(bad), fmt.Errorf("read: %w", err))
	if !ok {
		t.Fatal("no answer")
	}
	m, err := sip.ParseMessage(resp)
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, resp)
	}
	res := m.(*sip.Response)
	if res.StatusCode != 400 || !strings.Contains(res.Reason, "Max-Forwards") {
		t.Errorf("answer %d %q", res.StatusCode, res.Reason)
	}
	if _, ok := Reject([]byte(bad), errors.New("not a parse error")); ok {
		t.Error("answer to an error without status")
	}
	noVia := strings.Replace(bad, "Via:", "X-Via:", 1)
	if _, ok := Reject([]byte(noVia), err); ok {
		t.Error("answer without Via")
	}
}

func TestLayerStampsAndDelivers(t *testing.T) {
	l := NewLayer(Config{})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	h := newChanHandler()
	serve(t, l, h)
	feed := udp.handler(t)
	feed.HandleMessage(request(t, "", udpAddr("198.51.100.7:40000")))
	m := recv(t, h.msgs)
	v, _ := m.Header().TopVia()
	if v.Received() != "198.51.100.7" {
		t.Errorf("received not stamped: %s", v.String())
	}
	if p, _ := v.RPort(); p != 40000 {
		t.Errorf("rport not filled: %s", v.String())
	}
	if s := l.Stats(); s.Received != 1 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestLayerPerSourceCap(t *testing.T) {
	a, b := udpAddr("198.51.100.1:5060"), udpAddr("198.51.100.2:5060")
	l, _, h, feed := heldLayer(t, Config{MaxPendingPerSource: 4}, a)
	send := func(src sip.Addr, n int) {
		req := request(t, "", src)
		req.Set("Call-ID", fmt.Sprintf("%s-%d", src.AddrPort.Addr(), n))
		feed.HandleMessage(req)
	}
	// The only worker is busy with a's first: a2..a5 wait, a6..a10 are over
	// the cap of 4 and dropped; b still gets in.
	for i := 2; i <= 10; i++ {
		send(a, i)
	}
	send(b, 1)
	send(b, 2)
	if s := l.Stats(); s.Dropped != 5 || s.Pending != 6 {
		t.Fatalf("stats %+v, want 5 dropped, 6 pending", s)
	}
	// Round-robin: a, ready with a2 before b sent, then b and a in
	// turn, a's last ones at the end. (a's lanes are taken in turn too: a1 held
	// its own, the others were free.)
	var order []string
	for range 6 {
		h.block <- struct{}{}
		order = append(order, recv(t, h.msgs).Header().CallID())
	}
	want := []string{"198.51.100.1-2", "198.51.100.2-1", "198.51.100.1-3", "198.51.100.2-2", "198.51.100.1-4", "198.51.100.1-5"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order %v\nwant  %v", order, want)
	}
}

func TestLayerFlowClosedAfterMessages(t *testing.T) {
	l := NewLayer(Config{})
	tcp := newFake(sip.TCP, "127.0.0.1:5060")
	l.Add(tcp)
	h := newChanHandler()
	serve(t, l, h)
	feed := tcp.handler(t)
	flow := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.7:40000"), Flow: NextFlowID()}
	feed.HandleMessage(request(t, "SIP/2.0/TCP 198.51.100.7;branch=z9hG4bKa", flow))
	if !l.FlowOpen(flow) {
		t.Error("flow not open after a message")
	}
	feed.HandleFlowClosed(flow)
	if l.FlowOpen(flow) {
		t.Error("flow open after closing")
	}
	if m := recv(t, h.msgs); m.Src() != flow {
		t.Errorf("source %v", m.Src())
	}
	if got := recv(t, h.closed); got != flow {
		t.Errorf("closed %v", got)
	}
}

func TestLayerPicksTransportByFamily(t *testing.T) {
	l := NewLayer(Config{})
	v4 := newFake(sip.UDP, "127.0.0.1:5060")
	v6 := newFake(sip.UDP, "[::1]:5060")
	tcp := newFake(sip.TCP, "[::]:5060")
	l.Add(v4)
	l.Add(v6)
	l.Add(tcp)
	ctx := context.Background()
	for _, tc := range []struct {
		dst  sip.Addr
		want *fakeTransport
	}{
		{udpAddr("192.0.2.1:5060"), v4},
		{udpAddr("[2001:db8::1]:5060"), v6},
		{udpAddr("[::ffff:192.0.2.1]:5060"), v4},
		{sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")}, tcp},
	} {
		req := request(t, "", sip.Addr{})
		if err := l.Send(ctx, req, tc.dst); err != nil {
			t.Fatalf("send to %v: %v", tc.dst, err)
		}
		if s := tc.want.sends(); len(s) == 0 || s[len(s)-1].dst != tc.dst {
			t.Errorf("%v did not go through %s %s", tc.dst, tc.want.network, tc.want.local)
		}
	}
	err := l.Send(ctx, request(t, "", sip.Addr{}), sip.Addr{Transport: sip.TLS, AddrPort: netip.MustParseAddrPort("192.0.2.1:5061")})
	if !errors.Is(err, ErrNoTransport) {
		t.Errorf("tls without transport: %v", err)
	}
}

func TestStampVia(t *testing.T) {
	l := NewLayer(Config{})
	l.Add(newFake(sip.UDP, "127.0.0.1:5070"))
	l.Add(newFake(sip.TCP, "[::1]:5071"))
	req := request(t, "", sip.Addr{})
	v, err := l.StampVia(req, udpAddr("127.0.0.1:5060"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Transport != sip.UDP || v.SentBy() != "127.0.0.1:5070" || !strings.HasPrefix(v.Branch(), sip.BranchCookie) || !v.Params.Has("rport") {
		t.Errorf("via %s", v.String())
	}
	if top, _ := req.TopVia(); top.Branch() != v.Branch() || len(req.Via()) != 2 {
		t.Errorf("not on top: %v", req.Via())
	}
	v2, err := l.StampVia(req, sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("[::1]:5060")})
	if err != nil || v2.String() != "SIP/2.0/TCP [::1]:5071;branch="+v2.Branch()+";rport" || v2.Branch() == v.Branch() {
		t.Errorf("via %s, %v", v2.String(), err)
	}
	named := NewLayer(Config{ViaHost: "sip.example.com"})
	named.Add(newFake(sip.UDP, "0.0.0.0:5060"))
	v3, err := named.StampVia(request(t, "", sip.Addr{}), udpAddr("127.0.0.1:5060"))
	if err != nil || v3.SentBy() != "sip.example.com:5060" {
		t.Errorf("via %s, %v", v3.String(), err)
	}
	wild := NewLayer(Config{})
	wild.Add(newFake(sip.UDP, "0.0.0.0:5060"))
	v4, err := wild.StampVia(request(t, "", sip.Addr{}), udpAddr("127.0.0.1:5060"))
	if err != nil || v4.SentBy() != "127.0.0.1:5060" {
		t.Errorf("wildcard via %s, %v", v4.String(), err)
	}
}

// bigRequest returns a request over the MTU, with our UDP Via on top.
func bigRequest(t *testing.T) *sip.Request {
	req := request(t, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbig;rport", sip.Addr{})
	req.SetBody([]byte(strings.Repeat("v=0\r\n", 300)), "application/sdp")
	return req
}

func TestLayerMTURule(t *testing.T) {
	ctx := context.Background()
	l := NewLayer(Config{})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	tcp := newFake(sip.TCP, "127.0.0.1:5080")
	l.Add(udp)
	l.Add(tcp)
	dst := udpAddr("192.0.2.1:5060")

	if err := l.Send(ctx, request(t, "", sip.Addr{}), dst); err != nil || len(udp.sends()) != 1 {
		t.Fatalf("small request: %v, %d over udp", err, len(udp.sends()))
	}
	req := bigRequest(t)
	if err := l.Send(ctx, req, dst); err != nil {
		t.Fatal(err)
	}
	s := tcp.sends()
	if len(s) != 1 || s[0].dst.String() != "TCP 192.0.2.1:5060" {
		t.Fatalf("large request not over tcp: %v", s)
	}
	if !strings.Contains(s[0].wire, "Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKbig;rport\r\n") {
		t.Errorf("via not rewritten:\n%s", s[0].wire[:200])
	}
	if v, _ := req.TopVia(); v.Transport != sip.UDP {
		t.Errorf("the caller's request was changed: %s", v.String())
	}

	// Responses stay on UDP whatever their size.
	res := sip.NewResponse(bigRequest(t), 200, "")
	res.SetBody(req.Body, "application/sdp")
	res.SetTopVia(sip.Via{Transport: sip.UDP, Host: "192.0.2.1", Port: 5060, Params: ";branch=z9hG4bKbig;received=192.0.2.1"})
	if err := l.Send(ctx, res, sip.Addr{}); err != nil || len(udp.sends()) != 2 {
		t.Fatalf("large response: %v, %d over udp", err, len(udp.sends()))
	}

	// When TCP fails, UDP with the Via as it was.
	tcp.sendErr = func(sip.Addr) error { return errors.New("connection refused") }
	req = bigRequest(t)
	if err := l.Send(ctx, req, dst); err != nil {
		t.Fatal(err)
	}
	u := udp.sends()
	if len(u) != 3 || !strings.Contains(u[2].wire, "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbig;rport\r\n") {
		t.Errorf("fallback to udp: %d sends\n%s", len(u), u[len(u)-1].wire[:200])
	}

	// Without a TCP transport the rule cannot apply.
	only := NewLayer(Config{})
	udp2 := newFake(sip.UDP, "127.0.0.1:5060")
	only.Add(udp2)
	if err := only.Send(ctx, bigRequest(t), dst); err != nil || len(udp2.sends()) != 1 {
		t.Errorf("udp only: %v", err)
	}
}

func TestLayerResponseRouting(t *testing.T) {
	ctx := context.Background()
	l := NewLayer(Config{})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	tcp := newFake(sip.TCP, "127.0.0.1:5060")
	l.Add(udp)
	l.Add(tcp)

	// UDP: to received and rport.
	req := request(t, "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport", udpAddr("198.51.100.7:40000"))
	StampReceived(req)
	if err := l.Send(ctx, sip.NewResponse(req, 200, ""), req.Source); err != nil {
		t.Fatal(err)
	}
	if s := udp.sends(); len(s) != 1 || s[0].dst != udpAddr("198.51.100.7:40000") {
		t.Errorf("udp response went to %v", s)
	}

	// TCP: same connection while open, then received and sent-by port.
	flow := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.7:40001"), Flow: NextFlowID()}
	req = request(t, "SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKb;rport", flow)
	StampReceived(req)
	if err := l.Send(ctx, sip.NewResponse(req, 200, ""), req.Source); err != nil {
		t.Fatal(err)
	}
	if s := tcp.sends(); len(s) != 1 || s[0].dst != flow {
		t.Errorf("tcp response went to %v", s)
	}
	tcp.sendErr = func(dst sip.Addr) error {
		if dst.Flow != 0 {
			return fmt.Errorf("fake: %w", ErrFlowClosed)
		}
		return nil
	}
	if err := l.Send(ctx, sip.NewResponse(req, 200, ""), req.Source); err != nil {
		t.Fatal(err)
	}
	want := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.7:5062")}
	if s := tcp.sends(); len(s) != 2 || s[1].dst != want {
		t.Errorf("tcp response after the flow closed went to %v, want %v", s, want)
	}

	// A request over a closed flow fails with ErrFlowClosed.
	if err := l.Send(ctx, request(t, "", sip.Addr{}), flow); !errors.Is(err, ErrFlowClosed) {
		t.Errorf("request over closed flow: %v", err)
	}

	// No Via: no route.
	res := sip.NewResponse(req, 200, "")
	res.Del("Via")
	if err := l.Send(ctx, res, sip.Addr{}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("response without via: %v", err)
	}
}

// fakeResolver answers from maps.
type fakeResolver struct {
	srv map[string][]*net.SRV
	ip  map[string][]net.IPAddr
}

func (f fakeResolver) LookupNAPTR(context.Context, string) ([]locate.NAPTR, error) { return nil, nil }

func (f fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	if r, ok := f.srv[name]; ok {
		return name, r, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if r, ok := f.ip[host]; ok {
		return r, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// nullTransport sends nothing and allocates nothing: what the Layer's own
// sending allocates shows alone.
type nullTransport struct{ local sip.Addr }

func (n nullTransport) Network() string                                 { return n.local.Transport }
func (n nullTransport) LocalAddr() sip.Addr                             { return n.local }
func (nullTransport) Send(context.Context, sip.Message, sip.Addr) error { return nil }
func (nullTransport) Serve(ctx context.Context, _ Handler) error        { <-ctx.Done(); return nil }
func (nullTransport) Close() error                                      { return nil }

// TestLayerResponseSendAllocs: a response whose Via names its address
// (received and rport, as StampReceived leaves it) is sent without an
// allocation of the Layer's: every request's answer goes this way.
func TestLayerResponseSendAllocs(t *testing.T) {
	ctx := context.Background()
	l := NewLayer(Config{})
	l.Add(nullTransport{udpAddr("127.0.0.1:5060")})
	req := request(t, "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport", udpAddr("198.51.100.7:40000"))
	StampReceived(req)
	res := sip.NewResponse(req, 200, "")
	if n := testing.AllocsPerRun(100, func() {
		if err := l.Send(ctx, res, req.Source); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per response sent, want 0", n)
	}
}

func TestLayerResponseToSentByName(t *testing.T) {
	res := fakeResolver{
		srv: map[string][]*net.SRV{"_sip._udp.phone.example.com": {{Target: "a.example.com.", Port: 5070}}},
		ip:  map[string][]net.IPAddr{"a.example.com": {{IP: net.ParseIP("192.0.2.44")}}},
	}
	l := NewLayer(Config{Locator: &locate.Locator{DNS: res}})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	// A request that did not come through a Layer has no received.
	req := request(t, "SIP/2.0/UDP phone.example.com;branch=z9hG4bKa", sip.Addr{})
	if err := l.Send(context.Background(), sip.NewResponse(req, 200, ""), sip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if s := udp.sends(); len(s) != 1 || s[0].dst != udpAddr("192.0.2.44:5070") {
		t.Errorf("went to %v", s)
	}
	req = request(t, "SIP/2.0/UDP unknown.example.com;branch=z9hG4bKa", sip.Addr{})
	if err := l.Send(context.Background(), sip.NewResponse(req, 200, ""), sip.Addr{}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("unresolvable sent-by: %v", err)
	}
}

func TestLayerServeFailsWithTransport(t *testing.T) {
	l := NewLayer(Config{})
	ok := newFake(sip.UDP, "127.0.0.1:5060")
	bad := newFake(sip.TCP, "127.0.0.1:5060")
	boom := errors.New("boom")
	bad.serveFn = func(context.Context) error { return boom }
	l.Add(ok)
	l.Add(bad)
	err := l.Serve(context.Background(), newChanHandler())
	if !errors.Is(err, boom) {
		t.Fatalf("serve: %v", err)
	}
	select {
	case <-ok.closed:
	default:
		t.Error("other transport not closed")
	}
	if err := l.Serve(context.Background(), newChanHandler()); !errors.Is(err, ErrClosed) {
		t.Errorf("second serve: %v", err)
	}
}

func TestLayerAddWhileServing(t *testing.T) {
	l := NewLayer(Config{})
	h := newChanHandler()
	serve(t, l, h)
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	udp.handler(t).HandleMessage(request(t, "", udpAddr("198.51.100.7:40000")))
	recv(t, h.msgs)
	none(t, h.closed)
}

func TestLayerClose(t *testing.T) {
	l := NewLayer(Config{})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	done := make(chan error, 1)
	go func() { done <- l.Serve(context.Background(), newChanHandler()) }()
	udp.handler(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, done); err != nil {
		t.Errorf("serve after close: %v", err)
	}
	late := newFake(sip.UDP, "127.0.0.1:5061")
	l.Add(late)
	select {
	case <-late.closed:
	default:
		t.Error("transport added after close is open")
	}
}

// TestLayerSendOnlyReads sends one request and one response from several
// goroutines at once, as the transaction layer may: under -race any write
// to the shared messages fails the test.
func TestLayerSendOnlyReads(t *testing.T) {
	l := NewLayer(Config{})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	tcp := newFake(sip.TCP, "127.0.0.1:5060")
	l.Add(udp)
	l.Add(tcp)
	big := bigRequest(t)
	req := request(t, "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport", udpAddr("198.51.100.7:40000"))
	StampReceived(req)
	res := sip.NewResponse(req, 200, "")
	// Like the transaction layer, parse the typed headers the transport
	// reads before sharing the message (sip.Headers fills its cache on
	// first read).
	res.TopVia()
	big.TopVia()
	flow := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.7:40001"), Flow: NextFlowID()}
	tcp.sendErr = func(dst sip.Addr) error {
		if dst.Flow != 0 {
			return ErrFlowClosed
		}
		return nil
	}
	done := make(chan error, 24)
	for range 8 {
		go func() { done <- l.Send(context.Background(), big, udpAddr("192.0.2.1:5060")) }()
		go func() { done <- l.Send(context.Background(), res, req.Source) }()
		go func() { done <- l.Send(context.Background(), res, flow) }()
	}
	for range 24 {
		if err := recv(t, done); err != nil {
			t.Error(err)
		}
	}
	if n := len(tcp.sends()); n != 8 {
		t.Errorf("%d large requests over tcp", n)
	}
}

// BenchmarkStampReceived measures what the Layer adds to every request:
// received and rport in the top Via of a phone behind a NAT.
func BenchmarkStampReceived(b *testing.B) {
	req := request(b, "", sip.Addr{})
	src := udpAddr("198.51.100.7:40000")
	b.ReportAllocs()
	for b.Loop() {
		r := req.Clone()
		r.Source = src
		StampReceived(r)
	}
}

// TestLayerTrace: with Trace, every message received and sent is logged
// whole at debug level, with its peer; without it, nothing is.
func TestLayerTrace(t *testing.T) {
	for _, trace := range []bool{true, false} {
		var buf bytes.Buffer
		var mu sync.Mutex
		logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		l := NewLayer(Config{Trace: trace, Logger: logger})
		udp := newFake(sip.UDP, "127.0.0.1:5060")
		l.Add(udp)
		h := newChanHandler()
		serve(t, l, h)
		udp.handler(t).HandleMessage(request(t, "", udpAddr("198.51.100.7:40000")))
		req := recv(t, h.msgs).(*sip.Request)
		if err := l.Send(context.Background(), sip.NewResponse(req, 486, ""), req.Source); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		for _, want := range []string{`msg="sip received" peer="UDP 198.51.100.7:40000"`, `msg="sip sent" peer="UDP 198.51.100.7:40000"`, `SIP/2.0 486 Busy Here`} {
			if got := strings.Contains(out, want); got != trace {
				t.Errorf("trace %v: %q in the log is %v; log:\n%s", trace, want, got, out)
			}
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestLayerFlowCap: the flow table holds at most MaxFlows; a message on a
// new flow beyond it is dropped, one on a known flow is not, and a closed
// flow makes room.
func TestLayerFlowCap(t *testing.T) {
	l := NewLayer(Config{MaxFlows: 2})
	tcp := newFake(sip.TCP, "127.0.0.1:5060")
	l.Add(tcp)
	h := newChanHandler()
	serve(t, l, h)
	feed := tcp.handler(t)
	flows := make([]sip.Addr, 3)
	for i := range flows {
		flows[i] = sip.Addr{Transport: sip.TCP, AddrPort: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(40000+i)), Flow: NextFlowID()}
	}
	n := 0
	send := func(f sip.Addr) {
		n++
		feed.HandleMessage(request(t, fmt.Sprintf("SIP/2.0/TCP 198.51.100.7;branch=z9hG4bKf%d", n), f))
	}
	send(flows[0])
	send(flows[1])
	recv(t, h.msgs)
	recv(t, h.msgs)
	send(flows[2])
	if st := l.Stats(); st.Flows != 2 || st.Dropped != 1 || l.FlowOpen(flows[2]) {
		t.Fatalf("stats %+v, flow 3 open %v: want it dropped", st, l.FlowOpen(flows[2]))
	}
	send(flows[0])
	recv(t, h.msgs)
	feed.HandleFlowClosed(flows[0])
	recv(t, h.closed)
	send(flows[2])
	recv(t, h.msgs)
	if st := l.Stats(); st.Flows != 2 || !l.FlowOpen(flows[2]) {
		t.Fatalf("stats %+v after a close", st)
	}
}

// TestSourceKeyIPv6: IPv6 sources share a queue per /64.
func TestSourceKeyIPv6(t *testing.T) {
	a := sourceKey(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:2::1]:5060")})
	b := sourceKey(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:2:ffff::7]:5062")})
	c := sourceKey(sip.Addr{AddrPort: netip.MustParseAddrPort("[2001:db8:1:3::1]:5060")})
	if a != b || a == c {
		t.Fatalf("keys %v %v %v", a, b, c)
	}
	if k := sourceKey(udpAddr("[::ffff:198.51.100.1]:5060")); k != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("mapped IPv4 key %v", k)
	}
}

// pollingFake is a transport whose read loop reads nothing by itself:
// what it holds waits until a worker polls it (Poller).
type pollingFake struct {
	*fakeTransport
	waiting chan sip.Message
}

func (p *pollingFake) Poll() {
	select {
	case m := <-p.waiting:
		p.fakeTransport.mu.Lock()
		h := p.fakeTransport.h
		p.fakeTransport.mu.Unlock()
		h.HandleMessage(m)
	default:
	}
}

// TestWorkersPoll: a busy worker reads for a transport whose read loop
// is behind (Poller), so that what waits in its socket reaches the queue.
func TestWorkersPoll(t *testing.T) {
	l := NewLayer(Config{Workers: 1})
	udp := &pollingFake{fakeTransport: newFake(sip.UDP, "127.0.0.1:5060"), waiting: make(chan sip.Message, 1)}
	l.Add(udp)
	h := newChanHandler()
	serve(t, l, h)
	feed := udp.handler(t)
	udp.waiting <- request(t, "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKpolled", udpAddr("198.51.100.7:40000"))
	feed.HandleMessage(request(t, "", udpAddr("198.51.100.7:40000")))
	for _, want := range []string{"z9hG4bK776asdhds", "z9hG4bKpolled"} {
		m := recv(t, h.msgs)
		if v, _ := m.Header().TopVia(); v.Branch() != want {
			t.Fatalf("delivered %s, want the request of branch %s", v.Branch(), want)
		}
	}
}
