package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// TestWSSRecordRoute: a request relayed to a browser over WSS carries the
// gateway's Via and Record-Route for WSS, on the HTTPS port (not the HTTP
// one: with HTTPS on, plain WebSocket handshakes are redirected); and the
// browser's in-dialog request, sent along that entry, comes back through
// the gateway to the caller.
func TestWSSRecordRoute(t *testing.T) {
	g := startGateway(t, gatewayOptions{https: true})
	bob := newSigPeer(t, g, sip.WSS, "bob", domain, "")
	bob.register()
	caller := newSigPeer(t, g, sip.WSS, "mallory", "evil.example", "")

	inv := caller.request(sip.MethodInvite, "sip:bob@"+domain)
	res := caller.transact(inv)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE to bob: %d %s", res.StatusCode, res.Reason)
	}
	got := bob.expectRequest(sip.MethodInvite)

	wss := g.host + ":" + strconv.Itoa(g.httpsPort)
	if v, _ := got.TopVia(); v.Transport != sip.WSS || sip.JoinHostPort(v.Host, v.Port) != wss {
		t.Errorf("the INVITE bob got over WSS has the top Via %s, want SIP/2.0/WSS %s", v.String(), wss)
	}
	rrs := got.Values("Record-Route")
	if len(rrs) != 1 || !strings.Contains(rrs[0], "@"+wss+";transport=wss;lr") {
		t.Errorf("the INVITE bob got over WSS has Record-Route %q, want one for %s;transport=wss", rrs, wss)
	}
	if rrs := res.Values("Record-Route"); len(rrs) != 1 || !strings.Contains(rrs[0], wss+";transport=wss;lr") {
		t.Errorf("the caller's 200 has Record-Route %q, want one for %s;transport=wss", rrs, wss)
	}
	d, err := dialog.NewUAC(inv, res)
	if err != nil {
		t.Fatal(err)
	}
	ack, _ := d.NewAck(inv.CSeq().Seq)
	caller.send(ack)
	bob.expectRequest(sip.MethodAck)

	// Bob's side of the dialog, as his user agent answered: his request
	// goes to the WSS entry, which the gateway must know as its own.
	answer := sip.NewResponse(got, 200, "")
	answer.SetToTag(bob.tag)
	answer.CopyFrom(&got.Headers, "Record-Route")
	answer.Set("Contact", "<"+bob.contact()+">")
	bd, err := dialog.NewUAS(got, answer)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := bd.NewRequest(sip.MethodMessage)
	if err != nil {
		t.Fatal(err)
	}
	if res := bob.transact(msg); res.StatusCode != 200 {
		t.Errorf("bob's in-dialog MESSAGE along the WSS Record-Route: %d %s", res.StatusCode, res.Reason)
	}
	caller.expectRequest(sip.MethodMessage)
}
