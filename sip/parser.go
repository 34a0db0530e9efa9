package sip

import (
	"slices"
	"strings"
	"unsafe"
)

// Limits bound what the parser accepts from the network. Zero fields take
// the defaults.
type Limits struct {
	// MaxMessageSize bounds a whole message, headers and body (default
	// 64 KiB). Larger messages get 513 Message Too Large.
	MaxMessageSize int
	// MaxHeaders bounds the number of header lines (default 256).
	MaxHeaders int
	// MaxLineLength bounds one header line, folded lines included (default
	// 8 KiB).
	MaxLineLength int
	// MaxURILength bounds the Request-URI (default 4 KiB); longer ones get
	// 414 Request-URI Too Long.
	MaxURILength int
}

// Default limits.
const (
	DefaultMaxMessageSize = 64 << 10
	DefaultMaxHeaders     = 256
	DefaultMaxLineLength  = 8 << 10
	DefaultMaxURILength   = 4 << 10
)

// WithDefaults returns l with its zero fields set to the defaults, as the
// parser applies them; transports size their buffers by it.
func (l Limits) WithDefaults() Limits {
	if l.MaxMessageSize <= 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = DefaultMaxLineLength
	}
	if l.MaxURILength <= 0 {
		l.MaxURILength = DefaultMaxURILength
	}
	return l
}

// Parser turns bytes from a transport into messages. The zero value uses
// the default limits; a Parser is safe for concurrent use.
type Parser struct {
	Limits Limits
}

var defaultParser Parser

// ParseDatagram parses one message from a UDP datagram with default limits.
// See Parser.ParseDatagram.
func ParseDatagram(b []byte) (Message, error) { return defaultParser.ParseDatagram(b) }

// ParseMessage parses one whole message with default limits. See
// Parser.ParseMessage.
func ParseMessage(b []byte) (Message, error) { return defaultParser.ParseMessage(b) }

// ParseDatagram parses the message of one datagram by the rules of RFC 3261
// §18.3: without Content-Length the body is the rest of the datagram; a
// Content-Length larger than what arrived is an error; octets beyond it are
// discarded (RFC 4475 dblreq).
//
// The message keeps its own copy of b, so the caller may reuse b.
func (p *Parser) ParseDatagram(b []byte) (Message, error) { return p.parse(b, true) }

// ParseMessage parses b as exactly one message, as a stream transport
// frames it (see Frame) or a WebSocket frame carries it (RFC 7118 §5.2):
// octets beyond Content-Length are an error.
//
// The message keeps its own copy of b, so the caller may reuse b.
func (p *Parser) ParseMessage(b []byte) (Message, error) { return p.parse(b, false) }

func tooLarge(reason string) *ParseError {
	return &ParseError{Status: 513, Reason: reason, Err: ErrTooLarge}
}

