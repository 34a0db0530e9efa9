package b2bua

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/sip"
)

const sipfrag = "message/sipfrag;version=2.0"

// bridgedCall is browserCallsPhone, with audio flowing: the web leg's
// connection is settled before the test ends the call (media's
// learnTransport can race pion's own close of a leg that is torn down
// as it connects).
func bridgedCall(t *testing.T, h *harness) (*outCall, *inbound) {
	t.Helper()
	br, ph, oc, in := browserCallsPhone(t, h)
	audioToBrowser(t, ph, br)
	return oc, in
}

// refer sends a REFER from the browser in oc's dialog, on a goroutine of
// its own (the B2BUA answers it once the phone has), and returns where
// its final response will come.
func referFromBrowser(h *harness, oc *outCall, referTo string, hdrs ...string) <-chan *sip.Response {
	done := make(chan *sip.Response, 1)
	hdrs = append([]string{"Refer-To", referTo, "Referred-By", "<sip:browser@example.test>"}, hdrs...)
	go func() { done <- h.browser.request(oc.dlg, sip.MethodRefer, nil, "", hdrs...) }()
	return done
}

// referAccepted has the browser transfer the phone to carol, the phone
// accept, and returns the Event of the phone's NOTIFYs for it.
func referAccepted(t *testing.T, h *harness, oc *outCall) string {
	t.Helper()
	done := referFromBrowser(h, oc, "<sip:carol@example.test>")
	ref := h.phone.expect(sip.MethodRefer)
	ref.respond(202, nil)
	if res := awaitResponse(t, done); res.StatusCode != 202 {
		t.Fatalf("the browser's REFER: %d", res.StatusCode)
	}
	return "refer;id=" + strconv.FormatUint(uint64(ref.req.CSeq().Seq), 10)
}

func awaitResponse(t *testing.T, ch <-chan *sip.Response) *sip.Response {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-timeAfter():
		t.Fatal("no response")
		return nil
	}
}

// notifyFromPhone sends a NOTIFY of the refer subscription id in the
// phone's dialog in, on a goroutine of its own.
func notifyFromPhone(h *harness, in *inbound, event, state, frag string) <-chan *sip.Response {
	done := make(chan *sip.Response, 1)
	go func() {
		done <- h.phone.request(in.dlg, sip.MethodNotify, []byte(frag), sipfrag, "Event", event, "Subscription-State", state)
	}()
	return done
}

// TestTransferRelayed: the browser transfers the phone (RFC 3515). The
// REFER reaches the phone in its own dialog with the Refer-To and
// Referred-By as sent, the phone's 202 reaches the browser, the NOTIFYs
// come back with the id of the browser's REFER, and the final one, whose
// sipfrag says the target answered, ends the call on both legs.
func TestTransferRelayed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	done := referFromBrowser(h, oc, "<sip:carol@example.test>")
	ref := h.phone.expect(sip.MethodRefer)
	if ref.req.CallID() != in.req.CallID() || ref.req.Get("Refer-To") != "<sip:carol@example.test>" ||
		ref.req.Get("Referred-By") != "<sip:browser@example.test>" {
		t.Fatalf("the phone's REFER:\n%s", ref.req)
	}
	phoneID := strconv.FormatUint(uint64(ref.req.CSeq().Seq), 10)
	// The phone's first NOTIFY overtakes its 202; the gateway holds it
	// until the browser has its 202.
	trying := notifyFromPhone(h, in, "refer;id="+phoneID, "active;expires=60", "SIP/2.0 100 Trying\r\n")
	h.net.Log.Wait(t, waitLimit, "the phone's NOTIFY", func(d sipnet.Delivery) bool {
		return d.String() == "phone -> gateway: NOTIFY"
	})
	ref.respond(202, nil)
	accepted := awaitResponse(t, done)
	if accepted.StatusCode != 202 {
		t.Fatalf("the browser's REFER: %d", accepted.StatusCode)
	}
	browserID := strconv.FormatUint(uint64(accepted.CSeq().Seq), 10)

	for _, step := range []struct {
		state, frag string
		res         <-chan *sip.Response
	}{
		{"active;expires=60", "SIP/2.0 100 Trying\r\n", trying},
		{"terminated;reason=noresource", "SIP/2.0 200 OK\r\n", nil},
	} {
		res := step.res
		if res == nil {
			res = notifyFromPhone(h, in, "refer;id="+phoneID, step.state, step.frag)
		}
		n := h.browser.expect(sip.MethodNotify)
		if n.req.CallID() != oc.req.CallID() || n.req.Get("Event") != "refer;id="+browserID ||
			n.req.Get("Subscription-State") != step.state || string(n.req.Body) != step.frag ||
			n.req.ContentType() != sipfrag {
			t.Fatalf("the browser's NOTIFY, want id %s, state %s:\n%s", browserID, step.state, n.req)
		}
		n.respond(200, nil)
		if r := awaitResponse(t, res); r.StatusCode != 200 {
			t.Fatalf("the phone's NOTIFY: %d", r.StatusCode)
		}
	}
	h.phone.expect(sip.MethodBye).respond(200, nil)
	h.browser.expect(sip.MethodBye).respond(200, nil)
	var order []string
	for _, d := range h.net.Log.All() {
		if l := d.String(); strings.HasPrefix(l, "gateway -> browser: ") {
			order = append(order, strings.TrimPrefix(l, "gateway -> browser: "))
		}
	}
	if got := strings.Join(order, ","); !strings.Contains(got, "202 REFER,NOTIFY,NOTIFY,BYE") {
		t.Errorf("the browser got %s; want the 202 before the NOTIFYs", got)
	}
	if cause := h.ended(); !strings.Contains(cause, "transferred") {
		t.Errorf("cause %q, want transferred", cause)
	}
}

