package e2e

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// party is a user agent of the transfer tests: a browser (SIP over a
// WebSocket, a pion PeerConnection for each call) or a desk phone (SIP
// over UDP, a plain RTP socket for each call), on a sigPeer's socket. It
// holds any number of calls, answers calls by itself (with answer, 200 by
// default), follows a REFER as RFC 3515 and 5589 say a transferee does
// (202, NOTIFY 100, a call to the Refer-To with its Replaces, a final
// NOTIFY with the outcome), takes an INVITE with Replaces as RFC 3891
// says (answers it, then ends the replaced call with BYE), and ends a
// call it transferred once a NOTIFY says the target answered.
type party struct {
	t    *testing.T
	name string // its role in the test, for the logs
	user string
	web  bool
	sig  *sigPeer

	// answer is the final status given to new calls; honourNoSub makes
	// the party honour Refer-Sub: false (RFC 4488) as a transferee.
	answer      int
	honourNoSub bool

	mu    sync.Mutex
	calls map[dialog.ID]*pcall
	waits map[string]chan *sip.Response // by Call-ID and CSeq

	incoming chan *pcall         // calls the party answered
	notifies chan *sip.Request   // NOTIFYs it received
	refers   chan *sip.Request   // REFERs it received
	followed chan transferResult // the calls it made on a REFER
	wg       sync.WaitGroup
}

// transferResult is what a party did on a REFER: the new call (nil when
// it failed) and the final response to its INVITE.
type transferResult struct {
	call *pcall
	res  *sip.Response
}

// pcall is one call of a party: its dialog and its media.
type pcall struct {
	p      *party
	dlg    *dialog.Dialog
	br     *mediapeer.Browser
	ph     *mediapeer.Phone
	ack    *sip.Request // the ACK of our INVITE's 2xx, sent again on a retransmission
	ended  chan struct{}
	once   sync.Once
	sdpVer int
}

func (c *pcall) end() { c.once.Do(func() { close(c.ended) }) }

func (c *pcall) isEnded() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

// newParty registers user at g as a browser (web) or a phone.
func newParty(t *testing.T, g *gateway, name, user string, web bool) *party {
	t.Helper()
	tr := sip.UDP
	if web {
		tr = sip.WS
	}
	return newPartyOn(t, g, name, user, web, newSigPeer(t, g, tr, user, domain, ""), true)
}

// newPartyOn makes a party on sig; it registers when register is set (a
// trunk's provider does not).
func newPartyOn(t *testing.T, g *gateway, name, user string, web bool, sig *sigPeer, register bool) *party {
	t.Helper()
	p := &party{
		t: t, name: name, user: user, web: web, sig: sig, answer: 200,
		calls:    make(map[dialog.ID]*pcall),
		waits:    make(map[string]chan *sip.Response),
		incoming: make(chan *pcall, 8),
		notifies: make(chan *sip.Request, 32),
		refers:   make(chan *sip.Request, 8),
		followed: make(chan transferResult, 8),
	}
	if register {
		sig.register()
	}
	f := p.receive
	sig.intercept.Store(&f)
	// Before the peer's socket closes (cleanups run last first).
	t.Cleanup(p.wg.Wait)
	return p
}

func (p *party) kind() string {
	if p.web {
		return "browser"
	}
	return "phone"
}

func (p *party) logf(format string, args ...any) {
	p.t.Logf("%s (%s %s): %s", p.name, p.kind(), p.user, fmt.Sprintf(format, args...))
}

// newMedia makes the media end of one call.
func (p *party) newMedia() *pcall {
	c := &pcall{p: p, ended: make(chan struct{}), sdpVer: 1}
	if p.web {
		c.br = mediapeer.NewBrowser(p.t, mediapeer.BrowserOptions{Wait: webrtcWait})
	} else {
		c.ph = mediapeer.NewPhone(p.t)
		c.ph.Watch()
	}
	return c
}

func (c *pcall) offer() []byte {
	if c.br != nil {
		return c.br.Offer()
	}
	return c.ph.SDP(c.sdpVer, "0 101", "a=ptime:20")
}

