package transaction

import (
	"bytes"
	"context"
	"net/netip"
	"testing"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// keptNet is netRec as a Resender, as transport.Layer is over UDP: what
// SendKept sends it records and returns as bytes, and what Resend sends
// it records parsed from those bytes, so that the tests read both as
// messages. to, when set, is where SendKept says the bytes went; none
// makes SendKept keep nothing, as for a connection.
type keptNet struct {
	*netRec
	to     sip.Addr
	none   bool
	kept   [][]byte // what SendKept returned, guarded by netRec.mu
	resent [][]byte // what Resend was given, guarded by netRec.mu
}

func (k *keptNet) SendKept(ctx context.Context, res *sip.Response, dst sip.Addr) ([]byte, sip.Addr, error) {
	if err := k.Send(ctx, res, dst); err != nil || k.none {
		return nil, sip.Addr{}, err
	}
	wire := res.AppendTo(nil)
	to := k.to
	if !to.IsValid() {
		to = dst
	}
	k.mu.Lock()
	k.kept = append(k.kept, wire)
	k.mu.Unlock()
	return wire, to, nil
}

func (k *keptNet) Resend(ctx context.Context, wire []byte, to sip.Addr) error {
	m, err := sip.ParseDatagram(wire)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.resent = append(k.resent, wire)
	k.mu.Unlock()
	return k.Send(ctx, m, to)
}

// counts returns how many responses were kept and resent so far.
func (k *keptNet) counts() (kept, resent int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.kept), len(k.resent)
}

// keptLayer is a Layer on k whose handler answers each request with
// code and returns, handing the transaction to the test first.
func keptLayer(t *testing.T, k *keptNet, code int) (*Layer, chan *ServerTx) {
	txs := make(chan *ServerTx, 8)
	l := New(context.Background(), k, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if err := tx.Respond(response(req, code, "uas")); err != nil {
			t.Errorf("respond: %v", err)
		}
		txs <- tx
	}), Config{})
	t.Cleanup(func() { l.Close() })
	return l, txs
}

// keptBy reports what tx holds: its last response, and its kept bytes.
func keptBy(tx *ServerTx) (last *sip.Response, wire []byte, dst sip.Addr) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.last, tx.wire, tx.dst
}

// TestServerKeepsWire: over a Resender, a non-INVITE transaction whose
// final response lingers (a 200 over UDP) keeps the bytes it went as,
// lets go of the response once its handler has returned, and answers a
// retransmission of its request with those same bytes, sent where the
// first copy went.
func TestServerKeepsWire(t *testing.T) {
	to := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5099")}
	k := &keptNet{netRec: newNetRec(clock.NewFake(epoch)), to: to}
	l, txs := keptLayer(t, k, 200)
	spec := msgSpec{method: "REGISTER", branch: sip.NewBranch()}
	l.HandleMessage(spec.req(t))
	tx := <-txs
	first := k.wait(t, 1)
	if labels(first) != "200 REGISTER" || first[0].dst != phoneUDP {
		t.Fatalf("sent %v to %v, want a 200 to %v", labels(first), first[0].dst, phoneUDP)
	}
	eventually(t, "the response let go", func() bool {
		last, wire, _ := keptBy(tx)
		return last == nil && wire != nil
	})
	_, wire, dst := keptBy(tx)
	if dst != to {
		t.Errorf("kept for %v, want %v, where SendKept said the bytes went", dst, to)
	}
	if want := first[0].msg.String(); string(wire) != want {
		t.Errorf("kept %q, want the response as sent, %q", wire, want)
	}

	l.HandleMessage(spec.req(t)) // the request sent again
	again := k.wait(t, 1)
	if labels(again) != "200 REGISTER" || again[0].dst != to {
		t.Fatalf("answered the retransmission with %v to %v, want the 200 to %v", labels(again), again[0].dst, to)
	}
	k.mu.Lock()
	resent := k.resent
	k.mu.Unlock()
	if len(resent) != 1 || !bytes.Equal(resent[0], wire) {
		t.Fatalf("resent %q, want the kept bytes once", resent)
	}
	if tx.State() != StateCompleted {
		t.Fatalf("state %v, want Completed", tx.State())
	}
}

