package forwarded

import (
	"slices"
	"strings"
)

// ParseForwarded reads the hops of Forwarded field values (RFC 7239), the
// farthest first: one per element, from its for= and proto= parameters.
// An element that does not parse, lacks for=, or names no address is an
// invalid hop. At most MaxHops are read, from the right; when there are
// more, the first is an invalid hop that stands for the rest.
//
// Each field value is split into elements from its right end, so that the
// elements the trusted proxies appended are read correctly whatever the
// client wrote before them, an unclosed quote included.
func ParseForwarded(values []string) []Hop {
	var hops []Hop
values:
	for i := len(values) - 1; i >= 0; i-- {
		for elem := range elementsFromRight(values[i]) {
			if len(hops) == MaxHops {
				hops = append(hops, Hop{})
				break values
			}
			hops = append(hops, parseElement(elem))
		}
	}
	slices.Reverse(hops)
	return hops
}

// elementsFromRight yields the comma-separated elements of one Forwarded
// field value, last first. Commas inside quoted strings do not split.
// Scanning from the right, a quote ends a quoted string unless an odd
// number of backslashes precede it (a quoted-pair); what is left when a
// quoted string never ends is yielded whole, and does not parse.
func elementsFromRight(v string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		end := len(v)
		quoted := false
		for i := len(v) - 1; i >= 0; i-- {
			switch c := v[i]; {
			case quoted:
				if c == '"' && backslashesBefore(v, i)%2 == 0 {
					quoted = false
				}
			case c == '"':
				quoted = true
			case c == ',':
				if !yield(v[i+1 : end]) {
					return
				}
				end = i
			}
		}
		yield(v[:end])
	}
}

// backslashesBefore counts the backslashes right before v[i].
func backslashesBefore(v string, i int) int {
	n := 0
	for i--; i >= 0 && v[i] == '\\'; i-- {
		n++
	}
	return n
}

// parseElement reads one forwarded-element: forwarded-pairs separated by
// semicolons, each token "=" (token / quoted-string), no parameter twice.
// Spaces around pairs are tolerated. Unquoted values are read leniently
// (up to the next semicolon), since proxies write for=192.0.2.1:4000
// without the quotes the grammar asks for; the hop is valid only with a
// for= that names an address.
func parseElement(s string) Hop {
	var h Hop
	seen := map[string]bool{}
	haveFor := false
	for s = trimOWS(s); s != ""; {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return Hop{}
		}
		name := strings.ToLower(trimOWS(s[:eq]))
		if !isToken(name) || seen[name] {
			return Hop{}
		}
		seen[name] = true
		s = trimOWS(s[eq+1:])
		var value string
		if strings.HasPrefix(s, `"`) {
			var ok bool
			if value, s, ok = quotedString(s); !ok {
				return Hop{}
			}
			s = trimOWS(s)
		} else {
			i := strings.IndexByte(s, ';')
			if i < 0 {
				i = len(s)
			}
			value, s = trimOWS(s[:i]), s[i:]
			if value == "" || strings.ContainsAny(value, "\" \t") {
				return Hop{}
			}
		}
		switch name {
		case "for":
			ap, err := ParseNode(value)
			if err != nil {
				return Hop{}
			}
			h.Addr, haveFor = ap, true
		case "proto":
			h.Proto = scheme(value)
		}
		if s == "" {
			break
		}
		if s[0] != ';' {
			return Hop{}
		}
		s = trimOWS(s[1:])
	}
	if !haveFor {
		return Hop{}
	}
	return h
}

// quotedString reads the quoted-string at the start of s and returns its
// value, unescaped, and what follows it.
func quotedString(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		default:
			if c < ' ' && c != '\t' || c == 0x7f {
				return "", "", false
			}
			b.WriteByte(c)
		}
	}
	return "", "", false
}

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
