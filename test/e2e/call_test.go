package e2e

import (
	"strings"
	"testing"
)

// phone is where a sipp UAS of a user runs: it registered from there
// and then waits for calls on the same port, so that its Contact reaches
// it.
type phone struct {
	ip   string
	port int
	tcp  bool
}

// registerPhone registers user from a new port on 127.0.0.1 (the binding
// outlives the sipp run that made it) and returns the phone.
func registerPhone(t *testing.T, g *gateway, name, user string, tcp bool) phone {
	t.Helper()
	p := phone{ip: "127.0.0.1", tcp: tcp}
	p.port = freePort(t, map[bool]string{false: "udp", true: "tcp"}[tcp], p.ip)
	registerUser(t, g, name+"-register", user, p.ip, p.port, tcp)
	return p
}

// answer starts scenario (a UAS) on the phone's port and waits until it
// listens.
func (p phone) answer(t *testing.T, g *gateway, name, scenario string) *sipp {
	t.Helper()
	s := startSipp(t, g, name, scenario, sippOptions{ip: p.ip, port: p.port, tcp: p.tcp})
	s.waitBound(p.tcp, p.ip, p.port)
	return s
}

// callAs starts a UAC scenario in which caller calls target through the
// gateway, answering its digest challenge.
func callAs(t *testing.T, g *gateway, name, scenario, caller, target string, tcp bool) *sipp {
	t.Helper()
	return startSipp(t, g, name, scenario, sippOptions{
		tcp:     tcp,
		inf:     domain + ";" + caller + ";" + domain,
		service: target,
		user:    caller, password: users[caller],
		authURI: target + "@" + domain,
	})
}

// TestCall is a call between two sipp UAs through the proxy, over UDP and
// over TCP: bob's UAS registers, alice INVITEs bob@localhost, is
// challenged (407), INVITEs again with Proxy-Authorization, gets 180 and
// 200, ACKs and hangs up along the route set of the dialog (the gateway's
// Record-Route).
func TestCall(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	// A callee each, so that the first's binding, whose UAS is gone,
	// does not fork the second call.
	for _, tc := range []struct {
		name, callee string
		tcp          bool
	}{
		{"udp", "bob", false},
		{"tcp", "1000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			callee := registerPhone(t, g, tc.callee, tc.callee, tc.tcp)
			uas := callee.answer(t, g, tc.callee+"-uas", "uas-answer.xml")
			uac := callAs(t, g, "alice-uac", "uac-call.xml", "alice", tc.callee, tc.tcp)
			expectCall(t, uac, uas)
			if t.Failed() {
				return
			}

			// What the callee got went through the gateway, which
			// stays on the path.
			got := uas.messageLog()
			for _, want := range []string{
				"Record-Route: <sip:",
				g.sipAddr() + ";",
				"ACK sip:127.0.0.1:",
				"BYE sip:127.0.0.1:",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("the callee's UAS never saw %q", want)
				}
			}
			// The gateway consumed alice's credentials for its realm
			// (RFC 3261 §22.3): they must not reach the callee.
			if strings.Contains(got, "Proxy-Authorization") {
				t.Errorf("the INVITE reached the callee with alice's Proxy-Authorization")
			}
			// Alice sent the ACK and the BYE with a Route to the gateway.
			if sent := uac.messageLog(); strings.Count(sent, "\nRoute: <sip:") < 2 {
				t.Errorf("alice's ACK and BYE did not carry the gateway's Route")
			}
		})
	}
}

// TestCallUnregistered: a call to a user with no binding fails with 480
// (the account exists, it is just not registered), which the caller's
// scenario does not expect.
func TestCallUnregistered(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	uac := callAs(t, g, "alice-uac", "uac-call.xml", "alice", "1001", false)
	if code := uac.wait(); code == 0 {
		t.Fatalf("a call to unregistered 1001 succeeded")
	}
	if log := uac.messageLog(); !strings.Contains(log, "SIP/2.0 480") {
		t.Errorf("the call to unregistered 1001 did not end with 480")
	}
}

// TestCancel cancels a ringing call: bob's UAS rings (180) and never
// answers; alice CANCELs after the 180 and gets 200 for the CANCEL and 487
// for the INVITE, which she ACKs; bob gets the CANCEL, answers it 200 and
// ends the INVITE with 487, which the gateway ACKs.
func TestCancel(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	bob := registerPhone(t, g, "bob", "bob", false)
	uas := bob.answer(t, g, "bob-uas", "uas-ring-cancel.xml")
	uac := callAs(t, g, "alice-uac", "uac-cancel.xml", "alice", "bob", false)
	expectCall(t, uac, uas)
	if t.Failed() {
		return
	}

	// RFC 3261 §16.10: the To tag of the 200 to the CANCEL and that of
	// the final response to the INVITE SHOULD be the same.
	t.Run("to-tags", func(t *testing.T) {
		var ok200, final *response
		for _, r := range uac.received() {
			switch {
			case r.status == 200 && r.cseqMethod() == "CANCEL":
				ok200 = r
			case r.status == 487 && r.cseqMethod() == "INVITE":
				final = r
			}
		}
		if ok200 == nil || final == nil {
			t.Fatalf("alice's trace lacks the 200 to the CANCEL or the 487")
		}
		if ok200.toTag() != final.toTag() {
			t.Errorf("To tag of the 200 to the CANCEL is %q, of the 487 %q: want the same", ok200.toTag(), final.toTag())
		}
	})
}

// TestFork calls a user registered from two phones: both ring, one
// answers, and the gateway cancels the other (RFC 3261 §16.7 step 10),
// which answers the CANCEL 200 and its INVITE 487 and gets the ACK.
func TestFork(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	desk := registerPhone(t, g, "bob-desk", "bob", false)
	mobile := registerPhone(t, g, "bob-mobile", "bob", false)
	answering := desk.answer(t, g, "bob-desk-uas", "uas-answer.xml")
	ringing := mobile.answer(t, g, "bob-mobile-uas", "uas-ring-cancel.xml")
	uac := callAs(t, g, "alice-uac", "uac-call.xml", "alice", "bob", false)
	expectCall(t, uac, answering, ringing)
	if t.Failed() {
		return
	}
	// The canceled branch's 487 is absorbed by the gateway: alice saw
	// only the winner's final response.
	if log := uac.messageLog(); strings.Contains(log, "SIP/2.0 487") {
		t.Errorf("alice got the canceled branch's 487")
	}
}
