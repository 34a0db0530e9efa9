package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

// TestForkPhoneToBrowserAndPhone is issue #5 §1, a phone calling a web
// user: alice is registered from a browser (WebSocket) and a desk phone
// (UDP); another phone calls her. Both ring — the browser through the
// B2BUA, the phone through the proxy — the browser answers, the phone's
// branch is canceled, audio flows both ways between the caller and the
// browser, and the caller's BYE ends the call.
func TestForkPhoneToBrowserAndPhone(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	httpAddr := net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))

	br := newE2EBrowser(t, httpAddr)
	br.register("alice")
	desk := newE2EPhone(t, g)
	desk.register("alice")
	caller := newE2EPhone(t, g)

	inv := caller.call("1000", "alice", caller.sdp(1, ""))

	// The browser gets the B2BUA's INVITE with a WebRTC offer and rings.
	bin := br.awaitRequest(sip.MethodInvite)
	if !bytes.Contains(bin.Body, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("the browser's INVITE has no WebRTC offer:\n%s", bin)
	}
	if bin.CallID() == inv.CallID() {
		t.Error("the browser's INVITE was proxied, not bridged: same Call-ID as the caller's")
	}
	browserTag := sip.NewTag()
	ringing := sip.NewResponse(bin, 180, "")
	ringing.SetToTag(browserTag)
	br.sendResponse(ringing)

	// The desk phone gets the caller's own INVITE, proxied, and rings.
	din := desk.expectRequest(sip.MethodInvite)
	if din.CallID() != inv.CallID() || !bytes.Contains(din.Body, []byte("RTP/AVP")) {
		t.Fatalf("the desk phone's INVITE is not the caller's, proxied:\n%s", din)
	}
	deskTag := sip.NewTag()
	dring := sip.NewResponse(din, 180, "")
	dring.SetToTag(deskTag)
	desk.respond(dring)

	// The caller hears both ring: two 180s of two early dialogs.
	tags := map[string]bool{}
	caller.awaitResponses(inv.CSeq(), func(res *sip.Response) bool {
		if res.StatusCode >= 200 {
			t.Fatalf("caller: %d %s before the answer", res.StatusCode, res.Reason)
		}
		if res.StatusCode == 180 {
			tags[res.To().Tag()] = true
		}
		return len(tags) == 2
	})

	// The browser answers.
	ok := sip.NewResponse(bin, 200, "")
	ok.SetToTag(browserTag)
	ok.Add("Contact", "<sip:alice@"+br.host+";transport=ws>")
	ok.SetBody(br.Answer(bin.Body), "application/sdp")
	brDlg, err := dialog.NewUAS(bin, ok)
	if err != nil {
		t.Fatal(err)
	}
	br.sendResponse(ok)
	br.awaitRequest(sip.MethodAck)

	// The caller gets the B2BUA's 200 with an RTP/AVP answer and ACKs it.
	var answer *sip.Response
	caller.awaitResponses(inv.CSeq(), func(res *sip.Response) bool {
		if res.StatusCode >= 300 {
			t.Fatalf("caller: %d %s, want 200", res.StatusCode, res.Reason)
		}
		answer = res
		return res.IsSuccess()
	})
	if tag := answer.To().Tag(); tag == browserTag || tag == deskTag {
		t.Errorf("the caller's 200 has the callee's To tag %q, not the B2BUA's", tag)
	}
	if !bytes.Contains(answer.Body, []byte("RTP/AVP")) {
		t.Fatalf("the caller's 200 has no RTP/AVP answer:\n%s", answer)
	}
	if err := caller.Learn(answer.Body); err != nil {
		t.Fatalf("caller: %v\n%s", err, answer.Body)
	}
	callerDlg, err := dialog.NewUAC(inv, answer)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := callerDlg.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	caller.send(ack)

	// The desk phone's branch is canceled as completed elsewhere.
	cancel := desk.expectRequest(sip.MethodCancel)
	if !strings.Contains(cancel.Get("Reason"), "cause=200") {
		t.Errorf("CANCEL Reason %q, want cause=200", cancel.Get("Reason"))
	}
	desk.respond(sip.NewResponse(cancel, 200, ""))
	terminated := sip.NewResponse(din, 487, "")
	terminated.SetToTag(deskTag)
	desk.respond(terminated)
	desk.expectRequest(sip.MethodAck)

	// Audio both ways between the caller and the browser.
	expectAudio(t, caller, br)

	// The caller hangs up; the browser gets the BYE.
	bye, err := callerDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- caller.transactAsync(bye) }()
	bbye := br.awaitRequest(sip.MethodBye)
	if err := brDlg.ReceiveRequest(bbye); err != nil {
		t.Errorf("the browser's BYE is not in its dialog: %v", err)
	}
	br.sendResponse(sip.NewResponse(bbye, 200, ""))
	awaitBye(t, byeRes)
	if caller.sawFinal(inv.CSeq(), 487) {
		t.Error("the caller got the canceled desk phone's 487")
	}
}

