package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

type response = sip.Response

// phone is the SIP side: every request goes to the gateway.
type phone struct {
	o     options
	gw    netip.AddrPort
	conn  *net.UDPConn
	media *media

	mu      sync.Mutex
	waiting map[string]chan *response // client transactions by Via branch
	call    *dialog
}

// dialog is the one call.
type dialog struct {
	callID, local, remote string // local and remote: From/To values with tags
	target                string // the remote target URI
	routes                []string
	cseq                  uint32
	version               int // of our SDP
}

func (p *phone) contact() string {
	return "<sip:" + p.o.user + "@" + p.conn.LocalAddr().String() + ">"
}

func (p *phone) send(m interface{ AppendTo([]byte) []byte }) error {
	_, err := p.conn.WriteToUDPAddrPort(m.AppendTo(nil), p.gw)
	return err
}

// read reads SIP until the socket closes: responses go to their
// transactions, requests are served.
func (p *phone) read() {
	buf := make([]byte, 65535)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		msg, err := sip.ParseDatagram(append([]byte(nil), buf[:n]...))
		if err != nil {
			emit("sip_error", map[string]any{"error": err.Error()})
			continue
		}
		switch m := msg.(type) {
		case *sip.Response:
			v, _ := m.TopVia()
			p.mu.Lock()
			ch := p.waiting[v.Branch()]
			p.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		case *sip.Request:
			p.serve(m)
		}
	}
}

// request sends req on a new branch and returns its final response.
func (p *phone) request(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	branch := "z9hG4bK" + token()
	req.Set("Via", "SIP/2.0/UDP "+p.conn.LocalAddr().String()+";branch="+branch+";rport")
	ch := make(chan *response, 8)
	p.mu.Lock()
	p.waiting[branch] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, branch)
		p.mu.Unlock()
	}()
	if err := p.send(req); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		select {
		case res := <-ch:
			if res.StatusCode >= 200 {
				if req.Method == "INVITE" && res.StatusCode >= 300 {
					p.ackError(req, res)
				}
				return res, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w to %s", errTimeout, req.Method)
		}
	}
}

// ackError acknowledges a failure response to an INVITE, in its
// transaction (RFC 3261 §17.1.1.3).
func (p *phone) ackError(inv *sip.Request, res *sip.Response) {
	ack := sip.NewRequest("ACK", inv.URI)
	ack.CopyFrom(&inv.Headers, "Via")
	ack.CopyFrom(&inv.Headers, "From")
	ack.CopyFrom(&res.Headers, "To")
	ack.CopyFrom(&inv.Headers, "Call-ID")
	ack.Set("CSeq", strconv.Itoa(int(inv.CSeq().Seq))+" ACK")
	ack.Set("Max-Forwards", "70")
	ack.SetBody(nil, "")
	_ = p.send(ack)
}

// authorized sends req, and again with credentials when challenged.
func (p *phone) authorized(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, err := p.request(ctx, req)
	if err != nil || (res.StatusCode != 401 && res.StatusCode != 407) {
		return res, err
	}
	hdr, auth := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hdr, auth = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := digest.ParseChallenge(res.Get(hdr))
	if err != nil {
		return nil, fmt.Errorf("videophone: %s: %w", hdr, err)
	}
	cr, err := digest.Answer(ch, req.Method, req.URI.String(), p.o.user, p.o.password)
	if err != nil {
		return nil, fmt.Errorf("videophone: answer the challenge: %w", err)
	}
	cs := req.CSeq()
	req.Set("CSeq", strconv.Itoa(int(cs.Seq)+1)+" "+cs.Method)
	req.Set(auth, cr.String())
	return p.request(ctx, req)
}

func (p *phone) newRequest(method, uri, from, to, callID string, seq uint32) (*sip.Request, error) {
	u, err := sip.ParseURI(uri)
	if err != nil {
		return nil, fmt.Errorf("videophone: uri %q: %w", uri, err)
	}
	req := sip.NewRequest(method, u)
	req.Add("Via", "")
	req.Add("Max-Forwards", "70")
	req.Add("From", from)
	req.Add("To", to)
	req.Add("Call-ID", callID)
	req.Add("CSeq", strconv.Itoa(int(seq))+" "+method)
	req.Add("Contact", p.contact())
	req.Add("User-Agent", "switchboard-videophone")
	req.SetBody(nil, "")
	return req, nil
}

