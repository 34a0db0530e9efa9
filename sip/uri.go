package sip

import (
	"strconv"
	"strings"
)

// URI is a SIP, SIPS or tel URI (RFC 3261 §19.1, RFC 3966), or any other
// absolute URI kept opaque. The zero value is an empty URI.
//
// User and Password hold the decoded text, so that "sip:%61lice@host" and
// "sip:alice@host" have the same User. Params and Headers keep their wire
// text; Equal decodes them for comparison.
type URI struct {
	// Scheme is in lower case: "sip", "sips", "tel", or another scheme.
	Scheme string
	// User is the decoded user part; for tel URIs, the telephone number.
	User string
	// Password is the decoded password, rarely used and deprecated.
	Password string
	// Host is a host name, an IPv4 address or an IPv6 address without its
	// brackets.
	Host string
	// Port is 0 when the URI has none.
	Port int
	// Params are the URI parameters (";transport=tcp;lr").
	Params Params
	// Headers is the text after "?" without it ("subject=x&priority=urgent").
	Headers string
	// Opaque is everything after "scheme:" for schemes other than sip, sips
	// and tel.
	Opaque string
}

// ParseURI parses an absolute URI. It does not allocate unless the user part
// holds escapes.
func ParseURI(s string) (URI, error) {
	var u URI
	err := u.parse(s)
	return u, err
}

// parse fills u, which must be zero (see scanAddress).
func (u *URI) parse(s string) error {
	// "sip:" and "sips:" in any case, the schemes nearly every URI has.
	if len(s) >= 4 && isSIP(s[:3]) && (s[3] == ':' || len(s) >= 5 && s[3]|0x20 == 's' && s[4] == ':') {
		scheme, rest := "sip", s[4:]
		if s[3] != ':' {
			scheme, rest = "sips", s[5:]
		}
		u.Scheme = scheme
		// parseSIP, written out.
		if u.parseSIPPlain(rest) {
			return nil
		}
		return u.parseSIPFull(rest)
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return syntaxError("missing URI scheme")
	}
	for i := 0; i < colon; i++ {
		c := s[i]
		alpha := is(c, cAlnum) && c > '9'
		if i == 0 && !alpha || !is(c, cAlnum) && c != '+' && c != '-' && c != '.' {
			return syntaxError("invalid URI scheme")
		}
	}
	u.Scheme = schemeName(s[:colon])
	rest := s[colon+1:]
	switch u.Scheme {
	case "sip", "sips":
		return u.parseSIP(rest)
	case "tel":
		return u.parseTel(rest)
	}
	if rest == "" {
		return syntaxError("empty URI")
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c == '<' || c == '>' || c == '"' || c == 0x7f {
			return syntaxError("invalid character in URI")
		}
	}
	u.Opaque = rest
	return nil
}

func schemeName(s string) string {
	switch {
	case isSIP(s):
		return "sip"
	case len(s) == 4 && strings.EqualFold(s, "sips"):
		return "sips"
	case len(s) == 3 && strings.EqualFold(s, "tel"):
		return "tel"
	}
	return lowerASCII(s)
}

func (u *URI) parseSIP(s string) error {
	if u.parseSIPPlain(s) {
		return nil
	}
	return u.parseSIPFull(s)
}

