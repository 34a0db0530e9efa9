package e2e

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// callerTimerF is the caller's own non-INVITE timeout (64*T1): an answer
// to its BYE that comes later is one it never hears.
const callerTimerF = 32 * time.Second

// TestByeToClosedPort: two phones on loopback UDP, a proxied call between
// them; the callee's socket closes after its 200. The gateway's BYE to it
// draws an ICMP port unreachable, which ends the gateway's transaction at
// once: the caller gets a 5xx within a second or two (the proxy's 503 for
// a transport error goes upstream as 500, RFC 3261 §16.7 step 6), not a
// 408 after 24 s or nothing at all.
func TestByeToClosedPort(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	caller, callee, dlg := phoneCall(t, g)

	callee.sip.Close() // the port is closed from now on
	res, after := sendBye(t, caller, dlg, 2*time.Second)
	t.Logf("BYE to a closed port: %d %s after %v", res.StatusCode, res.Reason, after)
	if res.StatusCode/100 != 5 {
		t.Fatalf("BYE: %d %s, want a 5xx for the unreachable callee", res.StatusCode, res.Reason)
	}
}

// TestByeToSilentPeer: the callee's socket stays open but it never
// answers the BYE. The gateway gives up on it before the caller does, and
// the caller hears a 408 within its own Timer F.
func TestByeToSilentPeer(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	caller, callee, dlg := phoneCall(t, g)

	// Waits past the caller's Timer F, to tell a late 408 from none.
	res, after := sendBye(t, caller, dlg, callerTimerF+5*time.Second)
	t.Logf("BYE to a silent peer: %d %s after %v", res.StatusCode, res.Reason, after)
	if res.StatusCode != 408 || after >= callerTimerF {
		t.Fatalf("BYE: %d %s after %v, want 408 before the caller's Timer F (%v)", res.StatusCode, res.Reason, after, callerTimerF)
	}
	// The callee did get the BYE, retransmitted: silence was its choice.
	if bye := callee.expectRequest(sip.MethodBye); bye.CallID() != dlg.ID().CallID {
		t.Errorf("the callee got a BYE of another call: %s", bye.CallID())
	}
}

// phoneCall registers two phones (1000 calling 1001) and sets up a call
// that the gateway proxies: the callee gets the caller's own INVITE,
// answers 200, and the caller ACKs. It returns the caller's dialog.
func phoneCall(t *testing.T, g *gateway) (caller, callee *e2ePhone, dlg *dialog.Dialog) {
	t.Helper()
	caller, callee = newE2EPhone(t, g), newE2EPhone(t, g)
	caller.register("1000")
	callee.register("1001")

	inv := caller.call("1000", "1001", caller.sdp(1, ""))
	in := callee.expectRequest(sip.MethodInvite)
	if in.CallID() != inv.CallID() {
		t.Fatalf("the callee's INVITE is not the caller's, proxied:\n%s", in)
	}
	callee.respond(callee.ok200(in, "1001"))

	var answer *sip.Response
	caller.awaitResponses(inv.CSeq(), func(res *sip.Response) bool {
		if res.StatusCode >= 300 {
			t.Fatalf("caller: %d %s, want 200", res.StatusCode, res.Reason)
		}
		answer = res
		return res.IsSuccess()
	})
	dlg, err := dialog.NewUAC(inv, answer)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := dlg.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	caller.send(ack)
	callee.expectRequest(sip.MethodAck)
	return caller, callee, dlg
}

// sendBye sends the caller's BYE once (the gateway's server transaction
// answers it; a phone would retransmit, which changes nothing here) and
// returns its final response and how long it took, failing the test
// when none comes within limit.
func sendBye(t *testing.T, caller *e2ePhone, dlg *dialog.Dialog, limit time.Duration) (*sip.Response, time.Duration) {
	t.Helper()
	bye, err := dlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	caller.send(bye)
	deadline := time.After(limit)
	for {
		select {
		case m := <-caller.msgs:
			if res, ok := m.(*sip.Response); ok && res.CSeq() == bye.CSeq() && res.StatusCode >= 200 {
				return res, time.Since(began)
			}
			t.Logf("caller: skipped while waiting for the answer to the BYE:\n%s", m)
		case <-deadline:
			t.Fatalf("no answer to the BYE within %v", limit)
			return nil, 0
		}
	}
}
