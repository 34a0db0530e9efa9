package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

// webrtcWait bounds every wait of the WebRTC test.
const webrtcWait = 10 * time.Second

// TestWebRTCCallToPhone is issue #5 (a): a browser (pion, SIP over a
// WebSocket) calls a phone (SIP and RTP over plain UDP) through the real
// gateway binary. Audio must flow both ways; then an INFO DTMF reaches the
// phone as RFC 4733 events, the phone holds with a re-INVITE, and the
// browser hangs up.
func TestWebRTCCallToPhone(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	c := browserCallsPhone(t, g)
	br, ph, brDlg, phDlg := c.br, c.ph, c.brDlg, c.phDlg
	ctx, cancel := context.WithTimeout(context.Background(), 3*webrtcWait)
	defer cancel()

	// 3. Audio both ways.
	stop := flowAudio(t, br, ph)
	defer stop()

	// 4a. DTMF: INFO application/dtmf-relay becomes RFC 4733 events.
	t.Run("info-dtmf", func(t *testing.T) {
		info, err := brDlg.NewRequest(sip.MethodInfo)
		if err != nil {
			t.Fatal(err)
		}
		info.SetBody([]byte("Signal=5\r\nDuration=160\r\n"), "application/dtmf-relay")
		res := br.transact(info)
		if res == nil {
			t.FailNow()
		}
		if res.StatusCode != 200 {
			t.Fatalf("INFO: %d %s", res.StatusCode, res.Reason)
		}
		select {
		case ev := <-ph.Events():
			if ev != 5 {
				t.Errorf("telephone-event %d, want 5", ev)
			}
		case <-time.After(webrtcWait):
			t.Fatal("no telephone-event (PT 101) reached the phone")
		}
	})

	// 4b. Hold from the phone: re-INVITE with a=sendonly, answered 200.
	t.Run("hold", func(t *testing.T) {
		reinv, err := phDlg.NewRequest(sip.MethodInvite)
		if err != nil {
			t.Fatal(err)
		}
		reinv.SetBody(ph.sdp(2, "a=sendonly"), "application/sdp")
		res := ph.transact(reinv)
		if res.StatusCode != 200 {
			t.Fatalf("hold re-INVITE: %d %s", res.StatusCode, res.Reason)
		}
		if !bytes.Contains(res.Body, []byte("a=recvonly")) {
			t.Errorf("the answer to the hold is not recvonly:\n%s", res.Body)
		}
		ack, err := phDlg.NewAck(reinv.CSeq().Seq)
		if err != nil {
			t.Fatal(err)
		}
		ph.send(ack)
	})

	stop()

	// The browser hangs up; the phone gets the BYE.
	bye, err := brDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- br.transact(bye) }()
	pbye := ph.expectRequest(sip.MethodBye)
	ph.respond(sip.NewResponse(pbye, 200, ""))
	select {
	case res := <-byeRes:
		if res == nil {
			t.Fatal("no answer to the browser's BYE")
		}
		if res.StatusCode != 200 {
			t.Fatalf("BYE: %d %s", res.StatusCode, res.Reason)
		}
	case <-ctx.Done():
		t.Fatal("no answer to the browser's BYE")
	}
}

// flowAudio waits until the browser is connected, has both ends send
// audio, and waits until each has received some; stop ends the sending
// (it may be called more than once).
func flowAudio(t *testing.T, br *e2eBrowser, ph *e2ePhone) (stop func()) {
	t.Helper()
	br.WaitConnected()
	stopMedia := make(chan struct{})
	var mediaWG sync.WaitGroup
	mediaWG.Add(2)
	go func() { defer mediaWG.Done(); ph.SendAudio(stopMedia) }()
	go func() { defer mediaWG.Done(); br.SendAudio(stopMedia) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(stopMedia)
			mediaWG.Wait()
		})
	}
	const want = 10
	deadline := time.After(webrtcWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ph.Audio() <= want || br.Received() <= want {
		select {
		case <-tick.C:
		case <-deadline:
			stop()
			t.Fatalf("audio after %v: phone got %d packets, browser got %d; want > %d each", webrtcWait, ph.Audio(), br.Received(), want)
		}
	}
	t.Logf("audio flows: phone got %d packets, browser got %d", ph.Audio(), br.Received())
	return stop
}

