package proxy

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// TestReconnectFollowsFlowTokens is issue 15 point 4: a call between two
// browsers goes through the proxy, whose Record-Route entries carry each
// browser's flow token. The callee's WebSocket drops and it registers the
// same instance again over a new one; the route sets, fixed at the start
// of the dialog, still name the old connection, and the proxy follows
// their tokens to the new one, both ways.
func TestReconnectFollowsFlowTokens(t *testing.T) {
	instances := &location.Instances{}
	f := newFixture(t, func(o *Options) { o.Reconnects = instances })
	instances.Clock = f.clk
	alice := f.newWSUA("alice", testDomain, "198.51.100.20:51000", respond(200))
	bob := f.newWSUA("bob", testDomain, "198.51.100.30:52000", respond(180, 200))
	bob.register(1000)
	bobFlow := func() sip.Addr {
		return sip.Addr{Transport: sip.WS, AddrPort: bob.addr.AddrPort, Flow: bob.toward.Flow}
	}
	registered := func() {
		instances.Register(&location.Binding{
			AOR: "sip:bob@" + testDomain, Instance: "<urn:uuid:00000000-0000-1000-8000-00000000b0b0>", RegID: 1,
			Contact: sip.Address{URI: mustURI(bob.contact())}, Source: bobFlow(), Expires: epoch.Add(time.Hour),
		})
	}
	registered()

	inv, res := alice.do(alice.request(sip.MethodInvite, "sip:bob@"+testDomain))
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: got %d", res.StatusCode)
	}
	atBob := bob.waitRequest(sip.MethodInvite)
	if rr, _ := res.RecordRoutes(); len(rr) != 1 || rr[0].URI.User == "" {
		t.Fatalf("Record-Route at the caller %q, want bob's flow token", res.Values("Record-Route"))
	}
	da := uacDialog(t, inv, res)
	ack, _ := da.NewAck(inv.CSeq().Seq)
	alice.sendStateless(ack)
	bob.waitRequest(sip.MethodAck)
	db, err := dialog.NewUAS(atBob, bob.response(atBob, 200))
	if err != nil {
		t.Fatal(err)
	}

	// Bob's WebSocket drops; he connects again and registers his
	// instance over the new connection.
	old := bob.toward.Flow
	f.net.Disconnect(old)
	bob.toward.Flow = f.net.Connect(bob.node, sip.WS, proxyWS)
	registered()

	// Alice's request rides her route set, whose token names bob's old
	// connection: it reaches him over the new one.
	info, _ := da.NewRequest(sip.MethodInfo)
	if res, _ := alice.final(alice.send(info)); res.StatusCode != 200 {
		t.Fatalf("INFO to the reconnected browser: got %d", res.StatusCode)
	}
	if got := bob.waitRequest(sip.MethodInfo); got.Source.Flow != bob.toward.Flow {
		t.Errorf("INFO reached bob over flow %d, want the new %d", got.Source.Flow, bob.toward.Flow)
	}
	// Bob's requests come over the new connection, with the same route
	// set: they reach alice, not bob himself.
	info, _ = db.NewRequest(sip.MethodInfo)
	if res, _ := bob.final(bob.send(info)); res.StatusCode != 200 {
		t.Fatalf("INFO from the reconnected browser: got %d", res.StatusCode)
	}
	alice.waitRequest(sip.MethodInfo)
	bye, _ := da.NewRequest(sip.MethodBye)
	if res, _ := alice.final(alice.send(bye)); res.StatusCode != 200 {
		t.Fatalf("BYE to the reconnected browser: got %d", res.StatusCode)
	}
	if got := bob.waitRequest(sip.MethodBye); got.Source.Flow != bob.toward.Flow {
		t.Errorf("BYE reached bob over flow %d, want the new %d", got.Source.Flow, bob.toward.Flow)
	}
	if n := f.proxy.DialogStats().Mismatched; n != 0 {
		t.Errorf("%d requests did not match their dialog", n)
	}
}