// TestForkBrowserToBrowserAndPhone is the other way round: a browser
// calls bob, who has a browser and a phone. The browser is reached
// through the proxy (both speak WebRTC), the phone through the B2BUA; the
// phone answers, the other browser is canceled, audio flows between the
// caller's browser and the phone, and the phone's BYE ends the call.
func TestForkBrowserToBrowserAndPhone(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	httpAddr := net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))

	alice := newE2EBrowser(t, httpAddr)
	alice.register("alice")
	bobWeb := newE2EBrowser(t, httpAddr)
	bobWeb.register("bob")
	bobDesk := newE2EPhone(t, g)
	bobDesk.register("bob")

	type inviteResult struct {
		req *sip.Request
		res *sip.Response
		err error
	}
	invited := make(chan inviteResult, 1)
	offer := alice.Offer()
	go func() {
		req, res, err := alice.invite("bob", offer)
		invited <- inviteResult{req, res, err}
	}()

	// Bob's browser gets alice's offer as it is, and rings.
	win := bobWeb.awaitRequest(sip.MethodInvite)
	if !bytes.Contains(win.Body, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("bob's browser did not get a WebRTC offer:\n%s", win)
	}
	webTag := sip.NewTag()
	wring := sip.NewResponse(win, 180, "")
	wring.SetToTag(webTag)
	wring.CopyFrom(&win.Headers, "Record-Route")
	bobWeb.sendResponse(wring)

	// Bob's phone gets the B2BUA's RTP/AVP offer, rings and answers.
	din := bobDesk.expectRequest(sip.MethodInvite)
	if !bytes.Contains(din.Body, []byte("RTP/AVP")) || bytes.Contains(din.Body, []byte("SAVPF")) {
		t.Fatalf("bob's phone did not get an RTP/AVP offer:\n%s", din)
	}
	if err := bobDesk.Learn(din.Body); err != nil {
		t.Fatalf("phone: %v\n%s", err, din.Body)
	}
	deskTag := sip.NewTag()
	dring := sip.NewResponse(din, 180, "")
	dring.SetToTag(deskTag)
	bobDesk.respond(dring)
	ok := sip.NewResponse(din, 200, "")
	ok.SetToTag(deskTag)
	ok.Add("Contact", "<sip:bob@"+bobDesk.sipAddr()+">")
	ok.SetBody(bobDesk.sdp(1, ""), "application/sdp")
	deskDlg, err := dialog.NewUAS(din, ok)
	if err != nil {
		t.Fatal(err)
	}
	bobDesk.respond(ok)
	bobDesk.expectRequest(sip.MethodAck)

	// Bob's browser is canceled. (Its 180 may not have reached the proxy
	// before the phone's answer did, and the proxy gives a CANCEL a Reason
	// only once the branch has answered provisionally: not checked here.)
	cancel := bobWeb.awaitRequest(sip.MethodCancel)
	bobWeb.sendResponse(sip.NewResponse(cancel, 200, ""))
	terminated := sip.NewResponse(win, 487, "")
	terminated.SetToTag(webTag)
	bobWeb.sendResponse(terminated)
	bobWeb.awaitRequest(sip.MethodAck)

	// Alice gets the B2BUA's 200 with a WebRTC answer.
	var ir inviteResult
	select {
	case ir = <-invited:
	case <-time.After(webrtcWait):
		t.Fatal("alice got no final answer to her INVITE")
	}
	if ir.err != nil {
		t.Fatalf("alice's INVITE: %v", ir.err)
	}
	if !bytes.Contains(ir.res.Body, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("alice's 200 has no WebRTC answer:\n%s", ir.res)
	}
	if tag := ir.res.To().Tag(); tag == webTag || tag == deskTag {
		t.Errorf("alice's 200 has a callee's To tag %q, not the B2BUA's", tag)
	}
	aliceDlg, err := dialog.NewUAC(ir.req, ir.res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := aliceDlg.NewAck(ir.req.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	alice.send(ack)
	alice.SetAnswer(ir.res.Body)

	expectAudio(t, bobDesk, alice)

	// Bob's phone hangs up; alice's browser gets the BYE.
	bye, err := deskDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- bobDesk.transactAsync(bye) }()
	abye := alice.awaitRequest(sip.MethodBye)
	if err := aliceDlg.ReceiveRequest(abye); err != nil {
		t.Errorf("alice's BYE is not in her dialog: %v", err)
	}
	alice.sendResponse(sip.NewResponse(abye, 200, ""))
	awaitBye(t, byeRes)
}

// expectAudio waits until the phone and the browser are connected through
// the gateway and each has received more than a few packets of the
// other's audio.
func expectAudio(t *testing.T, ph *e2ePhone, br *e2eBrowser) {
	t.Helper()
	flowAudio(t, br, ph)()
}

// awaitBye waits for the final response to a BYE, which must be 200.
func awaitBye(t *testing.T, ch <-chan *sip.Response) {
	t.Helper()
	select {
	case res := <-ch:
		if res == nil {
			t.Fatal("no answer to the BYE")
		}
		if res.StatusCode != 200 {
			t.Fatalf("BYE: %d %s", res.StatusCode, res.Reason)
		}
	case <-time.After(2 * webrtcWait):
		t.Fatal("no answer to the BYE")
	}
}

