package sip

import (
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// Methods of RFC 3261 and its extensions. Methods are case-sensitive.
const (
	MethodInvite    = "INVITE"
	MethodAck       = "ACK"
	MethodBye       = "BYE"
	MethodCancel    = "CANCEL"
	MethodOptions   = "OPTIONS"
	MethodRegister  = "REGISTER"
	MethodPrack     = "PRACK"
	MethodSubscribe = "SUBSCRIBE"
	MethodNotify    = "NOTIFY"
	MethodPublish   = "PUBLISH"
	MethodInfo      = "INFO"
	MethodRefer     = "REFER"
	MethodMessage   = "MESSAGE"
	MethodUpdate    = "UPDATE"
)

// IsKnownMethod reports whether method is one this stack implements. A UAS
// answers any other with 501 (RFC 3261 §8.2.1); a proxy forwards it.
func IsKnownMethod(method string) bool {
	_, ok := KnownMethod(method)
	return ok
}

// KnownMethod returns this package's constant for method when it is one
// this stack implements: a string that holds nothing of the message it
// was parsed from, for what outlives the message (a transaction's key).
func KnownMethod(method string) (string, bool) {
	// A switch, not a loop over a list: parsing, the UAS's 501 and the
	// metrics' labels ask for every request.
	switch method {
	case MethodInvite:
		return MethodInvite, true
	case MethodAck:
		return MethodAck, true
	case MethodBye:
		return MethodBye, true
	case MethodCancel:
		return MethodCancel, true
	case MethodOptions:
		return MethodOptions, true
	case MethodRegister:
		return MethodRegister, true
	case MethodPrack:
		return MethodPrack, true
	case MethodSubscribe:
		return MethodSubscribe, true
	case MethodNotify:
		return MethodNotify, true
	case MethodPublish:
		return MethodPublish, true
	case MethodInfo:
		return MethodInfo, true
	case MethodRefer:
		return MethodRefer, true
	case MethodMessage:
		return MethodMessage, true
	case MethodUpdate:
		return MethodUpdate, true
	}
	return method, false
}

// Message is a *Request or a *Response.
type Message interface {
	// Header returns the message's headers.
	Header() *Headers
	// Payload returns the body.
	Payload() []byte
	// Src returns where the message came from.
	Src() Addr
	// AppendTo appends the wire form of the message to b.
	AppendTo(b []byte) []byte
	// String returns the wire form of the message.
	String() string
}

// Request is a SIP request.
type Request struct {
	Method string
	URI    URI
	Headers
	Body []byte

	// Source is where the request came from, set by the transport that
	// received it.
	Source Addr

	// The request line as received, reused on output while Method and URI
	// are unchanged so that a forwarded request keeps its exact bytes.
	// Whether they are is found from the line itself (lineKept), not from
	// copies of them kept beside it, which made every request 136 bytes
	// larger for the few that are forwarded.
	line string
	// Where the Request-URI's parts lie in line, so that lineKept compares
	// strings instead of parsing the line again (16 bytes, which the size
	// class had spare; TestMessageSize).
	lineURI lineURI
}

// Response is a SIP response.
type Response struct {
	StatusCode int
	Reason     string
	Headers
	Body []byte

	// Source is where the response came from, set by the transport that
	// received it.
	Source Addr

	// The status line as received, reused on output while StatusCode and
	// Reason are unchanged (lineKept).
	line string
}

// NewRequest returns a request with no headers.
func NewRequest(method string, uri URI) *Request {
	return &Request{Method: method, URI: uri}
}

// Header returns the request's headers.
func (r *Request) Header() *Headers { return &r.Headers }

// Payload returns the body.
func (r *Request) Payload() []byte { return r.Body }

// Src returns Source.
func (r *Request) Src() Addr { return r.Source }

// ContinuesWork reports whether r carries on work already begun: it is
// within a dialog (its To has a tag) or answers a challenge (it carries
// Authorization or Proxy-Authorization). Overload control serves such
// requests first and never sheds them: their exchange was admitted once.
func (r *Request) ContinuesWork() bool {
	return r.To().Tag() != "" || r.Has("Authorization") || r.Has("Proxy-Authorization")
}

// SetBody sets the body, its Content-Type (unless empty) and its
// Content-Length.
func (r *Request) SetBody(body []byte, contentType string) {
	r.Body = body
	setBody(&r.Headers, body, contentType)
}

func setBody(h *Headers, body []byte, contentType string) {
	if contentType != "" {
		h.Set("Content-Type", contentType)
	} else if len(body) == 0 {
		h.Del("Content-Type")
	}
	h.setContentLength(len(body))
}

// String returns the wire form.
func (r *Request) String() string { return string(r.AppendTo(nil)) }

// AppendTo appends the wire form of the request to b.
func (r *Request) AppendTo(b []byte) []byte {
	if r.lineKept() {
		b = append(b, r.line...)
	} else {
		b = appendToken(b, r.Method)
		b = append(b, ' ')
		b = r.URI.AppendTo(b)
		b = append(b, " SIP/2.0"...)
	}
	b = append(b, '\r', '\n')
	b = r.Headers.appendTo(b)
	b = append(b, '\r', '\n')
	return append(b, r.Body...)
}

// AppendReceived appends to b what tells this request from any other as
// it arrived: where it came from (transport, address, connection) and its
// wire form, with the received and rport its transport stamped on the
// Via, the same for every copy from the same place. A UAC that hears no
// answer sends the same bytes again (§17.1), so two requests that append
// the same are one request and its copy: digest.Server.VerifyResent takes
// this to accept credentials again for the copy and for nothing else.
func (r *Request) AppendReceived(b []byte) []byte {
	b = r.Source.AddrPort.AppendTo(append(b, r.Source.Transport...))
	b = strconv.AppendUint(append(b, ' '), r.Source.Flow, 10)
	return r.AppendTo(append(b, '\n'))
}

// lineKept reports whether the request line as received still says what
// Method and URI say. The parser accepted the line, so it is a method, one
// space, the URI and one space. The URI's parts are compared with where
// they lie in the line (lineURI); a URI the parser could not place there
// (escapes, a password, another scheme) is parsed again, on the stack.
func (r *Request) lineKept() bool {
	line := r.line
	if len(line) <= len(r.Method) || line[len(r.Method)] != ' ' || line[:len(r.Method)] != r.Method {
		return false
	}
	if k := r.lineURI; k.scheme != 0 {
		u := &r.URI
		return u.Scheme == lineSchemes[k.scheme] && u.Port == int(k.port) &&
			u.Host == k.host.of(line) && u.User == k.user.of(line) &&
			string(u.Params) == k.params.of(line) &&
			u.Password == "" && u.Headers == "" && u.Opaque == ""
	}
	rest := line[len(r.Method)+1:]
	sp := strings.IndexByte(rest, ' ')
	if sp < 0 {
		return false
	}
	var u URI
	return u.parse(rest[:sp]) == nil && u == r.URI
}

// lineURI places a Request-URI's parts in its request line: what the
// parser filled them with, so that the URI is unchanged exactly when each
// part still equals its span of the line (the strings share their bytes
// until a part is replaced, so the comparison is mostly a pointer's). The
// zero value (scheme 0) places nothing.
type lineURI struct {
	user, host, params lineSpan
	port               uint16
	scheme             uint8 // index in lineSchemes
}

// lineSpan is line[off:off+n].
type lineSpan struct{ off, n uint16 }

func (s lineSpan) of(line string) string { return line[s.off : int(s.off)+int(s.n)] }

var lineSchemes = [...]string{1: "sip", 2: "sips", 3: "tel"}

// placeURI finds u's parts in line, which u was parsed from. It places
// nothing for a URI with a part it does not hold (a password, headers,
// an opaque part, or a user part with escapes, which is decoded into a
// string of its own), or for a line too long for 16-bit offsets.
func placeURI(line string, u *URI) lineURI {
	var k lineURI
	if len(line) > math.MaxUint16 || u.Port < 0 || u.Port > math.MaxUint16 ||
		u.Password != "" || u.Headers != "" || u.Opaque != "" {
		return k
	}
	var ok [3]bool
	k.user, ok[0] = spanIn(line, u.User)
	k.host, ok[1] = spanIn(line, u.Host)
	k.params, ok[2] = spanIn(line, string(u.Params))
	if ok != [3]bool{true, true, true} {
		return k
	}
	for i, s := range lineSchemes {
		if i > 0 && s == u.Scheme {
			k.port, k.scheme = uint16(u.Port), uint8(i)
		}
	}
	return k
}

// spanIn returns where s, a substring of line, lies in it. The offset is
// taken from the strings' addresses and then checked by comparing the
// bytes, so a string that is not a substring (or an empty one, whose
// address says nothing) is placed only where its bytes match.
func spanIn(line, s string) (lineSpan, bool) {
	if s == "" {
		return lineSpan{}, true
	}
	off := uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.StringData(line)))
	if len(s) > len(line) || off > uintptr(len(line)-len(s)) || line[off:off+uintptr(len(s))] != s {
		return lineSpan{}, false
	}
	return lineSpan{uint16(off), uint16(len(s))}, true
}

