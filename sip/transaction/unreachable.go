package transaction

import (
	"bytes"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// HandleUnreachable is told by a datagram transport that a message it
// sent to dst came back undeliverable (an ICMP destination unreachable,
// RFC 3261 §18.4); quote is the start of that message, as the ICMP error
// quoted it, and cause says why. The client transaction that sent it ends
// at once as on any transport error: a synthesized 503 and Err wrapping
// ErrTransport and cause. For a CANCEL or an ACK, the INVITE transaction
// of the same branch ends too: its destination is the same.
//
// The transaction is found by the branch and method of the quoted
// request, and must be bound for dst. Anyone can forge an ICMP error, but
// only someone who has seen the request knows its branch, so this is no
// easier than forging a response. A quote cut before the top Via's end
// ends nothing: the transaction then times out as it would have.
//
// It implements transport.UnreachableHandler, does not block, and keeps
// nothing: a report that matches no live transaction is dropped.
func (l *Layer) HandleUnreachable(dst sip.Addr, quote []byte, cause error) {
	method, branch, ok := quotedRequest(quote)
	if !ok {
		l.log.Debug("sip transaction: unreachable report without a request", "dst", dst, "err", cause)
		return
	}
	switch method {
	case sip.MethodAck:
		l.unreachable(clientKey{branch, sip.MethodInvite}, dst, cause)
	case sip.MethodCancel:
		l.unreachable(clientKey{branch, sip.MethodCancel}, dst, cause)
		l.unreachable(clientKey{branch, sip.MethodInvite}, dst, cause)
	default:
		l.unreachable(clientKey{branch, method}, dst, cause)
	}
}

func (l *Layer) unreachable(key clientKey, dst sip.Addr, cause error) {
	l.mu.Lock()
	tx := l.clients[key]
	l.mu.Unlock()
	if tx == nil || !strings.EqualFold(tx.dst.Transport, dst.Transport) ||
		tx.dst.AddrPort.Addr().Unmap() != dst.AddrPort.Addr().Unmap() || tx.dst.AddrPort.Port() != dst.AddrPort.Port() {
		l.log.Debug("sip transaction: unreachable report matches no transaction", "dst", dst, "method", key.method, "branch", key.branch)
		return
	}
	tx.transportError(cause)
}

// quotedRequest reads the method and the top Via's branch of a request
// from the start of its bytes: the request line, then the first Via
// header line, which must be whole. ok is false for a response, for
// anything else that is not a request, and for a branch without the
// RFC 3261 magic cookie (this layer's client transactions all have it).
func quotedRequest(b []byte) (method, branch string, ok bool) {
	line, rest, found := cutLine(b)
	if !found {
		return "", "", false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !bytes.HasSuffix(line, []byte(" SIP/2.0")) || !sip.IsToken(string(line[:sp])) {
		return "", "", false // a response starts with "SIP/2.0 "
	}
	method = string(line[:sp])
	for len(rest) > 0 {
		line, rest, found = cutLine(rest)
		if !found || len(line) == 0 {
			return "", "", false // cut off, or the end of the headers
		}
		name, value, hasColon := bytes.Cut(line, []byte{':'})
		if !hasColon {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("Via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		vias, err := sip.ParseVia(string(bytes.TrimSpace(value)))
		if err != nil || len(vias) == 0 {
			return "", "", false
		}
		branch = vias[0].Branch()
		if !strings.HasPrefix(branch, sip.BranchCookie) {
			return "", "", false
		}
		return method, branch, true
	}
	return "", "", false
}

// cutLine splits b after its first line, which ends in LF (or CRLF) and
// is returned without it; found is false when b has no line end.
func cutLine(b []byte) (line, rest []byte, found bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:], true
}
