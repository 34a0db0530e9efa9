package sip

import (
	"iter"
	"strconv"
	"strings"
	"time"
)

// Headers is the ordered header list of a message, with typed access to the
// headers the stack relies on. Typed values are parsed once and cached; the
// cache is dropped for a header whenever that header is changed, and filled
// again on the next read. A parsed message can be read from several
// goroutines; one that is being changed cannot (Clone it first). Headers
// must not be copied after first use: the typed cache points into it.
type Headers struct {
	fields []HeaderField
	// rare holds what few messages need (raw lines, Route, Record-Route
	// and Path), out of line so that every message is smaller; nil until
	// one needs it.
	rare *rareHeaders

	cached uint64 // bit 1<<headerID set when the typed value below is current

	via           []Via
	from, to      Address
	cseq          CSeq
	maxForwards   int32 // -1 when absent
	contentLength int32 // -1 when absent
	contacts      []Address

	// Inline storage, so that the common message (up to 14 header lines,
	// one or two Vias, one Contact) parses in one allocation for the
	// message instead of one per list.
	fieldArr   [14]HeaderField
	viaArr     [2]Via
	contactArr [1]Address
}

// rareHeaders is the part of Headers that a REGISTER and most other
// requests leave empty. A clone gets its own copy (cloneFrom).
type rareHeaders struct {
	// raws holds the received lines that the fields cannot write back
	// from Name and Value alone (see HeaderField.raw). It is only
	// appended to.
	raws []string

	routes       []Address
	recordRoutes []Address
	paths        []Address
}

// rareHeaders returns h.rare, made if it was nil.
func (h *Headers) rareHeaders() *rareHeaders {
	if h.rare == nil {
		h.rare = new(rareHeaders)
	}
	return h.rare
}

// raws returns the raw lines (see rareHeaders).
func (h *Headers) raws() []string {
	if h.rare == nil {
		return nil
	}
	return h.rare.raws
}

// Fields returns the header lines in order. The slice is the message's own:
// read it, and change headers through the methods.
func (h *Headers) Fields() []HeaderField { return h.fields }

// Get returns the value of the first header called name (long or compact
// form, any case), or "".
func (h *Headers) Get(name string) string {
	id := lookupHeader(name)
	for i := range h.fields {
		if h.fields[i].is(id, name) {
			return h.fields[i].Value
		}
	}
	return ""
}

// Has reports whether a header called name is present.
func (h *Headers) Has(name string) bool {
	id := lookupHeader(name)
	for i := range h.fields {
		if h.fields[i].is(id, name) {
			return true
		}
	}
	return false
}

// Values returns the values of every header line called name, in order. A
// line is never split at commas here: the authorization headers carry commas
// inside one value, and the typed accessors split the lists that may be.
func (h *Headers) Values(name string) []string {
	id := lookupHeader(name)
	var vs []string
	for i := range h.fields {
		if h.fields[i].is(id, name) {
			vs = append(vs, h.fields[i].Value)
		}
	}
	return vs
}

// safeValue turns line breaks into spaces so that a value built from
// untrusted input (a display name, a reason) can never inject a header.
func safeValue(v string) string {
	// Two IndexByte rather than ContainsAny, which builds a set of the
	// bytes for every call: 3 % of a registration's instructions went
	// to it, for the ten values a registrar adds.
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		return strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	return v
}

// Add appends a header line.
func (h *Headers) Add(name, value string) {
	value = safeValue(value)
	id := lookupHeader(name)
	h.invalidate(id)
	h.fields = append(h.fields, HeaderField{Name: name, Value: value, id: id})
}

// Prepend inserts a header line above all others, where a proxy puts its
// Via and Record-Route (RFC 3261 §16.6).
func (h *Headers) Prepend(name, value string) {
	value = safeValue(value)
	id := lookupHeader(name)
	h.invalidate(id)
	h.fields = append(h.fields, HeaderField{})
	copy(h.fields[1:], h.fields)
	h.fields[0] = HeaderField{Name: name, Value: value, id: id}
}

