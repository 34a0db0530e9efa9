package registrar

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
)

// maxUserAgent bounds the User-Agent text kept per binding.
const maxUserAgent = 256

// update applies the Contacts of an authenticated REGISTER to aor's
// bindings (§10.3 steps 6 to 8) and returns the response. For a copy of a
// REGISTER accepted before (resent: its answer was lost with its server
// transaction, see authenticate) it checks the request as the first time,
// so that a refusal is repeated, but applies nothing: a 200 then lists
// the bindings as they are, and a copy that comes late cannot bring back
// a binding removed since.
func (r *Registrar) update(ctx context.Context, req *sip.Request, aor string, resent bool) *sip.Response {
	contacts, err := req.Contacts()
	if err != nil {
		return badRequest(req, err, "Malformed Contact")
	}
	var hdrExp uint64
	hasHdrExp := req.Has("Expires")
	if hasHdrExp {
		var ok bool
		if hdrExp, ok = deltaSeconds(req.Get("Expires")); !ok {
			return reply(req, 400, "Malformed Expires")
		}
	}
	now := r.clock.Now()
	for _, c := range contacts {
		if !c.Wildcard {
			continue
		}
		if len(contacts) > 1 {
			return reply(req, 400, "Wildcard Contact Not Alone")
		}
		if !hasHdrExp || hdrExp != 0 {
			return reply(req, 400, "Wildcard Contact Needs Expires 0")
		}
		return r.removeAll(ctx, req, aor, now, resent)
	}

	changes, pathValues, res := r.changes(req, contacts, aor, now, hdrExp, hasHdrExp)
	if res != nil {
		return res
	}
	var bindings []location.Binding
	if resent {
		bindings, res = r.current(ctx, req, aor)
	} else {
		u := location.Update{AOR: aor, Changes: changes, CallID: req.CallID(), CSeq: req.CSeq().Seq}
		bindings, res = r.apply(ctx, req, u, now)
	}
	if res != nil {
		return res
	}
	outbound := false
	for i := range changes {
		outbound = outbound || !changes[i].Remove && changes[i].Binding.Outbound()
	}
	res = r.ok(req, bindings, now, outbound)
	if len(pathValues) > 0 && req.HasToken("Supported", "path") {
		for _, p := range pathValues {
			res.Add("Path", p)
		}
	}
	return res
}

// current returns aor's bindings as they are, for a copy of a REGISTER
// (update); res is the answer when the store failed.
func (r *Registrar) current(ctx context.Context, req *sip.Request, aor string) (bindings []location.Binding, res *sip.Response) {
	bindings, err := r.loc.Get(ctx, aor)
	if err != nil {
		return nil, r.storeFailed(req, aor, err)
	}
	r.log.Debug("registrar: REGISTER sent again answered", "aor", aor, "cseq", req.CSeq().Seq, "source", req.Source.String())
	return bindings, nil
}

// apply has the location store apply u, in one atomic step, and returns
// the bindings of the AOR after it; res is the answer when the store
// refused or failed.
func (r *Registrar) apply(ctx context.Context, req *sip.Request, u location.Update, now time.Time) (bindings []location.Binding, res *sip.Response) {
	bindings, err := r.loc.Update(ctx, u)
	switch {
	case err == nil:
	case errors.Is(err, location.ErrOutOfOrder):
		r.log.Debug("registrar: out-of-order REGISTER", "aor", u.AOR, "cseq", u.CSeq)
		return nil, reply(req, 500, "Out of Order")
	case errors.Is(err, location.ErrTooManyBindings):
		r.log.Warn("registrar: too many bindings", "aor", u.AOR, "source", req.Source.String())
		res := reply(req, 503, "Too Many Registrations")
		res.Add("Retry-After", retryAfter(firstExpiry(bindings, now)))
		return nil, res
	default:
		return nil, r.storeFailed(req, u.AOR, err)
	}
	for i := range u.Changes {
		r.logChange(ctx, &u.Changes[i], req)
	}
	if r.changed != nil {
		r.changed(u.AOR, bindings)
	}
	return bindings, nil
}

