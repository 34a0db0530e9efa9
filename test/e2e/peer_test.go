package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

// peerWait bounds every wait of a sigPeer.
const peerWait = 10 * time.Second

// sigPeer is a SIP user agent for signalling-only tests, over UDP, TCP or
// WebSocket, on a socket of its own: it sends requests, collects the
// responses, and answers the requests it receives itself (INVITE with 180
// then 200, ACK with nothing, anything else with 200), copying the
// Record-Route as a UAS must.
type sigPeer struct {
	t         *testing.T
	transport string // sip.UDP, sip.TCP, sip.WS or sip.WSS
	user      string
	domain    string // of its AOR
	sentBy    string // host[:port] of its Via and Contact
	tag       string // To tag of its answers

	write func([]byte) error
	stop  func()
	wg    sync.WaitGroup

	responses chan *sip.Response
	requests  chan *sip.Request

	// intercept, once set, takes every message instead of the channels
	// and the automatic answers: a user agent of the test's own
	// (transfer_kit_test.go) built on the peer's socket.
	intercept atomic.Pointer[func(sip.Message)]
}

// newSigPeer connects a peer for user@domain to the gateway over transport,
// from source address ip (UDP and TCP; "" is 127.0.0.1; over UDP "ip:port"
// names the port too).
func newSigPeer(t *testing.T, g *gateway, transport, user, userDomain, ip string) *sigPeer {
	t.Helper()
	if ip == "" {
		ip = "127.0.0.1"
	}
	port := 0
	if h, pt, err := net.SplitHostPort(ip); err == nil {
		ip = h
		port, _ = strconv.Atoi(pt)
	}
	p := &sigPeer{t: t, transport: transport, user: user, domain: userDomain, tag: sip.NewTag(),
		responses: make(chan *sip.Response, 64), requests: make(chan *sip.Request, 64)}
	switch transport {
	case sip.UDP:
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		gw, err := net.ResolveUDPAddr("udp", g.sipAddr())
		if err != nil {
			t.Fatal(err)
		}
		p.sentBy = c.LocalAddr().String()
		p.write = func(b []byte) error { _, err := c.WriteToUDP(b, gw); return err }
		p.stop = func() { c.Close() }
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 65536)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				p.receive(append([]byte(nil), buf[:n]...))
			}
		}()
	case sip.TCP:
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: peerWait}
		c, err := d.Dial("tcp", g.sipAddr())
		if err != nil {
			t.Fatal(err)
		}
		p.sentBy = c.LocalAddr().String()
		var mu sync.Mutex
		p.write = func(b []byte) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := c.Write(b)
			return err
		}
		p.stop = func() { c.Close() }
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var parser sip.Parser
			buf := make([]byte, 0, 65536)
			chunk := make([]byte, 65536)
			for {
				n, err := c.Read(chunk)
				if err != nil {
					return
				}
				buf = append(buf, chunk[:n]...)
				for {
					size, msg, err := parser.Frame(buf)
					if err != nil {
						t.Errorf("%s: framing: %v", user, err)
						return
					}
					if size == 0 {
						break
					}
					if msg {
						p.receive(append([]byte(nil), buf[:size]...))
					}
					buf = append(buf[:0], buf[size:]...)
				}
			}
		}()
	case sip.WS, sip.WSS:
		url, origin := "ws://"+net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))+"/ws", "http://"+net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))
		client := http.DefaultClient
		if transport == sip.WSS {
			if g.ca == nil {
				t.Fatal("sigPeer: WSS needs a gateway started with gatewayOptions.https")
			}
			hostport := net.JoinHostPort(g.host, strconv.Itoa(g.httpsPort))
			url, origin = "wss://"+hostport+"/ws", "https://"+hostport
			client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.ca.Pool()}}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerWait)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			HTTPClient:   client,
			Subprotocols: []string{"sip"},
			HTTPHeader:   http.Header{"Origin": {origin}},
		})
		if err != nil {
			t.Fatalf("%s: websocket: %v", user, err)
		}
		p.sentBy = sip.NewTag() + ".invalid"
		p.write = func(b []byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), peerWait)
			defer cancel()
			return ws.Write(ctx, websocket.MessageText, b)
		}
		p.stop = func() { ws.CloseNow() }
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				_, data, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				p.receive(data)
			}
		}()
	default:
		t.Fatalf("sigPeer: no transport %q", transport)
	}
	t.Cleanup(func() {
		p.stop()
		p.wg.Wait()
	})
	return p
}

// aor is the peer's address of record.
func (p *sigPeer) aor() string { return "sip:" + p.user + "@" + p.domain }

// contact is the peer's Contact URI.
func (p *sigPeer) contact() string {
	switch p.transport {
	case sip.TCP:
		return "sip:" + p.user + "@" + p.sentBy + ";transport=tcp"
	case sip.WS, sip.WSS:
		return "sip:" + p.user + "@" + p.sentBy + ";transport=" + strings.ToLower(p.transport)
	}
	return "sip:" + p.user + "@" + p.sentBy
}

// receive handles one message from the gateway.
func (p *sigPeer) receive(data []byte) {
	m, err := sip.ParseMessage(data)
	if err != nil {
		p.t.Logf("%s: unparsable message: %v\n%s", p.user, err, data)
		return
	}
	if f := p.intercept.Load(); f != nil {
		(*f)(m)
		return
	}
	switch m := m.(type) {
	case *sip.Response:
		select {
		case p.responses <- m:
		default:
		}
	case *sip.Request:
		select {
		case p.requests <- m:
		default:
		}
		p.answer(m)
	}
}

