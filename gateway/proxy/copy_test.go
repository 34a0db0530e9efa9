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

// A response from a client transaction is forwarded as it came, less the
// proxy's Via: the transaction reads it no more once delivered, so no copy
// of it is made. A bridged branch's response is the B2BUA's, and copied.
func TestUpstreamForwardsTheResponseItself(t *testing.T) {
	f := newFixture(t, nil)
	m, err := sip.ParseMessage([]byte("SIP/2.0 180 Ringing\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsbx1\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.21;branch=z9hG4bKa1\r\n" +
		"From: <sip:alice@" + testDomain + ">;tag=a\r\nTo: <sip:bob@" + testDomain + ">;tag=b\r\n" +
		"Call-ID: up1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := m.(*sip.Response)
	c := &call{p: f.proxy}
	up := c.upstream(&branch{}, res)
	if up != res {
		t.Error("upstream copied a client transaction's response")
	}
	if vs := up.Via(); len(vs) != 1 || vs[0].Host != "192.0.2.21" {
		t.Errorf("Vias forwarded %v, want the caller's alone", up.Values("Via"))
	}
	if up := c.upstream(&branch{bridged: &fakeBridged{}}, res); up == res {
		t.Error("upstream forwarded a bridged branch's response without a copy")
	}
}

// A single target, the common case (every in-dialog request), is grouped
// without a copy; several are still ordered by q on a copy of their own.
func TestGroupByQSingleTarget(t *testing.T) {
	one := []Target{{URI: mustURI("sip:bob@192.0.2.22"), Q: 500}}
	if n := testing.AllocsPerRun(100, func() { _ = groupByQ(one, DefaultMaxTargets) }); n > 1 {
		t.Errorf("groupByQ of one target: %v allocations, want 1", n)
	}
	if g := groupByQ(one, DefaultMaxTargets); len(g) != 1 || len(g[0]) != 1 || g[0][0].URI.Host != "192.0.2.22" {
		t.Errorf("groups %v", g)
	}
	two := []Target{{URI: mustURI("sip:a@192.0.2.1"), Q: 100}, {URI: mustURI("sip:b@192.0.2.2"), Q: 900}}
	g := groupByQ(two, DefaultMaxTargets)
	if len(g) != 2 || g[0][0].URI.User != "b" || two[0].URI.User != "a" {
		t.Errorf("groups %v (targets %v): not ordered on a copy", g, two)
	}
}