// changes turns the Contacts of a REGISTER into the bindings to store or
// remove, with the request's Path values. A Contact the registrar refuses
// fails the whole request: res is then the answer.
func (r *Registrar) changes(req *sip.Request, contacts []sip.Address, aor string, now time.Time, hdrExp uint64, hasHdrExp bool) (changes []location.Change, pathValues []string, res *sip.Response) {
	callID, cseq := req.CallID(), req.CSeq().Seq
	paths, err := req.Paths()
	if err != nil {
		return nil, nil, badRequest(req, err, "Malformed Path")
	}
	for i := range paths {
		pathValues = append(pathValues, paths[i].String())
	}
	// RFC 5626 §6: outbound applies when this registrar is the first hop,
	// or the edge proxy that added the top Path supports it (";ob").
	outboundAsked := req.HasToken("Supported", "outbound")
	edgeOK := len(req.Via()) <= 1 || len(paths) > 0 && paths[0].URI.Params.Has("ob")
	userAgent := req.Get("User-Agent")
	if len(userAgent) > maxUserAgent {
		userAgent = strings.ToValidUTF8(userAgent[:maxUserAgent], "")
	}

	changes = make([]location.Change, 0, len(contacts))
	flows := 0
	for _, c := range contacts {
		if !c.URI.IsSIP() {
			return nil, nil, reply(req, 400, "Contact Is Not a SIP URI")
		}
		secs, ok := r.expiresOf(c.Params, hdrExp, hasHdrExp)
		if !ok {
			return nil, nil, reply(req, 400, "Malformed Contact expires")
		}
		if secs != 0 && secs < r.minSecs {
			res := reply(req, 423, "")
			res.Add("Min-Expires", strconv.FormatUint(r.minSecs, 10))
			return nil, nil, res
		}
		q, ok := parseQ(c.Params)
		if !ok {
			return nil, nil, reply(req, 400, "Malformed Contact q")
		}
		instance, regID, fault := outboundParams(c.Params)
		if fault != "" {
			return nil, nil, reply(req, 400, fault)
		}
		if regID > 0 {
			switch {
			case instance == "" || !outboundAsked:
				regID = 0 // RFC 5626 §6: not an outbound registration
			case !edgeOK:
				return nil, nil, reply(req, 439, "")
			}
		}
		if regID > 0 && secs > 0 {
			flows++
		}
		changes = append(changes, location.Change{
			Binding: location.Binding{
				AOR:       aor,
				Contact:   sip.Address{Display: c.Display, URI: c.URI, Params: c.Params.Del("expires")},
				Expires:   now.Add(time.Duration(secs) * time.Second),
				Q:         q,
				CallID:    callID,
				CSeq:      cseq,
				Instance:  instance,
				RegID:     regID,
				Path:      pathValues,
				Source:    req.Source,
				Received:  now,
				UserAgent: userAgent,
				Node:      r.node,
			},
			Remove: secs == 0,
		})
	}
	// RFC 5626 §6: a registration with reg-id is one flow of one instance.
	if flows > 1 {
		return nil, nil, reply(req, 400, "More Than One reg-id Contact")
	}
	return changes, pathValues, nil

}

// removeAll handles "Contact: *" with "Expires: 0".
func (r *Registrar) removeAll(ctx context.Context, req *sip.Request, aor string, now time.Time, resent bool) *sip.Response {
	if resent {
		bindings, res := r.current(ctx, req, aor)
		if res != nil {
			return res
		}
		return r.ok(req, bindings, now, false)
	}
	u := location.Update{AOR: aor, RemoveAll: true, CallID: req.CallID(), CSeq: req.CSeq().Seq}
	if _, res := r.apply(ctx, req, u, now); res != nil {
		return res
	}
	r.log.Info("registrar: unregistered all", "aor", aor, "source", req.Source.String())
	return r.ok(req, nil, now, false)
}

// ok builds the 200 listing bindings.
func (r *Registrar) ok(req *sip.Request, bindings []location.Binding, now time.Time, outbound bool) *sip.Response {
	res := reply(req, 200, "")
	for i := range bindings {
		res.Add("Contact", contactValue(&bindings[i], now))
	}
	if outbound {
		res.Add("Require", "outbound")
		res.Add("Supported", "outbound")
		if req.Source.Reliable() {
			res.Add("Flow-Timer", r.flowTimer)
		}
	}
	res.Add("Date", r.dateOf(now))
	return res
}

// dateLayout is the SIP-date of RFC 3261 §20.17: RFC 1123 in GMT.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// sipDate is a Date header value and the second it names.
type sipDate struct {
	unix  int64
	value string
}

// dateOf returns the Date header value for now. It changes once a second,
// so the value is formatted once a second, not for every 200.
func (r *Registrar) dateOf(now time.Time) string {
	sec := now.Unix()
	if d := r.date.Load(); d != nil && d.unix == sec {
		return d.value
	}
	d := &sipDate{unix: sec, value: now.UTC().Format(dateLayout)}
	r.date.Store(d)
	return d.value
}

// contactValue returns the Contact of a binding as the 200 lists it: as
// registered, with expires set to the seconds left. A stored Contact
// has no expires (Binding.Contact), so the parameter is appended, in one
// allocation; one that has is rewritten with Params.Set.
func contactValue(b *location.Binding, now time.Time) string {
	a := &b.Contact
	secs := seconds(b.Expires.Sub(now))
	if a.Params.Has("expires") {
		c := *a
		c.Params = c.Params.Set("expires", strconv.FormatUint(secs, 10))
		return c.String()
	}
	var arr [256]byte
	v := a.AppendTo(arr[:0])
	v = strconv.AppendUint(append(v, ";expires="...), secs, 10)
	return string(v)
}