// appendToken writes a method, dropping any byte a token may not hold so
// that a method from untrusted input cannot break the request line.
func appendToken(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if is(s[i], cToken) {
			b = append(b, s[i])
		}
	}
	return b
}

// IsToken reports whether s is a token of RFC 3261 §25.1, as methods,
// option tags and parameter names are.
func IsToken(s string) bool { return isToken(s) }

// Header returns the response's headers.
func (r *Response) Header() *Headers { return &r.Headers }

// Payload returns the body.
func (r *Response) Payload() []byte { return r.Body }

// Src returns Source.
func (r *Response) Src() Addr { return r.Source }

// SetBody sets the body, its Content-Type (unless empty) and its
// Content-Length.
func (r *Response) SetBody(body []byte, contentType string) {
	r.Body = body
	setBody(&r.Headers, body, contentType)
}

// String returns the wire form.
func (r *Response) String() string { return string(r.AppendTo(nil)) }

// AppendTo appends the wire form of the response to b.
func (r *Response) AppendTo(b []byte) []byte {
	if r.lineKept() {
		b = append(b, r.line...)
	} else {
		b = append(b, "SIP/2.0 "...)
		b = strconv.AppendInt(b, int64(r.StatusCode), 10)
		b = append(b, ' ')
		b = append(b, safeValue(r.Reason)...)
	}
	b = append(b, '\r', '\n')
	b = r.Headers.appendTo(b)
	b = append(b, '\r', '\n')
	return append(b, r.Body...)
}