// answerOffer takes the far end's offer and returns our answer.
func (c *pcall) answerOffer(offer []byte) ([]byte, error) {
	if c.br != nil {
		return c.br.Answer(offer), nil
	}
	if err := c.ph.Learn(offer); err != nil {
		return nil, err
	}
	c.sdpVer++
	return c.ph.SDP(c.sdpVer, "0 101", "a=ptime:20"), nil
}

func (c *pcall) takeAnswer(answer []byte) error {
	if c.br != nil {
		c.br.SetAnswer(answer)
		return nil
	}
	return c.ph.Learn(answer)
}

func (c *pcall) received() int64 {
	if c.br != nil {
		return c.br.Received()
	}
	return c.ph.Audio()
}

func (c *pcall) sendAudio(stop <-chan struct{}) {
	if c.br != nil {
		c.br.WaitConnected()
		c.br.SendAudio(stop)
		return
	}
	c.ph.SendAudio(stop)
}

// audioBothWays has a and b, the two ends of one call, send audio, and
// waits until each has received more than 10 packets more than before.
func audioBothWays(t *testing.T, a, b *pcall) {
	t.Helper()
	baseA, baseB := a.received(), b.received()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.sendAudio(stop) }()
	go func() { defer wg.Done(); b.sendAudio(stop) }()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	const want = 10
	deadline := time.After(webrtcWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.received()-baseA <= want || b.received()-baseB <= want {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("audio between %s and %s: got %d and %d packets; want > %d each way",
				a.p.name, b.p.name, a.received()-baseA, b.received()-baseB, want)
		}
	}
	t.Logf("audio flows between %s (%s) and %s (%s): %d and %d packets", a.p.name, a.p.kind(), b.p.name, b.p.kind(),
		a.received()-baseA, b.received()-baseB)
}

// audioEchoed has c send audio to a far end that echoes it (sipp
// -rtp_echo) and waits until more than 10 packets came back.
func audioEchoed(t *testing.T, c *pcall) {
	t.Helper()
	base := c.received()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); c.sendAudio(stop) }()
	defer func() {
		close(stop)
		<-done
	}()
	deadline := time.After(webrtcWait)
	for c.received()-base <= 10 {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: %d packets echoed, want > 10", c.p.name, c.received()-base)
		}
	}
}

// send sends req with a new Via.
func (p *party) send(req *sip.Request) { p.sig.send(req) }

func (p *party) respond(res *sip.Response) {
	if err := p.sig.write(res.AppendTo(nil)); err != nil {
		p.logf("respond %d: %v", res.StatusCode, err)
	}
}

func waitKey(callID string, cseq sip.CSeq) string { return callID + " " + cseq.String() }

// transact sends req and returns its final response, or nil after
// peerWait.
func (p *party) transact(req *sip.Request) *sip.Response {
	key := waitKey(req.CallID(), req.CSeq())
	ch := make(chan *sip.Response, 16)
	p.mu.Lock()
	p.waits[key] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waits, key)
		p.mu.Unlock()
	}()
	p.send(req)
	deadline := time.NewTimer(peerWait)
	defer deadline.Stop()
	for {
		select {
		case res := <-ch:
			if res.StatusCode >= 200 {
				return res
			}
		case <-deadline.C:
			return nil
		}
	}
}

// dial calls ruri with hdrs (name, value pairs), answering a 407, and
// returns the call once answered and acknowledged; nil and the failure
// response (nil after a timeout) otherwise.
func (p *party) dial(ruri string, hdrs ...string) (*pcall, *sip.Response) {
	c := p.newMedia()
	req := p.sig.request(sip.MethodInvite, ruri)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Add(hdrs[i], hdrs[i+1])
	}
	req.SetBody(c.offer(), "application/sdp")
	res := p.transact(req)
	if res != nil && res.StatusCode == 407 {
		_ = p.sig.write(transaction.NewAck(req, res).AppendTo(nil))
		req = p.sig.authorize(req, res)
		res = p.transact(req)
	}
	if res == nil || !res.IsSuccess() {
		if res != nil && res.StatusCode >= 300 {
			_ = p.sig.write(transaction.NewAck(req, res).AppendTo(nil))
		}
		return nil, res
	}
	d, err := dialog.NewUAC(req, res)
	if err != nil {
		p.logf("dialog of the 2xx: %v", err)
		return nil, res
	}
	c.dlg = d
	ack, err := d.NewAck(req.CSeq().Seq)
	if err != nil {
		p.logf("ack: %v", err)
		return nil, res
	}
	c.ack = ack
	p.mu.Lock()
	p.calls[d.ID()] = c
	p.mu.Unlock()
	p.send(ack)
	if err := c.takeAnswer(res.Body); err != nil {
		p.logf("answer: %v\n%s", err, res.Body)
		return nil, res
	}
	return c, res
}