// firstExpiry returns how long until the first of bindings expires.
func firstExpiry(bindings []location.Binding, now time.Time) time.Duration {
	var first time.Duration
	for i := range bindings {
		if d := bindings[i].Expires.Sub(now); first == 0 || d < first {
			first = d
		}
	}
	return first
}

// storeFailed answers a REGISTER whose store call failed with err: 503
// when a shared store is out of reach, else 500.
func (r *Registrar) storeFailed(req *sip.Request, aor string, err error) *sip.Response {
	if errors.Is(err, location.ErrUnavailable) {
		// A shared store out of reach: the user agent comes back when
		// it may be there again, rather than giving up as it would on
		// a 500.
		r.log.Warn("registrar: location store unavailable", "aor", aor, "err", err)
		res := reply(req, 503, "Location Service Unavailable")
		res.Add("Retry-After", retryAfter(r.unavailableRetry))
		return res
	}
	r.log.Error("registrar: location store failed", "aor", aor, "err", err)
	return reply(req, 500, "")
}

// logChange logs what one Contact did. Removals are logged at info
// level; bindings stored, new or refreshed (the store does not tell them
// apart), at debug level, since every user agent refreshes every few
// minutes.
func (r *Registrar) logChange(ctx context.Context, ch *location.Change, req *sip.Request) {
	b := &ch.Binding
	if ch.Remove {
		r.log.Info("registrar: unregistered", "aor", b.AOR, "contact", b.Contact.URI.String(), "source", req.Source.String())
		return
	}
	if !r.log.Enabled(ctx, slog.LevelDebug) {
		return // spare formatting the URI on every refresh
	}
	r.log.Debug("registrar: registered", "aor", b.AOR, "contact", b.Contact.URI.String(), "expires", b.Expires,
		"source", req.Source.String(), "outbound", b.Outbound(), "user_agent", b.UserAgent)
}

// badRequest answers a header that failed to parse with the parser's own
// status and reason when it has one.
func badRequest(req *sip.Request, err error, reason string) *sip.Response {
	var perr *sip.ParseError
	if errors.As(err, &perr) {
		return reply(req, perr.Status, perr.Reason)
	}
	return reply(req, 400, reason)
}

// expiresOf returns the expiry of a Contact in seconds, lowered to
// MaxExpires: its expires parameter, else the Expires header, else the
// default. ok is false when the parameter is not a number.
func (r *Registrar) expiresOf(params sip.Params, hdr uint64, hasHdr bool) (secs uint64, ok bool) {
	switch v, has := params.Get("expires"); {
	case has:
		if secs, ok = deltaSeconds(v); !ok {
			return 0, false
		}
	case hasHdr:
		secs = hdr
	default:
		secs = r.defSecs
	}
	return min(secs, r.maxSecs), true
}

// deltaSeconds parses delta-seconds (1*DIGIT). Overlarge values saturate
// instead of failing, as RFC 3261 §10.2.1.1 and RFC 4475 scalar02 ask:
// they mean "as long as you will".
func deltaSeconds(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<40 {
			n = n*10 + uint64(c-'0')
		}
	}
	return n, true
}

// parseQ returns the q parameter in thousandths, 1000 when absent.
// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
func parseQ(params sip.Params) (int, bool) {
	v, has := params.Get("q")
	if !has {
		return 1000, true
	}
	if v == "" || v[0] != '0' && v[0] != '1' {
		return 0, false
	}
	q := int(v[0]-'0') * 1000
	if len(v) == 1 {
		return q, true
	}
	frac := v[1:]
	if frac[0] != '.' || len(frac) > 4 {
		return 0, false
	}
	scale := 100
	for i := 1; i < len(frac); i++ {
		c := frac[i]
		if c < '0' || c > '9' || q == 1000 && c != '0' {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	return q, true
}

// outboundParams reads +sip.instance (unquoted) and reg-id. fault is the
// reason phrase of a malformed one.
func outboundParams(params sip.Params) (instance string, regID int, fault string) {
	if v, has := params.Get("+sip.instance"); has {
		instance = sip.Unquote(v)
		if instance == "" || len(instance) > 256 {
			return "", 0, "Malformed Contact +sip.instance"
		}
	}
	if v, has := params.Get("reg-id"); has {
		n, ok := deltaSeconds(v)
		if !ok || n == 0 || n > 1<<31-1 {
			return "", 0, "Malformed Contact reg-id"
		}
		regID = int(n)
	}
	return instance, regID, ""
}