// lineKept reports whether the status line as received still says what
// StatusCode and Reason say: the parser accepted it as a version, one
// space, three digits and the reason after one more space.
func (r *Response) lineKept() bool {
	_, rest, ok := strings.Cut(r.line, " ")
	if !ok || len(rest) < 3 {
		return false
	}
	code := int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	reason := ""
	if len(rest) > 3 {
		reason = rest[4:]
	}
	return code == r.StatusCode && reason == r.Reason
}

// IsProvisional reports a 1xx response.
func (r *Response) IsProvisional() bool { return r.StatusCode < 200 }

// IsSuccess reports a 2xx response.
func (r *Response) IsSuccess() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// NewResponse builds a response to req as RFC 3261 §8.2.6 says: Via, From,
// To, Call-ID and CSeq copied (the exact lines), Timestamp echoed, and an
// empty body. An empty reason takes the standard phrase. The caller adds a
// To tag where one is needed (see ToTag).
func NewResponse(req *Request, code int, reason string) *Response {
	if reason == "" {
		reason = StatusText(code)
	}
	res := &Response{StatusCode: code, Reason: reason}
	res.fields = res.fieldArr[:0]
	// What CopyFrom does for each name, with the ids known and res empty:
	// CopyFrom's lookups and its scans of res were a third of building a
	// registrar's response. One pass over the request finds where each
	// header's lines are; a header whose lines follow one another (nearly
	// always: Vias come together) is then copied from there, any other
	// with a pass of its own.
	n := len(responseIDs)
	if code != 100 {
		n--
	}
	src := &req.Headers
	var at [len(responseIDs)]struct {
		first, n int
		split    bool // other lines between its lines
	}
	for i := range src.fields {
		r := int(responseRank[src.fields[i].id])
		if r == 0 || r > n {
			continue
		}
		a := &at[r-1]
		if a.n == 0 {
			a.first = i
		} else if a.first+a.n != i {
			a.split = true
		}
		a.n++
	}
	for k, id := range responseIDs[:n] {
		a := at[k]
		if a.split {
			res.copyKnown(src, id)
			continue
		}
		for i := a.first; i < a.first+a.n; i++ {
			res.appendCopy(src, &src.fields[i])
		}
		res.copyTypedKnown(src, id)
	}
	res.fields = append(res.fields, HeaderField{Name: "Content-Length", Value: "0", id: hContentLength})
	return res
}

