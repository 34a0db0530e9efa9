package sip

import (
	"bytes"
	"strconv"
	"strings"
)

// RejectBytes builds the stateless answer to a request that failed to
// parse: the status and reason of perr, with the Via, From, To, Call-ID and
// CSeq lines copied as they came, so the sender can match it to its
// transaction and stop retransmitting. ok is false when data is not a
// request or has no usable Via: then nothing can be sent, and the caller
// only logs.
func RejectBytes(data []byte, perr *ParseError) (resp []byte, ok bool) {
	s := string(bytes.TrimLeft(data, "\r\n"))
	if perr == nil || perr.Status < 300 || len(s) < 4 || strings.EqualFold(s[:4], "SIP/") {
		return nil, false
	}
	if end, _ := headerEnd(s); end >= 0 {
		s = s[:end]
	}
	_, s, _ = strings.Cut(s, "\n")
	var out []byte
	out = append(out, "SIP/2.0 "...)
	out = strconv.AppendInt(out, int64(perr.Status), 10)
	out = append(out, ' ')
	out = append(out, perr.Reason...)
	out = append(out, "\r\n"...)
	vias, seen := 0, uint64(0)
	for s != "" {
		var line string
		line, s = nextLogicalLine(s)
		name, value, found := strings.Cut(line, ":")
		if !found || isWS(line[0]) {
			continue
		}
		id := lookupHeader(trimWS(name))
		if strings.IndexByte(value, '\n') >= 0 {
			value = unfold(value) // as the parser does, and only then
		}
		value = trimWS(value)
		// Copy only lines that parse, and one of each single-value header,
		// so that the answer is itself a well-formed message.
		var err error
		switch id {
		case hVia:
			_, err = ParseVia(value)
			if err == nil {
				vias++
			}
		case hTo:
			var a Address
			if a, err = ParseAddress(value); err == nil && a.Tag() == "" {
				line = "To: " + a.String() + ";tag=" + NewTag()
			}
		case hFrom:
			_, err = ParseAddress(value)
		case hCallID:
			if !isCallID(value) {
				err = ErrMalformed
			}
		case hCSeq:
			_, err = ParseCSeq(value)
		default:
			continue
		}
		if err != nil || id != hVia && seen&(1<<id) != 0 {
			continue
		}
		seen |= 1 << id
		out = append(out, line...)
		out = append(out, "\r\n"...)
	}
	if vias == 0 {
		return nil, false
	}
	out = append(out, "Content-Length: 0\r\n\r\n"...)
	return out, true
}

// nextLogicalLine returns the first header line of s with its folded
// continuation lines, without the final line break, and the rest of s.
func nextLogicalLine(s string) (line, rest string) {
	end := 0
	for {
		j := strings.IndexByte(s[end:], '\n')
		if j < 0 {
			return strings.TrimSuffix(s, "\r"), ""
		}
		end += j + 1
		if end < len(s) && isWS(s[end]) {
			continue
		}
		return strings.TrimSuffix(strings.TrimSuffix(s[:end], "\n"), "\r"), s[end:]
	}
}