// answer answers a request as the peer's user agent.
func (p *sigPeer) answer(req *sip.Request) {
	if req.Method == sip.MethodAck {
		return
	}
	codes := []int{200}
	if req.Method == sip.MethodInvite {
		codes = []int{180, 200}
	}
	for _, code := range codes {
		res := sip.NewResponse(req, code, "")
		if req.To().Tag() == "" {
			res.SetToTag(p.tag)
		}
		res.CopyFrom(&req.Headers, "Record-Route")
		res.Set("Contact", "<"+p.contact()+">")
		if err := p.write(res.AppendTo(nil)); err != nil {
			return
		}
	}
}

// request builds an out-of-dialog request of the peer, without a Via.
func (p *sigPeer) request(method, ruri string) *sip.Request {
	p.t.Helper()
	uri, err := sip.ParseURI(ruri)
	if err != nil {
		p.t.Fatal(err)
	}
	req := sip.NewRequest(method, uri)
	to := ruri
	if uri.IsSIP() {
		to = (&sip.URI{Scheme: uri.Scheme, User: uri.User, Host: uri.Host}).String()
	}
	req.Add("Max-Forwards", "70")
	req.Add("To", "<"+to+">")
	req.Add("From", "<"+p.aor()+">;tag="+sip.NewTag())
	req.Add("Call-ID", sip.NewCallID())
	req.Add("CSeq", "1 "+method)
	req.Add("Contact", "<"+p.contact()+">")
	req.Add("Content-Length", "0")
	return req
}

// send sends req with a fresh top Via.
func (p *sigPeer) send(req *sip.Request) {
	p.t.Helper()
	v := sip.Via{Transport: p.transport, Host: p.sentBy, Params: sip.Params(";branch=" + sip.NewBranch() + ";rport")}
	if host, port, err := net.SplitHostPort(p.sentBy); err == nil {
		v.Host = host
		v.Port, _ = strconv.Atoi(port)
	}
	req.PrependVia(v)
	if err := p.write(req.AppendTo(nil)); err != nil {
		p.t.Fatalf("%s: send %s: %v", p.user, req.Method, err)
	}
}

// errNoAnswer is returned by await when no final response came in time.
var errNoAnswer = errors.New("no final response")

// await returns the final response to req (by CSeq and Call-ID), and
// acknowledges a non-2xx final response to an INVITE.
func (p *sigPeer) await(req *sip.Request) (*sip.Response, error) {
	deadline := time.NewTimer(peerWait)
	defer deadline.Stop()
	for {
		select {
		case res := <-p.responses:
			if res.CSeq() != req.CSeq() || res.CallID() != req.CallID() || res.StatusCode < 200 {
				continue
			}
			if req.Method == sip.MethodInvite && res.StatusCode >= 300 {
				_ = p.write(transaction.NewAck(req, res).AppendTo(nil))
			}
			return res, nil
		case <-deadline.C:
			return nil, errNoAnswer
		}
	}
}

// transact sends req and returns its final response.
func (p *sigPeer) transact(req *sip.Request) *sip.Response {
	p.t.Helper()
	p.send(req)
	res, err := p.await(req)
	if err != nil {
		p.t.Fatalf("%s: %s %s: %v", p.user, req.Method, req.URI.String(), err)
	}
	return res
}

// register registers the peer's user with the gateway, answering the
// digest challenge with the password of users.
func (p *sigPeer) register() {
	p.t.Helper()
	if res := p.registerWith(nil); res.StatusCode != 200 {
		p.t.Fatalf("%s: REGISTER: %d %s", p.user, res.StatusCode, res.Reason)
	}
}

// registerWith registers as register does, with edit applied to the
// REGISTER (more headers, another Contact), and returns the final
// response.
func (p *sigPeer) registerWith(edit func(*sip.Request)) *sip.Response {
	p.t.Helper()
	req := p.request(sip.MethodRegister, "sip:"+domain)
	req.Set("To", "<"+p.aor()+">")
	req.Set("Expires", "300")
	if edit != nil {
		edit(req)
	}
	res := p.transact(req)
	if res.StatusCode == 401 {
		ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
		if err != nil {
			p.t.Fatalf("%s: challenge: %v", p.user, err)
		}
		client := digest.Client{Username: p.user, Password: users[p.user]}
		cr, err := client.Authorize(ch, sip.MethodRegister, req.URI.String())
		if err != nil {
			p.t.Fatal(err)
		}
		req = req.Clone()
		req.PopVia()
		req.Set("CSeq", "2 REGISTER")
		req.Set("Authorization", cr.String())
		res = p.transact(req)
	}
	return res
}

// expectRequest returns the next request of method the peer received.
func (p *sigPeer) expectRequest(method string) *sip.Request {
	p.t.Helper()
	deadline := time.NewTimer(peerWait)
	defer deadline.Stop()
	for {
		select {
		case req := <-p.requests:
			if req.Method == method {
				return req
			}
		case <-deadline.C:
			p.t.Fatalf("%s: no %s within %v", p.user, method, peerWait)
			return nil
		}
	}
}

// authorize returns req again, with a new CSeq and no Via, answering the
// 407 res with the peer's credentials.
func (p *sigPeer) authorize(req *sip.Request, res *sip.Response) *sip.Request {
	p.t.Helper()
	ch, err := digest.ParseChallenge(res.Get("Proxy-Authenticate"))
	if err != nil {
		p.t.Fatalf("%s: proxy challenge: %v", p.user, err)
	}
	client := digest.Client{Username: p.user, Password: users[p.user]}
	cr, err := client.Authorize(ch, req.Method, req.URI.String())
	if err != nil {
		p.t.Fatal(err)
	}
	again := req.Clone()
	again.PopVia()
	cseq := again.CSeq()
	cseq.Seq++
	again.Set("CSeq", cseq.String())
	again.Set("Proxy-Authorization", cr.String())
	return again
}
