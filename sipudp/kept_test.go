package sipudp_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// The Layer is what a server transaction keeps its answers through.
var _ transaction.Resender = (*transport.Layer)(nil)

// TestSendKept: a response sent with SendKept goes where its Via says
// (received and rport), and SendKept returns the bytes that arrived and
// that address; Resend sends those bytes there again. With the trace on,
// which logs messages, nothing is kept, and the response still goes.
func TestSendKept(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	ctx := context.Background()
	for _, trace := range []bool{false, true} {
		l := transporttest.NewLayer(transport.Config{Trace: trace}, tr)
		c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
		req := transporttest.ParseRequest(t, options("kept"))
		// As received from c: the Via's sent-by names another address,
		// so that only received and rport lead to c.
		req.Source = sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}
		transport.StampReceived(req)
		res := sip.NewResponse(req, 200, "")
		res.SetToTag("t1")

		wire, to, err := l.SendKept(ctx, res, req.Source)
		if err != nil {
			t.Fatalf("trace %v: SendKept: %v", trace, err)
		}
		got, _ := c.Read()
		if trace {
			if wire != nil {
				t.Errorf("trace on: kept %q, want nothing", wire)
			}
			continue
		}
		if string(got) != string(wire) || string(wire) != res.String() {
			t.Fatalf("kept %q, sent %q, want the response %q", wire, got, res.String())
		}
		if want := (sip.Addr{Transport: sip.UDP, AddrPort: c.Addr()}); to != want {
			t.Fatalf("kept for %v, want %v", to, want)
		}
		if err := l.Resend(ctx, wire, to); err != nil {
			t.Fatalf("Resend: %v", err)
		}
		if again, _ := c.Read(); string(again) != string(wire) {
			t.Fatalf("resent %q, want %q", again, wire)
		}
	}
}

// TestResendNoRoute: Resend to a transport the Layer does not have fails
// with ErrNoRoute and sends nothing.
func TestResendNoRoute(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	to := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5060")}
	if err := l.Resend(context.Background(), []byte("SIP/2.0 200 OK\r\n\r\n"), to); err == nil {
		t.Fatal("Resend over TCP, which the Layer lacks: no error")
	}
}
