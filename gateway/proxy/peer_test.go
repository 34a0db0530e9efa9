package proxy

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// A second proxy of the fixture's cluster: another instance of the
// gateway on its own address, sharing the secret, with the browsers
// connected to it.
var (
	peerTCP  = mustAddr(sip.TCP, "192.0.2.11:5060")
	peerWS   = mustAddr(sip.WS, "192.0.2.11:8080")
	peerNode = mustURI("sip:192.0.2.11:5060;transport=tcp")
)

type peerProxy struct {
	proxy *Proxy
	node  *node
	layer *transaction.Layer
	loc   *testLocator
}

// addPeer starts the second instance on the fixture's network.
func (f *fixture) addPeer() *peerProxy {
	id, err := identity.New(identity.Config{Domains: []string{testDomain}, Endpoints: []identity.Endpoint{
		{Transport: sip.TCP, Host: "192.0.2.11", Port: 5060},
		{Transport: sip.WS, Host: "192.0.2.11", Port: 8080},
	}})
	if err != nil {
		f.t.Fatal(err)
	}
	pp := &peerProxy{loc: &testLocator{targets: make(map[string][]Target)}}
	pp.node = f.net.AddNode("peer", peerTCP, peerWS)
	var p *Proxy
	pp.layer = transaction.New(context.Background(), pp.node,
		transaction.HandlerFunc(func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) { p.ServeSIP(ctx, tx, req) }),
		transaction.Config{Clock: f.clk, OnStrayResponse: func(ctx context.Context, res *sip.Response) { p.ForwardResponse(ctx, res) }})
	pp.node.Recv = pp.layer.HandleMessage
	p, err = New(Options{
		Transactions: pp.layer,
		Sender:       pp.node,
		Identity:     id,
		Locator:      pp.loc,
		Credentials:  f,
		Secret:       testSecret,
		Algorithms:   []string{"SHA-256", "MD5"},
		Clock:        f.clk,
		Logger:       slog.New(slog.NewTextHandler(f.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", "peer"),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	pp.proxy = p
	f.t.Cleanup(func() { pp.layer.Close() })
	return pp
}

// connectBrowser adds a browser connected to the peer, and has the
// fixture's proxy find it through a peer route, as cluster mode's
// locator does. It returns the browser and its flow as the peer sees it.
func (f *fixture) connectBrowser(pp *peerProxy, name string, b behaviour) (*ua, sip.Addr) {
	u := f.makeUA(name, testDomain, b, mustAddr(sip.WS, "198.51.100.40:51000"))
	flow := f.net.Connect(u.node, sip.WS, peerWS)
	u.toward = sip.Addr{Transport: sip.WS, AddrPort: peerWS.AddrPort, Flow: flow}
	held := sip.Addr{Transport: sip.WS, AddrPort: u.addr.AddrPort, Flow: flow}
	uri := mustURI(u.contact())
	until := f.clk.Now().Add(time.Hour)
	f.loc.add(u.aor(), Target{URI: uri, Q: 1000, Expires: until, Peer: true,
		Path: []string{f.proxy.PeerRoute(peerNode, held, until)}})
	pp.loc.add(u.aor(), Target{URI: uri, Q: 1000, Expires: until, Dest: held})
	return u, held
}

// TestPeerRouteCall: a phone on this instance calls a browser connected
// to the peer: the proxy authorises the caller and sends the INVITE to
// the peer on the peer route, which delivers it over the browser's
// connection without a second challenge. Both instances stay on the
// path of the dialog, both ways.
func TestPeerRouteCall(t *testing.T) {
	f := newFixture(t, nil)
	pp := f.addPeer()
	bob, _ := f.connectBrowser(pp, "bob", respond(180, 200))
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))

	inv, res := alice.do(alice.request(sip.MethodInvite, "sip:bob@"+testDomain))
	if res.StatusCode != 200 {
		t.Fatalf("alice's call: %d, want 200", res.StatusCode)
	}
	got := bob.waitRequest(sip.MethodInvite)
	if got.Has("Proxy-Authorization") || got.Has("Route") {
		t.Errorf("the browser got the peer route or alice's credentials:\n%s", got)
	}
	if f.sent("peer", "proxy", isResponse(407, sip.MethodInvite)) {
		t.Error("the peer challenged its peer")
	}
	rrs, _ := res.RecordRoutes()
	if len(rrs) != 2 || !strings.Contains(rrs[0].URI.Host, "192.0.2.11") || rrs[1].URI.Host != "192.0.2.10" {
		t.Fatalf("alice's route set %v, want the peer then this instance", rrs)
	}
	// The peer recorded no token of the connection from its peer: that
	// connection is no party's.
	if rrs[0].URI.User != "" && strings.Contains(rrs[0].URI.String(), "192.0.2.10") {
		t.Errorf("peer entry %s names the connection from the other instance", rrs[0].URI.String())
	}
	d := uacDialog(t, inv, res)
	ack, err := d.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	alice.sendStateless(ack)
	bob.waitRequest(sip.MethodAck)

	// The browser hangs up: through the peer, then this instance.
	bye := bobBye(t, got, bob)
	byeRes, _ := bob.final(bob.send(bye))
	if byeRes.StatusCode != 200 {
		t.Fatalf("bob's BYE: %d", byeRes.StatusCode)
	}
	alice.waitRequest(sip.MethodBye)
	if !f.sent("peer", "proxy", isRequest(sip.MethodBye)) {
		t.Error("the BYE skipped an instance")
	}
}

// bobBye builds the BYE of the callee of inv (as it reached bob): its
// route set is the Record-Route of the INVITE, in order.
func bobBye(t *testing.T, inv *sip.Request, bob *ua) *sip.Request {
	t.Helper()
	bye := sip.NewRequest(sip.MethodBye, contactOf(&inv.Headers))
	bye.Add("Max-Forwards", "70")
	bye.Add("From", inv.Get("To")+";tag="+bob.tag)
	bye.Add("To", inv.Get("From"))
	bye.Add("Call-ID", inv.CallID())
	bye.Add("CSeq", "1 BYE")
	for _, v := range inv.Values("Record-Route") {
		bye.Add("Route", v)
	}
	bye.Add("Content-Length", "0")
	return bye
}

// TestPeerRouteMessage: a MESSAGE from a stranger reaches a browser on
// the peer.
func TestPeerRouteMessage(t *testing.T) {
	f := newFixture(t, nil)
	pp := f.addPeer()
	bob, _ := f.connectBrowser(pp, "bob", respond(200))
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), respond(200))
	res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain)))
	if res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d", res.StatusCode)
	}
	bob.waitRequest(sip.MethodMessage)
}