// webCall is a call from a browser (alice, over a WebSocket) to a phone
// (1000, over UDP), answered, with the dialog of each end.
type webCall struct {
	br           *e2eBrowser
	ph           *e2ePhone
	brDlg, phDlg *dialog.Dialog
	// phInvite is the INVITE the phone got.
	phInvite *sip.Request
}

// browserCallsPhone registers the phone and the browser, has the browser
// call the phone through g, the phone answer, and the browser ACK.
func browserCallsPhone(t *testing.T, g *gateway) webCall {
	t.Helper()
	return browserCallsPhoneWith(t, g, mediapeer.BrowserOptions{})
}

// browserCallsPhoneWith is browserCallsPhone with a browser of options o
// (its Wait is set).
func browserCallsPhoneWith(t *testing.T, g *gateway, o mediapeer.BrowserOptions) webCall {
	t.Helper()
	httpAddr := net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))
	// 1. The phone registers as 1000 over UDP.
	ph := newE2EPhone(t, g)
	ph.register("1000")

	// 2. The browser registers as alice over a WebSocket.
	br := newE2EBrowserWith(t, httpAddr, o)
	br.register("alice")
	return callPhone(t, br, ph)
}

// callPhone has br, registered, call ph, registered as 1000, and ph
// answer; br ACKs.
func callPhone(t *testing.T, br *e2eBrowser, ph *e2ePhone) webCall {
	t.Helper()
	// The browser calls 1000.
	offer := br.Offer()
	type inviteResult struct {
		req *sip.Request
		res *sip.Response
		err error
	}
	invited := make(chan inviteResult, 1)
	go func() {
		req, res, err := br.invite("1000", offer)
		invited <- inviteResult{req, res, err}
	}()

	// The phone gets the INVITE and answers.
	inv := ph.expectRequest(sip.MethodInvite)
	t.Logf("the gateway's offer to the phone:\n%s", inv.Body)
	if !bytes.Contains(inv.Body, []byte("RTP/AVP")) {
		t.Fatalf("the phone's INVITE has no RTP/AVP offer:\n%s", inv)
	}
	ph.respond(sip.NewResponse(inv, 100, ""))
	phDlg := ph.answer(inv, "1000")

	var ir inviteResult
	select {
	case ir = <-invited:
	case <-time.After(webrtcWait):
		t.Fatal("the browser got no final answer to its INVITE")
	}
	if ir.err != nil {
		t.Fatalf("browser INVITE: %v", ir.err)
	}
	if !bytes.Contains(ir.res.Body, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("the browser's 200 has no WebRTC answer:\n%s", ir.res)
	}
	brDlg, err := dialog.NewUAC(ir.req, ir.res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := brDlg.NewAck(ir.req.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	br.send(ack)
	br.SetAnswer(ir.res.Body)
	ph.expectRequest(sip.MethodAck)

	return webCall{br: br, ph: ph, brDlg: brDlg, phDlg: phDlg, phInvite: inv}
}

// e2ePhone is a SIP phone over UDP with an RTP endpoint (mediapeer's,
// watching: it counts the PCMU and RFC 4733 events it receives), both on
// 127.0.0.1.
type e2ePhone struct {
	*mediapeer.Phone
	t     *testing.T
	g     *gateway
	sip   *net.UDPConn
	gwSIP *net.UDPAddr
	msgs  chan sip.Message
	wg    sync.WaitGroup
}

// ok200 is the phone's 200 to inv as user: a To tag, the Record-Route
// set, its Contact and its SDP offer or answer.
func (p *e2ePhone) ok200(inv *sip.Request, user string) *sip.Response {
	ok := sip.NewResponse(inv, 200, "")
	ok.SetToTag(sip.NewTag())
	ok.CopyFrom(&inv.Headers, "Record-Route")
	ok.Add("Contact", "<sip:"+user+"@"+p.sipAddr()+">")
	ok.SetBody(p.sdp(1, ""), "application/sdp")
	return ok
}

// answer takes inv's media offer and answers it as user with ok200,
// returning the phone's dialog.
func (p *e2ePhone) answer(inv *sip.Request, user string) *dialog.Dialog {
	p.t.Helper()
	if err := p.Learn(inv.Body); err != nil {
		p.t.Fatalf("phone: %v\n%s", err, inv.Body)
	}
	ok := p.ok200(inv, user)
	d, err := dialog.NewUAS(inv, ok)
	if err != nil {
		p.t.Fatal(err)
	}
	p.respond(ok)
	return d
}

func newE2EPhone(t *testing.T, g *gateway) *e2ePhone {
	t.Helper()
	return newE2EPhoneAt(t, g, net.IPv4(127, 0, 0, 1))
}

// newE2EPhoneAt is newE2EPhone with SIP and RTP on ip, a loopback
// address.
func newE2EPhoneAt(t *testing.T, g *gateway, ip net.IP) *e2ePhone {
	t.Helper()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := net.ResolveUDPAddr("udp4", g.sipAddr())
	if err != nil {
		t.Fatal(err)
	}
	media, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	p := &e2ePhone{Phone: mediapeer.NewPhoneOn(t, media), t: t, g: g, sip: s, gwSIP: gw, msgs: make(chan sip.Message, 64)}
	p.Watch()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseDatagram(append([]byte(nil), buf[:n]...))
			if err != nil {
				t.Logf("phone: unparsable datagram: %v\n%s", err, buf[:n])
				continue
			}
			select {
			case p.msgs <- m:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		p.wg.Wait()
	})
	return p
}

func (p *e2ePhone) sipAddr() string { return p.sip.LocalAddr().String() }

// toward makes the phone send what it sends from now on to g.
func (p *e2ePhone) toward(g *gateway) {
	p.t.Helper()
	a, err := net.ResolveUDPAddr("udp4", g.sipAddr())
	if err != nil {
		p.t.Fatal(err)
	}
	p.gwSIP = a
}

func (p *e2ePhone) sendRaw(b []byte) {
	p.t.Helper()
	if _, err := p.sip.WriteToUDP(b, p.gwSIP); err != nil {
		p.t.Fatalf("phone: send: %v", err)
	}
}

func (p *e2ePhone) send(req *sip.Request) {
	p.t.Helper()
	if _, ok := req.TopVia(); !ok {
		req.Prepend("Via", "SIP/2.0/UDP "+p.sipAddr()+";branch="+sip.NewBranch()+";rport")
	}
	p.sendRaw(req.AppendTo(nil))
}

func (p *e2ePhone) respond(res *sip.Response) { p.sendRaw(res.AppendTo(nil)) }

// next returns the next message the phone receives.
func (p *e2ePhone) next(what string) sip.Message {
	p.t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(webrtcWait):
		p.t.Fatalf("phone: no %s within %v", what, webrtcWait)
		return nil
	}
}