// Set replaces the first header called name with one line holding value,
// removes the others, and appends the header when it was absent.
func (h *Headers) Set(name, value string) {
	value = safeValue(value)
	id := lookupHeader(name)
	h.invalidate(id)
	out := h.fields[:0]
	done := false
	for _, f := range h.fields {
		if f.is(id, name) {
			if done {
				continue
			}
			f = HeaderField{Name: name, Value: value, id: id}
			done = true
		}
		out = append(out, f)
	}
	clear(h.fields[len(out):])
	h.fields = out
	if !done {
		h.fields = append(h.fields, HeaderField{Name: name, Value: value, id: id})
	}
}

// Del removes every header called name.
func (h *Headers) Del(name string) {
	id := lookupHeader(name)
	h.invalidate(id)
	out := h.fields[:0]
	for _, f := range h.fields {
		if !f.is(id, name) {
			out = append(out, f)
		}
	}
	clear(h.fields[len(out):])
	h.fields = out
}

func (h *Headers) invalidate(id headerID) {
	h.cached &^= 1 << id
}

// CopyFrom appends to h every header of src called name, keeping the exact
// lines (responses copy Via, From, To, Call-ID and CSeq this way, §8.2.6).
//
// When h had no such header and src's typed value of it is current, the
// value is copied with the lines (Via, From, To, Call-ID, CSeq), so that
// the transaction layer does not parse a response's copied headers again
// (Index) before sending it.
func (h *Headers) CopyFrom(src *Headers, name string) {
	id := lookupHeader(name)
	h.invalidate(id)
	had := false
	for i := range h.fields {
		had = had || h.fields[i].is(id, name)
	}
	if !had && id != hOther {
		h.copyKnown(src, id)
		return
	}
	for i := range src.fields {
		if f := &src.fields[i]; f.is(id, name) {
			h.appendCopy(src, f)
		}
	}
}

// copyKnown appends src's fields of id, a known header that h has none
// of, and their typed value when it is current.
func (h *Headers) copyKnown(src *Headers, id headerID) {
	for i := range src.fields {
		if src.fields[i].id == id {
			h.appendCopy(src, &src.fields[i])
		}
	}
	h.copyTypedKnown(src, id)
}

// copyTypedKnown sets h's typed value of id to src's when src has it
// parsed and it is plain data (copyTyped), once h has src's fields of id.
func (h *Headers) copyTypedKnown(src *Headers, id headerID) {
	if src.cached&(1<<id) != 0 && h.copyTyped(src, id) {
		h.cached |= 1 << id
	}
}

// appendCopy appends f, a field of src, with its raw line if it has one.
func (h *Headers) appendCopy(src *Headers, f *HeaderField) {
	c := *f
	if c.raw != 0 {
		r := h.rareHeaders()
		r.raws = append(r.raws, src.rare.raws[c.raw-1])
		c.raw = uint32(len(r.raws))
	}
	h.fields = append(h.fields, c)
}

// copyTyped sets h's typed value of id to src's, for the headers whose
// value is plain data; it reports false for the others.
func (h *Headers) copyTyped(src *Headers, id headerID) bool {
	switch id {
	case hVia:
		h.via = append(h.viaArr[:0], src.via...)
	case hFrom:
		h.from = src.from
	case hTo:
		h.to = src.to
	case hCallID:
		// Nothing is kept (resetTyped): the lines were checked in src.
	case hCSeq:
		h.cseq = src.cseq
	default:
		return false
	}
	return true
}

// typedOK reports whether the cached value of id is current, after parsing
// it from the header lines if it was not.
func (h *Headers) typedOK(id headerID) bool {
	if h.cached&(1<<id) != 0 {
		return true
	}
	return h.parseTyped(id) == nil
}

// parseTyped parses every line of header id into the typed cache.
func (h *Headers) parseTyped(id headerID) error {
	if !h.resetTyped(id) {
		return nil
	}
	var seen uint64
	for i := range h.fields {
		if h.fields[i].id == id {
			if err := h.parseField(&h.fields[i], &seen); err != nil {
				return err
			}
		}
	}
	h.cached |= 1 << id
	return nil
}

