package b2bua

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// sendNow sends a request of method in d and returns its client
// transaction, without waiting for any answer.
func (u *testUA) sendNow(d *dialog.Dialog, method string, body []byte, ctype string, hdrs ...string) *transaction.ClientTx {
	u.t.Helper()
	req, err := d.NewRequest(method)
	if err != nil {
		u.t.Fatal(err)
	}
	for j := 0; j+1 < len(hdrs); j += 2 {
		req.Add(hdrs[j], hdrs[j+1])
	}
	if body != nil {
		req.SetBody(body, ctype)
	}
	if _, err := u.node.StampVia(req, u.gw); err != nil {
		u.t.Fatal(err)
	}
	tx, err := u.layer.Request(context.Background(), req, u.gw)
	if err != nil {
		u.t.Fatal(err)
	}
	return tx
}

// sendBurst sends n requests of method in d back to back, without waiting
// for any answer, each with body "<round>-<i>", and returns their client
// transactions in the order they were sent.
func (u *testUA) sendBurst(d *dialog.Dialog, method string, round, n int, hdrs ...string) []*transaction.ClientTx {
	u.t.Helper()
	txs := make([]*transaction.ClientTx, 0, n)
	for i := range n {
		txs = append(txs, u.sendNow(d, method, fmt.Appendf(nil, "%d-%d", round, i), "application/x-test", hdrs...))
	}
	return txs
}

// finalOf waits for the final response of tx.
func finalOf(t testing.TB, tx *transaction.ClientTx) *sip.Response {
	t.Helper()
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				t.Fatalf("no final response: %v", tx.Err())
				return nil
			}
			if res.StatusCode >= 200 {
				return res
			}
		case <-timeAfter():
			t.Fatal("no final response")
			return nil
		}
	}
}

// relayed is a request as the far leg received it.
type relayed struct {
	body string
	cseq uint32
}

// relayedTo returns the requests of method delivered to node on the
// test network, in the order they were delivered, from the seen-th on.
func relayedTo(t testing.TB, h *harness, node, method string, seen int) []relayed {
	t.Helper()
	var out []relayed
	for _, d := range h.net.Log.All() {
		if d.To != node || !bytes.HasPrefix(d.Data, []byte(method+" ")) {
			continue
		}
		m, err := sip.ParseMessage(d.Data)
		if err != nil {
			t.Fatalf("delivered to the %s: %v", node, err)
		}
		req := m.(*sip.Request)
		out = append(out, relayed{string(req.Body), req.CSeq().Seq})
	}
	if seen > len(out) {
		return nil
	}
	return out[seen:]
}

// inOrder has from send rounds of burst requests of method in d back to
// back, to answers each at once, and checks that each round reached to
// (the node named toNode), as the network delivered it, in the order it
// was sent, with CSeqs that grow in that order, and that every request
// was answered 200 (none refused as out of order on the way in). The
// order is the network's: to's own handlers race each other.
func inOrder(t *testing.T, h *harness, from, to *testUA, toNode string, d *dialog.Dialog, method string, rounds, burst int, hdrs ...string) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case in := <-to.in[method]:
				in.respond(200, nil)
			case <-stop:
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)

	seen := 0
	for r := range rounds {
		txs := from.sendBurst(d, method, r, burst, hdrs...)
		for i, tx := range txs {
			if res := finalOf(t, tx); res.StatusCode != 200 {
				t.Fatalf("round %d: %s %d of %d answered %d %s", r, method, i, burst, res.StatusCode, res.Reason)
			}
		}
		round := relayedTo(t, h, toNode, method, seen)
		seen += len(round)
		if len(round) != burst {
			t.Fatalf("round %d: the %s got %v, want %d of %s", r, toNode, round, burst, method)
		}
		for i := range burst {
			if round[i].body != fmt.Sprintf("%d-%d", r, i) || (i > 0 && round[i].cseq <= round[i-1].cseq) {
				t.Fatalf("round %d: the %s got %v, want %d-0 to %d-%d in order, with growing CSeqs", r, toNode, round, r, r, burst-1)
			}
		}
	}
}

