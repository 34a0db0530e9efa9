package proxy

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// orderParties are alice and bob, bob registered.
func orderParties(f *fixture) (alice, bob *ua) {
	alice = f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))
	bob = f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
	bob.register(1000)
	return alice, bob
}

// orderCall sets up a call from alice to bob through the proxy and returns
// alice's and bob's sides of its dialog.
func orderCall(t *testing.T, alice, bob *ua) (uac, uas *dialog.Dialog) {
	t.Helper()
	inv := alice.request(sip.MethodInvite, "sip:bob@"+testDomain)
	inv, res := alice.do(inv)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: got %d", res.StatusCode)
	}
	atBob := bob.waitRequest(sip.MethodInvite)
	uas, err := dialog.NewUAS(atBob, bob.response(atBob, 200))
	if err != nil {
		t.Fatal(err)
	}
	uac = uacDialog(t, inv, res)
	ack, err := uac.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	alice.sendStateless(ack)
	bob.waitRequest(sip.MethodAck)
	return uac, uas
}

func orderNotify(t *testing.T, d *dialog.Dialog) *sip.Request {
	t.Helper()
	n, err := d.NewRequest(sip.MethodNotify)
	if err != nil {
		t.Fatal(err)
	}
	n.Set("Event", "refer")
	n.Set("Subscription-State", "active;expires=60")
	return n
}

// arrived has the proxy see req arrive from u, as the transaction layer's
// Admit would, for a request whose handler never runs: one that the layer
// refused after Admit let it in.
func arrived(t *testing.T, f *fixture, req *sip.Request, u *ua) {
	t.Helper()
	req.Source = u.addr
	if res := f.proxy.Arrive(req); res != nil {
		t.Fatalf("Arrive: %d %s", res.StatusCode, res.Reason)
	}
}

// entered waits until n requests wait in the proxy's handler for their
// turn.
func (f *fixture) entered(n int) {
	f.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := f.proxy.OrderStats().Entered
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d requests entered the proxy's handler, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// A callee floods its dialog with NOTIFYs while one that arrived before
// them never reaches the proxy's handler (the transaction layer refused it
// after Admit saw it): the proxy holds MaxQueued of them, in order, and
// answers the rest 503 at once; after OrderWait it gives up the missing
// one and forwards those it held, in the order they arrived. Nothing is
// left held, and no goroutine outlives the test (TestMain).
func TestInDialogOrderCap(t *testing.T) {
	const max = 8
	f := newFixture(t, func(o *Options) { o.MaxQueued = max })
	alice, bob := orderParties(f)
	_, d := orderCall(t, alice, bob)

	arrived(t, f, orderNotify(t, d), bob)
	var held []uint32
	var cts []*transaction.ClientTx
	for i := range max + 4 {
		n := orderNotify(t, d)
		if i < max-1 {
			held = append(held, n.CSeq().Seq)
		}
		cts = append(cts, bob.send(n))
	}
	for _, ct := range cts[max-1:] {
		res, _ := bob.final(ct)
		if res.StatusCode != 503 || res.Reason != "Too Many Requests In Dialog" || res.Get("Retry-After") == "" {
			t.Errorf("NOTIFY beyond the cap: got %d %q (Retry-After %q), want 503 with Retry-After",
				res.StatusCode, res.Reason, res.Get("Retry-After"))
		}
	}
	f.entered(max - 1)
	if f.sent("proxy", "alice", isRequest(sip.MethodNotify)) {
		t.Fatal("a NOTIFY went past the one that arrived before it")
	}
	if st := f.proxy.OrderStats(); st.Queued != max || st.Refused != 5 {
		t.Errorf("stats %+v, want %d queued, 5 refused", st, max)
	}

	f.clk.Advance(DefaultOrderWait)
	for i, ct := range cts[:max-1] {
		if res, _ := bob.final(ct); res.StatusCode != 200 {
			t.Errorf("NOTIFY %d: got %d, want 200", i, res.StatusCode)
		}
	}
	// The order on the wire: alice's own handlers run concurrently.
	var reached []uint32
	for _, d := range f.net.Log.All() {
		if m, ok := d.Message().(*sip.Request); ok && d.To == "alice" && m.Method == sip.MethodNotify {
			reached = append(reached, m.CSeq().Seq)
		}
	}
	if !slices.Equal(reached, held) {
		t.Errorf("NOTIFYs reached alice in the order %v, want %v", reached, held)
	}
	f.settled()
	if st := f.proxy.OrderStats(); st.Queued != 0 || st.Skipped != 1 {
		t.Errorf("stats %+v, want none queued, 1 skipped", st)
	}
}

// The requests of other dialogs, and of the other side of the same one,
// do not wait behind a dialog whose requests wait.
func TestInDialogOrderIsPerDialog(t *testing.T) {
	f := newFixture(t, nil)
	alice, bob := orderParties(f)
	uac, d := orderCall(t, alice, bob)
	arrived(t, f, orderNotify(t, d), bob)
	held := bob.send(orderNotify(t, d))
	f.entered(1)

	// The other direction of the dialog: alice's request goes at once.
	info, err := uac.NewRequest(sip.MethodInfo)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := alice.final(alice.send(info)); res.StatusCode != 200 {
		t.Errorf("alice's INFO: got %d, want 200", res.StatusCode)
	}
	// Another dialog between the same parties.
	_, d2 := orderCall(t, alice, bob)
	if res, _ := bob.final(bob.send(orderNotify(t, d2))); res.StatusCode != 200 {
		t.Errorf("NOTIFY of another dialog: got %d, want 200", res.StatusCode)
	}
	f.clk.Advance(DefaultOrderWait)
	if res, _ := bob.final(held); res.StatusCode != 200 {
		t.Errorf("held NOTIFY: got %d, want 200", res.StatusCode)
	}
}

// A place whose request never reaches the handler, in a dialog that sends
// nothing more, is swept once OrderWait has passed: the table keeps
// nothing for it.
func TestInDialogOrderSweep(t *testing.T) {
	f := newFixture(t, nil)
	alice, bob := orderParties(f)
	uac, uas := orderCall(t, alice, bob)
	arrived(t, f, orderNotify(t, uas), bob)
	f.clk.Advance(DefaultOrderWait)
	other, err := uac.NewRequest(sip.MethodInfo) // the other side: another queue
	if err != nil {
		t.Fatal(err)
	}
	arrived(t, f, other, alice)
	if st := f.proxy.OrderStats(); st.Queued != 1 {
		t.Errorf("stats %+v, want only the new request held", st)
	}
	f.proxy.Forget(other)
	if st := f.proxy.OrderStats(); st.Queued != 0 {
		t.Errorf("stats %+v after Forget, want none held", st)
	}
}