func (p *Parser) parse(in []byte, datagram bool) (Message, error) {
	lim := p.Limits.WithDefaults()
	if len(in) > lim.MaxMessageSize {
		return nil, tooLarge("Message Too Large")
	}
	// RFC 3261 §7.5: CRLFs before the start-line are ignored.
	i := 0
	for i < len(in) && (in[i] == '\r' || in[i] == '\n') {
		i++
	}
	if i == len(in) {
		return nil, malformed("Empty Message")
	}
	// One copy for the whole message: every string of the parsed message
	// points into it, and it is never written again.
	// (make and copy of the same source in two statements: the compiler
	// then skips zeroing the new array.)
	src := in[i:]
	buf := make([]byte, len(src))
	copy(buf, src)
	s := unsafe.String(unsafe.SliceData(buf), len(buf))

	lineEnd := strings.IndexByte(s, '\n')
	if lineEnd < 0 {
		lineEnd = len(s)
	}
	startLine := strings.TrimSuffix(s[:lineEnd], "\r")

	var h *Headers
	var req *Request
	var res *Response
	if len(startLine) >= 4 && isSIP(startLine[:3]) && startLine[3] == '/' {
		res = &Response{}
		if err := res.parseStatusLine(startLine); err != nil {
			return nil, err
		}
		h = &res.Headers
	} else {
		req = &Request{}
		if err := req.parseRequestLine(startLine, &lim); err != nil {
			return nil, err
		}
		h = &req.Headers
	}
	next := min(lineEnd+1, len(s))
	n, complete, err := h.parseFields(s[next:], &lim)
	if err != nil {
		return nil, err
	}
	if !complete && !datagram {
		return nil, &ParseError{Status: 400, Reason: "Incomplete Message", Err: ErrIncomplete}
	}
	// A datagram that lacks the empty line has its headers parsed all the
	// same, so that the answer names the real fault.
	bodyStart := next + n
	if err := h.index(); err != nil {
		return nil, err
	}
	if req != nil {
		if err := req.check(); err != nil {
			return nil, err
		}
	}
	body, err := h.frameBody(buf[bodyStart:], datagram)
	if err != nil {
		return nil, err
	}
	if req != nil {
		req.Body = body
		return req, nil
	}
	res.Body = body
	return res, nil
}

// headerEnd finds the empty line that ends the header section. It returns
// where the header section ends (just after the last header's newline) and
// where the body starts, or -1, -1. Bare LF line ends are tolerated.
func headerEnd(s string) (int, int) {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], '\n')
		if j < 0 {
			return -1, -1
		}
		k := i + j + 1
		if k < len(s) && s[k] == '\n' {
			return k, k + 1
		}
		if k+1 < len(s) && s[k] == '\r' && s[k+1] == '\n' {
			return k, k + 2
		}
		i = k
	}
}

func (r *Request) parseRequestLine(line string, lim *Limits) error {
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return malformed("Malformed Request-Line")
	}
	method := line[:sp1]
	if !isToken(method) {
		return malformed("Malformed Method")
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 < 0 {
		return malformed("Malformed Request-Line")
	}
	uri, version := rest[:sp2], rest[sp2+1:]
	// One SP exactly between the elements (RFC 4475 lwsstart, trws, lwsruri).
	if uri == "" {
		return malformed("Malformed Request-Line")
	}
	if version != "SIP/2.0" {
		if strings.IndexByte(version, ' ') >= 0 || strings.IndexByte(version, '\t') >= 0 {
			return malformed("Malformed Request-Line")
		}
		if err := checkVersion(version); err != nil {
			return err
		}
	}
	if len(uri) > lim.MaxURILength {
		return &ParseError{Status: 414, Reason: "Request-URI Too Long", Err: ErrTooLarge}
	}
	if err := r.URI.parse(uri); err != nil {
		return malformedHeader("Request-URI", err)
	}
	// Headers are not allowed in a Request-URI (§19.1.1, RFC 4475 escruri).
	if r.URI.Headers != "" {
		return malformedHeader("Request-URI", syntaxError("headers in Request-URI"))
	}
	r.Method = method
	r.line = line
	r.lineURI = placeURI(line, &r.URI)
	return nil
}

func checkVersion(v string) error {
	if v == "SIP/2.0" {
		return nil
	}
	if len(v) == 7 && strings.EqualFold(v[:4], "SIP/") && v[4:] == "2.0" {
		return nil
	}
	if len(v) > 4 && strings.EqualFold(v[:4], "SIP/") {
		return &ParseError{Status: 505, Reason: "Version Not Supported", Err: ErrVersion}
	}
	return malformed("Malformed SIP-Version")
}

func (r *Response) parseStatusLine(line string) error {
	sp := strings.IndexByte(line, ' ')
	if sp < 0 {
		return malformed("Malformed Status-Line")
	}
	if err := checkVersion(line[:sp]); err != nil {
		return err
	}
	rest := line[sp+1:]
	code, reason, _ := strings.Cut(rest, " ")
	n, ok := parseUint(code, 999)
	if !ok || len(code) != 3 || n < 100 || n > 699 {
		return malformed("Malformed Status-Code")
	}
	r.StatusCode, r.Reason = int(n), reason
	r.line = line
	return nil
}