// TestInDialogOrder: INFOs that the browser sends back to back reach the
// phone in the order they were sent, with CSeqs that grow in that order,
// round after round; none is refused as out of order on the way in.
func TestInDialogOrder(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, oc, _ := browserCallsPhone(t, h)
	inOrder(t, h, h.browser, h.phone, "phone", oc.dlg, sip.MethodInfo, 20, 8, "Info-Package", "x-test")
}

// TestInDialogOrderCap: while MaxQueued requests of the browser's leg
// hold places that no handler took (the transaction layer refused them
// after they arrived), the next one is refused 503 at once, and the phone
// gets nothing; once they are Wait old they are swept, and the next INFO
// is relayed.
func TestInDialogOrderCap(t *testing.T) {
	const max = 4
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	ord := inorder.New(inorder.Options{MaxQueued: max, Clock: clk})
	h := newHarness(t, harnessOptions{b2bua: Options{Order: ord}})
	_, _, oc, _ := browserCallsPhone(t, h)

	for range max {
		req, err := oc.dlg.NewRequest(sip.MethodInfo)
		if err != nil {
			t.Fatal(err)
		}
		req.Source = browserWS
		if !ord.Arrive(req) {
			t.Fatal("refused below the cap")
		}
	}
	res := h.browser.request(oc.dlg, sip.MethodInfo, []byte("<xml/>"), "application/media_control+xml")
	if res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Fatalf("info beyond the cap: %d %s, Retry-After %q", res.StatusCode, res.Reason, res.Get("Retry-After"))
	}
	if st := ord.Stats(); st.Refused != 1 || st.Queued != max {
		t.Fatalf("stats %+v", st)
	}
	h.phone.idle(sip.MethodInfo)

	clk.Advance(inorder.DefaultWait)
	done := make(chan *sip.Response, 1)
	go func() {
		done <- h.browser.request(oc.dlg, sip.MethodInfo, []byte("<xml/>"), "application/media_control+xml")
	}()
	h.phone.expect(sip.MethodInfo).respond(200, nil)
	if res := answered(t, done, "info"); res.StatusCode != 200 {
		t.Fatalf("info after the sweep: %d", res.StatusCode)
	}
	if st := ord.Stats(); st.Queued != 0 {
		t.Fatalf("places left: %+v", st)
	}
}

// TestInDialogOrderNotifies: the NOTIFYs of a refer subscription that the
// phone sends back to back reach the browser in that order, with CSeqs
// that grow in that order (SIP.js answers an older one 500).
func TestInDialogOrderNotifies(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)
	event := referAccepted(t, h, oc)
	inOrder(t, h, h.phone, h.browser, "browser", in.dlg, sip.MethodNotify, 10, 8, "Event", event, "Subscription-State", "active;expires=60")
}

// TestInDialogOrderAndOffer: a request waiting for its turn holds nothing
// of the call. The browser sends a re-INVITE, an INFO and a second
// re-INVITE back to back: the INFO is relayed while the phone has yet to
// answer the first re-INVITE, whose offer/answer the call holds, and the
// second re-INVITE gets 491 rather than waiting for it.
func TestInDialogOrderAndOffer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, _ := browserCallsPhone(t, h)

	hold := bytes.ReplaceAll(br.Offer(), []byte("a=sendrecv"), []byte("a=sendonly"))
	first := h.browser.sendNow(oc.dlg, sip.MethodInvite, hold, contentSDP)
	info := h.browser.sendNow(oc.dlg, sip.MethodInfo, []byte("<xml/>"), "application/media_control+xml")
	second := h.browser.sendNow(oc.dlg, sip.MethodInvite, hold, contentSDP)

	reinvite := h.phone.expect(sip.MethodInvite)
	h.phone.expect(sip.MethodInfo).respond(200, nil)
	if res := finalOf(t, info); res.StatusCode != 200 {
		t.Fatalf("info: %d", res.StatusCode)
	}
	if res := finalOf(t, second); res.StatusCode != 491 {
		t.Fatalf("second re-invite: %d, want 491", res.StatusCode)
	}
	reinvite.respond(200, ph.sdp(2, "0 101", "a=recvonly"))
	h.phone.expect(sip.MethodAck)
	res := finalOf(t, first)
	if res.StatusCode != 200 {
		t.Fatalf("first re-invite: %d", res.StatusCode)
	}
	_ = oc.dlg.ReceiveResponse(res)
	h.browser.ack(oc.dlg, res, nil)
}

