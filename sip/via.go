package sip

import "strconv"

// BranchCookie starts every RFC 3261 branch (§8.1.1.7); a branch without it
// comes from an RFC 2543 element and needs the old matching rules.
const BranchCookie = "z9hG4bK"

// Via is one Via header value (RFC 3261 §20.42).
type Via struct {
	// Transport is the transport token as sent: "UDP", "TCP", "TLS", "SCTP",
	// "WS", "WSS", or an extension.
	Transport string
	// Host is the sent-by host, an IPv6 address without brackets.
	Host string
	// Port is the sent-by port, 0 when absent.
	Port int
	// Params are the via-params: branch, received, rport, maddr, ttl...
	Params Params
}

// Branch returns the branch parameter.
func (v *Via) Branch() string {
	b, _ := v.Params.Get("branch")
	return b
}

// RPort returns the rport parameter's value (RFC 3581). present is true for
// a bare ";rport", which asks the server to fill it in.
func (v *Via) RPort() (port int, present bool) {
	s, ok := v.Params.Get("rport")
	if !ok {
		return 0, false
	}
	p, _ := strconv.Atoi(s)
	return p, true
}

// Received returns the received parameter.
func (v *Via) Received() string {
	r, _ := v.Params.Get("received")
	return r
}

// SentBy returns host[:port].
func (v *Via) SentBy() string { return JoinHostPort(v.Host, v.Port) }

// String returns the Via value.
func (v *Via) String() string {
	var buf [formatBuf]byte
	return string(v.AppendTo(buf[:0]))
}

// formatBuf is the size of the stack buffer a value's String formats
// into before copying it to its string: a Via with its branch, a To
// with its tag and a Contact URI fit, so that formatting one allocates
// only the string.
const formatBuf = 256

// AppendTo appends the Via value to b.
func (v *Via) AppendTo(b []byte) []byte {
	b = append(b, "SIP/2.0/"...)
	b = append(b, v.Transport...)
	b = append(b, ' ')
	b = appendHostPort(b, v.Host, v.Port)
	return append(b, v.Params...)
}

// scanVia reads one via-parm at s[i] and returns the index after it, at a
// ',' or the end of s. LWS is allowed around '/', ':', ';' and '='.
// v must be zero (see scanAddress).
func scanVia(v *Via, s string, i int) (int, error) {
	tok := func() string {
		i = skipWS(s, i)
		start := i
		for i < len(s) && is(s[i], cToken) {
			i++
		}
		return s[start:i]
	}
	slash := func() bool {
		i = skipWS(s, i)
		if i < len(s) && s[i] == '/' {
			i++
			return true
		}
		return false
	}
	if name := tok(); !isSIP(name) || !slash() {
		return i, syntaxError("invalid sent-protocol")
	}
	if version := tok(); version != "2.0" || !slash() {
		return i, syntaxError("invalid sent-protocol version")
	}
	if v.Transport = tok(); v.Transport == "" {
		return i, syntaxError("missing transport")
	}
	if i == len(s) || !isWS(s[i]) {
		return i, syntaxError("missing sent-by")
	}
	i = skipWS(s, i)
	host, n, err := scanHost(s[i:])
	if err != nil {
		return i, err
	}
	v.Host = host
	i += n
	if j := skipWS(s, i); j < len(s) && s[j] == ':' {
		j = skipWS(s, j+1)
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		p, ok := parseUint(s[j:k], 65535)
		if !ok {
			return k, syntaxError("invalid sent-by port")
		}
		v.Port = int(p)
		i = k
	}
	start := i
	if i, err = scanParams(s, i); err != nil {
		return i, err
	}
	v.Params = Params(trimWS(s[start:i]))
	i = skipWS(s, i)
	if i < len(s) && s[i] != ',' {
		return i, syntaxError("unexpected text in Via")
	}
	return i, nil
}

// isSIP reports whether s is "SIP" in any case.
func isSIP(s string) bool {
	return len(s) == 3 && s[0]|0x20 == 's' && s[1]|0x20 == 'i' && s[2]|0x20 == 'p'
}

// ParseVia parses a Via header value, which may hold several via-parms.
func ParseVia(s string) ([]Via, error) {
	return scanViaList(nil, s)
}

func scanViaList(list []Via, s string) ([]Via, error) {
	for i := 0; ; {
		list = append(list, Via{})
		end, err := scanVia(&list[len(list)-1], s, i)
		if err != nil {
			return list, err
		}
		if end == len(s) {
			return list, nil
		}
		i = end + 1
	}
}

// CSeq is the CSeq header (RFC 3261 §20.16).
type CSeq struct {
	Seq    uint32
	Method string
}

// String returns the CSeq value.
func (c CSeq) String() string {
	return strconv.FormatUint(uint64(c.Seq), 10) + " " + c.Method
}

// ParseCSeq parses a CSeq value. The number must fit in 32 bits (RFC 4475
// scalar02).
func ParseCSeq(s string) (CSeq, error) {
	s = trimWS(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, ok := parseUint(s[:i], 1<<32-1)
	if !ok {
		return CSeq{}, syntaxError("invalid CSeq number")
	}
	if i == len(s) || !isWS(s[i]) {
		return CSeq{}, syntaxError("missing CSeq method")
	}
	m := trimWS(s[i:])
	if !isToken(m) {
		return CSeq{}, syntaxError("invalid CSeq method")
	}
	return CSeq{Seq: uint32(n), Method: m}, nil
}
