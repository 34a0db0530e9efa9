package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Parameters the proxy puts in its own URIs and Via.
const (
	// stampParam, on a Record-Route URI, holds the stamp that proves the
	// proxy recorded that route for one direction of one dialog: a
	// direction letter, then an HMAC of the direction, the Call-ID and
	// the tags known when the entry was made.
	stampParam = "sbdlg"
	// viaFlowParam, on the proxy's Via, holds the flow token of the
	// connection the request came over, so that a stray response finds it
	// again without state.
	viaFlowParam = "sbflow"
	// peerParam, on a peer route (PeerRoute), holds the stamp that shows
	// another instance of the cluster wrote it: an expiry and an HMAC of
	// it and the route's flow token.
	peerParam = "sbpeer"
)

// Directions of a Record-Route entry. The proxy puts one entry in the
// request it forwards, which only the callee sees and which sends the
// callee's requests towards the caller; it rewrites that entry in the
// callee's responses (§16.7 step 4) into the one the caller keeps, which
// sends the caller's requests towards that callee. Neither party holds
// the stamp that would send requests to itself or elsewhere.
const (
	toCaller byte = 'r'
	toCallee byte = 'e'
)

// routing is what route pre-processing (§16.4) learnt from the Routes it
// removed.
type routing struct {
	// stamped: a removed Route (or the Request-URI a strict router put
	// there) was a Record-Route entry of ours whose stamp matches the
	// request's Call-ID and tags.
	stamped bool
	// dir is the direction of that stamp; dialog and calleeTag name the
	// dialog and, towards the callee, which callee.
	dir       byte
	dialog    dialogKey
	calleeTag string
	// badStamp: a removed Route of ours carried a stamp that does not
	// match the request (another Call-ID, made-up tags, forged).
	badStamp bool
	// flow is the connection named by the flow token of a removed Route,
	// when it is not the one the request came over: where the request
	// must go.
	flow sip.Addr
	// peer: the Route that named flow is a peer route of the cluster
	// (PeerRoute): another instance authorised the request and sends it
	// here for the connection only this instance holds.
	peer bool
}

// preprocessRoutes applies §16.4 to r: the fix for a strict router
// upstream, then the removal of the Routes that name this proxy.
func (p *Proxy) preprocessRoutes(r *sip.Request) (routing, error) {
	var rt routing
	routes, err := r.Routes()
	if err != nil {
		return rt, err
	}
	if len(routes) > 0 && p.isOurRecordRoute(&r.URI) {
		// The previous hop is a strict router: the Request-URI is our
		// Record-Route entry and the real one is the last Route.
		p.notePopped(&rt, &r.URI, r)
		r.URI = routes[len(routes)-1].URI
		setRoutes(&r.Headers, routes[:len(routes)-1])
	}
	return rt, p.popOurRoutes(r, &rt)
}

// popOurRoutes removes the Routes at the top of r that name this proxy,
// noting their stamps and flow tokens in rt.
func (p *Proxy) popOurRoutes(r *sip.Request, rt *routing) error {
	routes, err := r.Routes()
	if err != nil {
		return err
	}
	n := 0
	for n < len(routes) && p.id.IsSelf(&routes[n].URI) {
		p.notePopped(rt, &routes[n].URI, r)
		n++
	}
	if n > 0 {
		setRoutes(&r.Headers, routes[n:])
	}
	return nil
}

// notePopped records what one of our URIs, removed from r, says. Only the
// first stamp counts: it is the entry the sender addressed.
func (p *Proxy) notePopped(rt *routing, u *sip.URI, r *sip.Request) {
	if s, ok := u.Params.Get(stampParam); ok && !rt.stamped {
		p.checkStamp(rt, s, r)
	}
	if u.User == "" || rt.flow.IsValid() {
		return
	}
	// A flow token names the connection of the side the entry sends to,
	// or the one that replaced it since: a browser that reconnected sends
	// over the new one, and is sent to over it. A peer route may name a
	// UDP source too: a phone behind NAT is reached from the socket of
	// the instance it registered with.
	peer := false
	if s, ok := u.Params.Get(peerParam); ok {
		peer = p.checkPeer(s, u.User)
	}
	f, err := p.tokens.Decode(u.User)
	if err != nil || (f.Flow == 0 && !peer) {
		return
	}
	if f = p.follow(f); f.Flow != r.Source.Flow {
		rt.flow, rt.peer = f, peer
	}
}

