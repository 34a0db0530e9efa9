// Package gateway is where Switchboard's SIP roles meet: it receives every
// request the transaction layer hands up and sends it to the registrar, to
// the gateway's own user agent (OPTIONS pings) or to the proxy core, and it
// tells the location service when a connection closes.
//
// The roles themselves live in the subpackages: registrar, location,
// accounts, proxy, trunk and config.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// Options configures a Server.
type Options struct {
	// Identity is who the gateway is: a request whose Request-URI names
	// it without a user is for the gateway itself.
	Identity *identity.Identity
	// Registrar answers REGISTER for the domain.
	Registrar *registrar.Registrar
	// Location drops bindings whose connection closed; may be nil.
	Location location.Store
	// Flows learns which connections carry registrations, so that the
	// transports shed the others first; may be nil. It needs Location.
	Flows FlowHolder
	// Proxy routes every other request; nil answers 404 to them.
	Proxy transaction.Handler
	// Calls gets the in-dialog requests first (those with a To tag, and
	// ACKs without a transaction): the B2BUA takes those of its calls.
	Calls InDialogHandler
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// FlowHolder learns, after each REGISTER, the connections (flows) an
// address of record's bindings came over and until when, and forgets a
// flow once it has closed; *transport.FlowHolds is one.
type FlowHolder interface {
	Set(aor string, flows map[sip.Addr]time.Time)
	Drop(flow sip.Addr)
}

// InDialogHandler takes the in-dialog requests of the calls it owns,
// reporting whether it did; *b2bua.B2BUA is one.
type InDialogHandler interface {
	HandleInDialog(tx *transaction.ServerTx, req *sip.Request) bool
}

// Server dispatches requests to the gateway's roles. It implements
// transaction.Handler.
type Server struct {
	opts Options
	log  *slog.Logger

	// draining holds the Retry-After of the 503 that refuses new calls
	// while the gateway drains; zero while it takes calls.
	draining atomic.Int64
}

// New returns a Server.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, log: log}
}

// SetProxy sets the handler of the requests the server does not answer
// itself; the proxy is built after the transaction layer, which needs the
// server first. Call it before serving.
func (s *Server) SetProxy(p transaction.Handler) { s.opts.Proxy = p }

// SetCalls sets the handler of in-dialog requests, like SetProxy.
func (s *Server) SetCalls(c InDialogHandler) { s.opts.Calls = c }

// Drain makes the server refuse new calls — INVITEs outside a dialog —
// with 503 and a Retry-After of retryAfter (at least a second), so that
// callers try another server while the calls in progress end. Requests
// within dialogs, registrations and pings are still served. It is the
// first step of a graceful shutdown and cannot be undone.
func (s *Server) Drain(retryAfter time.Duration) {
	s.draining.Store(int64(max(retryAfter, time.Second)))
}

// ServeSIP handles one request. tx is nil for an ACK to a 2xx, which has no
// transaction of its own and only the proxy can route.
func (s *Server) ServeSIP(tx *transaction.ServerTx, req *sip.Request) {
	inDialog := req.To().Tag() != ""
	if s.opts.Calls != nil && (tx == nil || inDialog) && s.opts.Calls.HandleInDialog(tx, req) {
		return
	}
	if wait := time.Duration(s.draining.Load()); wait > 0 && req.Method == sip.MethodInvite && !inDialog {
		res := sip.NewResponse(req, 503, "Shutting Down")
		res.Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		s.respond(tx, res)
		return
	}
	switch {
	case req.Method == sip.MethodRegister && s.IsLocal(req.URI):
		res := s.opts.Registrar.ServeRegister(context.Background(), req)
		s.holdFlows(req, res)
		s.respond(tx, res)
	case s.forGateway(req):
		s.serveLocal(tx, req)
	case s.opts.Proxy != nil:
		s.opts.Proxy.ServeSIP(tx, req)
	default:
		s.respond(tx, sip.NewResponse(req, 404, ""))
	}
}

// holdFlows tells Flows which connections aor's bindings came over, after
// a REGISTER that may have changed them: read back from the store, since a
// REGISTER over one connection can move a binding off another. Refusals
// below 500 changed nothing; a 503 (too many bindings) or a 500 may come
// after some changes were applied.
func (s *Server) holdFlows(req *sip.Request, res *sip.Response) {
	if s.opts.Flows == nil || s.opts.Location == nil || res.StatusCode >= 300 && res.StatusCode < 500 {
		return
	}
	aor := s.opts.Registrar.AOR(req.To().URI.User)
	bindings, err := s.opts.Location.Get(context.Background(), aor)
	if err != nil {
		s.log.Warn("read bindings back for the connection caps", "aor", aor, "err", err)
		return
	}
	flows := make(map[sip.Addr]time.Time, len(bindings))
	for _, b := range bindings {
		if b.Source.Flow != 0 && b.Expires.After(flows[b.Source]) {
			flows[b.Source] = b.Expires
		}
	}
	s.opts.Flows.Set(aor, flows)
}

// FlowClosed drops the bindings that could only be reached over flow, which
// has just closed (RFC 5626 §5.3).
func (s *Server) FlowClosed(flow sip.Addr) {
	if s.opts.Flows != nil {
		s.opts.Flows.Drop(flow)
	}
	if s.opts.Location == nil {
		return
	}
	removed, err := s.opts.Location.DeleteFlow(context.Background(), flow)
	if err != nil {
		s.log.Warn("drop bindings of closed flow", "flow", flow, "err", err)
		return
	}
	for _, b := range removed {
		s.log.Info("binding dropped: its connection closed", "aor", b.AOR, "flow", flow)
	}
}

// IsLocal reports whether u names the gateway: one of its domains,
// aliases or endpoint hosts.
func (s *Server) IsLocal(u sip.URI) bool { return s.opts.Identity.IsLocal(&u) }

// forGateway reports whether the gateway is the request's final recipient:
// a user-less Request-URI of its own, as OPTIONS pings and keep-alives use.
func (s *Server) forGateway(req *sip.Request) bool {
	return req.URI.User == "" && s.IsLocal(req.URI) && req.To().Tag() == ""
}

// serveLocal answers a request addressed to the gateway itself, as a UAS.
func (s *Server) serveLocal(tx *transaction.ServerTx, req *sip.Request) {
	if tx == nil {
		return // an ACK to one of our own 2xx: nothing to do
	}
	if unsupported := identity.Unsupported(req.Tokens("Require")); len(unsupported) > 0 {
		res := sip.NewResponse(req, 420, "")
		res.Set("Unsupported", strings.Join(unsupported, ", "))
		s.respond(tx, res)
		return
	}
	if req.Method == sip.MethodOptions {
		s.respond(tx, identity.OptionsResponse(req))
		return
	}
	s.respond(tx, identity.MethodNotAllowed(req))
}

func (s *Server) respond(tx *transaction.ServerTx, res *sip.Response) {
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
		s.log.Debug("respond", "status", res.StatusCode, "err", err)
	}
}