// gatedRequester holds, on its way to the transaction layer, the request
// whose body is hold, until release is closed.
type gatedRequester struct {
	next    transaction.Requester
	hold    string
	entered chan struct{}
	release chan struct{}
}

func (g *gatedRequester) Request(ctx context.Context, req *sip.Request, dst sip.Addr) (*transaction.ClientTx, error) {
	if string(req.Body) == g.hold {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	return g.next.Request(ctx, req, dst)
}

// TestOwnRequestAfterRelayed: a request the gateway sends of its own in
// a leg's dialog (here a session refresh) takes its CSeq after, and
// leaves after, a request relayed to that leg that took its CSeq before
// and has yet to leave: the phone gets them in the order of their CSeqs
// (a lower CSeq after a higher one gets 500, RFC 3261 §12.2.2).
func TestOwnRequestAfterRelayed(t *testing.T) {
	clk := fakeClock()
	gate := &gatedRequester{hold: "held", entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, harnessOptions{b2bua: Options{Clock: clk}, requester: func(next transaction.Requester) transaction.Requester {
		gate.next = next
		return gate
	}})
	waits := make(chan string, 4)
	h.b2b.onTurnWait = func(role, method string) { waits <- role + " " + method }
	_, _, oc, _ := browserCallsPhoneWith(t, h, nil, []string{"Session-Expires", "90;refresher=uac", "Require", "timer", "Allow", "INVITE, ACK, BYE, CANCEL, UPDATE, INFO"})

	info := h.browser.sendNow(oc.dlg, sip.MethodInfo, []byte("held"), "application/x-test")
	select {
	case <-gate.entered:
	case <-timeAfter():
		t.Fatal("the info was not relayed")
	}
	clk.Advance(45 * time.Second) // the gateway refreshes the phone's session
	select {
	case w := <-waits:
		if w != "callee UPDATE" {
			t.Fatalf("waiting for the turn: %s", w)
		}
	case in := <-h.phone.in[sip.MethodUpdate]:
		t.Fatalf("the refresh (CSeq %d) left before the info relayed before it", in.req.CSeq().Seq)
	case <-timeAfter():
		t.Fatal("no refresh")
	}
	close(gate.release)
	in := h.phone.expect(sip.MethodInfo)
	in.respond(200, nil)
	if res := finalOf(t, info); res.StatusCode != 200 {
		t.Fatalf("info: %d", res.StatusCode)
	}
	up := h.phone.expect(sip.MethodUpdate)
	up.respond(200, nil, "Session-Expires", "90;refresher=uac", "Require", "timer")
	if in.req.CSeq().Seq >= up.req.CSeq().Seq {
		t.Fatalf("info CSeq %d, update CSeq %d", in.req.CSeq().Seq, up.req.CSeq().Seq)
	}
	var order []string
	for _, d := range h.net.Log.All() {
		if d.To == "phone" && (bytes.HasPrefix(d.Data, []byte("INFO ")) || bytes.HasPrefix(d.Data, []byte("UPDATE "))) {
			order = append(order, string(d.Data[:bytes.IndexByte(d.Data, ' ')]))
		}
	}
	if len(order) != 2 || order[0] != sip.MethodInfo {
		t.Fatalf("the phone got %v, want INFO then UPDATE", order)
	}
}