// TestTransferEarlyTerminated: a transferee that ends the subscription
// with its progress report and sends the final NOTIFY all the same (as
// SIP.js does) still ends the transferred call. The transferor gets the
// progress with the subscription active, then the final NOTIFY as sent.
func TestTransferEarlyTerminated(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	id := referAccepted(t, h, oc)
	for _, step := range []struct{ frag, want string }{
		{"SIP/2.0 180 Ringing", "active;expires=60"},
		{"SIP/2.0 200 OK", "terminated"},
	} {
		res := notifyFromPhone(h, in, id, "terminated", step.frag)
		n := h.browser.expect(sip.MethodNotify)
		if got := n.req.Get("Subscription-State"); got != step.want || string(n.req.Body) != step.frag {
			t.Fatalf("the browser's NOTIFY for %q: state %q, want %q:\n%s", step.frag, got, step.want, n.req)
		}
		n.respond(200, nil)
		if r := awaitResponse(t, res); r.StatusCode != 200 {
			t.Fatalf("the phone's NOTIFY of %q: %d", step.frag, r.StatusCode)
		}
	}
	h.phone.expect(sip.MethodBye).respond(200, nil)
	h.browser.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); !strings.Contains(cause, "transferred") {
		t.Errorf("cause %q, want transferred", cause)
	}
}

// TestTransferRefusals: a phone that takes no REFER declines it, a REFER
// whose Refer-To embeds a Route never reaches the phone, and NOTIFYs that
// belong to no relayed REFER are refused; the call goes on through all of
// them.
func TestTransferRefusals(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	done := referFromBrowser(h, oc, "<sip:carol@example.test>")
	h.phone.expect(sip.MethodRefer).respond(405, nil)
	if res := awaitResponse(t, done); res.StatusCode != 603 {
		t.Errorf("a REFER the phone does not take: %d, want 603", res.StatusCode)
	}

	done = referFromBrowser(h, oc, "<sip:carol@example.test?Route=%3Csip%3Aevil.test%3Blr%3E>")
	if res := awaitResponse(t, done); res.StatusCode != 403 {
		t.Errorf("a REFER with an embedded Route: %d, want 403", res.StatusCode)
	}
	h.phone.idle(sip.MethodRefer)

	// A 481 to a NOTIFY ends its subscription only (RFC 5057): the
	// phone's dialog, and the call, go on.
	for _, tc := range []struct {
		event string
		code  int
	}{
		{"dialog", 489},       // not a refer subscription
		{"refer;id=x1", 400},  // an id that is no CSeq
		{"refer;id=-1", 400},  // nor is this
		{"refer;id=1e9", 400}, // nor this
		{"refer;id=1", 481},   // no REFER relayed with that id
	} {
		if res := awaitResponse(t, notifyFromPhone(h, in, tc.event, "terminated", "SIP/2.0 200 OK\r\n")); res.StatusCode != tc.code {
			t.Errorf("NOTIFY with Event %s: %d, want %d", tc.event, res.StatusCode, tc.code)
		}
	}
	h.browser.idle(sip.MethodNotify)
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("calls %+v", calls)
	}
}

