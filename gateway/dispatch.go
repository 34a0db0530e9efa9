package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// ServeSIP handles one request. tx is nil for an ACK to a 2xx, which has no
// transaction of its own and only the proxy can route.
func (g *Gateway) ServeSIP(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
	inDialog := req.To().Tag() != ""
	if inDialog {
		// The place admit gave it in its dialog's order, if the proxy
		// does not serve it (the proxy gives it up as soon as it sent it).
		defer g.proxy.Forget(req)
	}
	if g.calls != nil && (tx == nil || inDialog) && g.calls.HandleInDialog(ctx, tx, req) {
		return
	}
	if wait := time.Duration(g.draining.Load()); wait > 0 && req.Method == sip.MethodInvite && !inDialog {
		res := sip.NewResponse(req, 503, "Shutting Down")
		res.Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		g.respond(tx, res)
		return
	}
	switch {
	case req.Method == sip.MethodRegister && g.IsLocal(req.URI):
		g.respond(tx, g.registrar.ServeRegister(ctx, req))
	case g.forGateway(req):
		g.serveLocal(tx, req)
	default:
		g.proxy.ServeSIP(ctx, tx, req)
	}
}

// holdFlows tells Flows which connections aor's bindings came over, after
// a REGISTER changed them (the registrar's Changed): a REGISTER over one
// connection can move a binding off another. Only the connections of this
// instance count: in a cluster, a binding another instance holds names a
// flow of that process.
func (g *Gateway) holdFlows(aor string, bindings []location.Binding) {
	flows := make(map[sip.Addr]time.Time, len(bindings))
	for _, b := range bindings {
		if b.Source.Flow != 0 && b.Node == g.node && b.Expires.After(flows[b.Source]) {
			flows[b.Source] = b.Expires
		}
	}
	g.flows.Set(aor, flows)
	g.followInstances(bindings)
}

// followInstances moves what was tied to the old connection of a user
// agent that registered again over a new one (RFC 5626: the same
// +sip.instance and reg-id) — the legs of its bridged calls — to the new
// one; the proxy follows its flow tokens through g.instances. bindings
// are as the registrar stored them, for a REGISTER it accepted.
func (g *Gateway) followInstances(bindings []location.Binding) {
	for i := range bindings {
		b := &bindings[i]
		old, moved := g.instances.Register(b)
		if !moved {
			continue
		}
		g.log.Info("user agent reconnected: what went over its old connection follows it", "aor", b.AOR,
			"instance", b.Instance, "reg_id", b.RegID, "from", old.String(), "to", b.Source.String())
		if g.calls != nil {
			g.calls.FlowMoved(old, b.Source)
		}
	}
}

// FlowClosed drops the bindings that could only be reached over flow, which
// has just closed (RFC 5626 §5.3), and has the bridged calls over it wait
// for their user agent to come back (b2bua.B2BUA.FlowClosed).
func (g *Gateway) FlowClosed(flow sip.Addr) {
	g.flows.Drop(flow)
	if g.calls != nil {
		// Its calls wait a while for it to come back over a new one.
		g.calls.FlowClosed(flow)
	}
	removed, err := g.cfg.Location.DeleteFlow(g.ctx, flow)
	if err != nil {
		g.log.Warn("drop bindings of closed flow", "flow", flow, "err", err)
		return
	}
	for _, b := range removed {
		g.log.Info("binding dropped: its connection closed", "aor", b.AOR, "flow", flow)
	}
}

// IsLocal reports whether u names the gateway: one of its domains,
// aliases or endpoint hosts.
func (g *Gateway) IsLocal(u sip.URI) bool { return g.cfg.Identity.IsLocal(&u) }

// forGateway reports whether the gateway is the request's final recipient:
// a user-less Request-URI of its own, as OPTIONS pings and keep-alives use.
func (g *Gateway) forGateway(req *sip.Request) bool {
	return req.URI.User == "" && g.IsLocal(req.URI) && req.To().Tag() == ""
}

// serveLocal answers a request addressed to the gateway itself, as a UAS.
func (g *Gateway) serveLocal(tx *transaction.ServerTx, req *sip.Request) {
	if tx == nil {
		return // an ACK to one of our own 2xx: nothing to do
	}
	if unsupported := identity.Unsupported(req.Tokens("Require")); len(unsupported) > 0 {
		res := sip.NewResponse(req, 420, "")
		res.Set("Unsupported", strings.Join(unsupported, ", "))
		g.respond(tx, res)
		return
	}
	if req.Method == sip.MethodOptions {
		g.respond(tx, identity.OptionsResponse(req))
		return
	}
	g.respond(tx, identity.MethodNotAllowed(req))
}

func (g *Gateway) respond(tx *transaction.ServerTx, res *sip.Response) {
	if tx == nil || res == nil {
		return
	}
	if res.StatusCode >= 200 && res.To().Tag() == "" {
		res.SetToTag(sip.NewTag())
	}
	if !res.Has("Date") {
		res.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if err := tx.Respond(res); err != nil {
		g.log.Debug("respond", "status", res.StatusCode, "err", err)
	}
}