// call is dial that fails the test unless the call is answered.
func (p *party) call(callee *party) *pcall {
	p.t.Helper()
	c, res := p.dial("sip:" + callee.user + "@" + domain)
	if c == nil {
		p.t.Fatalf("%s calls %s: %v", p.name, callee.name, res)
	}
	return c
}

// expectCall waits for a call the party answered.
func (p *party) expectCall() *pcall {
	p.t.Helper()
	select {
	case c := <-p.incoming:
		return c
	case <-time.After(peerWait):
		p.t.Fatalf("%s: no call answered within %v", p.name, peerWait)
		return nil
	}
}

// expectFollowed waits for the call the party made on a REFER.
func (p *party) expectFollowed() transferResult {
	p.t.Helper()
	select {
	case r := <-p.followed:
		return r
	case <-time.After(2 * peerWait):
		p.t.Fatalf("%s: made no call on a REFER", p.name)
		return transferResult{}
	}
}

// expectRefer waits for a REFER the party received.
func (p *party) expectRefer() *sip.Request {
	p.t.Helper()
	select {
	case r := <-p.refers:
		return r
	case <-time.After(peerWait):
		p.t.Fatalf("%s: no REFER within %v", p.name, peerWait)
		return nil
	}
}

// noRefer fails the test if the party received a REFER. A REFER relayed
// or forwarded to it is answered by it before the transferor gets an
// answer, and the party records it before it answers: so once the
// transferor has a refusal, there is nothing left to wait for.
func (p *party) noRefer() {
	p.t.Helper()
	select {
	case r := <-p.refers:
		p.t.Errorf("%s got a REFER the gateway should have refused:\n%s", p.name, r)
	default:
	}
}

// expectNotify waits for a NOTIFY with a final sipfrag status (or, with
// any set, the next NOTIFY) and returns its status.
func (p *party) expectNotify(final bool) (int, *sip.Request) {
	p.t.Helper()
	deadline := time.After(2 * peerWait)
	for {
		select {
		case n := <-p.notifies:
			code := sipfragCode(n.Body)
			if !final || code >= 200 {
				return code, n
			}
		case <-deadline:
			p.t.Fatalf("%s: no final NOTIFY", p.name)
			return 0, nil
		}
	}
}