// call sends an INVITE from user from (one of users) to user to with sdp,
// answers the 407 (with the ACK of its transaction) and returns the
// authorized INVITE it sent then, whose responses the test reads.
func (p *e2ePhone) call(from, to string, sdp []byte) *sip.Request {
	p.t.Helper()
	callID, tag := sip.NewCallID(), sip.NewTag()
	ruri := "sip:" + to + "@" + domain
	client := &digest.Client{Username: from, Password: users[from]}
	var auth string
	for cseq := 1; ; cseq++ {
		raw := "INVITE " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + p.sipAddr() + ";branch=" + sip.NewBranch() + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + from + "@" + domain + ">;tag=" + tag + "\r\n" +
			"To: <" + ruri + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " INVITE\r\n" +
			"Contact: <sip:" + from + "@" + p.sipAddr() + ">\r\n" + auth +
			"Content-Type: application/sdp\r\n" +
			"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + string(sdp)
		req := mustParseRequest(p.t, raw)
		p.send(req)
		if auth != "" {
			return req
		}
		var res *sip.Response
		p.awaitResponses(req.CSeq(), func(r *sip.Response) bool {
			res = r
			return r.StatusCode >= 200
		})
		if res.StatusCode != 407 {
			p.t.Fatalf("caller: first INVITE got %d %s, want 407", res.StatusCode, res.Reason)
		}
		p.send(transaction.NewAck(req, res))
		ch, err := digest.ParseChallenge(res.Get("Proxy-Authenticate"))
		if err != nil {
			p.t.Fatalf("caller: challenge: %v\n%s", err, res)
		}
		cr, err := client.Authorize(ch, sip.MethodInvite, ruri)
		if err != nil {
			p.t.Fatal(err)
		}
		auth = "Proxy-Authorization: " + cr.String() + "\r\n"
	}
}

// awaitResponses hands done the phone's responses to the request with
// cseq, in order, until it returns true; other messages are logged and
// skipped (and so recorded for sawFinal).
func (p *e2ePhone) awaitResponses(cseq sip.CSeq, done func(*sip.Response) bool) {
	p.t.Helper()
	deadline := time.Now().Add(webrtcWait)
	for time.Now().Before(deadline) {
		m := p.next(fmt.Sprintf("response to %v", cseq))
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq() != cseq {
			p.t.Logf("phone: skipped while waiting for responses to %v:\n%s", cseq, m)
			continue
		}
		if done(res) {
			return
		}
	}
	p.t.Fatalf("phone: responses to %v: not what was awaited within %v", cseq, webrtcWait)
}

// transactAsync sends req and returns its final response, or nil; it
// runs on a goroutine of its own and does not stop the test.
func (p *e2ePhone) transactAsync(req *sip.Request) *sip.Response {
	if _, ok := req.TopVia(); !ok {
		req.Prepend("Via", "SIP/2.0/UDP "+p.sipAddr()+";branch="+sip.NewBranch()+";rport")
	}
	if _, err := p.sip.WriteToUDP(req.AppendTo(nil), p.gwSIP); err != nil {
		p.t.Errorf("phone: send %s: %v", req.Method, err)
		return nil
	}
	deadline := time.After(webrtcWait)
	for {
		select {
		case m := <-p.msgs:
			if res, ok := m.(*sip.Response); ok && res.CSeq() == req.CSeq() && res.StatusCode >= 200 {
				return res
			}
			p.t.Logf("phone: skipped while waiting for the answer to %s:\n%s", req.Method, m)
		case <-deadline:
			return nil
		}
	}
}

// sawFinal reports whether a final response code to cseq is waiting among
// the messages the phone has not read.
func (p *e2ePhone) sawFinal(cseq sip.CSeq, code int) bool {
	for {
		select {
		case m := <-p.msgs:
			if res, ok := m.(*sip.Response); ok && res.CSeq() == cseq && res.StatusCode == code {
				return true
			}
		default:
			return false
		}
	}
}

// awaitRequest returns the next request of method the browser receives,
// skipping (and logging) other messages.
func (b *e2eBrowser) awaitRequest(method string) *sip.Request {
	b.t.Helper()
	deadline := time.After(webrtcWait)
	for {
		select {
		case m := <-b.msgs:
			if req, ok := m.(*sip.Request); ok && req.Method == method {
				return req
			}
			b.t.Logf("browser: skipped while waiting for %s:\n%s", method, m)
		case <-deadline:
			b.t.Fatalf("browser: no %s within %v", method, webrtcWait)
			return nil
		}
	}
}

// sendResponse sends res over the browser's WebSocket.
func (b *e2eBrowser) sendResponse(res *sip.Response) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
	defer cancel()
	if err := b.ws.Write(ctx, websocket.MessageText, res.AppendTo(nil)); err != nil {
		b.t.Fatalf("browser: send %d: %v", res.StatusCode, err)
	}
}
