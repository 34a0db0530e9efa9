package sipnet

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
)

const limit = 5 * time.Second

var (
	serverUDP = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5060")}
	serverWS  = sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("192.0.2.10:8080")}
	phoneUDP  = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.20:5062")}
	browserWS = sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:50001")}
)

// newNet is a network of a server, a phone and a browser, each of which
// records what it receives.
func newNet(t *testing.T) (n *Network, server, phone, browser *Node, got map[string]*Recorder[sip.Message]) {
	leakcheck.Count(t, limit)
	n = New()
	t.Cleanup(n.Close)
	got = make(map[string]*Recorder[sip.Message])
	add := func(name string, addrs ...sip.Addr) *Node {
		nd := n.AddNode(name, addrs...)
		r := &Recorder[sip.Message]{}
		got[name] = r
		nd.Recv = r.Add
		return nd
	}
	return n, add("server", serverUDP, serverWS), add("phone", phoneUDP), add("browser", browserWS), got
}

func options(t *testing.T) *sip.Request {
	t.Helper()
	req := sip.NewRequest(sip.MethodOptions, sip.URI{Scheme: "sip", Host: "example.test"})
	for _, h := range [][2]string{
		{"Max-Forwards", "70"}, {"From", "<sip:a@example.test>;tag=1"}, {"To", "<sip:example.test>"},
		{"Call-ID", "c1"}, {"CSeq", "1 OPTIONS"}, {"Content-Length", "0"},
	} {
		req.Add(h[0], h[1])
	}
	req.PrependVia(sip.Via{Transport: sip.UDP, Host: "203.0.113.9", Port: 5062, Params: ";branch=z9hG4bK1;rport"})
	return req
}

// TestRequestCrosses: a request sent over UDP reaches its receiver parsed
// afresh, with Source the sender's address and received and rport on its
// top Via, as a transport sets them; the log has it as delivered.
func TestRequestCrosses(t *testing.T) {
	n, server, phone, _, got := newNet(t)
	// The phone's Via says it is somewhere else: the receiver notes
	// where the request really came from.
	req := options(t)
	if err := phone.Send(context.Background(), req, serverUDP); err != nil {
		t.Fatal(err)
	}
	m := got["server"].Wait(t, limit, "the OPTIONS", func(sip.Message) bool { return true })
	in, ok := m.(*sip.Request)
	if !ok || in == req {
		t.Fatalf("got %T %p, want a request other than the one sent (%p)", m, m, req)
	}
	if in.Source != phoneUDP {
		t.Errorf("Source %s, want %s", in.Source, phoneUDP)
	}
	v, _ := in.TopVia()
	if r, _ := v.Params.Get("received"); r != "192.0.2.20" {
		t.Errorf("received=%q, want 192.0.2.20 (%s)", r, &v)
	}
	if r, _ := v.Params.Get("rport"); r != "5062" {
		t.Errorf("rport=%q, want 5062 (%s)", r, &v)
	}
	d := n.Log.Wait(t, limit, "the delivery", func(d Delivery) bool { return true })
	if d.From != "phone" || d.To != "server" || d.Source != phoneUDP || d.String() != "phone -> server: OPTIONS" {
		t.Errorf("logged %+v (%s)", d, d)
	}
	if lv, _ := d.Message().(*sip.Request).TopVia(); lv.String() != v.String() {
		t.Errorf("logged Via %s, delivered %s", &lv, &v)
	}

	// A response goes back to the Source, and is not stamped.
	res := sip.NewResponse(in, 200, "")
	if err := server.Send(context.Background(), res, in.Source); err != nil {
		t.Fatal(err)
	}
	back := got["phone"].Wait(t, limit, "the 200", func(sip.Message) bool { return true }).(*sip.Response)
	if back.Source != serverUDP || Label(back) != "200 OPTIONS" {
		t.Errorf("phone got %s from %s", Label(back), back.Source)
	}
}

