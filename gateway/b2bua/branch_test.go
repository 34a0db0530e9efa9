package b2bua

import (
	"testing"

	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/sip"
)

// TestBranch: a phone's call forked by the proxy, whose browser branch the
// B2BUA runs: answered, then ended by the phone; and canceled.
func TestBranch(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		br, ph := h.newBrowser(), newTestPhone(t)
		oc := h.phone.invite("fork", ph.sdp(1, "0 101"))
		in := h.browser.expect(sip.MethodInvite)
		answer := br.Answer(in.req.Body)
		in.respond(180, nil)
		oc.await(180)
		in.respond(200, answer)
		h.browser.expect(sip.MethodAck)
		res := oc.await(200)
		mustContain(t, res.Body, "RTP/AVP")
		ph.learn(res.Body)
		oc.ack(res, nil)
		br.WaitConnected()
		audioToBrowser(t, ph, br)
		audioToPhone(t, br, ph)
		if r := h.phone.request(oc.dlg, sip.MethodBye, nil, ""); r.StatusCode != 200 {
			t.Fatalf("bye: %d", r.StatusCode)
		}
		h.browser.expect(sip.MethodBye).respond(200, nil)
		h.ended()
	})
	for _, user := range []string{"fork", "fork-elsewhere"} {
		t.Run("canceled/"+user, func(t *testing.T) { branchCanceled(t, user) })
	}
}

// branchCanceled: the caller's CANCEL reaches the browser's leg as a
// CANCEL, with the Reason the proxy gave when another branch answered.
func branchCanceled(t *testing.T, user string) {
	h := newHarness(t, harnessOptions{})
	{
		ph := newTestPhone(t)
		oc := h.phone.invite(user, ph.sdp(1, "0 101"))
		in := h.browser.expect(sip.MethodInvite)
		in.respond(180, nil)
		oc.await(180)
		if err := oc.tx.Cancel(); err != nil {
			t.Fatal(err)
		}
		oc.await(487)
		select {
		case <-in.tx.Canceled():
		case <-timeAfter():
			t.Fatal("the browser's invite was not canceled")
		}
		in.respond(487, nil)
		h.ended()
		d := h.net.Log.Wait(t, waitLimit, "a CANCEL to the browser", func(d sipnet.Delivery) bool {
			req, ok := d.Message().(*sip.Request)
			return ok && req.Method == sip.MethodCancel && d.To == "browser"
		})
		want := ""
		if user == "fork-elsewhere" {
			want = completedElsewhere
		}
		if got := d.Message().(*sip.Request).Get("Reason"); got != want {
			t.Errorf("CANCEL to the browser: Reason %q, want %q", got, want)
		}
	}
}

const completedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`
