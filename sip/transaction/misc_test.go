package transaction

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestStateString(t *testing.T) {
	want := map[State]string{
		StateCalling: "Calling", StateTrying: "Trying", StateProceeding: "Proceeding",
		StateCompleted: "Completed", StateConfirmed: "Confirmed", StateAccepted: "Accepted",
		StateTerminated: "Terminated", 0: "Unknown", 99: "Unknown",
	}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d: %q, want %q", int(s), s.String(), name)
		}
	}
}

// TestCancelNoOps: Cancel after a final response, or when a pending
// CANCEL is overtaken by a final response, sends nothing.
func TestCancelNoOps(t *testing.T) {
	h := newHarness(t, Config{})
	// Pending in Calling, then the 2xx comes: no CANCEL.
	tx := mustRequest(t, h, "INVITE", peerUDP)
	if err := tx.Cancel(); err != nil {
		t.Fatal(err)
	}
	h.l.HandleMessage(wire(t, response(tx.Request(), 200, "a"), peerUDP))
	// After the final response: nothing either.
	if err := tx.Cancel(); err != nil {
		t.Fatal(err)
	}
	if got := labels(h.net.take()); got != "INVITE" {
		t.Fatalf("sent %s", got)
	}
	// After Close, Cancel has nothing to send.
	tx2 := mustRequest(t, h, "INVITE", peerUDP)
	h.l.HandleMessage(wire(t, response(tx2.Request(), 180, "a"), peerUDP))
	h.net.take()
	h.l.Close()
	if err := tx2.Cancel(); err != nil {
		t.Fatal(err)
	}
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("sent %s", labels(sent))
	}
}

// TestMalformedInput: messages without Via or CSeq are dropped, never
// crash, and never reach the TU.
func TestMalformedInput(t *testing.T) {
	var strays int
	h := newHarness(t, Config{OnStrayResponse: func(context.Context, *sip.Response) { strays++ }})
	tx := mustRequest(t, h, "OPTIONS", peerUDP)
	h.net.take()

	noVia := response(tx.Request(), 200, "a")
	noVia.Del("Via")
	noCSeq := response(tx.Request(), 200, "a")
	noCSeq.Del("CSeq")
	req := msgSpec{method: "OPTIONS", branch: "z9hG4bKm"}.req(t)
	req.Del("Via")
	for _, m := range []sip.Message{noVia, noCSeq, req, (*sip.Request)(nil), (*sip.Response)(nil), nil} {
		h.l.HandleMessage(m)
	}
	if got, _ := drain(tx); len(got) != 0 || strays != 0 {
		t.Fatalf("delivered %v, %d strays", got, strays)
	}
	if sent := h.net.take(); len(sent) != 0 {
		t.Fatalf("sent %s", labels(sent))
	}
	h.noServerTx()
}

// TestOnFinal: every transaction reports its outcome once, with the first
// final status, on both sides; provisional responses and retransmitted
// finals are not outcomes.
func TestOnFinal(t *testing.T) {
	type outcome struct {
		server bool
		method string
		status int
	}
	var mu sync.Mutex
	var got []outcome
	h := newHarness(t, Config{OnFinal: func(server bool, method string, status int) {
		mu.Lock()
		got = append(got, outcome{server, method, status})
		mu.Unlock()
	}})

	h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKof1"}.req(t))
	stx := h.serverTx()
	for _, code := range []int{180, 486} {
		if err := stx.Respond(response(stx.Request(), code, "uas")); err != nil {
			t.Fatal(err)
		}
	}
	if err := stx.Respond(response(stx.Request(), 500, "uas")); err == nil {
		t.Fatal("second final response accepted")
	}

	ctx := mustRequest(t, h, "OPTIONS", peerUDP)
	h.clk.Advance(64 * DefaultT1) // Timer F: a synthesized 408
	drain(ctx)

	mu.Lock()
	defer mu.Unlock()
	want := []outcome{{true, "INVITE", 486}, {false, "OPTIONS", 408}}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
}

// TestNewAck: the ACK of a non-2xx is the one the client transaction sends
// by itself (§17.1.1.3).
func TestNewAck(t *testing.T) {
	h := newHarness(t, Config{})
	tx := mustRequest(t, h, "INVITE", peerUDP)
	h.net.take()
	inv := tx.Request() // nil once the final response is in
	res := response(inv, 486, "busy")
	h.l.HandleMessage(wire(t, res, peerUDP))
	sent := h.net.take()
	if len(sent) != 1 {
		t.Fatalf("sent %s, want the transaction's ACK", labels(sent))
	}
	want := sent[0].msg.String()
	if got := NewAck(inv, res).String(); got != want {
		t.Errorf("NewAck:\n%s\nthe transaction's ACK:\n%s", got, want)
	}
	// Its single Via is the INVITE's top one, formatted when the ACK is
	// built.
	ack := sent[0].msg.(*sip.Request)
	top, _ := inv.TopVia()
	if vs := ack.Values("Via"); len(vs) != 1 || vs[0] != top.String() {
		t.Errorf("the ACK's Vias %q, want the INVITE's top one %q", vs, top.String())
	}
}

// TestCancelWithReason: the CANCEL carries the Reason, whether it goes at
// once (Proceeding) or waits for the first provisional response.
func TestCancelWithReason(t *testing.T) {
	const reason = `SIP;cause=200;text="Call completed elsewhere"`
	for _, early := range []bool{true, false} {
		h := newHarness(t, Config{})
		tx := mustRequest(t, h, "INVITE", peerUDP)
		h.net.take()
		if early { // before any provisional response: the CANCEL waits
			if err := tx.CancelWithReason(reason); err != nil {
				t.Fatal(err)
			}
		}
		h.l.HandleMessage(wire(t, response(tx.Request(), 180, "uas"), peerUDP))
		if !early {
			if err := tx.CancelWithReason(reason); err != nil {
				t.Fatal(err)
			}
		}
		var cancel *sip.Request
		for _, m := range h.net.wait(t, 1) {
			if r, ok := m.msg.(*sip.Request); ok && r.Method == sip.MethodCancel {
				cancel = r
			}
		}
		if cancel == nil || cancel.Get("Reason") != reason {
			t.Errorf("early %v: CANCEL %v, want one with Reason %q", early, cancel, reason)
		}
	}
}
