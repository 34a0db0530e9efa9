package e2e

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
)

// TestCapabilitiesAreHonest keeps the gateway's one Allow and Supported
// lists true against the binary: OPTIONS gives exactly them; every method
// in Allow is served within a bridged call (not 405 or 501; REFER is
// relayed to the other party), and every known method outside it gets 405
// with the same Allow; every tag in Supported is accepted in Require and
// does what it says (replaces and norefersub across a bridged call), and
// 100rel, which is not, gets 420.
func TestCapabilitiesAreHonest(t *testing.T) {
	g := startGateway(t, gatewayOptions{})

	// The one OPTIONS answer.
	peer := newSigPeer(t, g, sip.UDP, "1001", domain, "")
	opts := peer.request(sip.MethodOptions, "sip:"+domain)
	res := peer.transact(opts)
	if res.StatusCode != 200 || res.Get("Allow") != identity.Allow || res.Get("Supported") != identity.Supported() {
		t.Fatalf("OPTIONS: %d, Allow %q, Supported %q; want 200, %q, %q",
			res.StatusCode, res.Get("Allow"), res.Get("Supported"), identity.Allow, identity.Supported())
	}
	for _, tag := range strings.Split(identity.Supported(), ", ") {
		req := peer.request(sip.MethodOptions, "sip:"+domain)
		req.Set("Require", tag)
		if res := peer.transact(req); res.StatusCode != 200 {
			t.Errorf("OPTIONS with Require: %s: %d, want 200", tag, res.StatusCode)
		}
	}
	// Each tag in Supported does what it says.
	checks := map[string]func(t *testing.T){
		// RFC 3327: the registrar stores the Path and returns it.
		"path": func(t *testing.T) {
			res := newSigPeer(t, g, sip.UDP, "alice", domain, "").registerWith(func(r *sip.Request) {
				r.Set("Supported", "path")
				r.Set("Path", "<sip:edge.example;lr>")
			})
			if res.StatusCode != 200 || !strings.Contains(res.Get("Path"), "edge.example") {
				t.Errorf("REGISTER with Path: %d, Path %q", res.StatusCode, res.Get("Path"))
			}
		},
		// RFC 5626: a flow registration gets Require: outbound.
		"outbound": func(t *testing.T) {
			p := newSigPeer(t, g, sip.TCP, "bob", domain, "")
			res := p.registerWith(func(r *sip.Request) {
				r.Set("Supported", "outbound, path")
				r.Set("Contact", "<"+p.contact()+";ob>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"")
			})
			if res.StatusCode != 200 || !res.HasToken("Require", "outbound") {
				t.Errorf("REGISTER with reg-id: %d, Require %q", res.StatusCode, res.Get("Require"))
			}
		},
		// RFC 4028: the gateway asks its callees for a session interval
		// (tested on the bridged call below).
		"timer": nil,
		// RFC 3891: an attended transfer whose Replaces names a leg of a
		// bridged call (A, a browser, consulted C, a phone, through the
		// B2BUA) reaches C as C knows the dialog.
		"replaces": func(t *testing.T) { attendedTransfer(t, kinds{a: true, b: false, c: false}) },
		// RFC 4488: a REFER with Refer-Sub: false relayed across a bridged
		// call gets no NOTIFY, though the transferee sends them.
		"norefersub": func(t *testing.T) { noReferSub(t, kinds{a: true, b: false, c: false}, false) },
	}
	for _, tag := range strings.Split(identity.Supported(), ", ") {
		check, ok := checks[tag]
		if !ok {
			t.Errorf("Supported lists %q, which this test has no check for", tag)
			continue
		}
		if check != nil {
			t.Run(tag, check)
		}
	}

	req := peer.request(sip.MethodOptions, "sip:"+domain)
	req.Set("Require", "100rel")
	if res := peer.transact(req); res.StatusCode != 420 || res.Get("Unsupported") != "100rel" {
		t.Errorf("OPTIONS with Require: 100rel: %d, Unsupported %q; want 420, 100rel", res.StatusCode, res.Get("Unsupported"))
	}

	// Within a bridged call, from the phone's side.
	c := browserCallsPhone(t, g)
	if !c.phInvite.HasToken("Supported", "timer") || c.phInvite.Get("Session-Expires") == "" {
		t.Errorf("timer is in Supported, but the callee's INVITE asks no session interval:\n%s", c.phInvite)
	}
	for _, method := range strings.Split(identity.Allow, ", ") {
		switch method {
		case sip.MethodInvite, sip.MethodAck, sip.MethodCancel, sip.MethodBye, sip.MethodRegister:
			continue // the call itself, and registrations, show those
		}
		req, err := c.phDlg.NewRequest(method)
		if err != nil {
			t.Fatal(err)
		}
		switch method {
		case sip.MethodPrack:
			req.Set("RAck", "1 1 INVITE")
		case sip.MethodRefer:
			req.Set("Refer-To", "<sip:1001@"+domain+">")
		case sip.MethodNotify:
			// No REFER of the phone's is pending: 481, the
			// subscription does not exist.
			req.Set("Event", "refer;id=1")
			req.Set("Subscription-State", "terminated")
		}
		done := make(chan *sip.Response, 1)
		go func() { done <- c.ph.transact(req) }()
		switch method {
		case sip.MethodInfo, sip.MethodMessage:
			// Relayed to the browser, which answers.
			in := c.br.awaitRequest(method)
			c.br.sendResponse(sip.NewResponse(in, 200, ""))
		case sip.MethodRefer:
			in := c.br.awaitRequest(method)
			c.br.sendResponse(sip.NewResponse(in, 202, ""))
		}
		res := <-done
		if res.StatusCode == 405 || res.StatusCode == 501 {
			t.Errorf("%s is in Allow but got %d", method, res.StatusCode)
		}
	}
	for _, method := range []string{sip.MethodSubscribe, "PUBLISH"} {
		req, err := c.phDlg.NewRequest(method)
		if err != nil {
			t.Fatal(err)
		}
		if method == sip.MethodSubscribe {
			req.Set("Event", "dialog")
		}
		res := c.ph.transact(req)
		if res.StatusCode != 405 || res.Get("Allow") != identity.Allow {
			t.Errorf("%s (not in Allow): %d, Allow %q; want 405 with the gateway's Allow", method, res.StatusCode, res.Get("Allow"))
		}
	}
	bye, _ := c.phDlg.NewRequest(sip.MethodBye)
	if res := c.ph.transact(bye); res.StatusCode != 200 {
		t.Errorf("BYE: %d", res.StatusCode)
	}
}
