package proxy

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// The only branch of a call takes the proxy's copy of the request (its
// credentials consumed) as the request it forwards, with the proxy's Via
// and Record-Route on top; the responses the proxy makes itself (here
// Timer C's 408) are still built from the request as received, with the
// caller's Via alone.
func TestOwnResponsesOfASingleBranchCarryTheCallersVia(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.TimerC = 10 * time.Second })
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), nil)
	f.uaConfig.TryingDelay = time.Hour // bob sends not even 100 Trying
	bob := f.newUA("bob", testDomain, mustAddr(sip.TCP, "192.0.2.22:5060"), silent)
	bob.register(1000)

	inv := alice.request(sip.MethodInvite, "sip:bob@"+testDomain)
	res, _ := alice.final(alice.send(inv))
	if res.StatusCode != 407 {
		t.Fatalf("first INVITE: got %d, want 407", res.StatusCode)
	}
	inv = alice.authorize(inv, res)
	ct := alice.send(inv)
	got := bob.waitRequest(sip.MethodInvite)
	if got.Has("Proxy-Authorization") {
		t.Error("credentials for the proxy's realm were forwarded")
	}
	if vs := got.Via(); len(vs) != 2 || vs[0].Host != "192.0.2.10" {
		t.Errorf("Vias at bob %v, want the proxy's above alice's", got.Values("Via"))
	}
	f.clk.Advance(10 * time.Second)
	res, _ = alice.final(ct)
	if res.StatusCode != 408 {
		t.Fatalf("got %d, want 408", res.StatusCode)
	}
	if vs := res.Via(); len(vs) != 1 || vs[0].Host != "192.0.2.21" {
		t.Errorf("Vias of the proxy's 408 %v, want alice's alone", res.Values("Via"))
	}
	if res.Has("Record-Route") {
		t.Errorf("the proxy's 408 carries Record-Route %v", res.Values("Record-Route"))
	}
}
