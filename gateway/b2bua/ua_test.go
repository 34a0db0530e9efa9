package b2bua

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sipnet"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// waitLimit bounds every wait of the tests: a test that waits longer has
// failed, not become slow.
const waitLimit = 10 * time.Second

// testUA is a SIP user agent of a test (the browser's signalling, or a
// phone's): a transaction layer on a node of the test network, whose
// handler queues every request it receives for the test to answer.
type testUA struct {
	t       testing.TB
	name    string
	node    *sipnet.Node
	layer   *transaction.Layer
	addr    sip.Addr // its own address
	gw      sip.Addr // where it sends requests: the gateway, over its flow if any
	contact sip.Address
	in      map[string]chan *inbound

	// mu makes deciding to queue a request and queueing it one step
	// against autoAnswer: a request checked before auto was set but
	// queued after the drain would wait for an answer forever.
	mu   sync.Mutex
	auto bool // answer everything by itself: the test is over
}

// inbound is a request the UA received, waiting for the test's answer.
type inbound struct {
	u     *testUA
	tx    *transaction.ServerTx
	req   *sip.Request
	tag   string
	final chan struct{}
	dlg   *dialog.Dialog
}

func newTestUA(t testing.TB, n *sipnet.Network, name string, addr, gw sip.Addr, contact string) *testUA {
	t.Helper()
	c, err := sip.ParseAddress(contact)
	if err != nil {
		t.Fatal(err)
	}
	u := &testUA{t: t, name: name, addr: addr, gw: gw, contact: c, in: make(map[string]chan *inbound)}
	for _, m := range []string{sip.MethodInvite, sip.MethodAck, sip.MethodBye, sip.MethodUpdate, sip.MethodInfo, sip.MethodPrack, sip.MethodOptions, sip.MethodMessage, sip.MethodRefer, sip.MethodNotify} {
		u.in[m] = make(chan *inbound, 64)
	}
	u.node = n.AddNode(name, addr)
	u.layer = transaction.New(context.Background(), u.node, transaction.HandlerFunc(u.serve), transaction.Config{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	u.node.Recv = u.layer.HandleMessage
	t.Cleanup(func() { _ = u.layer.Close() })
	return u
}

func (u *testUA) serve(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
	in := &inbound{u: u, tx: tx, req: req.Clone(), tag: sip.NewTag(), final: make(chan struct{})}
	ch := u.in[req.Method]
	u.mu.Lock()
	code := 0
	switch {
	case u.auto:
		code = 200
	case ch == nil:
		code = 501
	default:
		select {
		case ch <- in:
		default:
			// The test stopped taking them; blocking here, under mu,
			// would stall autoAnswer too.
			u.t.Errorf("%s: more than %d %s requests not taken", u.name, cap(ch), req.Method)
			code = 503
		}
	}
	u.mu.Unlock()
	if code != 0 {
		if tx != nil {
			res := sip.NewResponse(req, code, "")
			res.SetToTag(in.tag)
			_ = tx.Respond(res)
		}
		return
	}
	if tx == nil {
		return
	}
	select {
	case <-in.final:
	case <-tx.Done():
	}
}

func (u *testUA) autoAnswer() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.auto = true
	for _, ch := range u.in {
		for {
			select {
			case in := <-ch:
				if in.tx != nil {
					select {
					case <-in.final:
					default:
						res := sip.NewResponse(in.req, 200, "")
						res.SetToTag(in.tag)
						_ = in.tx.Respond(res)
						close(in.final)
					}
				}
				continue
			default:
			}
			break
		}
	}
}

// expect returns the next request of method the UA received.
func (u *testUA) expect(method string) *inbound {
	u.t.Helper()
	select {
	case in := <-u.in[method]:
		return in
	case <-time.After(waitLimit):
		u.t.Fatalf("%s: no %s", u.name, method)
		return nil
	}
}

// idle fails if the UA received a request of method that the test did
// not take.
func (u *testUA) idle(method string) {
	u.t.Helper()
	select {
	case in := <-u.in[method]:
		u.t.Fatalf("%s: unexpected %s\n%s", u.name, method, in.req)
	default:
	}
}

// respond answers the request; hdrs are name, value pairs.
func (in *inbound) respond(code int, body []byte, hdrs ...string) *sip.Response {
	in.u.t.Helper()
	res := sip.NewResponse(in.req, code, "")
	res.SetToTag(in.tag)
	if in.req.Method == sip.MethodInvite && code > 100 && code < 300 {
		res.Add("Contact", in.u.contact.String())
	}
	for i := 0; i+1 < len(hdrs); i += 2 {
		res.Add(hdrs[i], hdrs[i+1])
	}
	if body != nil {
		res.SetBody(body, contentSDP)
	}
	if in.req.Method == sip.MethodInvite && in.req.To().Tag() == "" && code > 100 && code < 300 && in.dlg == nil {
		d, err := dialog.NewUAS(in.req, res)
		if err != nil {
			in.u.t.Fatalf("%s: dialog: %v", in.u.name, err)
		}
		in.dlg = d
	} else if in.dlg != nil {
		_ = in.dlg.SendResponse(res)
	}
	if err := in.tx.Respond(res); err != nil {
		in.u.t.Fatalf("%s: respond %d: %v", in.u.name, code, err)
	}
	if code >= 200 {
		close(in.final)
	}
	return res
}

// outCall is an INVITE the UA sent.
type outCall struct {
	u   *testUA
	req *sip.Request
	tx  *transaction.ClientTx
	dlg *dialog.Dialog
	res *sip.Response // the 2xx, once set up
}

// invite sends an INVITE for user at the gateway; hdrs are name, value
// pairs, and a "Content-Type" among them replaces application/sdp.
func (u *testUA) invite(user string, body []byte, hdrs ...string) *outCall {
	u.t.Helper()
	req := sip.NewRequest(sip.MethodInvite, sip.URI{Scheme: "sip", User: user, Host: "example.test"})
	req.Add("Max-Forwards", "70")
	req.Add("From", "<sip:"+u.name+"@example.test>;tag="+sip.NewTag())
	req.Add("To", "<sip:"+user+"@example.test>")
	req.Add("Call-ID", sip.NewCallID())
	req.Add("CSeq", "1 INVITE")
	req.Add("Contact", u.contact.String())
	req.Add("Allow", "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, OPTIONS")
	ctype := contentSDP
	for i := 0; i+1 < len(hdrs); i += 2 {
		if hdrs[i] == "Content-Type" {
			ctype = hdrs[i+1]
			continue
		}
		req.Add(hdrs[i], hdrs[i+1])
	}
	if body != nil {
		req.SetBody(body, ctype)
	} else {
		req.Add("Content-Length", "0")
	}
	if _, err := u.node.StampVia(req, u.gw); err != nil {
		u.t.Fatal(err)
	}
	tx, err := u.layer.Request(context.Background(), req, u.gw)
	if err != nil {
		u.t.Fatal(err)
	}
	return &outCall{u: u, req: req, tx: tx}
}

// await reads responses until one with code; another final response
// fails the test.
func (oc *outCall) await(code int) *sip.Response {
	oc.u.t.Helper()
	for {
		select {
		case res, ok := <-oc.tx.Responses():
			if !ok {
				oc.u.t.Fatalf("%s: invite ended without %d: %v", oc.u.name, code, oc.tx.Err())
			}
			if res.StatusCode == code {
				if res.IsSuccess() && oc.dlg == nil {
					d, err := dialog.NewUAC(oc.req, res)
					if err != nil {
						oc.u.t.Fatalf("%s: dialog: %v", oc.u.name, err)
					}
					oc.dlg = d
				}
				return res
			}
			if res.StatusCode >= 200 {
				oc.u.t.Fatalf("%s: got %d %s, want %d\n%s", oc.u.name, res.StatusCode, res.Reason, code, res)
			}
		case <-time.After(waitLimit):
			oc.u.t.Fatalf("%s: no %d", oc.u.name, code)
		}
	}
}

// ack acknowledges the 2xx, with body when not nil.
func (oc *outCall) ack(res *sip.Response, body []byte) {
	oc.u.t.Helper()
	oc.u.ack(oc.dlg, res, body)
}

func (u *testUA) ack(d *dialog.Dialog, res *sip.Response, body []byte) {
	u.t.Helper()
	ack, err := d.NewAck(res.CSeq().Seq)
	if err != nil {
		u.t.Fatal(err)
	}
	if body != nil {
		ack.SetBody(body, contentSDP)
	}
	if _, err := u.node.StampVia(ack, u.gw); err != nil {
		u.t.Fatal(err)
	}
	if err := u.node.Send(context.Background(), ack, u.gw); err != nil {
		u.t.Fatal(err)
	}
}

// request sends a request in d and returns its final response; a 2xx to
// a re-INVITE is acknowledged with ackBody.
func (u *testUA) request(d *dialog.Dialog, method string, body []byte, ctype string, hdrs ...string) *sip.Response {
	u.t.Helper()
	tx := u.sendNow(d, method, body, ctype, hdrs...)
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				u.t.Fatalf("%s: %s ended without a response: %v", u.name, method, tx.Err())
			}
			if res.StatusCode < 200 {
				continue
			}
			_ = d.ReceiveResponse(res)
			if method == sip.MethodInvite && res.IsSuccess() {
				u.ack(d, res, nil)
			}
			return res
		case <-time.After(waitLimit):
			u.t.Fatalf("%s: no response to %s", u.name, method)
		}
	}
}

// Addresses of the test network.
var (
	gwUDP     = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5060")}
	gwWS      = sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("127.0.0.1:8080")}
	phoneAddr = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("127.0.0.1:5070")}
	browserWS = sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("127.0.0.1:50001")}
)

func timeAfter() <-chan time.Time { return time.After(waitLimit) }

// answered returns the final response that a request sent in the
// background (its request call in a goroutine) delivers on done; the
// test fails when none comes within waitLimit. what names the request.
func answered(t testing.TB, done <-chan *sip.Response, what string) *sip.Response {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-timeAfter():
		t.Fatalf("no answer to the %s", what)
		return nil
	}
}
