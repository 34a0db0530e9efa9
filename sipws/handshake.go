package sipws

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// subprotocol is the WebSocket subprotocol of SIP (RFC 7118 §4).
const subprotocol = "sip"

// ServeHTTP upgrades a WebSocket handshake to a SIP flow and reads it until
// it closes. It refuses, before upgrading: a Host that does not name the
// gateway with 403 (see Options.AllowedHosts); a handshake that does not offer
// the subprotocol "sip" with 400; a browser Origin that is not allowed with
// 403; and with 503 when Serve has not been called yet, the transport is
// closed, or a connection limit is reached.
func (t *Transport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, err := t.forwarded.Client(r)
	if err != nil {
		t.log.Warn("sipws: cannot tell the client's address", "remote", r.RemoteAddr, "err", err)
		http.Error(w, "sipws: unknown client address", http.StatusInternalServerError)
		return
	}
	if !t.allowHost(r) {
		t.log.Info("sipws: host refused", "host", r.Host, "remote", client.Addr)
		t.refused.Add(1)
		http.Error(w, "sipws: host not allowed", http.StatusForbidden)
		return
	}
	if !offersSIP(r.Header) {
		// RFC 7118 §4: the subprotocol is what makes this SIP; a client
		// without it speaks something else.
		t.refused.Add(1)
		http.Error(w, `sipws: the WebSocket subprotocol "sip" is required (RFC 7118)`, http.StatusBadRequest)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !t.allowOrigin(origin, r.Host) {
		t.log.Info("sipws: origin refused", "origin", origin, "host", r.Host, "remote", client.Addr)
		t.refused.Add(1)
		http.Error(w, "sipws: origin not allowed", http.StatusForbidden)
		return
	}
	group := transport.PeerGroup(client.Addr.Addr())
	h, status, reason := t.reserve(group)
	if status != 0 {
		// Debug: under a flood this line would come once per attempt;
		// the counters in Stats say how many.
		t.log.Debug("sipws: connection refused", "remote", client.Addr, "reason", reason)
		t.refused.Add(1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "sipws: "+reason, status)
		return
	}
	defer t.active.Done()

	// The HTTP server's read and write timeouts are meant for requests; a
	// flow lives as long as a registration. Clear them before the upgrade,
	// when the connection still belongs to the server.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{subprotocol},
		// The Origin was checked above, with our own rules and logging.
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has answered the client (426, 400...).
		t.log.Debug("sipws: handshake failed", "remote", client.Addr, "err", err)
		t.release(group)
		return
	}
	if !strings.EqualFold(ws.Subprotocol(), subprotocol) {
		// Unreachable given offersSIP, but a flow must never be anything
		// else than SIP.
		ws.Close(websocket.StatusPolicyViolation, `subprotocol "sip" required`)
		t.release(group)
		return
	}
	ws.SetReadLimit(int64(t.maxFrame))

	name := sip.WS
	if t.secure || client.TLS {
		name = sip.WSS
	}
	c := &conn{
		t: t,
		// The handshake's context, without its end: the connection
		// outlives the HTTP handler, and a context with a Done channel
		// would cost the library a timer per read; the connection is
		// ended by closing it instead.
		ctx: context.WithoutCancel(r.Context()),
		ws:  ws,
		h:   h,
		// Flow ids come from the transport package so that one id names
		// one connection across all transports: the Layer routes by it.
		src: sip.Addr{Transport: name, AddrPort: client.Addr, Flow: transport.NextFlowID()},
	}
	if !t.register(c, group) {
		t.release(group)
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	c.serve()
}

// offersSIP reports whether the handshake offers the "sip" subprotocol;
// like the WebSocket library, it matches without regard to case.
func offersSIP(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), subprotocol) {
				return true
			}
		}
	}
	return false
}