func (p *phone) register(ctx context.Context) error {
	aor := "<sip:" + p.o.user + "@" + p.o.domain + ">"
	req, err := p.newRequest("REGISTER", "sip:"+p.o.domain, aor+";tag="+token(), aor, token(), 1)
	if err != nil {
		return err
	}
	req.Add("Expires", "600")
	res, err := p.authorized(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("videophone: REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// invite calls user at the gateway's domain.
func (p *phone) invite(ctx context.Context, user string) error {
	from := "<sip:" + p.o.user + "@" + p.o.domain + ">;tag=" + token()
	uri := "sip:" + user + "@" + p.o.domain
	req, err := p.newRequest("INVITE", uri, from, "<"+uri+">", token(), 1)
	if err != nil {
		return err
	}
	req.SetBody(p.media.offer(1, !p.o.noVideo), "application/sdp")
	res, err := p.authorized(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("videophone: INVITE: %d %s", res.StatusCode, res.Reason)
	}
	d := &dialog{callID: req.CallID(), local: from, remote: res.Get("To"), cseq: req.CSeq().Seq, version: 1}
	if cs, err := res.Contacts(); err == nil && len(cs) > 0 {
		d.target = cs[0].URI.String()
	}
	if rr, err := res.RecordRoutes(); err == nil {
		for _, r := range slices.Backward(rr) {
			d.routes = append(d.routes, r.String())
		}
	}
	ack, err := p.inDialog(d, "ACK", d.cseq)
	if err != nil {
		return err
	}
	ack.Set("Via", "SIP/2.0/UDP "+p.conn.LocalAddr().String()+";branch=z9hG4bK"+token()+";rport")
	if err := p.send(ack); err != nil {
		return err
	}
	p.mu.Lock()
	p.call = d
	p.mu.Unlock()
	return p.up(res.Body, "out")
}

// inDialog builds a request in d; seq 0 takes the next number.
func (p *phone) inDialog(d *dialog, method string, seq uint32) (*sip.Request, error) {
	if seq == 0 {
		d.cseq++
		seq = d.cseq
	}
	req, err := p.newRequest(method, d.target, d.local, d.remote, d.callID, seq)
	if err != nil {
		return nil, err
	}
	for _, r := range d.routes {
		req.Add("Route", r)
	}
	return req, nil
}

// up starts the media of a call from the far end's SDP.
func (p *phone) up(sdp []byte, dir string) error {
	v, err := p.media.start(sdp)
	if err != nil {
		return err
	}
	emit("call", map[string]any{"state": "up", "direction": dir, "video": v, "codec": p.o.video})
	return nil
}

func (p *phone) bye() error {
	p.mu.Lock()
	d := p.call
	p.call = nil
	p.mu.Unlock()
	if d == nil {
		return fmt.Errorf("videophone: no call to end")
	}
	p.media.stop()
	req, err := p.inDialog(d, "BYE", 0)
	if err != nil {
		return err
	}
	res, err := p.request(context.Background(), req)
	if err != nil {
		return err
	}
	emit("call", map[string]any{"state": "ended", "by": "us", "status": res.StatusCode})
	return nil
}

func (p *phone) reply(req *sip.Request, code int, body []byte, tag string) {
	res := sip.NewResponse(req, code, "")
	if tag != "" {
		res.SetToTag(tag)
	}
	if code < 300 && (req.Method == "INVITE") {
		res.Add("Contact", p.contact())
	}
	if body != nil {
		res.SetBody(body, "application/sdp")
	}
	_ = p.send(res)
}

// serve answers a request from the gateway.
func (p *phone) serve(req *sip.Request) {
	p.mu.Lock()
	d := p.call
	p.mu.Unlock()
	ours := d != nil && req.CallID() == d.callID
	switch req.Method {
	case "ACK":
	case "OPTIONS":
		p.reply(req, 200, nil, token())
	case "INVITE":
		if ours {
			p.reinvite(d, req)
			return
		}
		if d != nil {
			p.reply(req, 486, nil, token())
			return
		}
		tag := token()
		d = &dialog{callID: req.CallID(), remote: req.Get("From"), version: 1}
		to := req.To()
		to.Params = to.Params.Set("tag", tag)
		d.local = to.String()
		if cs, err := req.Contacts(); err == nil && len(cs) > 0 {
			d.target = cs[0].URI.String()
		}
		if rr, err := req.RecordRoutes(); err == nil {
			for _, r := range rr {
				d.routes = append(d.routes, r.String())
			}
		}
		answer, err := p.media.answer(req.Body, d.version)
		if err != nil {
			emit("error", map[string]any{"error": err.Error()})
			p.reply(req, 488, nil, tag)
			return
		}
		p.mu.Lock()
		p.call = d
		p.mu.Unlock()
		p.reply(req, 200, answer, tag)
		if err := p.up(req.Body, "in"); err != nil {
			emit("error", map[string]any{"error": err.Error()})
		}
	case "INFO":
		if !ours {
			p.reply(req, 481, nil, "")
			return
		}
		p.reply(req, 200, nil, "")
		if strings.Contains(string(req.Body), "picture_fast_update") {
			emit("info_picture_fast_update", map[string]any{"content_type": req.ContentType()})
			p.media.keyframe("info")
		} else {
			emit("info", map[string]any{"content_type": req.ContentType(), "body": string(req.Body)})
		}
	case "BYE":
		if !ours {
			p.reply(req, 481, nil, "")
			return
		}
		p.mu.Lock()
		p.call = nil
		p.mu.Unlock()
		p.media.stop()
		p.reply(req, 200, nil, "")
		emit("call", map[string]any{"state": "ended", "by": "them"})
	default:
		p.reply(req, 405, nil, "")
	}
}

func (p *phone) reinvite(d *dialog, req *sip.Request) {
	d.version++
	answer, err := p.media.answer(req.Body, d.version)
	if err != nil {
		emit("error", map[string]any{"error": err.Error()})
		p.reply(req, 488, nil, "")
		return
	}
	p.reply(req, 200, answer, "")
	v, err := p.media.start(req.Body)
	if err != nil {
		emit("error", map[string]any{"error": err.Error()})
		return
	}
	emit("reinvite", map[string]any{"video": v})
}
