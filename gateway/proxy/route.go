package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// Parameters the proxy puts in its own URIs and Via.
const (
	// stampParam, on a Record-Route URI, holds the HMAC of the Call-ID
	// that proves the proxy recorded that route for that call.
	stampParam = "sbdlg"
	// viaFlowParam, on the proxy's Via, holds the flow token of the
	// connection the request came over, so that a stray response finds it
	// again without state.
	viaFlowParam = "sbflow"
)

// routing is what route pre-processing (§16.4) learnt from the Routes it
// removed.
type routing struct {
	// stamped: a removed Route (or the Request-URI a strict router put
	// there) was a Record-Route entry of ours for this Call-ID.
	stamped bool
	// flow is the connection named by the flow token of a removed Route,
	// when it is not the one the request came over: where the request
	// must go.
	flow sip.Addr
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
	for n < len(routes) && p.isOurs(&routes[n].URI) {
		p.notePopped(rt, &routes[n].URI, r)
		n++
	}
	if n > 0 {
		setRoutes(&r.Headers, routes[n:])
	}
	return nil
}

// notePopped records what one of our URIs, removed from r, says.
func (p *Proxy) notePopped(rt *routing, u *sip.URI, r *sip.Request) {
	if s, ok := u.Params.Get(stampParam); ok && p.checkStamp(s, r.CallID()) {
		rt.stamped = true
	}
	if u.User == "" || rt.flow.IsValid() {
		return
	}
	// A flow token names the connection of one side of the dialog: the
	// request goes to the other side's, whichever that is (RFC 5626 §5.3).
	f, err := p.tokens.Decode(u.User)
	if err == nil && f.Flow != 0 && f.Flow != r.Source.Flow {
		rt.flow = f
	}
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

// isOurs reports whether u names this proxy: one of our domains, or one of
// our endpoints or aliases on one of our ports.
func (p *Proxy) isOurs(u *sip.URI) bool {
	if !u.IsSIP() {
		return false
	}
	host := strings.ToLower(u.Host)
	if p.domains[host] {
		return true
	}
	if !p.hosts[host] {
		return false
	}
	if u.Port == 0 {
		return true
	}
	for _, ep := range p.endpoints {
		if ep.Port == u.Port {
			return true
		}
	}
	return false
}

// isOurRecordRoute reports whether u is a Record-Route URI of ours.
func (p *Proxy) isOurRecordRoute(u *sip.URI) bool {
	return u.Params.Has(stampParam) && p.isOurs(u)
}

// isLocalURI reports whether u is a SIP URI of one of our domains, or of
// the gateway by address.
func (p *Proxy) isLocalURI(u *sip.URI) bool {
	if !u.IsSIP() {
		return false
	}
	host := strings.ToLower(u.Host)
	return p.domains[host] || p.hosts[host]
}

// domainOf returns the domain of a local URI: its host, or the primary
// domain when it names the gateway by address.
func (p *Proxy) domainOf(u *sip.URI) string {
	host := strings.ToLower(u.Host)
	if p.domains[host] || p.primary == "" {
		return host
	}
	return p.primary
}

// aor returns the canonical address of record of a local URI:
// "sip:user@domain", without port or parameters.
func (p *Proxy) aor(u *sip.URI) string {
	a := sip.URI{Scheme: "sip", User: u.User, Host: p.domainOf(u)}
	return a.String()
}

// stamp returns the Record-Route stamp of a Call-ID: 72 bits of HMAC.
func (p *Proxy) stamp(callID string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("record-route\x00"))
	m.Write([]byte(callID))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:9])
}

func (p *Proxy) checkStamp(s, callID string) bool {
	return hmac.Equal([]byte(s), []byte(p.stamp(callID)))
}

// endpointFor returns the endpoint of a transport, or the first endpoint.
func (p *Proxy) endpointFor(transport string) Endpoint {
	for _, ep := range p.endpoints {
		if strings.EqualFold(ep.Transport, transport) {
			return ep
		}
	}
	return p.endpoints[0]
}

// recordRoute adds the proxy's Record-Route to a request that came from in
// and leaves for out (§16.6 step 4). One entry does when both sides use
// the same endpoint and out is no connection; otherwise two (RFC 5658):
// the top one faces out, the other in. An entry facing a connection
// carries its flow token; inToken is in's (or "").
func (p *Proxy) recordRoute(req *sip.Request, in, out sip.Addr, stamp, inToken string) {
	inEP, outEP := p.endpointFor(in.Transport), p.endpointFor(out.Transport)
	req.Prepend("Record-Route", rrValue(inEP, inToken, stamp))
	if inEP == outEP && out.Flow == 0 {
		return
	}
	outToken := ""
	if out.Flow != 0 {
		outToken = p.tokens.Encode(out)
	}
	req.Prepend("Record-Route", rrValue(outEP, outToken, stamp))
}

// rrValue formats a Record-Route value: <sip:[token@]host[:port]
// [;transport=x];lr;sbdlg=stamp>.
func rrValue(ep Endpoint, token, stamp string) string {
	b := make([]byte, 0, 96+len(token))
	b = append(b, "<sip:"...)
	if token != "" {
		b = append(b, token...) // base64url: unreserved in a user part
		b = append(b, '@')
	}
	b = append(b, sip.JoinHostPort(ep.Host, ep.Port)...)
	if ep.Transport != sip.UDP {
		b = append(b, ";transport="...)
		b = append(b, strings.ToLower(ep.Transport)...)
	}
	b = append(b, ";lr;"+stampParam+"="...)
	b = append(b, stamp...)
	b = append(b, '>')
	return string(b)
}

// via returns the proxy's Via for a request leaving for out (§16.6 step
// 8), with a branch made of the loop-detection hash and a unique part, and
// the flow token of the request's source when it came over a connection.
func (p *Proxy) via(out sip.Addr, branch, inToken string) sip.Via {
	ep := p.endpointFor(out.Transport)
	params := ";branch=" + branch + ";rport"
	if inToken != "" {
		params += ";" + viaFlowParam + "=" + inToken
	}
	return sip.Via{
		Transport: strings.ToUpper(out.Transport),
		Host:      ep.Host,
		Port:      ep.Port,
		Params:    sip.Params(params),
	}
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
