package proxy

import (
	"github.com/switchboard/switchboard/internal/inorder"
	"github.com/switchboard/switchboard/sip"
)

// Defaults of the ordering of in-dialog requests (package inorder).
const (
	DefaultMaxQueued = inorder.DefaultMaxQueued
	DefaultOrderWait = inorder.DefaultWait
)

// OrderStats counts the work of the ordering of in-dialog requests, for
// metrics.
type OrderStats = inorder.Stats

// Arrive gives req, a request just read from the network, its place in
// the order of its dialog (the requests with its Call-ID and tags): the
// proxy forwards the requests of one dialog from one side in the order
// Arrive saw them (package inorder). It must be called in the order the
// requests arrived from their source, before their handler may run: the
// transaction layer's Config.Admit is such a place. It returns nil, or a
// 503 to answer req with when its dialog has MaxQueued requests held
// already. A request that Arrive saw but that ServeSIP will not see must
// be handed to Forget.
func (p *Proxy) Arrive(req *sip.Request) *sip.Response {
	if p.order.Arrive(req) {
		return nil
	}
	p.log.Warn("proxy: too many requests of one dialog waiting to be forwarded", "call_id", req.CallID(),
		"method", req.Method, "source", req.Source.String(), "max", p.order.MaxQueued())
	return inorder.Refusal(req)
}

// Forget gives up the place that Arrive gave req, for a request served
// by someone else than the proxy; it does nothing for others.
func (p *Proxy) Forget(req *sip.Request) { p.order.Forget(req) }

// OrderStats returns the counters of the ordering of in-dialog requests.
func (p *Proxy) OrderStats() OrderStats { return p.order.Stats() }