// resetTyped empties the typed cache of id, reporting whether id has one.
func (h *Headers) resetTyped(id headerID) bool {
	switch id {
	case hVia:
		h.via = h.viaArr[:0]
	case hContact:
		h.contacts = h.contactArr[:0]
	// Lists outside the inline arrays may be shared with a clone: start
	// afresh rather than overwrite them.
	case hRoute, hRecordRoute, hPath:
		if h.rare != nil {
			*h.rare.list(id) = nil
		}
	case hMaxForwards:
		h.maxForwards = -1
	case hContentLength:
		h.contentLength = -1
	case hFrom:
		h.from = Address{}
	case hTo:
		h.to = Address{}
	case hCallID:
		// Nothing is kept: CallID reads the line, checked when parsed.
	case hCSeq:
		h.cseq = CSeq{}
	default:
		return false
	}
	return true
}

// parseField adds one header line to the typed cache of its header. seen
// records the single-value headers met so far.
func (h *Headers) parseField(f *HeaderField, seen *uint64) (err error) {
	id, v := f.id, f.Value
	switch id {
	case hVia:
		h.via, err = scanViaList(h.via, v)
		return err
	case hContact:
		if v == "*" {
			h.contacts = append(h.contacts, Address{Wildcard: true})
			return nil
		}
		h.contacts, err = scanAddressList(h.contacts, v)
		return err
	case hRoute, hRecordRoute, hPath:
		list := h.rareHeaders().list(id)
		*list, err = scanAddressList(*list, v)
		return err
	case hContentLength:
		// Repeated equal values are harmless; different ones are a framing
		// conflict (RFC 4475 mcl01).
		n, ok := parseUint(v, 1<<31-1)
		if !ok {
			return syntaxError("invalid Content-Length")
		}
		if h.contentLength >= 0 && h.contentLength != int32(n) {
			return syntaxError("conflicting Content-Length values")
		}
		h.contentLength = int32(n)
		return nil
	}
	// The remaining headers take exactly one value (RFC 4475 multi01).
	if *seen&(1<<id) != 0 {
		return syntaxError("more than one value")
	}
	*seen |= 1 << id
	switch id {
	case hFrom:
		return parseAddressInto(&h.from, v)
	case hTo:
		return parseAddressInto(&h.to, v)
	case hCallID:
		if !isCallID(v) {
			return syntaxError("invalid Call-ID")
		}
	case hCSeq:
		h.cseq, err = ParseCSeq(v)
		return err
	case hMaxForwards:
		n, ok := parseUint(v, 255)
		if !ok {
			return syntaxError("invalid Max-Forwards")
		}
		h.maxForwards = int32(n)
	}
	return nil
}

// isCallID checks callid = word [ "@" word ].
func isCallID(s string) bool {
	i := 0
	for i < len(s) && is(s[i], cWord) {
		i++
	}
	if i < len(s) && s[i] == '@' && i > 0 {
		i++
		start := i
		for i < len(s) && is(s[i], cWord) {
			i++
		}
		if i == start {
			return false
		}
	}
	return i > 0 && i == len(s)
}

// Via returns every Via value in order, top first; nil when a Via is
// malformed.
func (h *Headers) Via() []Via {
	if !h.typedOK(hVia) {
		return nil
	}
	return h.via
}

// TopVia returns the first Via value.
func (h *Headers) TopVia() (Via, bool) {
	vs := h.Via()
	if len(vs) == 0 {
		return Via{}, false
	}
	return vs[0], true
}

// PrependVia puts v above all other Vias, as a new header line.
func (h *Headers) PrependVia(v Via) { h.Prepend("Via", v.String()) }