// expectRequest returns the next request of method, skipping
// retransmissions and other messages (which are logged).
func (p *e2ePhone) expectRequest(method string) *sip.Request {
	p.t.Helper()
	deadline := time.Now().Add(webrtcWait)
	for time.Now().Before(deadline) {
		m := p.next(method)
		if req, ok := m.(*sip.Request); ok && req.Method == method {
			return req
		}
		p.t.Logf("phone: skipped while waiting for %s:\n%s", method, m)
	}
	p.t.Fatalf("phone: no %s", method)
	return nil
}

// transact sends req (with a fresh Via) and returns its final response.
func (p *e2ePhone) transact(req *sip.Request) *sip.Response {
	p.t.Helper()
	p.send(req)
	cseq := req.CSeq()
	deadline := time.Now().Add(webrtcWait)
	for time.Now().Before(deadline) {
		m := p.next("response to " + req.Method)
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq() != cseq {
			p.t.Logf("phone: skipped while waiting for the answer to %s:\n%s", req.Method, m)
			continue
		}
		if res.StatusCode >= 200 {
			return res
		}
	}
	p.t.Fatalf("phone: no answer to %s", req.Method)
	return nil
}

// register registers user from the phone's socket, answering the 401.
func (p *e2ePhone) register(user string) {
	p.t.Helper()
	p.registerAs(user, "<sip:"+user+"@"+p.sipAddr()+">", nil)
}

