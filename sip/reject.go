package sip

import (
	"bytes"
	"strconv"
	"strings"
)

// RejectBytes builds the stateless answer to a request that failed to
// parse: the status and reason of perr, with the Via, From, To, Call-ID and
// CSeq lines copied as they came, so the sender can match it to its
// transaction and stop retransmitting. When no Via parses, the protocol and
// sent-by of the first are kept without its parameters. ok is false when
// data is not a request or has no Via with a usable sent-by: then nothing
// can be sent, and the caller only logs.
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
	var badVia string // the first Via value that did not parse
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
			} else if badVia == "" {
				badVia = value
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
		// Every Via is malformed (RFC 4475 badinv01 wants a 400 all the
		// same). The transport answers to the source address anyway; the
		// answer needs a Via to be a response at all, so keep the part of
		// the first one before its parameters when that much parses.
		sentBy, _, _ := strings.Cut(badVia, ",")
		sentBy, _, _ = strings.Cut(sentBy, ";")
		sentBy = trimWS(sentBy)
		if sentBy == "" {
			return nil, false
		}
		if _, err := ParseVia(sentBy); err != nil {
			return nil, false
		}
		out = append(out, "Via: "...)
		out = append(out, sentBy...)
		out = append(out, "\r\n"...)
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