// responseIDs are the headers that NewResponse copies from the request,
// in the order it writes them; Timestamp (the last) to a 100 only.
var responseIDs = [...]headerID{hVia, hFrom, hTo, hCallID, hCSeq, hTimestamp}

// responseRank is 1 + the place of each of responseIDs in it, 0 for the
// other headers.
var responseRank = func() (r [hCount]uint8) {
	for i, id := range responseIDs {
		r[id] = uint8(i + 1)
	}
	return r
}()

// SetToTag sets the To tag of a response when the request had none, which a
// UAS does for every response but 100 (§8.2.6.2).
//
// A token tag is appended to the To as it is, in one allocation: after an
// addr-spec without brackets a parameter is a header parameter (RFC 3261
// §20), so the tag is the To's whichever form it takes. Any other tag is
// set on the parsed address, which is written again, as before.
func (r *Response) SetToTag(tag string) {
	to := r.To()
	old, hasTag := to.Params.Get("tag")
	if old != "" || to.URI.Scheme == "" {
		return
	}
	// A ";tag" without a value is replaced, not followed by a second tag.
	if isToken(tag) && !hasTag {
		line := r.Get("To")
		var buf [formatBuf]byte
		b := append(buf[:0], line...)
		b = append(b, ";tag="...)
		typed := r.cached&(1<<hTo) != 0
		value := string(append(b, tag...))
		r.Set("To", value)
		// Parsed again, the line would give the same address with the tag
		// after its parameters, when they end the line as they were read:
		// kept so, the To is not parsed again before the response goes
		// out (the transaction layer's Index), for every response.
		if typed && strings.HasSuffix(line, string(to.Params)) {
			to.Params = Params(value[len(value)-len(to.Params)-len(";tag=")-len(tag):])
			r.to = to
			r.cached |= 1 << hTo
		}
		return
	}
	to.Params = to.Params.Set("tag", tag)
	r.Set("To", to.String())
}

// StatusText returns the reason phrase of RFC 3261 and its extensions for a
// status code, or a generic one for its class.
func StatusText(code int) string {
	if t, ok := statusText[code]; ok {
		return t
	}
	switch code / 100 {
	case 1:
		return "Trying"
	case 2:
		return "OK"
	case 3:
		return "Redirection"
	case 4:
		return "Client Error"
	case 5:
		return "Server Error"
	}
	return "Global Failure"
}

var statusText = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
	183: "Session Progress", 199: "Early Dialog Terminated",
	200: "OK", 202: "Accepted", 204: "No Notification",
	300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
	305: "Use Proxy", 380: "Alternative Service",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
	404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
	407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
	412: "Conditional Request Failed", 413: "Request Entity Too Large",
	414: "Request-URI Too Long", 415: "Unsupported Media Type",
	416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority",
	420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
	423: "Interval Too Brief", 428: "Use Identity Header", 429: "Provide Referrer Identity",
	430: "Flow Failed", 433: "Anonymity Disallowed", 439: "First Hop Lacks Outbound Support",
	440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
	480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
	482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
	485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
	488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
	493: "Undecipherable", 494: "Security Agreement Required",
	500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
	513: "Message Too Large", 555: "Push Notification Service Not Supported",
	580: "Precondition Failure",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
	606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}