// TestForgedPeerRoute: a peer route is believed only with the stamp the
// cluster wrote for that connection, before it expires. Anything else is
// an ordinary request with a Route of ours: a caller claiming our domain
// is challenged, a stranger is refused a relay.
func TestForgedPeerRoute(t *testing.T) {
	f := newFixture(t, nil)
	pp := f.addPeer()
	bob, held := f.connectBrowser(pp, "bob", respond(200))
	other := sip.Addr{Transport: sip.WS, AddrPort: held.AddrPort, Flow: held.Flow + 1}
	valid := f.proxy.PeerRoute(peerNode, held, f.clk.Now().Add(time.Minute))
	variants := map[string]string{
		"bad mac":      valid[:len(valid)-3] + "AAA>",
		"no stamp":     strings.Replace(valid, ";sbpeer=", ";x=", 1),
		"other expiry": strings.Replace(valid, "sbpeer=1", "sbpeer=2", 1),
		"other flow": strings.Replace(valid, "sip:"+tokenOf(f.proxy, held)+"@",
			"sip:"+tokenOf(f.proxy, other)+"@", 1),
	}
	mallory := f.newUA("alice", testDomain, mustAddr(sip.TCP, "192.0.2.66:5070"), respond(200))
	mallory.toward = peerTCP
	for name, route := range variants {
		req := mallory.request(sip.MethodMessage, "sip:bob@"+testDomain)
		req.Add("Route", route)
		res, _ := mallory.final(mallory.send(req))
		if res.StatusCode != 407 {
			t.Errorf("%s: %d, want 407", name, res.StatusCode)
		}
	}
	// Expired.
	f.clk.Advance(2 * time.Minute)
	req := mallory.request(sip.MethodMessage, "sip:bob@"+testDomain)
	req.Add("Route", valid)
	if res, _ := mallory.final(mallory.send(req)); res.StatusCode != 407 {
		t.Errorf("expired: %d, want 407", res.StatusCode)
	}
	if len(bob.reqs.all()) != 0 {
		t.Errorf("bob got %d requests", len(bob.reqs.all()))
	}
}

func tokenOf(p *Proxy, flow sip.Addr) string { return p.tokens.Encode(flow) }