func sipfragCode(body []byte) int {
	f := strings.Fields(string(body))
	if len(f) < 2 {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// expectEnded waits until c has ended (a BYE came, or was sent).
func (c *pcall) expectEnded() {
	c.p.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(2 * peerWait):
		c.p.t.Fatalf("%s: call %s not ended", c.p.name, c.dlg.ID())
	}
}

// request sends an in-dialog request and returns its final response.
func (c *pcall) request(method string, edit func(*sip.Request)) *sip.Response {
	c.p.t.Helper()
	req, err := c.dlg.NewRequest(method)
	if err != nil {
		c.p.t.Fatalf("%s: %s: %v", c.p.name, method, err)
	}
	if edit != nil {
		edit(req)
	}
	res := c.p.transact(req)
	if res == nil {
		c.p.t.Fatalf("%s: no answer to %s", c.p.name, method)
	}
	_ = c.dlg.ReceiveResponse(res)
	return res
}

// bye ends c, if it has not ended yet.
func (c *pcall) bye() {
	if c.isEnded() || c.dlg.State() != dialog.Confirmed {
		c.end()
		return
	}
	req, err := c.dlg.NewRequest(sip.MethodBye)
	c.end()
	if err != nil {
		return
	}
	c.p.transact(req)
}

// refer sends a REFER on c to ruri, attended with replacing (the call to
// replace) when it is not nil, and returns the final response.
func (c *pcall) refer(ruri string, replacing *pcall, edit func(*sip.Request)) *sip.Response {
	c.p.t.Helper()
	return c.request(sip.MethodRefer, func(req *sip.Request) {
		req.Set("Refer-To", "<"+referTarget(ruri, replacing)+">")
		req.Set("Referred-By", "<"+c.p.sig.aor()+">")
		if edit != nil {
			edit(req)
		}
	})
}

// referTarget is a Refer-To URI: ruri, with the Replaces of replacing
// embedded as the transferor knows that dialog (RFC 3891 §3: to-tag is the
// recipient's, the far end's, from-tag ours).
func referTarget(ruri string, replacing *pcall) string {
	if replacing == nil {
		return ruri
	}
	id := replacing.dlg.ID()
	return ruri + "?Replaces=" + url.QueryEscape(id.CallID+";to-tag="+id.RemoteTag+";from-tag="+id.LocalTag)
}

// receive handles every message of the party's socket, on the socket's
// goroutine: what takes long runs on a goroutine of its own.
func (p *party) receive(m sip.Message) {
	switch m := m.(type) {
	case *sip.Response:
		p.mu.Lock()
		ch := p.waits[waitKey(m.CallID(), m.CSeq())]
		c := p.calls[dialog.IDFromResponse(m, true)]
		p.mu.Unlock()
		switch {
		case ch != nil:
			select {
			case ch <- m:
			default:
			}
		case c != nil && c.ack != nil && m.IsSuccess() && m.CSeq().Method == sip.MethodInvite:
			p.send(c.ack.Clone())
		}
	case *sip.Request:
		p.serve(m)
	}
}

func (p *party) reply(req *sip.Request, code int, tag string) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if req.To().Tag() == "" && tag != "" {
		res.SetToTag(tag)
	}
	return res
}

func (p *party) serve(req *sip.Request) {
	if req.Method == sip.MethodAck || req.Method == sip.MethodCancel {
		if req.Method == sip.MethodCancel {
			p.respond(p.reply(req, 200, ""))
		}
		return
	}
	if req.To().Tag() == "" {
		if req.Method != sip.MethodInvite {
			p.respond(p.reply(req, 405, sip.NewTag()))
			return
		}
		p.respond(p.reply(req, 100, ""))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.answerCall(req)
		}()
		return
	}
	p.mu.Lock()
	c := p.calls[dialog.IDFromRequest(req, true)]
	p.mu.Unlock()
	if c == nil || c.dlg.ReceiveRequest(req) != nil {
		p.respond(p.reply(req, 481, ""))
		return
	}
	switch req.Method {
	case sip.MethodBye:
		p.respond(p.reply(req, 200, ""))
		c.end()
	case sip.MethodInvite:
		p.respond(p.reply(req, 100, ""))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.reoffer(c, req)
		}()
	case sip.MethodNotify:
		// Kept before the answer: once the sender has its answer, the
		// test sees the NOTIFY.
		select {
		case p.notifies <- req:
		default:
		}
		p.respond(p.reply(req, 200, ""))
		if sipfragCode(req.Body) >= 200 && sipfragCode(req.Body) < 300 {
			// The target answered: the transferor ends the call it
			// transferred (RFC 5589 §6), if nobody has yet.
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				c.bye()
			}()
		}
	case sip.MethodRefer:
		p.follow(c, req)
	default:
		p.respond(p.reply(req, 200, ""))
	}
}