// parseSIPFull parses any sip or sips URI after its scheme.
func (u *URI) parseSIPFull(s string) error {
	end := len(s)
	if q := strings.IndexByte(s, '?'); q >= 0 {
		// A '?' may stand unescaped in the user part (user-unreserved), so
		// headers start at the first '?' after the '@', if there is one.
		at := strings.IndexByte(s, '@')
		if at < 0 || q > at {
			end = q
		} else if q2 := strings.IndexByte(s[at:], '?'); q2 >= 0 {
			end = at + q2
		}
	}
	if end < len(s) {
		h := s[end+1:]
		if err := checkURIHeaders(h); err != nil {
			return err
		}
		u.Headers = h
		s = s[:end]
	}
	if at := strings.IndexByte(s, '@'); at >= 0 {
		userinfo := s[:at]
		s = s[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user == "" && !hasPass {
			return syntaxError("empty user part")
		}
		var err error
		if u.User, err = unescape(user, cAlnum|cMark|cUserUnr); err != nil {
			return err
		}
		if hasPass {
			if u.Password, err = unescape(pass, cAlnum|cMark|cPassUnr); err != nil {
				return err
			}
		}
	}
	i, err := u.parseHostPort(s)
	if err != nil {
		return err
	}
	if i < len(s) {
		if s[i] != ';' {
			return syntaxError("invalid character after host")
		}
		if err := checkURIParams(s[i:]); err != nil {
			return err
		}
		u.Params = Params(s[i:])
	}
	return nil
}

// parseSIPPlain parses in one pass the sip or sips URI that most messages
// carry: [user "@"] host [":" port] *(";" param) ["?" headers], with no
// escape, password or repeated parameter. It reports false, leaving u as it
// was, for anything else, which parseSIPFull then parses (or rejects). Both
// accept the same URIs and fill u the same (FuzzParseURI checks it).
func (u *URI) parseSIPPlain(s string) bool {
	// As in parseSIP, the user part ends at the first '@'; it may then hold
	// '?' and ';' (user-unreserved), and headers start after the '@'.
	var user string
	i := 0
	if at := strings.IndexByte(s, '@'); at >= 0 {
		if at == 0 {
			return false
		}
		user = s[:at]
		for k := 0; k < len(user); k++ {
			if !is(user[k], cAlnum|cMark|cUserUnr) {
				return false // ':' of a password, '%' of an escape, or an error
			}
		}
		i = at + 1
	}
	var host string
	if i < len(s) && s[i] == '[' {
		h, n, err := scanHost(s[i:])
		if err != nil {
			return false
		}
		host, i = h, i+n
	} else {
		start := i
		for i < len(s) && is(s[i], cHost) {
			i++
		}
		if i == start {
			return false
		}
		host = s[start:i]
	}
	port, i, ok := scanPort(s, i)
	if !ok {
		return false
	}
	// Parameters: names and values of unreserved characters (no '%'), no
	// name twice. The first few names are remembered to compare the next
	// ones with.
	pstart := i
	var names [4]string // only the first n
	for n := 0; i < len(s) && s[i] == ';'; n++ {
		i++
		start := i
		for i < len(s) && is(s[i], cAlnum|cMark|cParamUnr) {
			i++
		}
		name := s[start:i]
		if name == "" {
			return false
		}
		if n < len(names) {
			for _, prev := range names[:n] {
				if len(prev) == len(name) && strings.EqualFold(prev, name) {
					return false
				}
			}
			names[n] = name
		} else if hasPlainParam(s[pstart:start-1], name) {
			return false
		}
		if i < len(s) && s[i] == '=' {
			i++
			start = i
			for i < len(s) && is(s[i], cAlnum|cMark|cParamUnr) {
				i++
			}
			if i == start {
				return false
			}
		}
	}
	params := s[pstart:i]
	var headers string
	if i < len(s) {
		if s[i] != '?' {
			return false
		}
		headers = s[i+1:]
		if checkURIHeaders(headers) != nil {
			return false
		}
	}
	// u is zero: empty strings need not be written, which spares the
	// write barriers of pointers to nothing while the GC marks.
	u.Host, u.Port = host, port
	if user != "" {
		u.User = user
	}
	if params != "" {
		u.Params = Params(params)
	}
	if headers != "" {
		u.Headers = headers
	}
	return true
}

// parseHostPort reads host [":" port] at the start of s and returns where it
// ended.
func (u *URI) parseHostPort(s string) (int, error) {
	host, i, err := scanHost(s)
	if err != nil {
		return i, err
	}
	u.Host = host
	port, j, ok := scanPort(s, i)
	if !ok {
		return j, syntaxError("invalid port")
	}
	u.Port = port
	return j, nil
}

// scanPort reads an optional ":" port at s[i:], returning the port (0 when
// there is none), where it ended, and false for a port that is empty or
// above 65535.
func scanPort(s string, i int) (port, end int, ok bool) {
	if i >= len(s) || s[i] != ':' {
		return 0, i, true
	}
	j := i + 1
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	p, ok := parseUint(s[i+1:j], 65535)
	return int(p), j, ok
}

// scanHost reads a host name, an IPv4 address or an IPv6 reference and
// returns the host without brackets and the index after it.
func scanHost(s string) (string, int, error) {
	if s != "" && s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", len(s), syntaxError("unterminated IPv6 reference")
		}
		if !isIPv6(s[1:end]) {
			return "", end, syntaxError("invalid IPv6 reference")
		}
		return s[1:end], end + 1, nil
	}
	i := 0
	for i < len(s) && is(s[i], cHost) {
		i++
	}
	if i == 0 {
		return "", 0, syntaxError("missing host")
	}
	return s[:i], i, nil
}

// isIPv6 accepts the characters of an IPv6 address. It is deliberately
// loose: RFC 5118 §4.10 asks parsers to survive "2001:db8:::192.0.2.1",
// which RFC 3261's ABNF allows and RFC 4291 does not.
func isIPv6(s string) bool {
	colons := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			colons++
		case isHex(c) || c == '.':
		default:
			return false
		}
	}
	return colons >= 2 && len(s) <= 45
}