// TestTransferTransferorDropsSubscription: the transferor answers a
// relayed NOTIFY with 481, as a user agent that forgot the subscription
// does: that ends the subscription, not the call (RFC 5057 §5.1). The
// transferee learns it (481), the call goes on, and when it ends the
// transferor's leg still gets its BYE.
func TestTransferTransferorDropsSubscription(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	id := referAccepted(t, h, oc)
	res := notifyFromPhone(h, in, id, "active;expires=60", "SIP/2.0 100 Trying\r\n")
	h.browser.expect(sip.MethodNotify).respond(481, nil)
	if r := awaitResponse(t, res); r.StatusCode != 481 {
		t.Errorf("the phone's NOTIFY: %d, want the transferor's 481", r.StatusCode)
	}
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("after the 481 to a NOTIFY: calls %+v, want the call answered", calls)
	}
	// The subscription is gone: the next NOTIFY is not relayed.
	if r := awaitResponse(t, notifyFromPhone(h, in, id, "terminated", "SIP/2.0 486 Busy Here\r\n")); r.StatusCode != 481 {
		t.Errorf("a NOTIFY of the dropped subscription: %d, want 481", r.StatusCode)
	}
	h.browser.idle(sip.MethodNotify)

	if r := h.phone.request(in.dlg, sip.MethodBye, nil, ""); r.StatusCode != 200 {
		t.Fatalf("the phone's BYE: %d", r.StatusCode)
	}
	h.browser.expect(sip.MethodBye).respond(200, nil)
	if cause := h.ended(); cause == "" {
		t.Error("the call did not end")
	}
}

// TestTransferNoReferSub: a REFER with Refer-Sub: false (RFC 4488) gets
// a 202 with Refer-Sub: false, and the NOTIFYs of a phone that ignores it
// are answered by the gateway, not relayed; the call goes on when the
// target answered, as the transferor learns nothing and hangs up itself.
func TestTransferNoReferSub(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	done := referFromBrowser(h, oc, "<sip:carol@example.test>", "Refer-Sub", "false", "Supported", "norefersub")
	ref := h.phone.expect(sip.MethodRefer)
	if !strings.EqualFold(ref.req.Get("Refer-Sub"), "false") {
		t.Errorf("the phone's REFER has Refer-Sub %q", ref.req.Get("Refer-Sub"))
	}
	ref.respond(202, nil)
	if res := awaitResponse(t, done); res.StatusCode != 202 || !strings.EqualFold(res.Get("Refer-Sub"), "false") {
		t.Fatalf("202 with Refer-Sub %q (%d)", res.Get("Refer-Sub"), res.StatusCode)
	}
	id := "refer;id=" + strconv.FormatUint(uint64(ref.req.CSeq().Seq), 10)
	if res := awaitResponse(t, notifyFromPhone(h, in, id, "terminated", "SIP/2.0 200 OK\r\n")); res.StatusCode != 200 {
		t.Errorf("the phone's NOTIFY: %d", res.StatusCode)
	}
	h.browser.idle(sip.MethodNotify)
	// The subscription ended with that NOTIFY: another is refused.
	if res := awaitResponse(t, notifyFromPhone(h, in, id, "terminated", "SIP/2.0 200 OK\r\n")); res.StatusCode != 481 {
		t.Errorf("a NOTIFY after the final one: %d, want 481", res.StatusCode)
	}
}

// TestTransferCap: at most maxRefers REFERs wait for their outcome in one
// call; one more gets 503 and never reaches the phone, and a final NOTIFY
// makes room again.
func TestTransferCap(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	oc, in := bridgedCall(t, h)

	var first *inbound
	for i := range maxRefers {
		done := referFromBrowser(h, oc, "<sip:carol@example.test>")
		ref := h.phone.expect(sip.MethodRefer)
		ref.respond(202, nil)
		if res := awaitResponse(t, done); res.StatusCode != 202 {
			t.Fatalf("REFER %d: %d", i+1, res.StatusCode)
		}
		if first == nil {
			first = ref
		}
	}
	res := awaitResponse(t, referFromBrowser(h, oc, "<sip:carol@example.test>"))
	if res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Fatalf("REFER over the cap: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Get("Retry-After"))
	}
	h.phone.idle(sip.MethodRefer)

	id := "refer;id=" + strconv.FormatUint(uint64(first.req.CSeq().Seq), 10)
	notified := notifyFromPhone(h, in, id, "terminated;reason=noresource", "SIP/2.0 486 Busy Here\r\n")
	h.browser.expect(sip.MethodNotify).respond(200, nil)
	if r := awaitResponse(t, notified); r.StatusCode != 200 {
		t.Fatalf("final NOTIFY: %d", r.StatusCode)
	}
	done := referFromBrowser(h, oc, "<sip:carol@example.test>")
	h.phone.expect(sip.MethodRefer).respond(202, nil)
	if res := awaitResponse(t, done); res.StatusCode != 202 {
		t.Fatalf("REFER after a final NOTIFY: %d", res.StatusCode)
	}
	if calls := h.b2b.Calls(); len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("calls after a failed transfer: %+v", calls)
	}
}