// parseFields splits the header section at the start of s into lines,
// undoing line folding, up to the empty line that ends it. It returns the
// length of the section with its empty line, and whether that line was
// found. Bare LF line ends are tolerated. The fields' ids are left to index.
func (h *Headers) parseFields(s string, lim *Limits) (n int, complete bool, err error) {
	// The common message fits the inline array; more lines move to the
	// heap as they come. The slice lives in a local until the end, so that
	// appending does not write it back to h for every line.
	fields := h.fieldArr[:0]
	i := 0
	for i < len(s) {
		// The empty line ends the section.
		if s[i] == '\n' {
			n, complete = i+1, true
			break
		}
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			n, complete = i+2, true
			break
		}
		// field-name is a token. CR and LF are not token characters, so
		// the name ends within the line.
		j := i
		for j < len(s) && is(s[j], cToken) {
			j++
		}
		// The usual line, "Name: value" with one SP after the colon, the
		// value neither folded nor padded, is written back from Name and
		// Value. Any other needs its raw text kept (parseLine).
		e := strings.IndexByte(s[j:], '\n') + j // the LF, or j-1
		next := e + 1
		if e >= j && e > i && s[e-1] == '\r' {
			e--
		}
		if e < j || next < len(s) && isWS(s[next]) || e-i > lim.MaxLineLength || len(fields) == lim.MaxHeaders ||
			j == i || j+1 >= e || s[j] != ':' || s[j+1] != ' ' || isWS(s[j+2]) || isWS(s[e-1]) {
			var f HeaderField
			if f, i, err = h.parseLine(s, i, j, len(fields), lim); err != nil {
				return 0, false, err
			}
			fields = append(fields, f)
			continue
		}
		// Field by field: a HeaderField built aside and copied in would be
		// read back in wider words than it was written, which stalls. The
		// name is looked up by index, in a loop that holds less.
		k := len(fields)
		if k == cap(fields) {
			fields = slices.Grow(fields, 1)
		}
		fields = fields[:k+1]
		f := &fields[k]
		f.Name, f.Value, f.id, f.raw = s[i:j], s[j+2:e], hOther, 0
		i = next
	}
	if !complete {
		n = len(s)
	}
	h.fields = fields
	return n, complete, nil
}

// parseLine parses any header line, the one that starts at s[i] and whose
// name ends at s[j], and returns it with the index of the next line; nfields
// lines came before it. The line's text is kept in h.raws to be written
// back.
func (h *Headers) parseLine(s string, i, j, nfields int, lim *Limits) (HeaderField, int, error) {
	// A logical line runs to a newline not followed by SP or HTAB.
	end, folded := i, false
	for {
		k := strings.IndexByte(s[end:], '\n')
		if k < 0 {
			end = len(s)
			break
		}
		end += k + 1
		if end < len(s) && isWS(s[end]) {
			folded = true
			continue
		}
		break
	}
	line := s[i:end]
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n > 1 && line[n-2] == '\r' {
			line = line[:n-2]
		}
	}
	if len(line) > lim.MaxLineLength {
		return HeaderField{}, 0, &ParseError{Status: 400, Reason: "Header Line Too Long", Err: ErrTooLarge}
	}
	if nfields == lim.MaxHeaders {
		return HeaderField{}, 0, &ParseError{Status: 400, Reason: "Too Many Headers", Err: ErrTooLarge}
	}
	j -= i
	if j == 0 {
		return HeaderField{}, 0, badHeaderLine(line, j)
	}
	name := line[:j]
	for j < len(line) && isWS(line[j]) {
		j++
	}
	if j == len(line) || line[j] != ':' {
		return HeaderField{}, 0, badHeaderLine(line, j)
	}
	value := line[j+1:]
	if folded {
		value = unfold(value)
	}
	r := h.rareHeaders()
	r.raws = append(r.raws, line)
	f := HeaderField{Name: name, Value: trimWS(value), raw: uint32(len(r.raws))}
	return f, end, nil
}

