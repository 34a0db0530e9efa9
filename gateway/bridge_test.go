package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// noDNS fails every lookup, as a resolver without network does.
type noDNS struct{}

var errNoDNS = errors.New("no dns in this test")

func (noDNS) LookupNAPTR(context.Context, string) ([]locate.NAPTR, error) { return nil, errNoDNS }
func (noDNS) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	return "", nil, errNoDNS
}
func (noDNS) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) { return nil, errNoDNS }

// TestBridgeLeavesSameKind: a branch between two of a kind stays with the
// proxy, and a crossing branch whose next hop cannot be found, or that no
// media relay can carry, ends at once (503, 488) instead of going out
// unbridged with an SDP the target cannot use. (The bridged calls
// themselves are tested end to end.)
func TestBridgeLeavesSameKind(t *testing.T) {
	g := &Gateway{dns: &locate.Locator{DNS: noDNS{}}, log: slog.New(slog.DiscardHandler)}
	bridge := g.bridge
	phoneReq := transporttest.ParseRequest(t, "INVITE sip:alice@localhost SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbr1\r\n"+
		"From: <sip:1000@localhost>;tag=a\r\nTo: <sip:alice@localhost>\r\n"+
		"Call-ID: br1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	phoneTarget := proxy.Target{URI: sip.URI{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5080}}
	if br, ok := bridge(context.Background(), phoneReq, proxy.Caller{}, phoneTarget); ok || br != nil {
		t.Errorf("phone to phone: bridged (%v)", br)
	}

	browser := proxy.Target{URI: sip.URI{Scheme: "sip", User: "alice", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"}}
	br, ok := bridge(context.Background(), phoneReq, proxy.Caller{}, browser)
	if !ok {
		t.Fatal("phone to an unreachable browser: not taken")
	}
	res, open := <-br.Responses()
	if !open || res.StatusCode != 503 || res.To().Tag() == "" {
		t.Fatalf("phone to an unreachable browser: %v", res)
	}
	if _, open := <-br.Responses(); open {
		t.Error("more than one response")
	}
	br.CancelWithReason("") // nothing to cancel; must not block or panic

	// A phone reaches a browser by its flow, but there is no media relay.
	flow := browser
	flow.Dest = sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("127.0.0.1:40000"), Flow: 3}
	br, ok = bridge(context.Background(), phoneReq, proxy.Caller{}, flow)
	if !ok {
		t.Fatal("phone to a browser without media: not taken")
	}
	if res := <-br.Responses(); res.StatusCode != 488 {
		t.Fatalf("phone to a browser without media: %d, want 488", res.StatusCode)
	}
}