// PeerRoute returns the Path entry by which another instance of a
// cluster, sharing this proxy's Secret, reaches flow through the instance
// at node (its SIP URI), which holds the connection: node with the flow
// token as user part, ";lr", and a stamp good until until. The instance
// at node, seeing its own route with a stamp that verifies, sends the
// request over flow without authorising it again: the instance that
// looked the target up did (see Target.Peer). Only instances see the
// route: the one at node removes it before it forwards.
func (p *Proxy) PeerRoute(node sip.URI, flow sip.Addr, until time.Time) string {
	token := p.tokens.Encode(flow)
	node.User = token
	node.Params = node.Params.Del("lr").Set("lr", "").Set(peerParam, p.peerStamp(token, until.Unix()))
	return "<" + node.String() + ">"
}

// peerStamp is the stamp of a peer route: the expiry in Unix seconds, a
// dot, and 96 bits of HMAC of the expiry and the flow token.
func (p *Proxy) peerStamp(token string, until int64) string {
	exp := strconv.FormatInt(until, 10)
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("peer\x00"))
	m.Write([]byte(exp))
	m.Write([]byte{0})
	m.Write([]byte(token))
	var sum [sha256.Size]byte
	return exp + "." + base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:12])
}

// checkPeer reports whether s is a peer stamp this cluster wrote for
// token that has not expired.
func (p *Proxy) checkPeer(s, token string) bool {
	exp, _, ok := strings.Cut(s, ".")
	if !ok || len(exp) > 12 {
		return false
	}
	until, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !hmac.Equal([]byte(s), []byte(p.peerStamp(token, until))) {
		return false
	}
	return p.clk.Now().Unix() < until
}

// setRoutes replaces the Route headers of h with routes, one per line.
func setRoutes(h *sip.Headers, routes []sip.Address) {
	routes = slices.Clone(routes) // they may point into h's cache
	h.Del("Route")
	for i := range routes {
		h.Add("Route", routes[i].String())
	}
}

// nextHop returns the URI whose addresses req is sent to (§16.6 steps 6
// and 7): the first Route, or the Request-URI. When the first Route is a
// strict router (no lr), req is rewritten for it: the Request-URI goes to
// the end of the Route set and the first Route becomes the Request-URI.
func nextHop(req *sip.Request) (sip.URI, error) {
	routes, err := req.Routes()
	if err != nil {
		return sip.URI{}, err
	}
	if len(routes) == 0 {
		return req.URI, nil
	}
	top := routes[0].URI
	if top.Params.Has("lr") {
		return top, nil
	}
	rest := append(slices.Clone(routes[1:]), sip.Address{URI: req.URI})
	req.URI = top
	setRoutes(&req.Headers, rest)
	return top, nil
}

// isOurRecordRoute reports whether u is a Record-Route URI of ours.
func (p *Proxy) isOurRecordRoute(u *sip.URI) bool {
	return u.Params.Has(stampParam) && p.id.IsSelf(u)
}

// stamp returns the Record-Route stamp of one direction of a dialog: the
// direction letter and 96 bits of HMAC. Towards the caller the callee's
// tag is not known yet and is "".
func (p *Proxy) stamp(dir byte, callID, callerTag, calleeTag string) string {
	var b [stampLen]byte
	return string(p.appendStamp(b[:0], dir, callID, callerTag, calleeTag))
}

// stampLen is the length of a stamp: the direction letter and 12 bytes of
// HMAC in unpadded base64.
const stampLen = 1 + 16

// appendStamp appends the stamp (see stamp) to b.
func (p *Proxy) appendStamp(b []byte, dir byte, callID, callerTag, calleeTag string) []byte {
	m := p.macs.Get().(*stampMAC)
	m.in = append(m.in[:0], 'r', 'r', 0, dir, 0)
	m.in = append(m.in, callID...)
	m.in = append(m.in, 0)
	m.in = append(m.in, callerTag...)
	m.in = append(m.in, 0)
	m.in = append(m.in, calleeTag...)
	m.h.Reset()
	m.h.Write(m.in)
	b = append(b, dir)
	b = base64.RawURLEncoding.AppendEncode(b, m.h.Sum(m.sum[:0])[:12])
	if cap(m.in) <= maxPooledStampInput {
		p.macs.Put(m)
	}
	return b
}