// badHeaderLine says what is wrong with a header line that does not start
// with a field-name, optional whitespace and a colon; the name, if any, ends
// at line[j]. A colon after something that is not a name is a bad name; a
// line with no colon where one should be is a bad line.
func badHeaderLine(line string, j int) error {
	k := j
	for k < len(line) && isWS(line[k]) {
		k++
	}
	colonNext := k < len(line) && line[k] == ':'
	if j == 0 && colonNext || j > 0 && k < len(line) && strings.IndexByte(line, ':') > 0 {
		return malformed("Malformed Header Name")
	}
	return malformed("Malformed Header Line")
}

// unfold replaces each line break and the whitespace after it with one SP
// (RFC 3261 §7.3.1).
func unfold(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			for i+1 < len(s) && (s[i+1] == '\r' || s[i+1] == '\n' || isWS(s[i+1])) {
				i++
			}
			b = append(b, ' ')
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// eager marks the headers parsed while the message is parsed: the ones every
// element needs to route and match it, and Contact, which must be rejected
// early when malformed (RFC 4475 regbadct). Parsing them all up front also
// means that reading a parsed message never writes to it, so goroutines may
// share one for reading.
const eager = 1<<hVia | 1<<hFrom | 1<<hTo | 1<<hCallID | 1<<hCSeq |
	1<<hMaxForwards | 1<<hContentLength | 1<<hContact |
	1<<hRoute | 1<<hRecordRoute | 1<<hPath

// Index parses the headers that a parsed message has typed from the start
// (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact,
// Route, Record-Route, Path), so that a built or changed message can then be
// read from several goroutines. It returns the first malformed header.
// Only the headers changed since they were last parsed are parsed again:
// the transaction layer indexes every message it handles, most of them
// fresh from the parser or a clone with one Via popped, and parsing all of
// them again cost a second parse and new Route and Record-Route lists
// each time. A message left as it is sees no write, so a concurrent reader
// of a parsed message is safe.
func (h *Headers) Index() error {
	stale := eager &^ h.cached
	if stale == 0 {
		return nil
	}
	return h.indexTyped(stale)
}

// index looks the names of the header lines up (see parseFields), parses
// the eager headers and checks the mandatory ones (§8.1.1).
func (h *Headers) index() error {
	h.via, h.contacts = h.viaArr[:0], h.contactArr[:0]
	h.maxForwards, h.contentLength = -1, -1
	var seen uint64
	for i := range h.fields {
		f := &h.fields[i]
		// lookupHeader, with its quick case written out here.
		var id headerID
		if name := f.Name; len(name) > 1 {
			if id = nameTable[nameHash(name)]; headerNames[id] != name {
				id = lookupHeaderFold(name)
			}
		} else {
			id = lookupHeaderFold(name)
		}
		f.id = id
		if eager&(1<<id) == 0 {
			continue
		}
		if err := h.parseField(f, &seen); err != nil {
			return malformedHeader(headerNames[f.id], err)
		}
	}
	h.cached |= eager
	return h.checkMandatory(seen)
}

// indexTyped parses the eager headers of stale (a mask of eager) of a
// built or changed message in one pass, from empty values.
func (h *Headers) indexTyped(stale uint64) error {
	for id := hVia; id <= hPath; id++ {
		if stale&(1<<id) != 0 {
			h.resetTyped(id)
		}
	}
	var seen uint64
	for i := range h.fields {
		f := &h.fields[i]
		if stale&(1<<f.id) == 0 {
			continue
		}
		if err := h.parseField(f, &seen); err != nil {
			return malformedHeader(headerNames[f.id], err)
		}
	}
	h.cached |= stale
	return nil
}

// checkMandatory checks that the headers every message needs are there;
// seen has the single-value headers met (see parseField).
func (h *Headers) checkMandatory(seen uint64) error {
	missing := ""
	switch {
	case len(h.via) == 0:
		missing = "Via"
	case h.from.URI.Scheme == "":
		missing = "From"
	case h.to.URI.Scheme == "":
		missing = "To"
	case seen&(1<<hCallID) == 0:
		missing = "Call-ID"
	case h.cseq.Method == "":
		missing = "CSeq"
	default:
		return nil
	}
	return &ParseError{Status: 400, Reason: "Missing " + missing + " Header", Err: ErrMissingHeader}
}

func (r *Request) check() error {
	if r.cseq.Method == r.Method {
		return nil
	}
	// RFC 4475 mismatch02: an unknown method is the better answer.
	if !IsKnownMethod(r.Method) {
		return &ParseError{Status: 501, Reason: "Not Implemented", Err: ErrUnknownMethod}
	}
	return malformed("CSeq Method Mismatch")
}

// frameBody cuts the body out of what follows the header section.
func (h *Headers) frameBody(rest []byte, datagram bool) ([]byte, error) {
	cl := int(h.contentLength)
	switch {
	case cl < 0:
		// No Content-Length: the datagram or frame ends the body (§18.3;
		// RFC 7118 §5.2 for WebSocket).
		cl = len(rest)
	case cl > len(rest):
		return nil, &ParseError{Status: 400, Reason: "Content-Length Exceeds Message", Err: ErrMalformed}
	case cl < len(rest) && !datagram:
		return nil, &ParseError{Status: 400, Reason: "Octets After Body", Err: ErrMalformed}
	}
	if cl == 0 {
		return nil, nil
	}
	return rest[:cl:cl], nil
}

// Frame reports what a stream buffer starts with (RFC 3261 §18.3):
//   - n > 0, msg false: n octets of CRLF, a keep-alive (RFC 5626 §4.4.1:
//     answer "\r\n\r\n" with "\r\n");
//   - n > 0, msg true: a whole message of n octets, for ParseMessage;
//   - n == 0: not enough data yet.
//
// A message without Content-Length, or one that exceeds the size limit, is an
// error after which the stream cannot be resynchronised: close it.
func (p *Parser) Frame(buf []byte) (n int, msg bool, err error) {
	for n < len(buf) && (buf[n] == '\r' || buf[n] == '\n') {
		n++
	}
	if n > 0 {
		return n, false, nil
	}
	lim := p.Limits.WithDefaults()
	s := unsafe.String(unsafe.SliceData(buf), len(buf))
	headEnd, bodyStart := headerEnd(s)
	if headEnd < 0 {
		if len(buf) > lim.MaxMessageSize {
			return 0, false, tooLarge("Message Too Large")
		}
		return 0, false, nil
	}
	cl := -1
	for i := strings.IndexByte(s[:headEnd], '\n') + 1; i < headEnd; {
		j := strings.IndexByte(s[i:headEnd], '\n')
		line := s[i : i+j]
		i += j + 1
		colon := strings.IndexByte(line, ':')
		if colon < 0 || isWS(line[0]) || lookupHeader(trimWS(line[:colon])) != hContentLength {
			continue
		}
		v, ok := parseUint(trimWS(strings.TrimSuffix(line[colon+1:], "\r")), 1<<31-1)
		if !ok || cl >= 0 && int(v) != cl {
			return 0, false, malformedHeader("Content-Length", nil)
		}
		cl = int(v)
	}
	if cl < 0 {
		return 0, false, &ParseError{Status: 400, Reason: "Missing Content-Length", Err: ErrMissingHeader}
	}
	if bodyStart+cl > lim.MaxMessageSize {
		return 0, false, tooLarge("Message Too Large")
	}
	if len(buf) < bodyStart+cl {
		return 0, false, nil
	}
	return bodyStart + cl, true, nil
}