// SetTopVia replaces the top Via value (to add received and rport, RFC 3581)
// keeping the rest of a comma-separated line.
func (h *Headers) SetTopVia(v Via) {
	if h.setTopViaTyped(v) {
		return
	}
	for i := range h.fields {
		f := &h.fields[i]
		if f.id != hVia {
			continue
		}
		var top Via
		end, err := scanVia(&top, f.Value, 0)
		value := v.String()
		if err == nil && end < len(f.Value) {
			value += f.Value[end:]
		}
		*f = HeaderField{Name: "Via", Value: value, id: hVia}
		h.invalidate(hVia)
		return
	}
	h.PrependVia(v)
}

// setTopViaTyped is SetTopVia for the transport's received and rport
// (every request received): when the parsed Vias are current, each alone
// on its line, and v is the top one with other parameters, the new line
// parses to v with its parameters read from it, so the typed top Via is
// set so instead of the whole list being parsed again by the next reader.
// It reports false, changing nothing, when that does not hold.
func (h *Headers) setTopViaTyped(v Via) bool {
	// A list outside the inline array may be shared with a clone
	// (cloneFrom): not written to.
	if h.cached&(1<<hVia) == 0 || len(h.via) == 0 || &h.via[0] != &h.viaArr[0] {
		return false
	}
	top := &h.via[0]
	if v.Transport != top.Transport || v.Host != top.Host || v.Port != top.Port || trimWS(string(v.Params)) != string(v.Params) {
		return false
	}
	first, lines := -1, 0
	for i := range h.fields {
		if h.fields[i].id == hVia {
			if first < 0 {
				first = i
			}
			lines++
		}
	}
	if lines != len(h.via) {
		return false
	}
	value := v.String()
	at := len(value) - len(v.Params)
	if end, err := scanParams(value, at); err != nil || end != len(value) {
		return false
	}
	h.fields[first] = HeaderField{Name: "Via", Value: value, id: hVia}
	top.Params = Params(value[at:])
	return true
}

// PopVia removes the top Via value, as a proxy does to a response it
// forwards (RFC 3261 §16.7 step 3).
func (h *Headers) PopVia() {
	for i := range h.fields {
		f := &h.fields[i]
		if f.id != hVia {
			continue
		}
		h.invalidate(hVia)
		var top Via
		end, err := scanVia(&top, f.Value, 0)
		if err == nil && end < len(f.Value) {
			*f = HeaderField{Name: f.Name, Value: trimWS(f.Value[end+1:]), id: hVia}
			return
		}
		h.fields = append(h.fields[:i], h.fields[i+1:]...)
		return
	}
}

// From returns the From header.
func (h *Headers) From() Address {
	h.typedOK(hFrom)
	return h.from
}

// To returns the To header.
func (h *Headers) To() Address {
	h.typedOK(hTo)
	return h.to
}

// CallID returns the Call-ID. Its line is checked when parsed, like the
// other typed headers, but the value is read from the line rather than
// copied beside it: that keeps a Response within its allocation size class.
// As before, a malformed second Call-ID line leaves the first one read.
func (h *Headers) CallID() string {
	ok := h.typedOK(hCallID)
	for i := range h.fields {
		if h.fields[i].id == hCallID {
			if v := h.fields[i].Value; ok || isCallID(v) {
				return v
			}
			return ""
		}
	}
	return ""
}

// CSeq returns the CSeq header.
func (h *Headers) CSeq() CSeq {
	h.typedOK(hCSeq)
	return h.cseq
}

// MaxForwards returns Max-Forwards and whether it is present.
func (h *Headers) MaxForwards() (int, bool) {
	if !h.typedOK(hMaxForwards) {
		return 0, false
	}
	return int(h.maxForwards), h.maxForwards >= 0
}

// ContentLength returns Content-Length and whether it is present.
func (h *Headers) ContentLength() (int, bool) {
	if !h.typedOK(hContentLength) {
		return 0, false
	}
	return int(h.contentLength), h.contentLength >= 0
}

// ContentType returns the Content-Type value.
func (h *Headers) ContentType() string { return h.Get("Content-Type") }

// Contacts returns every Contact value in order. "Contact: *" is one
// Address with Wildcard set.
func (h *Headers) Contacts() ([]Address, error) { return h.addressList(hContact) }