// stampMAC is a keyed HMAC with buffers of its own, pooled: hmac.New
// hashes the key's two pads every time, and what is written to a
// hash.Hash goes to the heap, so the input is gathered here first and the
// sum made here, and a stamp allocates nothing but its string.
type stampMAC struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// maxPooledStampInput bounds the input buffer a pooled stampMAC keeps: a
// request with a huge Call-ID or tag gets its stamp, but its buffer is
// not kept for every later one.
const maxPooledStampInput = 1024

// checkStamp notes in rt the dialog and direction of a stamp that matches
// r: its Call-ID, and its tags as they must be for the direction — a
// request towards the callee comes from the caller, whose tag is the From
// tag; one towards the caller comes from a callee, and carries the
// caller's tag in To.
func (p *Proxy) checkStamp(rt *routing, s string, r *sip.Request) {
	if len(s) < 2 {
		rt.badStamp = true
		return
	}
	from, to := r.From().Tag(), r.To().Tag()
	var key dialogKey
	var calleeTag, bound string
	switch s[0] {
	case toCallee:
		key, calleeTag, bound = dialogKey{r.CallID(), from}, to, to
	case toCaller:
		key, calleeTag = dialogKey{r.CallID(), to}, from
	default:
		rt.badStamp = true
		return
	}
	var want [stampLen]byte
	if hmac.Equal([]byte(s), p.appendStamp(want[:0], s[0], key.callID, key.callerTag, bound)) {
		rt.stamped, rt.dir, rt.dialog, rt.calleeTag = true, s[0], key, calleeTag
		return
	}
	rt.badStamp = true
}

// recordRoute adds the proxy's Record-Route to an initial request leaving
// for out (§16.6 step 4): one entry, facing out, which sends the callee's
// requests towards the caller and so carries the caller's flow token
// (inToken, or "") and the stamp of that direction. The callee's
// responses get it rewritten for the caller (rewriteRecordRoute).
func (p *Proxy) recordRoute(req *sip.Request, out sip.Addr, stamp, inToken string) {
	req.Prepend("Record-Route", p.id.RecordRoute(out.Transport, inToken, ";"+stampParam+"=", stamp))
}

// rewriteRecordRoute rewrites, in res — a callee's response to an initial
// request, on its way to the caller, the proxy's Via removed — the entry
// of ours that the callee got into the one the caller keeps (§16.7 step
// 4): facing the caller (on inTransport), stamped towards this callee for
// this dialog, with the callee's flow token when callee is a connection.
// It returns the next Route beyond us towards the callee, the entry just
// above ours, if any; ok is false when res has no entry of ours.
func (p *Proxy) rewriteRecordRoute(res *sip.Response, inTransport string, callee sip.Addr) (next sip.URI, ok bool) {
	rrs, err := res.RecordRoutes()
	if err != nil || len(rrs) == 0 {
		return sip.URI{}, false
	}
	idx := -1
	for i := range rrs {
		if s, has := rrs[i].URI.Params.Get(stampParam); has && len(s) > 0 && s[0] == toCaller && p.id.IsSelf(&rrs[i].URI) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return sip.URI{}, false
	}
	if idx > 0 {
		next = rrs[idx-1].URI
	}
	token := ""
	if callee.Flow != 0 {
		token = p.tokens.Encode(callee)
	}
	stamp := p.stamp(toCallee, res.CallID(), res.From().Tag(), res.To().Tag())
	mine := p.id.RecordRoute(inTransport, token, ";"+stampParam+"=", stamp)
	vals := make([]string, len(rrs))
	for i := range rrs {
		if i == idx {
			vals[i] = mine
		} else {
			vals[i] = rrs[i].String()
		}
	}
	res.Del("Record-Route")
	for _, v := range vals {
		res.Add("Record-Route", v)
	}
	return next, true
}

// via returns the proxy's Via for a request leaving for out (§16.6 step
// 8), with a branch made of the loop-detection hash and a unique part, and
// the flow token of the request's source when it came over a connection.
func (p *Proxy) via(out sip.Addr, branch, inToken string) sip.Via {
	params := ";branch=" + branch + ";rport"
	if inToken != "" {
		params += ";" + viaFlowParam + "=" + inToken
	}
	return p.id.Via(out.Transport, sip.Params(params))
}

// formatQ writes a q-value in thousandths as RFC 3261 §20.10 does: "1",
// "0.5", "0.125".
func formatQ(q int) string {
	switch {
	case q >= 1000:
		return "1"
	case q <= 0:
		return "0"
	}
	s := strconv.Itoa(q + 1000)[1:] // three digits
	return "0." + strings.TrimRight(s, "0")
}
