package siptcp

import (
	"bytes"

	"github.com/switchboard/switchboard/sip"
)

// initialBuf is the read buffer a connection starts with; most SIP
// messages fit, and a connection that needed more shrinks back to it once
// its buffer is empty.
const initialBuf = 4 << 10

// framer cuts a byte stream into SIP messages (RFC 3261 §18.3) with
// sip.Parser.Frame and spots the keep-alives of RFC 5626 §4.4.1. It owns
// the connection's read buffer, which never grows beyond the parser's
// MaxMessageSize plus one byte: enough to hold any acceptable message, and
// to see that a message is too large.
//
// Frame rescans the header section at each call, so the framer calls it
// only when that can give something new: when the empty line that ends the
// header section has arrived (searched for incrementally), and then once
// the body announced by Content-Length is all there. A sender trickling a
// large message byte by byte thus costs linear time, not quadratic.
type framer struct {
	parser *sip.Parser
	limit  int // capacity bound: MaxMessageSize+1

	buf        []byte // pending bytes are buf[start:end]
	start, end int

	// Progress on the pending message, relative to start.
	scanned int // the header end was searched for up to here
	bodyAt  int // where the body starts once the header end is found, else 0
	need    int // the whole message's length once known from Content-Length, else 0

	crlf int // CR and LF octets seen in a row between messages
}

// event is what next found in the buffer.
type event int

const (
	none    event = iota // need more bytes
	message              // a whole message
	ping                 // "\r\n\r\n": answer with "\r\n" (RFC 5626 §4.4.1)
)

func newFramer(p *sip.Parser, maxMessage int) *framer {
	return &framer{parser: p, limit: maxMessage + 1}
}

// space returns the free end of the buffer for the next read: never empty
// while the framer is usable, since pending bytes never exceed limit-1
// without next reporting an error.
func (f *framer) space() []byte {
	if f.start == f.end {
		f.start, f.end = 0, 0
		if cap(f.buf) > 4*initialBuf || f.buf == nil {
			f.buf = make([]byte, min(initialBuf, f.limit))
		}
	}
	if f.end == len(f.buf) {
		if f.start > 0 {
			f.end = copy(f.buf, f.buf[f.start:f.end])
			f.start = 0
		} else if len(f.buf) < f.limit {
			nb := make([]byte, min(2*len(f.buf), f.limit))
			copy(nb, f.buf[:f.end])
			f.buf = nb
		}
	}
	return f.buf[f.end:]
}

// wrote records n bytes read into space().
func (f *framer) wrote(n int) { f.end += n }

// pending returns the bytes not yet framed.
func (f *framer) pending() []byte { return f.buf[f.start:f.end] }

// next returns the next event in the buffer. A message is valid until the
// next call to space. After an error the stream cannot be resynchronised:
// answer what can be answered and close.
func (f *framer) next() (event, []byte, error) {
	for {
		if f.crlf >= 4 {
			f.crlf -= 4
			return ping, nil, nil
		}
		p := f.pending()
		if len(p) == 0 {
			return none, nil, nil
		}
		if p[0] == '\r' || p[0] == '\n' {
			// A run of CR/LF, never an error. Four or more make a ping
			// (answered at the top of the loop); a lone CRLF is the pong
			// to a ping of ours, or slack after a message: ignored. The
			// count resets at each message.
			n, _, _ := f.parser.Frame(p)
			f.crlf += n
			f.start += n
			continue
		}
		if !f.ready(p) {
			return none, nil, nil
		}
		// p does not start with CR or LF, so what Frame finds is a message.
		n, _, err := f.parser.Frame(p)
		if err != nil {
			return none, nil, err
		}
		if n == 0 {
			if f.bodyAt > 0 && f.need == 0 {
				f.need = contentLength(p[:f.bodyAt], f.bodyAt)
			}
			return none, nil, nil
		}
		msg := p[:n]
		f.start += n
		f.scanned, f.bodyAt, f.need, f.crlf = 0, 0, 0, 0
		return message, msg, nil
	}
}

// ready reports whether Frame may find something new in p.
func (f *framer) ready(p []byte) bool {
	if len(p) >= f.limit {
		return true // over the limit: let Frame say so
	}
	if f.bodyAt == 0 {
		f.bodyAt = f.findHeaderEnd(p)
		return f.bodyAt > 0
	}
	return f.need == 0 || len(p) >= f.need
}

// findHeaderEnd searches p from where the last search stopped for the
// empty line that ends the header section, as the parser does: a LF
// followed by LF or CRLF. It returns where the body starts, or 0.
func (f *framer) findHeaderEnd(p []byte) int {
	i := f.scanned
	for {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			f.scanned = len(p)
			return 0
		}
		k := i + j + 1
		switch {
		case k < len(p) && p[k] == '\n':
			return k + 1
		case k+1 < len(p) && p[k] == '\r' && p[k+1] == '\n':
			return k + 2
		case k >= len(p) || k+1 >= len(p) && p[k] == '\r':
			f.scanned = i + j // decide when more bytes come
			return 0
		}
		i = k
	}
}

// contentLength returns the length of the whole message whose header
// section is head, from its Content-Length (or "l"), or 0 when it cannot
// tell; Frame stays the judge, this only spares calls to it.
func contentLength(head []byte, bodyAt int) int {
	cl := -1
	// The start line is not a header, as for Frame.
	_, head, _ = bytes.Cut(head, []byte("\n"))
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.Trim(name, " \t")
		if !bytes.EqualFold(name, []byte("Content-Length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		value = bytes.Trim(bytes.TrimSuffix(value, []byte("\r")), " \t")
		n := 0
		for _, c := range value {
			if c < '0' || c > '9' || n > 1<<30 {
				return 0
			}
			n = n*10 + int(c-'0')
		}
		if len(value) == 0 || cl >= 0 && cl != n {
			return 0
		}
		cl = n
	}
	if cl < 0 {
		return 0
	}
	return bodyAt + cl
}