// Routes returns the Route set, top first.
func (h *Headers) Routes() ([]Address, error) { return h.addressList(hRoute) }

// RecordRoutes returns the Record-Route values, top first.
func (h *Headers) RecordRoutes() ([]Address, error) { return h.addressList(hRecordRoute) }

// Paths returns the Path values (RFC 3327), top first.
func (h *Headers) Paths() ([]Address, error) { return h.addressList(hPath) }

func (h *Headers) addressList(id headerID) ([]Address, error) {
	if h.cached&(1<<id) == 0 {
		if err := h.parseTyped(id); err != nil {
			return nil, malformedHeader(headerNames[id], err)
		}
	}
	switch {
	case id == hContact:
		return h.contacts, nil
	case h.rare == nil:
		return nil, nil
	}
	return *h.rare.list(id), nil
}

// list returns the typed list of Route, Record-Route or Path.
func (r *rareHeaders) list(id headerID) *[]Address {
	switch id {
	case hRoute:
		return &r.routes
	case hRecordRoute:
		return &r.recordRoutes
	}
	return &r.paths
}

// Address parses a single-address header such as Refer-To, Referred-By or
// P-Asserted-Identity. ok is false when the header is absent.
func (h *Headers) Address(name string) (a Address, ok bool, err error) {
	v := h.Get(name)
	if v == "" {
		return a, false, nil
	}
	a, err = ParseAddress(v)
	if err != nil {
		return a, true, malformedHeader(CanonicalHeaderName(name), err)
	}
	return a, true, nil
}

// ReferTo returns the Refer-To header (RFC 3515).
func (h *Headers) ReferTo() (Address, bool, error) { return h.Address("Refer-To") }

// Uint returns a header holding one unsigned number (Expires, Min-Expires,
// RSeq, Min-SE, Flow-Timer). ok is false when the header is absent.
func (h *Headers) Uint(name string) (n uint32, ok bool, err error) {
	v := h.Get(name)
	if v == "" {
		return 0, false, nil
	}
	x, valid := parseUint(v, 1<<32-1)
	if !valid {
		return 0, true, malformedHeader(CanonicalHeaderName(name), syntaxError("invalid number"))
	}
	return uint32(x), true, nil
}

// Expires returns the Expires header in seconds.
func (h *Headers) Expires() (uint32, bool, error) { return h.Uint("Expires") }

// MinExpires returns the Min-Expires header in seconds.
func (h *Headers) MinExpires() (uint32, bool, error) { return h.Uint("Min-Expires") }

// RSeq returns the RSeq header (RFC 3262).
func (h *Headers) RSeq() (uint32, bool, error) { return h.Uint("RSeq") }

// Tokens returns the comma-separated tokens of every line of an option-tag
// or method list (Require, Supported, Unsupported, Proxy-Require, Allow,
// Allow-Events, Accept), trimmed, in order.
func (h *Headers) Tokens(name string) []string {
	var out []string
	for t := range h.tokens(name) {
		out = append(out, t)
	}
	return out
}

