package transport

import (
	"errors"

	"github.com/switchboard/switchboard/sip"
)

// ErrUnreachable means a datagram came back undeliverable: an ICMP
// destination unreachable (port, host, network or protocol) or parameter
// problem answered it, which RFC 3261 §18.4 makes a failure to send.
var ErrUnreachable = errors.New("destination unreachable")

// UnreachableHandler is implemented by a Handler that wants to know when
// a datagram sent to dst could not be delivered (RFC 3261 §18.4): the
// transaction layer ends the transaction that sent it, at once, rather
// than retransmitting to a closed port until its timer runs out.
//
// quote is the start of that datagram as the ICMP message quoted it: a
// few hundred bytes, valid only during the call. An ICMP message is as
// easy to forge as any datagram, so quote, not dst alone, must tie it to
// what was sent. cause wraps ErrUnreachable and the system's error.
//
// Datagram transports look for the method with a type assertion on their
// Handler. Like the Handler's, it is called from a read loop and must not
// block.
type UnreachableHandler interface {
	HandleUnreachable(dst sip.Addr, quote []byte, cause error)
}

// HandleUnreachable makes the Layer an UnreachableHandler, for a transport
// served outside it: it passes the report on like one from an added
// transport.
func (l *Layer) HandleUnreachable(dst sip.Addr, quote []byte, cause error) {
	l.unreachable(dst, quote, cause)
}

func (f *feed) HandleUnreachable(dst sip.Addr, quote []byte, cause error) {
	f.l.unreachable(dst, quote, cause)
}

// unreachable passes a report to the upper Handler at once, without the
// queue: it is rare, cheap for the transaction layer, and the sooner a
// dead destination is known, the fewer retransmissions go to it.
func (l *Layer) unreachable(dst sip.Addr, quote []byte, cause error) {
	r := l.active.Load()
	if r == nil {
		return
	}
	if u, ok := r.upper.(UnreachableHandler); ok {
		u.HandleUnreachable(dst, quote, cause)
	}
}

// HandleUnreachable calls f.Unreachable.
func (f HandlerFuncs) HandleUnreachable(dst sip.Addr, quote []byte, cause error) {
	if f.Unreachable != nil {
		f.Unreachable(dst, quote, cause)
	}
}