// TestFlows: a browser reaches the server over its connection and is
// reached back only over it, with the flow's id in each Source.
func TestFlows(t *testing.T) {
	n, server, phone, browser, got := newNet(t)
	if err := server.Send(context.Background(), options(t), browserWS); !errors.Is(err, ErrCannotDial) {
		t.Errorf("a server dialling a browser: %v, want ErrCannotDial", err)
	}
	first := n.Connect(phone, sip.UDP, serverUDP) // flow ids count up
	flow := n.Connect(browser, sip.WS, serverWS)
	if first != 1 || flow != 2 {
		t.Errorf("flows %d, %d; want 1, 2", first, flow)
	}
	if err := browser.Send(context.Background(), options(t), sip.Addr{Transport: sip.WS, AddrPort: serverWS.AddrPort, Flow: flow}); err != nil {
		t.Fatal(err)
	}
	in := got["server"].Wait(t, limit, "the OPTIONS", func(sip.Message) bool { return true }).(*sip.Request)
	if want := (sip.Addr{Transport: sip.WS, AddrPort: browserWS.AddrPort, Flow: flow}); in.Source != want {
		t.Errorf("Source %s, want %s", in.Source, want)
	}
	if err := server.Send(context.Background(), sip.NewResponse(in, 200, ""), in.Source); err != nil {
		t.Fatal(err)
	}
	back := got["browser"].Wait(t, limit, "the 200", func(sip.Message) bool { return true }).(*sip.Response)
	if want := (sip.Addr{Transport: sip.WS, AddrPort: serverWS.AddrPort, Flow: flow}); back.Source != want {
		t.Errorf("Source %s, want %s", back.Source, want)
	}

	if err := phone.Send(context.Background(), options(t), sip.Addr{Transport: sip.WS, Flow: flow}); !errors.Is(err, ErrNoFlow) {
		t.Errorf("a node sending over another's flow: %v, want ErrNoFlow", err)
	}
	if err := server.Send(context.Background(), options(t), sip.Addr{Transport: sip.WS, Flow: 99}); !errors.Is(err, ErrNoFlow) {
		t.Errorf("an unknown flow: %v, want ErrNoFlow", err)
	}
	if err := server.Send(context.Background(), options(t), sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.99:5060")}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("nobody there: %v, want ErrUnreachable", err)
	}
	if err := phone.Send(context.Background(), options(t), sip.Addr{Transport: sip.TCP, AddrPort: serverUDP.AddrPort}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a transport the sender lacks: %v, want ErrUnreachable", err)
	}
}

// TestClose: the network's goroutine ends (leakcheck.Count in newNet), and
// Send fails after Close.
func TestClose(t *testing.T) {
	n, _, phone, _, _ := newNet(t)
	n.Close()
	if err := phone.Send(context.Background(), options(t), serverUDP); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}

// TestSetLog: with the log off, messages still cross, unrecorded.
func TestSetLog(t *testing.T) {
	n, _, phone, _, got := newNet(t)
	n.SetLog(false)
	if err := phone.Send(context.Background(), options(t), serverUDP); err != nil {
		t.Fatal(err)
	}
	got["server"].Wait(t, limit, "the OPTIONS", func(sip.Message) bool { return true })
	if all := n.Log.All(); len(all) != 0 {
		t.Errorf("logged %v with the log off", all)
	}
}

func TestStampVia(t *testing.T) {
	_, _, phone, _, _ := newNet(t)
	req := options(t)
	v, err := phone.StampVia(req, serverUDP)
	if err != nil {
		t.Fatal(err)
	}
	top, _ := req.TopVia()
	if top.String() != v.String() || v.Host != "192.0.2.20" || v.Port != 5062 || !strings.HasPrefix(v.Branch(), "z9hG4bK") {
		t.Errorf("Via %s, top %s", &v, &top)
	}
	if _, err := phone.StampVia(req, serverWS); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a Via for a transport the node lacks: %v", err)
	}
}

// fakeT records a Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = format }

func TestRecorder(t *testing.T) {
	var r Recorder[int]
	go func() {
		for i := 1; i <= 4; i++ {
			r.Add(i)
		}
	}()
	even := func(x int) bool { return x%2 == 0 }
	if a, b := r.Wait(t, limit, "an even number", even), r.Wait(t, limit, "an even number", even); a != 2 || b != 4 {
		t.Errorf("took %d, %d; want 2, 4", a, b)
	}
	if x := r.Wait(t, limit, "any number", func(int) bool { return true }); x != 1 {
		t.Errorf("took %d, want 1: the first not taken", x)
	}
	ft := &fakeT{}
	r.Wait(ft, 10*time.Millisecond, "a 5", func(x int) bool { return x == 5 })
	if ft.failed == "" {
		t.Error("waiting for what never comes did not fail")
	}
	if all := r.All(); len(all) != 4 {
		t.Errorf("All: %v", all)
	}
}
