package gateway

import (
	"math"
	"strconv"

	"github.com/switchboard/switchboard/sip"
)

// admit is the transaction layer's Admit: each new out-of-dialog request
// from a source that the authentication throttle blocks is refused before
// any transaction or handler, so that an address guessing passwords costs
// no memory while it is refused. Over UDP it is dropped: answering would
// cost a send per junk datagram (at 25,000 a second, CPU that the other
// sources need) and would reflect the flood to whatever address the
// datagrams claim. Over TCP, TLS and WebSocket, where the source is a
// connection and the rate is bounded by it, it gets 403 with Retry-After,
// statelessly. Requests inside a dialog (with a To tag) go on: the gateway
// never authenticates them, and a call in progress from that address can
// still end. A REGISTER is refused with or without one.
func (g *Gateway) admit(req *sip.Request) (reject *sip.Response, drop bool) {
	if req.Method != sip.MethodRegister && req.To().Tag() != "" {
		return nil, false
	}
	wait, blocked := g.throttle.Blocked(req.Source.AddrPort.Addr())
	if !blocked {
		return nil, false
	}
	if !req.Source.Reliable() {
		return nil, true
	}
	res := sip.NewResponse(req, 403, "Too Many Failed Attempts")
	res.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
	return res, false
}