func checkURIParams(s string) error {
	for i := 0; i < len(s); {
		i++ // ';'
		start := i
		for i < len(s) && s[i] != ';' && s[i] != '=' {
			i++
		}
		if i == start {
			return syntaxError("empty URI parameter name")
		}
		if err := checkEscaped(s[start:i], cAlnum|cMark|cParamUnr); err != nil {
			return err
		}
		// A repeated parameter makes comparison (§19.1.4) ambiguous.
		if start > 1 && hasParamName(s[:start-1], s[start:i]) {
			return syntaxError("repeated URI parameter")
		}
		if i < len(s) && s[i] == '=' {
			i++
			start = i
			for i < len(s) && s[i] != ';' {
				i++
			}
			if i == start {
				return syntaxError("empty URI parameter value")
			}
			if err := checkEscaped(s[start:i], cAlnum|cMark|cParamUnr); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkURIHeaders(s string) error {
	if s == "" {
		return syntaxError("empty URI headers")
	}
	for _, h := range strings.Split(s, "&") {
		name, value, ok := strings.Cut(h, "=")
		if !ok || name == "" {
			return syntaxError("invalid URI header")
		}
		if err := checkEscaped(name, cAlnum|cMark|cHnvUnr); err != nil {
			return err
		}
		if err := checkEscaped(value, cAlnum|cMark|cHnvUnr); err != nil {
			return err
		}
	}
	return nil
}

func checkEscaped(s string, class uint16) error {
	for i := 0; i < len(s); i++ {
		if is(s[i], class) {
			continue
		}
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return syntaxError("invalid escape in URI")
			}
			i += 2
			continue
		}
		if !is(c, class) {
			return syntaxError("invalid character in URI")
		}
	}
	return nil
}

// unescape checks s against class and decodes its %HH escapes, allocating
// only when there is one to decode.
func unescape(s string, class uint16) (string, error) {
	if err := checkEscaped(s, class); err != nil {
		return "", err
	}
	return decodeEscapes(s), nil
}

// decodeEscapes decodes %HH once (never recursively: RFC 4475 esc01).
// Malformed escapes are kept as they are.
func decodeEscapes(s string) string {
	n := strings.IndexByte(s, '%')
	if n < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:n]...)
	for i := n; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func (u *URI) parseTel(s string) error {
	num, params, _ := strings.Cut(s, ";")
	if num == "" {
		return syntaxError("empty telephone number")
	}
	for i := 0; i < len(num); i++ {
		c := num[i]
		if !(isHex(c) || c == '+' || c == '*' || c == '#' || c == '-' || c == '.' || c == '(' || c == ')') {
			return syntaxError("invalid telephone number")
		}
	}
	u.User = num
	if params != "" {
		p := s[len(num):]
		if err := checkURIParams(p); err != nil {
			return err
		}
		u.Params = Params(p)
	}
	return nil
}

// IsSIP reports whether the scheme is sip or sips.
func (u *URI) IsSIP() bool { return u.Scheme == "sip" || u.Scheme == "sips" }

// HostPort returns host[:port], bracketing an IPv6 host.
func (u *URI) HostPort() string {
	return JoinHostPort(u.Host, u.Port)
}

// JoinHostPort joins a host and a port (omitted when 0) as SIP writes them.
func JoinHostPort(host string, port int) string {
	return string(appendHostPort(make([]byte, 0, len(host)+8), host, port))
}

// appendHostPort writes host[:port], bracketing an IPv6 host.
func appendHostPort(b []byte, host string, port int) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		b = append(b, '[')
		b = append(b, host...)
		b = append(b, ']')
	} else {
		b = append(b, host...)
	}
	if port != 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(port), 10)
	}
	return b
}

// String returns the URI in its wire form.
func (u *URI) String() string {
	var buf [formatBuf]byte
	return string(u.AppendTo(buf[:0]))
}

// AppendTo appends the wire form of u to b.
func (u *URI) AppendTo(b []byte) []byte {
	b = append(b, u.Scheme...)
	b = append(b, ':')
	switch u.Scheme {
	case "sip", "sips":
	case "tel":
		b = append(b, u.User...)
		return append(b, u.Params...)
	default:
		return append(b, u.Opaque...)
	}
	if u.User != "" || u.Password != "" {
		b = appendEscaped(b, u.User, cAlnum|cMark|cUserUnr)
		if u.Password != "" {
			b = append(b, ':')
			b = appendEscaped(b, u.Password, cAlnum|cMark|cPassUnr)
		}
		b = append(b, '@')
	}
	b = appendHostPort(b, u.Host, u.Port)
	b = append(b, u.Params...)
	if u.Headers != "" {
		b = append(b, '?')
		b = append(b, u.Headers...)
	}
	return b
}