// answerCall answers a new INVITE with p.answer: a 2xx with our SDP and a
// dialog, or a failure. An INVITE with Replaces naming one of our calls
// replaces it: answered, then the old call ends with BYE.
func (p *party) answerCall(req *sip.Request) {
	tag := sip.NewTag()
	var replaced *pcall
	if rep, ok, err := req.Replaces(); ok && err == nil {
		p.mu.Lock()
		for id, c := range p.calls {
			if id.CallID == rep.CallID && (id.LocalTag == rep.ToTag && id.RemoteTag == rep.FromTag ||
				id.LocalTag == rep.FromTag && id.RemoteTag == rep.ToTag) && !c.isEnded() {
				replaced = c
			}
		}
		p.mu.Unlock()
		if replaced == nil {
			p.logf("INVITE with Replaces %s matches no call", req.Get("Replaces"))
			p.respond(p.reply(req, 481, tag))
			return
		}
	}
	code := p.answer
	if replaced != nil {
		code = 200
	}
	if code >= 300 {
		p.respond(p.reply(req, code, tag))
		return
	}
	c := p.newMedia()
	sdp, err := c.answerOffer(req.Body)
	if err != nil {
		p.logf("offer: %v\n%s", err, req.Body)
		p.respond(p.reply(req, 488, tag))
		return
	}
	res := p.reply(req, 200, tag)
	res.CopyFrom(&req.Headers, "Record-Route")
	res.Set("Contact", "<"+p.sig.contact()+">")
	res.SetBody(sdp, "application/sdp")
	d, err := dialog.NewUAS(req, res)
	if err != nil {
		p.logf("dialog: %v", err)
		p.respond(p.reply(req, 500, tag))
		return
	}
	c.dlg = d
	p.mu.Lock()
	p.calls[d.ID()] = c
	p.mu.Unlock()
	// Recorded before the answer: once the caller has it, the test sees
	// the call.
	select {
	case p.incoming <- c:
	default:
	}
	p.respond(res)
	if replaced != nil {
		p.logf("call %s replaces %s", d.ID(), replaced.dlg.ID())
		replaced.bye()
	}
}

// reoffer answers a re-INVITE on c.
func (p *party) reoffer(c *pcall, req *sip.Request) {
	res := p.reply(req, 200, "")
	res.Set("Contact", "<"+p.sig.contact()+">")
	if len(req.Body) > 0 {
		sdp, err := c.answerOffer(req.Body)
		if err != nil {
			p.respond(p.reply(req, 488, ""))
			return
		}
		res.SetBody(sdp, "application/sdp")
	}
	_ = c.dlg.SendResponse(res)
	p.respond(res)
}

// follow takes a REFER on c as a transferee: 202 (with Refer-Sub: false
// when asked, if the party honours it), then the call to the target, and
// NOTIFYs of its progress on c.
func (p *party) follow(c *pcall, req *sip.Request) {
	quiet := p.honourNoSub && strings.EqualFold(req.Get("Refer-Sub"), "false")
	res := p.reply(req, 202, "")
	if quiet {
		res.Set("Refer-Sub", "false")
	}
	// Kept before the answer: once the transferor has its answer, the
	// test sees the REFER (noRefer relies on it).
	select {
	case p.refers <- req:
	default:
	}
	p.respond(res)
	to, ok, err := req.ReferTo()
	if !ok || err != nil {
		p.logf("REFER without a usable Refer-To: %v", err)
		return
	}
	id := strconv.FormatUint(uint64(req.CSeq().Seq), 10)
	notify := func(code int, reason string) {
		if quiet {
			return
		}
		n, err := c.dlg.NewRequest(sip.MethodNotify)
		if err != nil {
			return
		}
		n.Set("Event", "refer;id="+id)
		state := "active;expires=60"
		if code >= 200 {
			state = "terminated;reason=noresource"
		}
		n.Set("Subscription-State", state)
		n.SetBody([]byte("SIP/2.0 "+strconv.Itoa(code)+" "+reason+"\r\n"), "message/sipfrag;version=2.0")
		p.transact(n)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		notify(100, "Trying")
		target := to.URI
		var hdrs []string
		if target.Headers != "" {
			for field := range strings.SplitSeq(target.Headers, "&") {
				name, value, _ := strings.Cut(field, "=")
				if v, err := url.QueryUnescape(value); err == nil && strings.EqualFold(name, "Replaces") {
					hdrs = append(hdrs, "Replaces", v, "Require", "replaces")
				}
			}
			target.Headers = ""
		}
		if rb := req.Get("Referred-By"); rb != "" {
			hdrs = append(hdrs, "Referred-By", rb)
		}
		nc, res := p.dial(target.String(), hdrs...)
		code, reason := 408, "Request Timeout"
		if res != nil {
			code, reason = res.StatusCode, res.Reason
		}
		notify(code, reason)
		p.followed <- transferResult{call: nc, res: res}
	}()
}
