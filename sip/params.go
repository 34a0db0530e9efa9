package sip

import "strings"

// Params is a list of ";name=value" parameters kept as the text that carried
// them, e.g. ";tag=9fxced76sl;lr". Keeping the text avoids an allocation per
// parameter on the hot path and makes an unchanged message serialise byte
// for byte. Names compare case-insensitively. The zero value is an empty
// list; Set and Del return a new list, like strings do.
type Params string

// Get returns the value of the first parameter called name, as it appeared
// (a quoted-string keeps its quotes, see Unquote), and whether the parameter
// is present. A parameter without a value, such as ";lr", returns "", true.
func (p Params) Get(name string) (string, bool) {
	// Get is called several times for each message received (the
	// transport's received and rport, the branch, the tags), and nearly
	// every list is plain: no whitespace, no quoted-string. There a
	// parameter is what lies between two semicolons, which this loop
	// finds testing each byte once; at the first byte that is not plain
	// it leaves the list to the general walk (nextParam), which has to
	// step over whitespace and quotes, and whose quirks with empty
	// parameters (";a=;") show only to an empty name.
	s := string(p)
	if !plainName(name) {
		return p.get(name)
	}
	n := len(name)
	for i := 0; i < len(s); {
		if s[i] == ';' {
			i++
		}
		if len(s)-i >= n && strings.EqualFold(s[i:i+n], name) {
			j := i + n
			if j == len(s) || s[j] == ';' {
				return "", true
			}
			if s[j] == '=' {
				k := j + 1
				for k < len(s) && !paramStop[s[k]] {
					k++
				}
				if k < len(s) && s[k] != ';' {
					return p.get(name)
				}
				return s[j+1 : k], true
			}
		}
		for i < len(s) && !paramStop[s[i]] {
			i++
		}
		if i < len(s) && s[i] != ';' {
			return p.get(name)
		}
	}
	return "", false
}

// paramStop marks the bytes at which Get's plain loop stops: the
// separator, and what only the general walk reads right (whitespace, a
// quoted-string).
var paramStop = [256]bool{';': true, ' ': true, '\t': true, '"': true}

// plainName reports whether name can be looked for by Get's plain loop.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '=' || paramStop[c] {
			return false
		}
	}
	return true
}

// get is Get for any list.
func (p Params) get(name string) (string, bool) {
	for i := 0; i < len(p); {
		n, v, _, next := nextParam(string(p), i)
		if strings.EqualFold(n, name) {
			return v, true
		}
		i = next
	}
	return "", false
}

// Has reports whether the parameter called name is present.
func (p Params) Has(name string) bool {
	_, ok := p.Get(name)
	return ok
}

// Len returns the number of parameters.
func (p Params) Len() int {
	n := 0
	for i := 0; i < len(p); n++ {
		_, _, _, i = nextParam(string(p), i)
	}
	return n
}

// Range calls f for each parameter in order until f returns false.
func (p Params) Range(f func(name, value string) bool) {
	for i := 0; i < len(p); {
		n, v, _, next := nextParam(string(p), i)
		if !f(n, v) {
			return
		}
		i = next
	}
}

// Set returns p with the parameter called name set to value, replacing the
// first one of that name in place or appending it. An empty value makes a
// flag parameter (";lr"). The value is written as given: quote it with Quote
// when it is not a token.
func (p Params) Set(name, value string) Params {
	var b strings.Builder
	done := false
	for i := 0; i < len(p); {
		n, v, hasValue, next := nextParam(string(p), i)
		if !done && strings.EqualFold(n, name) {
			writeParam(&b, name, value, value != "")
			done = true
		} else {
			writeParam(&b, n, v, hasValue)
		}
		i = next
	}
	if !done {
		writeParam(&b, name, value, value != "")
	}
	return Params(b.String())
}

// Del returns p without any parameter called name.
func (p Params) Del(name string) Params {
	if !p.Has(name) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		n, v, hasValue, next := nextParam(string(p), i)
		if !strings.EqualFold(n, name) {
			writeParam(&b, n, v, hasValue)
		}
		i = next
	}
	return Params(b.String())
}

func writeParam(b *strings.Builder, name, value string, hasValue bool) {
	b.WriteByte(';')
	b.WriteString(name)
	if hasValue {
		b.WriteByte('=')
		b.WriteString(value)
	}
}

// nextParam reads the parameter that starts at s[i] (at or before its ';')
// and returns where the next one starts. It never fails: Params are checked
// when parsed, and a hand-made list must not make a reader panic.
func nextParam(s string, i int) (name, value string, hasValue bool, next int) {
	i = skipWS(s, i)
	if i < len(s) && s[i] == ';' {
		i = skipWS(s, i+1)
	}
	start := i
	for i < len(s) && s[i] != '=' && s[i] != ';' && !isWS(s[i]) {
		i++
	}
	name = s[start:i]
	i = skipWS(s, i)
	if i < len(s) && s[i] == '=' {
		hasValue = true
		i = skipWS(s, i+1)
		start = i
		if i < len(s) && s[i] == '"' {
			i, _ = quotedEnd(s, i)
		} else {
			for i < len(s) && s[i] != ';' && !isWS(s[i]) {
				i++
			}
		}
		value = s[start:i]
		i = skipWS(s, i)
	}
	for i < len(s) && s[i] != ';' {
		i++ // junk in a hand-made list: skip to the next separator
	}
	if i == start && i < len(s) {
		i++
	}
	return name, value, hasValue, i
}

// quotedEnd returns the index just past the quoted-string starting at s[i];
// ok is false, and the index len(s), when it is unterminated.
func quotedEnd(s string, i int) (end int, ok bool) {
	// Most quoted strings hold no quoted-pair: the first '"' ends them.
	if q := strings.IndexByte(s[i+1:], '"'); q < 0 {
		return len(s), false
	} else if strings.IndexByte(s[i+1:i+1+q], '\\') < 0 {
		return i + q + 2, true
	}
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return len(s), false
}

// scanParams checks the generic-params that start at s[i] (header context:
// LWS around ";" and "=", values may be tokens, hosts or quoted-strings) and
// returns the index where they end: at a ",", or len(s). Empty names and
// empty values (";;", "tag=") are errors, as RFC 4475 badinv01 requires.
func scanParams(s string, i int) (int, error) {
	for {
		i = skipWS(s, i)
		if i == len(s) || s[i] != ';' {
			return i, nil
		}
		i = skipWS(s, i+1)
		start := i
		for i < len(s) && is(s[i], cToken) {
			i++
		}
		if i == start {
			return i, syntaxError("empty parameter name")
		}
		i = skipWS(s, i)
		if i < len(s) && s[i] == '=' {
			i = skipWS(s, i+1)
			if i < len(s) && s[i] == '"' {
				end, ok := quotedEnd(s, i)
				if !ok {
					return i, syntaxError("unterminated quoted parameter value")
				}
				i = end
				continue
			}
			start = i
			for i < len(s) && is(s[i], cParamVal) {
				i++
			}
			if i == start {
				return i, syntaxError("empty parameter value")
			}
		}
	}
}

// Quote returns s as a quoted-string, escaping '"' and '\'.
func Quote(s string) string {
	var buf [formatBuf]byte
	return string(appendQuoted(buf[:0], s))
}

// appendQuoted appends s as a quoted-string, as Quote returns it.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// Unquote returns the content of a quoted-string with its quoted-pairs
// undone. A value that is not quoted is returned as it is.
func Unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}