func appendEscaped(b []byte, s string, class uint16) []byte {
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if is(c, class) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexdigits[c>>4], hexdigits[c&15])
		}
	}
	return b
}

// Equal reports whether u and v are equivalent by the rules of RFC 3261
// §19.1.4: schemes, users and passwords compare case-sensitively after
// decoding; hosts case-insensitively; a port, and the transport, user, ttl,
// method and maddr parameters must match if either side has them; other
// parameters only when both sides have them; headers must all match.
func (u *URI) Equal(v *URI) bool {
	// Copies of one URI (the Contact a refresh sends again, byte for
	// byte) are the commonest case: fields that are all the same are the
	// same URI, without the walk below, which decodes and looks up every
	// parameter both ways.
	if *u == *v {
		return true
	}
	if u.Scheme != v.Scheme {
		return false
	}
	switch u.Scheme {
	case "sip", "sips":
	case "tel":
		return telNumber(u.User) == telNumber(v.User) && paramsEqual(u.Params, v.Params, true)
	default:
		return u.Opaque == v.Opaque
	}
	if u.User != v.User || u.Password != v.Password ||
		!strings.EqualFold(u.Host, v.Host) || u.Port != v.Port {
		return false
	}
	return paramsEqual(u.Params, v.Params, false) && headersEqual(u.Headers, v.Headers)
}

// telNumber strips the visual separators, which RFC 3966 §4 ignores when
// comparing.
func telNumber(s string) string {
	if strings.ContainsAny(s, "-.()") {
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune("-.()", r) {
				return -1
			}
			return r
		}, s)
	}
	return s
}

// paramsEqual compares URI parameters; with all set, every parameter must
// be on both sides (tel URIs, RFC 3966 §4).
func paramsEqual(a, b Params, all bool) bool {
	ok := true
	check := func(x, y Params) {
		x.Range(func(name, value string) bool {
			name = decodeEscapes(name)
			other, found := getDecoded(y, name)
			if !found {
				if all || isSignificantParam(name) {
					ok = false
				}
				return ok
			}
			if !strings.EqualFold(decodeEscapes(value), decodeEscapes(other)) {
				ok = false
			}
			return ok
		})
	}
	check(a, b)
	if ok {
		check(b, a)
	}
	return ok
}

// hasParamName reports whether the URI parameters in s (already checked)
// hold one called name, comparing decoded names.
func hasParamName(s, name string) bool {
	escaped := strings.IndexByte(name, '%') >= 0
	if escaped {
		name = decodeEscapes(name)
	}
	for i := 0; i < len(s); {
		i++ // ';'
		start := i
		for i < len(s) && s[i] != ';' && s[i] != '=' {
			i++
		}
		n := s[start:i]
		if escaped || strings.IndexByte(n, '%') >= 0 {
			n = decodeEscapes(n)
		}
		if strings.EqualFold(n, name) {
			return true
		}
		for i < len(s) && s[i] != ';' {
			i++
		}
	}
	return false
}

// hasPlainParam is hasParamName for URI parameters without escapes, as
// parseSIPPlain accepts them: names compare by length first.
func hasPlainParam(s, name string) bool {
	for i := 0; i < len(s); {
		i++ // ';'
		start := i
		for i < len(s) && s[i] != ';' && s[i] != '=' {
			i++
		}
		if i-start == len(name) && strings.EqualFold(s[start:i], name) {
			return true
		}
		for i < len(s) && s[i] != ';' {
			i++
		}
	}
	return false
}

// getDecoded looks a URI parameter up by its decoded name ("%6C%72" is "lr").
func getDecoded(p Params, name string) (value string, found bool) {
	p.Range(func(n, v string) bool {
		if strings.EqualFold(decodeEscapes(n), name) {
			value, found = v, true
		}
		return !found
	})
	return value, found
}

func isSignificantParam(name string) bool {
	for _, p := range [...]string{"transport", "user", "ttl", "method", "maddr"} {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

func headersEqual(a, b string) bool {
	if a == b {
		return true
	}
	as, bs := strings.Split(a, "&"), strings.Split(b, "&")
	if a == "" || b == "" || len(as) != len(bs) {
		return false
	}
	find := func(list []string, name string) (string, bool) {
		for _, h := range list {
			n, v, _ := strings.Cut(h, "=")
			if strings.EqualFold(decodeEscapes(n), name) {
				return decodeEscapes(v), true
			}
		}
		return "", false
	}
	for _, h := range as {
		n, v, _ := strings.Cut(h, "=")
		other, ok := find(bs, decodeEscapes(n))
		if !ok || other != decodeEscapes(v) {
			return false
		}
	}
	return true
}
