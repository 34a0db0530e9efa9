package transaction

import (
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// The automatic 100 Trying is built when it is due, not with every
// INVITE transaction: most INVITEs are answered first (a 407, a callee's
// 180), and a response is as big as a message. When it is due it still
// goes out, with the INVITE's Via, From, To, Call-ID and CSeq.
func TestTryingBuiltOnlyWhenDue(t *testing.T) {
	h := newHarness(t, Config{})
	answered := msgSpec{method: "INVITE", branch: sip.NewBranch()}
	h.l.HandleMessage(answered.req(t))
	tx := h.serverTx()
	if err := tx.Respond(response(tx.Request(), 180, "uas")); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(DefaultTryingDelay)
	tx.mu.Lock()
	built := tx.trying != nil
	tx.mu.Unlock()
	if built {
		t.Error("an INVITE answered before its 100 Trying was due built one")
	}
	if got := labels(h.net.take()); got != "180 INVITE" {
		t.Fatalf("sent %q, want the 180 only", got)
	}

	silent := msgSpec{method: "INVITE", branch: sip.NewBranch(), callID: "silent-call"}
	h.l.HandleMessage(silent.req(t))
	h.serverTx()
	h.clk.Advance(DefaultTryingDelay)
	sent := h.net.wait(t, 1)
	res, ok := sent[0].msg.(*sip.Response)
	if !ok || res.StatusCode != 100 {
		t.Fatalf("sent %q, want 100", labels(sent))
	}
	if v, _ := res.TopVia(); v.Branch() != silent.branch || res.CallID() != "silent-call" || res.CSeq().Method != sip.MethodInvite {
		t.Errorf("100 Trying = %s", res)
	}
}
