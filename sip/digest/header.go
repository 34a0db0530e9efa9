package digest

import (
	"fmt"
	"strings"

	"github.com/switchboard/switchboard/internal/ascii"
)

// Header grammar shared by challenges and credentials (RFC 3261 §25.1,
// RFC 7616 §3.3-3.4): scheme LWS auth-param *(COMMA auth-param), where a
// value is a token or a quoted-string. The reader is deliberately tolerant
// of whitespace, folding and empty list elements, and strict about
// everything that could make two parsers disagree (duplicates, stray
// characters, control characters).

func isLWS(c byte) bool { return charClass[c]&cLWS != 0 }

// isCTL reports control characters, which a header value cannot carry
// (HTAB excepted: it is whitespace).
func isCTL(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

// isTokenChar accepts the union of the SIP (RFC 3261) and HTTP (RFC 9110)
// token alphabets, so names from either world parse.
func isTokenChar(c byte) bool { return charClass[c]&cToken != 0 }

// Character classes, one table load per byte: parsing an Authorization
// header looks at each of its ~300 bytes once or twice per REGISTER.
const (
	cToken  = 1 << iota // isTokenChar
	cQuoted             // a quoted-string byte unquote passes over: not '"', '\\' or a control
	cLWS                // isLWS
	cBare               // isBareChar
)

var charClass = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0 {
			t[c] |= cToken
		}
		if b != '"' && b != '\\' && !isCTL(b) {
			t[c] |= cQuoted
		}
		if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			t[c] |= cLWS
		}
		if b > ' ' && b != 0x7f && b != ',' && b != '"' {
			t[c] |= cBare
		}
	}
	return t
}()

// isBareChar accepts what may appear in an unquoted value. It is wider than
// token because real servers send unquoted base64 nonces ('/', '=').
func isBareChar(c byte) bool { return charClass[c]&cBare != 0 }

func skipLWS(s string) string {
	for len(s) > 0 && isLWS(s[0]) {
		s = s[1:]
	}
	return s
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parseAuth checks that v is a Digest header value and calls fn for each
// auth-param in order.
func parseAuth(v string, fn func(name, value string) error) error {
	s := skipLWS(v)
	n := 0
	for n < len(s) && isTokenChar(s[n]) {
		n++
	}
	if n == 0 {
		return malformed("missing auth scheme")
	}
	if scheme := s[:n]; !strings.EqualFold(scheme, "Digest") {
		return fmt.Errorf("%w %q", ErrUnsupportedScheme, scheme)
	}
	s = s[n:]
	if s != "" && !isLWS(s[0]) {
		return malformed("no space after scheme")
	}
	for {
		for len(s) > 0 && (isLWS(s[0]) || s[0] == ',') {
			s = s[1:]
		}
		if s == "" {
			return nil
		}
		n := 0
		for n < len(s) && isTokenChar(s[n]) {
			n++
		}
		if n == 0 {
			return malformed("bad character %q", s[0])
		}
		name := s[:n]
		s = skipLWS(s[n:])
		if s == "" || s[0] != '=' {
			return malformed("missing value for %s", name)
		}
		s = skipLWS(s[1:])
		var value string
		if s != "" && s[0] == '"' {
			var err error
			if value, s, err = unquote(s); err != nil {
				return fmt.Errorf("%w in %s", err, name)
			}
		} else {
			n := 0
			for n < len(s) && isBareChar(s[n]) {
				n++
			}
			if n == 0 {
				return malformed("missing value for %s", name)
			}
			value, s = s[:n], s[n:]
		}
		s = skipLWS(s)
		if s != "" && s[0] != ',' {
			return malformed("missing comma after %s", name)
		}
		if err := fn(name, value); err != nil {
			return err
		}
	}
}

// unquote reads the quoted-string at the start of s and returns its content
// and the remaining input. It allocates only when the string has escapes.
func unquote(s string) (value, rest string, err error) {
	var b []byte
	escaped := false
	start := 1
	for i := 1; i < len(s); i++ {
		if i = plainRun(s, i); i == len(s) {
			break
		}
		switch c := s[i]; {
		case c == '"':
			if !escaped {
				return s[1:i], s[i+1:], nil
			}
			b = append(b, s[start:i]...)
			return string(b), s[i+1:], nil
		case c == '\\':
			if i+1 == len(s) || isCTL(s[i+1]) {
				return "", "", malformed("bad escape")
			}
			escaped = true
			b = append(b, s[start:i]...)
			b = append(b, s[i+1])
			i++
			start = i + 1
		case isCTL(c):
			return "", "", malformed("control character")
		}
	}
	return "", "", malformed("unterminated quoted string")
}

// plainRun returns the end of the run of bytes from s[i] on that unquote
// passes over (class cQuoted). It tests eight bytes at a time for '"',
// '\\', DEL or a byte below SP, with the bit tricks of "Bit Twiddling
// Hacks" (a byte is zero, a byte is less than n: exact for whether any
// is), then ends the run a byte at a time. HTAB, which a quoted-string may
// hold, stops the eight-byte steps only.
func plainRun(s string, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q, bs, del := x^(ones*'"'), x^(ones*'\\'), x^(ones*0x7f)
		if ((x-ones*' ')&^x|(q-ones)&^q|(bs-ones)&^bs|(del-ones)&^del)&highs != 0 {
			break
		}
	}
	for i < len(s) && charClass[s[i]]&cQuoted != 0 {
		i++
	}
	return i
}

// writer formats "Digest name=value, ...".
type writer struct {
	b     strings.Builder
	first bool
}

// start begins the value. A writer is a local of the String that uses it
// (not made by a constructor) so that it stays on the stack: only the
// Builder's buffer, which becomes the string, is allocated.
func (w *writer) start() {
	w.first = true
	w.b.Grow(256)
	w.b.WriteString("Digest ")
}

func (w *writer) name(name string) {
	if !w.first {
		w.b.WriteString(", ")
	}
	w.first = false
	w.b.WriteString(name)
	w.b.WriteByte('=')
}

// quoted writes a quoted-string. Control characters are dropped rather than
// escaped: no escape can carry CR or LF, and emitting them would let a value
// inject a header line.
func (w *writer) quoted(name, value string) {
	w.name(name)
	w.b.WriteByte('"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '"' || c == '\\':
			w.b.WriteByte('\\')
			w.b.WriteByte(c)
		case isCTL(c):
		default:
			w.b.WriteByte(c)
		}
	}
	w.b.WriteByte('"')
}

// bare writes a value the RFCs leave unquoted (algorithm, stale, qop, nc),
// falling back to quoting when the value could not be read back unquoted.
func (w *writer) bare(name, value string) {
	ok := value != ""
	for i := 0; ok && i < len(value); i++ {
		ok = isBareChar(value[i])
	}
	if !ok {
		w.quoted(name, value)
		return
	}
	w.name(name)
	w.b.WriteString(value)
}

func (w *writer) String() string { return w.b.String() }

// paramSet records which known parameters were seen, to reject duplicates:
// two parsers picking different copies is how authentication gets bypassed.
type paramSet uint32

func (p *paramSet) add(bit uint, name string) error {
	if *p&(1<<bit) != 0 {
		return malformed("duplicate %s", strings.ToLower(name))
	}
	*p |= 1 << bit
	return nil
}

func (p paramSet) has(bit uint) bool { return p&(1<<bit) != 0 }

// lookupParam returns the index of name, a token, in names, which are
// lowercase letters, case-insensitively, or -1.
func lookupParam(names []string, name string) int {
	for i, n := range names {
		if ascii.EqualFold(n, name) {
			return i
		}
	}
	return -1
}