// TestServerKeepsWireNotHeld: what does not linger, or what the Resender
// cannot repeat, is not kept as bytes: a quick refusal and an answer
// over a connection end at once; a response SendKept kept nothing of is
// kept as it is, and answers retransmissions through Send.
func TestServerKeepsWireNotHeld(t *testing.T) {
	t.Run("refusal", func(t *testing.T) {
		k := &keptNet{netRec: newNetRec(clock.NewFake(epoch))}
		l, txs := keptLayer(t, k, 401)
		l.HandleMessage(msgSpec{method: "REGISTER", branch: sip.NewBranch()}.req(t))
		<-txs
		k.wait(t, 1)
		if kept, _ := k.counts(); kept != 0 {
			t.Fatalf("kept %d responses, want none", kept)
		}
	})
	t.Run("connection", func(t *testing.T) {
		k := &keptNet{netRec: newNetRec(clock.NewFake(epoch))}
		l, txs := keptLayer(t, k, 200)
		l.HandleMessage(msgSpec{method: "REGISTER", branch: sip.NewBranch(), src: phoneTCP}.req(t))
		<-txs
		k.wait(t, 1)
		if kept, _ := k.counts(); kept != 0 {
			t.Fatalf("kept %d responses, want none", kept)
		}
	})
	t.Run("nothing kept", func(t *testing.T) {
		k := &keptNet{netRec: newNetRec(clock.NewFake(epoch)), none: true}
		l, txs := keptLayer(t, k, 200)
		spec := msgSpec{method: "REGISTER", branch: sip.NewBranch()}
		l.HandleMessage(spec.req(t))
		tx := <-txs
		k.wait(t, 1)
		eventually(t, "the handler's end", func() bool {
			tx.mu.Lock()
			defer tx.mu.Unlock()
			return tx.handlerDone && tx.lingerAsked
		})
		if last, wire, _ := keptBy(tx); last == nil || wire != nil {
			t.Fatalf("holds response %v and %d bytes, want the response only", last != nil, len(wire))
		}
		l.HandleMessage(spec.req(t))
		if got := k.wait(t, 1); labels(got) != "200 REGISTER" || got[0].dst != phoneUDP {
			t.Fatalf("answered the retransmission with %v to %v", labels(got), got[0].dst)
		}
		if _, resent := k.counts(); resent != 0 {
			t.Fatalf("resent %d, want none", resent)
		}
	})
}

// TestServerKeepsWireWhileHandlerRuns: a handler that answered and goes
// on still has its response (it may read it); a retransmission meanwhile
// gets the kept bytes, and the response goes when the handler returns.
func TestServerKeepsWireWhileHandlerRuns(t *testing.T) {
	k := &keptNet{netRec: newNetRec(clock.NewFake(epoch))}
	release := make(chan struct{})
	txs := make(chan *ServerTx, 1)
	l := New(context.Background(), k, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if err := tx.Respond(response(req, 200, "uas")); err != nil {
			t.Errorf("respond: %v", err)
		}
		txs <- tx
		<-release
	}), Config{})
	t.Cleanup(func() { l.Close() })
	spec := msgSpec{method: "OPTIONS", branch: sip.NewBranch()}
	l.HandleMessage(spec.req(t))
	tx := <-txs
	k.wait(t, 1)
	if last, wire, _ := keptBy(tx); last == nil || wire == nil {
		t.Fatalf("while the handler runs: response %v, %d bytes; want both", last != nil, len(wire))
	}
	l.HandleMessage(spec.req(t))
	k.wait(t, 1)
	if _, resent := k.counts(); resent != 1 {
		t.Fatalf("resent %d, want the kept bytes once", resent)
	}
	close(release)
	eventually(t, "the response let go", func() bool {
		last, wire, _ := keptBy(tx)
		return last == nil && wire != nil
	})
}
