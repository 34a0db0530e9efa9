package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// TestInDialogOrder has the callee of a proxied call between two browsers
// send bursts of NOTIFYs back to back over its WebSocket, as a REFER's
// sipfrag NOTIFYs go: the caller must receive them in the order they were
// sent, by CSeq, over its own WebSocket. A browser (SIP.js) answers a
// request whose CSeq is below one it has seen with 500, so one overtaken
// NOTIFY breaks a transfer.
func TestInDialogOrder(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	caller := newSigPeer(t, g, sip.WS, "1001", domain, "")
	caller.register()
	callee := newSigPeer(t, g, sip.WS, "1000", domain, "")
	callee.register()

	inv := caller.request(sip.MethodInvite, "sip:"+callee.user+"@"+domain)
	res := caller.transact(inv)
	if res.StatusCode == 407 {
		inv = caller.authorize(inv, res)
		res = caller.transact(inv)
	}
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: got %d %s", res.StatusCode, res.Reason)
	}
	got := callee.expectRequest(sip.MethodInvite)
	ok := sip.NewResponse(got, 200, "")
	ok.SetToTag(callee.tag)
	ok.CopyFrom(&got.Headers, "Record-Route")
	ok.Set("Contact", "<"+callee.contact()+">")
	uas, err := dialog.NewUAS(got, ok)
	if err != nil {
		t.Fatal(err)
	}
	uac, err := dialog.NewUAC(inv, res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := uac.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	caller.send(ack)
	callee.expectRequest(sip.MethodAck)

	const rounds, burst = 25, 8
	for round := range rounds {
		sent := make([]uint32, 0, burst)
		for i := range burst {
			n, err := uas.NewRequest(sip.MethodNotify)
			if err != nil {
				t.Fatal(err)
			}
			n.Set("Event", "refer")
			n.Set("Subscription-State", "active;expires=60")
			n.Set("Content-Type", "message/sipfrag;version=2.0")
			n.Body = []byte("SIP/2.0 " + strconv.Itoa(100+i) + " Trying\r\n")
			n.Set("Content-Length", strconv.Itoa(len(n.Body)))
			sent = append(sent, n.CSeq().Seq)
			callee.send(n)
		}
		for i := range burst {
			n := caller.expectRequest(sip.MethodNotify)
			if seq := n.CSeq().Seq; seq != sent[i] {
				t.Fatalf("round %d: NOTIFY %d of the burst reached the caller with CSeq %d, want %d (sent in order %v)",
					round, i, seq, sent[i], sent)
			}
		}
	}
}

// TestBridgedInDialogOrder is TestInDialogOrder across the B2BUA: the
// browser of a bridged call sends bursts of INFOs back to back over its
// WebSocket, and the phone must receive them in the order they were sent,
// with CSeqs that grow in that order (the phone answers a lower CSeq 481,
// and that ends the call).
func TestBridgedInDialogOrder(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	browser := newParty(t, g, "browser", "alice", true)
	phone := newParty(t, g, "phone", "bob", false)
	type info struct {
		body string
		seq  uint32
	}
	infos := make(chan info, 64)
	receive := func(m sip.Message) {
		if req, ok := m.(*sip.Request); ok && req.Method == sip.MethodInfo {
			infos <- info{string(req.Body), req.CSeq().Seq}
		}
		phone.receive(m)
	}
	phone.sig.intercept.Store(&receive)
	bc := browser.call(phone)
	phone.expectCall()

	const rounds, burst = 25, 8
	for round := range rounds {
		for i := range burst {
			n, err := bc.dlg.NewRequest(sip.MethodInfo)
			if err != nil {
				t.Fatal(err)
			}
			n.SetBody([]byte(strconv.Itoa(round)+"-"+strconv.Itoa(i)), "application/x-test")
			browser.send(n)
		}
		var last uint32
		for i := range burst {
			select {
			case in := <-infos:
				if want := strconv.Itoa(round) + "-" + strconv.Itoa(i); in.body != want || in.seq <= last {
					t.Fatalf("round %d: INFO %d of the burst reached the phone as %q with CSeq %d (the last %d), want %q",
						round, i, in.body, in.seq, last, want)
				}
				last = in.seq
			case <-time.After(peerWait):
				t.Fatalf("round %d: the phone got %d INFOs of %d", round, i, burst)
			}
		}
	}
	bc.bye()
}
