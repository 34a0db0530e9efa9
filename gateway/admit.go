package gateway

import (
	"math"
	"strconv"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// admit is the transaction layer's Admit. It refuses, before any
// transaction or handler:
//
//   - each new out-of-dialog request from a source that the
//     authentication throttle blocks, so that an address guessing
//     passwords costs no memory while it is refused. Over UDP it is
//     dropped: answering would cost a send per junk datagram (at 25,000 a
//     second, CPU that the other sources need) and would reflect the
//     flood to whatever address the datagrams claim. Over TCP, TLS and
//     WebSocket, where the source is a connection and the rate is bounded
//     by it, it gets 403 with Retry-After, statelessly. Requests inside a
//     dialog (with a To tag) go on: the gateway never authenticates them,
//     and a call in progress from that address can still end. A REGISTER
//     is refused with or without one.
//   - new work while the gateway is overloaded, from the sources that
//     bring their share of it or more (transaction.Layer.Overloaded): 503
//     with Retry-After, at once and statelessly, rather than a timeout
//     later. New work is an out-of-dialog request without credentials: a
//     REGISTER or INVITE that starts an exchange, an OPTIONS, a MESSAGE.
//     What completes work already begun goes on: requests within a dialog
//     (the BYE that ends a call), and requests that answer a challenge,
//     whose first half was served.
//
// A request admitted within a dialog then takes its place in the order of
// its dialog (proxy.Proxy.Arrive), here because Admit sees the requests of
// a dialog in the order they arrived (the transport hands one Call-ID's
// datagrams, and one connection's messages, to one worker at a time;
// transport's lanes): the proxy forwards them, and the
// B2BUA relays those of its calls, in that order (one inorder.Order for
// both), or answers 503 when too many of one dialog wait.
func (g *Gateway) admit(req *sip.Request, waited time.Duration) (reject *sip.Response, drop bool) {
	if req.Method == sip.MethodRegister || req.To().Tag() == "" {
		if wait, blocked := g.throttle.Blocked(req.Source.AddrPort.Addr()); blocked {
			if !req.Source.Reliable() {
				return nil, true
			}
			res := sip.NewResponse(req, 403, "Too Many Failed Attempts")
			res.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
			return res, false
		}
	}
	if newWork(req) && g.tx.Overloaded(req, waited) {
		g.shed.Add(1)
		res := sip.NewResponse(req, 503, "Overloaded")
		res.Set("Retry-After", g.retryAfter)
		return res, false
	}
	if req.To().Tag() != "" && g.proxy != nil {
		if res := g.proxy.Arrive(req); res != nil {
			return res, false
		}
	}
	return nil, false
}

// newWork reports whether req starts work rather than completes it: out
// of dialog, and without credentials.
func newWork(req *sip.Request) bool {
	return !req.ContinuesWork()
}