// registerAs registers user with contact, answering the 401; the answer
// goes to answerTo when it is not nil (another gateway of a cluster),
// else where the REGISTER went.
func (p *e2ePhone) registerAs(user, contact string, answerTo *gateway) {
	p.t.Helper()
	callID, tag := sip.NewCallID(), sip.NewTag()
	client := &digest.Client{Username: user, Password: users[user]}
	var auth string
	for cseq := 1; cseq <= 2; cseq++ {
		raw := "REGISTER sip:" + domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + p.sipAddr() + ";branch=" + sip.NewBranch() + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + user + "@" + domain + ">;tag=" + tag + "\r\n" +
			"To: <sip:" + user + "@" + domain + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: " + contact + "\r\n" +
			"Expires: 300\r\n" + auth +
			"Content-Length: 0\r\n\r\n"
		req := mustParseRequest(p.t, raw)
		res := p.transact(req)
		switch res.StatusCode {
		case 200:
			return
		case 401:
			ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
			if err != nil {
				p.t.Fatalf("phone: challenge: %v\n%s", err, res)
			}
			cr, err := client.Authorize(ch, sip.MethodRegister, "sip:"+domain)
			if err != nil {
				p.t.Fatal(err)
			}
			auth = "Authorization: " + cr.String() + "\r\n"
			if answerTo != nil {
				p.toward(answerTo)
			}
		default:
			p.t.Fatalf("phone: REGISTER: %d %s", res.StatusCode, res.Reason)
		}
	}
	p.t.Fatalf("phone: REGISTER not accepted with credentials")
}

// sdp is the phone's SDP: PCMU and telephone-event, with an extra line.
func (p *e2ePhone) sdp(version int, extra string) []byte {
	lines := []string{"a=ptime:20"}
	if extra != "" {
		lines = append(lines, extra)
	}
	return p.SDP(version, "0 101", lines...)
}

// e2eBrowser is a browser: SIP over a WebSocket, media with pion
// (mediapeer's, offering PCMU and telephone-event).
type e2eBrowser struct {
	*mediapeer.Browser
	t        *testing.T
	httpAddr string
	ws       *websocket.Conn
	host     string // its .invalid host
	// instance, when set, is the +sip.instance its REGISTER gives, with
	// reg-id 1 and Supported: outbound (RFC 5626), as JsSIP's does.
	instance string
	msgs     chan sip.Message
	client   digest.Client
	callID   string
	tag      string
}

func newE2EBrowser(t *testing.T, httpAddr string) *e2eBrowser {
	t.Helper()
	return newE2EBrowserWith(t, httpAddr, mediapeer.BrowserOptions{})
}

// newE2EBrowserWith is newE2EBrowser with a media peer of options o (its
// Wait is set).
func newE2EBrowserWith(t *testing.T, httpAddr string, o mediapeer.BrowserOptions) *e2eBrowser {
	t.Helper()
	b := &e2eBrowser{t: t, httpAddr: httpAddr, host: "df7jal23ls0d.invalid", msgs: make(chan sip.Message, 64)}
	b.dial()
	// PCMU, which passes through, and telephone-event, as browsers offer;
	// its cleanup, which closes the PeerConnection, runs before the one
	// of the WebSocket.
	o.Wait = webrtcWait
	b.Browser = mediapeer.NewBrowser(t, o)
	return b
}

// dial opens a new WebSocket to the gateway, over which the browser
// sends and receives from now on.
func (b *e2eBrowser) dial() {
	t := b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+b.httpAddr+"/ws", &websocket.DialOptions{
		Subprotocols: []string{"sip"},
		HTTPHeader:   http.Header{"Origin": {"http://" + b.httpAddr}},
	})
	if err != nil {
		t.Fatalf("browser: websocket: %v", err)
	}
	if ws.Subprotocol() != "sip" {
		t.Fatalf("browser: subprotocol %q, want sip", ws.Subprotocol())
	}
	b.ws = ws
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(data)
			if err != nil {
				t.Logf("browser: unparsable message: %v\n%s", err, data)
				continue
			}
			select {
			case b.msgs <- m:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ws.Close(websocket.StatusNormalClosure, "")
		wg.Wait()
	})
}

func (b *e2eBrowser) send(req *sip.Request) {
	b.t.Helper()
	if _, ok := req.TopVia(); !ok {
		req.Prepend("Via", "SIP/2.0/WS "+b.host+";branch="+sip.NewBranch())
	}
	ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
	defer cancel()
	if err := b.ws.Write(ctx, websocket.MessageText, req.AppendTo(nil)); err != nil {
		b.t.Errorf("browser: send: %v", err)
	}
}

