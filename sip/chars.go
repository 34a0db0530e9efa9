package sip

// Character classes of the RFC 3261 §25 grammar, as bit flags in one table so
// that every scanner tests a byte with a single load.
const (
	cAlnum    uint16 = 1 << iota
	cToken           // token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
	cMark            // mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
	cUserUnr         // user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
	cPassUnr         // password extras = "&" / "=" / "+" / "$" / ","
	cParamUnr        // param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
	cHnvUnr          // hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
	cWord            // word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
	cHost            // hostname and IPv4 characters: alphanum "-" "." and, leniently, "_"
	cUTF8            // octets of a multi-byte UTF-8 sequence (UTF8-NONASCII)
	cParamVal        // unquoted header parameter value: token, host, ":" "[" "]"
)

var charClass = func() (t [256]uint16) {
	set := func(chars string, c uint16) {
		for i := 0; i < len(chars); i++ {
			t[chars[i]] |= c
		}
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= cAlnum | cToken | cWord | cHost
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cAlnum | cToken | cWord | cHost
		t[c-32] |= cAlnum | cToken | cWord | cHost
	}
	set("-.!%*_+`'~", cToken)
	set("-_.!~*'()", cMark)
	set("&=+$,;?/", cUserUnr)
	set("&=+$,", cPassUnr)
	set("[]/:&+$", cParamUnr)
	set("[]/?:+$", cHnvUnr)
	set("-.!%*_+`'~()<>:\\\"/[]?{}", cWord)
	set("-._", cHost)
	for c := range t {
		if t[c]&(cToken|cHost) != 0 || c == ':' || c == '[' || c == ']' {
			t[c] |= cParamVal
		}
	}
	for c := 0x80; c <= 0xFF; c++ {
		t[c] |= cUTF8
	}
	return t
}()

func is(c byte, class uint16) bool { return charClass[c]&class != 0 }

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !is(s[i], cToken) {
			return false
		}
	}
	return true
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// trimWS trims SP and HTAB, which is all LWS can be once folding is undone.
func trimWS(s string) string {
	i, j := 0, len(s)
	for i < j && isWS(s[i]) {
		i++
	}
	for j > i && isWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

func skipWS(s string, i int) int {
	for i < len(s) && isWS(s[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// parseUint parses a run of decimal digits (leading zeros allowed, as in
// "Max-Forwards: 0068") and fails beyond max rather than wrapping around.
func parseUint(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > max {
			return 0, false
		}
	}
	return n, true
}

// lowerASCII reports s in lower case, allocating only when s has upper case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 32
				}
			}
			return string(b)
		}
	}
	return s
}