// HasToken reports whether the list header name holds token, ignoring case.
// It reads the lines in place, without building Tokens' list: a registrar
// asks it of every REGISTER.
func (h *Headers) HasToken(name, token string) bool {
	if token == "" {
		return false
	}
	for t := range h.tokens(name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// tokens yields the items of the list header name, trimmed, empty ones
// left out, in the order of its lines.
func (h *Headers) tokens(name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		id := lookupHeader(name)
		for i := range h.fields {
			if !h.fields[i].is(id, name) {
				continue
			}
			for t := range strings.SplitSeq(h.fields[i].Value, ",") {
				if t = trimWS(t); t != "" && !yield(t) {
					return
				}
			}
		}
	}
}

// RAck is the RAck header of RFC 3262 §7.2.
type RAck struct {
	RSeq   uint32
	CSeq   uint32
	Method string
}

// RAck returns the RAck header.
func (h *Headers) RAck() (r RAck, ok bool, err error) {
	v := h.Get("RAck")
	if v == "" {
		return r, false, nil
	}
	f := strings.Fields(v)
	if len(f) != 3 || !isToken(f[2]) {
		return r, true, malformedHeader("RAck", nil)
	}
	rseq, ok1 := parseUint(f[0], 1<<32-1)
	cseq, ok2 := parseUint(f[1], 1<<32-1)
	if !ok1 || !ok2 {
		return r, true, malformedHeader("RAck", nil)
	}
	return RAck{RSeq: uint32(rseq), CSeq: uint32(cseq), Method: f[2]}, true, nil
}

// ValueParams is a header value made of a token or URI followed by
// parameters: Event, Subscription-State, Session-Expires, Content-Type,
// Replaces and the like.
type ValueParams struct {
	Value  string
	Params Params
}

// ValueParams splits the first header called name at its first ';'.
func (h *Headers) ValueParams(name string) (vp ValueParams, ok bool, err error) {
	v := h.Get(name)
	if v == "" {
		return vp, false, nil
	}
	value, _, _ := strings.Cut(v, ";")
	vp.Value = trimWS(value)
	if vp.Value == "" {
		return vp, true, malformedHeader(CanonicalHeaderName(name), nil)
	}
	rest := v[len(value):]
	end, err := scanParams(rest, 0)
	if err != nil || end != len(rest) {
		return vp, true, malformedHeader(CanonicalHeaderName(name), err)
	}
	vp.Params = Params(trimWS(rest))
	return vp, true, nil
}

// Event returns the Event header (RFC 6665): the event package and params.
func (h *Headers) Event() (ValueParams, bool, error) { return h.ValueParams("Event") }

// SubscriptionState returns the Subscription-State header (RFC 6665).
func (h *Headers) SubscriptionState() (ValueParams, bool, error) {
	return h.ValueParams("Subscription-State")
}

// SessionExpires returns the Session-Expires header (RFC 4028): the
// interval in seconds and the refresher parameter.
func (h *Headers) SessionExpires() (seconds uint32, refresher string, ok bool, err error) {
	vp, ok, err := h.ValueParams("Session-Expires")
	if !ok || err != nil {
		return 0, "", ok, err
	}
	n, valid := parseUint(vp.Value, 1<<32-1)
	if !valid {
		return 0, "", true, malformedHeader("Session-Expires", nil)
	}
	refresher, _ = vp.Params.Get("refresher")
	return uint32(n), refresher, true, nil
}

// Replaces is the Replaces header of RFC 3891.
type Replaces struct {
	CallID, ToTag, FromTag string
	EarlyOnly              bool
}

// Replaces returns the Replaces header.
func (h *Headers) Replaces() (r Replaces, ok bool, err error) {
	vp, ok, err := h.ValueParams("Replaces")
	if !ok || err != nil {
		return r, ok, err
	}
	r.CallID = vp.Value
	r.ToTag, _ = vp.Params.Get("to-tag")
	r.FromTag, _ = vp.Params.Get("from-tag")
	r.EarlyOnly = vp.Params.Has("early-only")
	if !isCallID(r.CallID) {
		return r, true, malformedHeader("Replaces", nil)
	}
	return r, true, nil
}

func (h *Headers) appendTo(b []byte) []byte {
	for i := range h.fields {
		b = h.fields[i].appendTo(b, h.raws())
		b = append(b, '\r', '\n')
	}
	return b
}

// setContentLength writes Content-Length for a body of n bytes.
func (h *Headers) setContentLength(n int) {
	h.Set("Content-Length", strconv.Itoa(n))
}

// Date returns the Date header. RFC 3261 §20.17 allows only "GMT" as the
// zone (RFC 4475 baddate), so any other zone is an error.
func (h *Headers) Date() (time.Time, bool, error) {
	v := h.Get("Date")
	if v == "" {
		return time.Time{}, false, nil
	}
	t, err := time.Parse(time.RFC1123, v)
	if err != nil || !strings.HasSuffix(v, " GMT") {
		return time.Time{}, true, malformedHeader("Date", err)
	}
	return t, true, nil
}
