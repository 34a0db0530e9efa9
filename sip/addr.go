package sip

import "strings"

// Address is a name-addr or addr-spec with its header parameters, the value
// of From, To, Contact, Route, Record-Route, Path, Refer-To and the like.
type Address struct {
	// Display is the decoded display name, "" when there is none.
	Display string
	// URI is the address itself.
	URI URI
	// Params are the header parameters after the address (";tag=x",
	// ";expires=60"), not the URI's own.
	Params Params
	// Wildcard is set for "Contact: *" (RFC 3261 §10.2.2), which has no URI.
	Wildcard bool
}

// Tag returns the tag parameter (From and To).
func (a Address) Tag() string {
	t, _ := a.Params.Get("tag")
	return t
}

// ParseAddress parses a single name-addr or addr-spec with parameters.
func ParseAddress(s string) (Address, error) {
	var a Address
	err := parseAddressInto(&a, s)
	return a, err
}

// parseAddressInto parses into a, which may sit in a heap object: filling
// it in place spares a copy of the whole struct per header.
func parseAddressInto(a *Address, s string) error {
	i, err := scanAddress(a, s, 0)
	if err != nil {
		return err
	}
	if i != len(s) {
		return syntaxError("unexpected text after address")
	}
	return nil
}

// scanAddress reads one address starting at s[i] and returns the index just
// after it and its parameters, at a ',' or at the end of s.
// a must be zero: it is usually fresh heap memory, and clearing it again
// would cost a write barrier per pointer while the GC runs.
func scanAddress(a *Address, s string, i int) (int, error) {
	i = skipWS(s, i)
	if i == len(s) {
		return i, syntaxError("empty address")
	}
	var uriText string
	angle := false
	switch {
	case s[i] == '"':
		end, ok := quotedEnd(s, i)
		if !ok {
			return end, syntaxError("unterminated quoted display name")
		}
		a.Display = Unquote(s[i:end])
		i = skipWS(s, end)
		if i == len(s) || s[i] != '<' {
			return i, syntaxError("missing '<' after display name")
		}
		angle = true
	default:
		// Display names made of tokens: scan ahead for '<'.
		j := i
		for j < len(s) && (is(s[j], cToken) || isWS(s[j])) {
			j++
		}
		if j < len(s) && s[j] == '<' {
			if d := trimWS(s[i:j]); d != "" {
				a.Display = d // (a is zero: an empty one need not be written)
			}
			i = j
			angle = true
		}
	}
	if angle {
		end := strings.IndexByte(s[i:], '>')
		if end < 0 {
			return len(s), syntaxError("missing '>'")
		}
		uriText = s[i+1 : i+end]
		i += end + 1
	} else {
		start := i
		for i < len(s) && s[i] != ';' && s[i] != ',' && !isWS(s[i]) {
			i++
		}
		uriText = s[start:i]
		// RFC 3261 §20.10: a URI with a comma, '?' or ';' needs <>.
		if strings.IndexByte(uriText, '?') >= 0 {
			return i, syntaxError("URI with headers must be enclosed in <>")
		}
	}
	var err error
	if err = a.URI.parse(uriText); err != nil {
		return i, err
	}
	start := i
	if i, err = scanParams(s, i); err != nil {
		return i, err
	}
	if p := trimWS(s[start:i]); p != "" {
		a.Params = Params(p)
	}
	i = skipWS(s, i)
	if i < len(s) && s[i] != ',' {
		return i, syntaxError("unexpected text after address")
	}
	return i, nil
}

// scanAddressList parses a comma-separated list of addresses, appending to
// list.
func scanAddressList(list []Address, s string) ([]Address, error) {
	for i := 0; ; {
		list = append(list, Address{})
		end, err := scanAddress(&list[len(list)-1], s, i)
		if err != nil {
			return list, err
		}
		if end == len(s) {
			return list, nil
		}
		i = end + 1 // past ','
	}
}

// String returns the address in name-addr form.
func (a *Address) String() string {
	var buf [formatBuf]byte
	return string(a.AppendTo(buf[:0]))
}

// AppendTo appends the address in name-addr form; the brackets keep URI
// parameters apart from header parameters whatever the URI holds.
func (a *Address) AppendTo(b []byte) []byte {
	if a.Wildcard {
		return append(b, '*')
	}
	if a.Display != "" {
		b = appendQuoted(b, a.Display)
		b = append(b, ' ')
	}
	b = append(b, '<')
	b = a.URI.AppendTo(b)
	b = append(b, '>')
	return append(b, a.Params...)
}