// await returns the final response to the request whose CSeq is cseq, or
// an error.
func (b *e2eBrowser) await(cseq sip.CSeq) (*sip.Response, error) {
	deadline := time.After(webrtcWait)
	for {
		select {
		case m := <-b.msgs:
			res, ok := m.(*sip.Response)
			if !ok || res.CSeq() != cseq {
				b.t.Logf("browser: skipped while waiting for the answer to %v:\n%s", cseq, m)
				continue
			}
			if res.StatusCode >= 200 {
				return res, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("no final response to %v within %v", cseq, webrtcWait)
		}
	}
}

// transact sends req and returns its final response; nil after an error,
// which fails the test.
func (b *e2eBrowser) transact(req *sip.Request) *sip.Response {
	b.send(req)
	res, err := b.await(req.CSeq())
	if err != nil {
		b.t.Errorf("browser: %s: %v", req.Method, err)
	}
	return res
}

// request builds an out-of-dialog request of the browser.
func (b *e2eBrowser) request(method, ruri, to, contact string, cseq int, extra string, body []byte) *sip.Request {
	b.t.Helper()
	raw := method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/WS " + b.host + ";branch=" + sip.NewBranch() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@" + domain + ">;tag=" + b.tag + "\r\n" +
		"To: " + to + "\r\n" +
		"Call-ID: " + b.callID + "\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" +
		"Contact: " + contact + "\r\n" + extra
	if len(body) > 0 {
		raw += "Content-Type: application/sdp\r\n"
	}
	raw += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	return mustParseRequest(b.t, raw)
}

func (b *e2eBrowser) register(user string) {
	b.t.Helper()
	b.client = digest.Client{Username: user, Password: users[user]}
	b.callID, b.tag = sip.NewCallID(), sip.NewTag()
	contact := "<sip:" + user + "@" + b.host + ";transport=ws>;expires=300"
	var outbound string
	if b.instance != "" {
		contact += ";reg-id=1;+sip.instance=\"<" + b.instance + ">\""
		outbound = "Supported: outbound, path\r\n"
	}
	var auth string
	for cseq := 1; cseq <= 2; cseq++ {
		req := b.request(sip.MethodRegister, "sip:"+domain, "<sip:"+user+"@"+domain+">", contact, cseq, outbound+auth, nil)
		res := b.transact(req)
		if res == nil {
			b.t.FailNow()
		}
		switch res.StatusCode {
		case 200:
			return
		case 401:
			ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
			if err != nil {
				b.t.Fatalf("browser: challenge: %v\n%s", err, res)
			}
			cr, err := b.client.Authorize(ch, sip.MethodRegister, "sip:"+domain)
			if err != nil {
				b.t.Fatal(err)
			}
			auth = "Authorization: " + cr.String() + "\r\n"
		default:
			b.t.Fatalf("browser: REGISTER: %d %s", res.StatusCode, res.Reason)
		}
	}
	b.t.Fatalf("browser: REGISTER not accepted with credentials")
}

// invite calls user@domain with offer, answering a 407, and returns the
// INVITE that got the final response and that response (a 2xx, or an
// error). It runs on its own goroutine: it does not fail the test.
func (b *e2eBrowser) invite(user string, offer []byte) (*sip.Request, *sip.Response, error) {
	b.callID, b.tag = sip.NewCallID(), sip.NewTag()
	ruri := "sip:" + user + "@" + domain
	contact := "<sip:alice@" + b.host + ";transport=ws;ob>"
	var auth string
	for cseq := 1; cseq <= 2; cseq++ {
		req := b.request(sip.MethodInvite, ruri, "<"+ruri+">", contact, cseq, auth, offer)
		b.send(req)
		res, err := b.await(req.CSeq())
		if err != nil {
			return nil, nil, err
		}
		switch {
		case res.IsSuccess():
			return req, res, nil
		case res.StatusCode == 407:
			// ACK the 407 in its transaction (RFC 3261 §17.1.1.3).
			b.send(transaction.NewAck(req, res))
			ch, err := digest.ParseChallenge(res.Get("Proxy-Authenticate"))
			if err != nil {
				return nil, nil, fmt.Errorf("challenge: %v\n%s", err, res)
			}
			cr, err := b.client.Authorize(ch, sip.MethodInvite, ruri)
			if err != nil {
				return nil, nil, err
			}
			auth = "Proxy-Authorization: " + cr.String() + "\r\n"
		default:
			return nil, nil, fmt.Errorf("INVITE: %d %s\n%s", res.StatusCode, res.Reason, res)
		}
	}
	return nil, nil, fmt.Errorf("INVITE not accepted with credentials")
}

func mustParseRequest(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("not a request:\n%s", raw)
	}
	return req
}
