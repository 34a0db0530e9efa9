package dialog

import (
	"fmt"
	"math"

	"github.com/switchboard/switchboard/sip"
)

// maxForwards is the Max-Forwards of every request built here (RFC 3261
// §8.1.1.6).
const maxForwards = "70"

// NewRequest builds a request within the dialog (RFC 3261 §12.2.1.1):
//
//   - To is the remote URI with the remote tag, From the local URI with the
//     local tag, Call-ID the dialog's;
//   - CSeq is the local sequence number incremented by one, or a random
//     initial value below 2^31 when it was unset (at the UAS);
//   - with an empty route set, the Request-URI is the remote target;
//   - when the first route has the lr parameter (loose routing), the
//     Request-URI is the remote target and Route lists the route set;
//   - otherwise (strict routing), the Request-URI is the first route's URI
//     and Route lists the rest of the route set followed by the remote
//     target;
//   - a Request-URI never keeps URI headers or a method parameter, which
//     RFC 3261 §19.1.1 does not allow there;
//   - Max-Forwards is 70, Content-Length 0 (set a body with
//     [sip.Request.SetBody]);
//   - Contact is the local Contact, for target refresh requests (INVITE,
//     UPDATE, SUBSCRIBE, NOTIFY) when the dialog has one.
//
// The request has no Via: the sending side adds it (transport, sent-by and a
// fresh [sip.NewBranch]) before it hands the request to the transaction
// layer, since only it knows the transport. Where to send is the caller's
// choice too: to the first Route, or to the Request-URI when there is none
// (RFC 3261 §8.1.2), over TLS when [Dialog.Secure] is set.
//
// A BYE terminates the dialog as soon as it is built (RFC 3261 §15.1.1: the
// session ends when the BYE is sent). In an early dialog, INVITE is refused,
// and BYE is refused at the UAS (RFC 3261 §15), with [ErrNotConfirmed]. ACK
// and CANCEL are refused with [ErrBadMethod]: see [Dialog.NewAck]; a CANCEL
// is built from the INVITE it cancels. A terminated dialog refuses every
// request with [ErrTerminated].
func (d *Dialog) NewRequest(method string) (*sip.Request, error) {
	switch {
	case !isToken(method):
		return nil, fmt.Errorf("%w: %q is not a method", ErrBadMethod, method)
	case method == sip.MethodAck:
		return nil, fmt.Errorf("%w: use NewAck to build an ack", ErrBadMethod)
	case method == sip.MethodCancel:
		return nil, fmt.Errorf("%w: cancel is built from the invite, not the dialog", ErrBadMethod)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.state == Terminated:
		return nil, fmt.Errorf("%w: cannot send %s", ErrTerminated, method)
	case d.state == Early && method == sip.MethodInvite:
		return nil, fmt.Errorf("%w: no re-invite in an early dialog", ErrNotConfirmed)
	case d.state == Early && method == sip.MethodBye && !d.uac:
		return nil, fmt.Errorf("%w: the callee cannot send bye in an early dialog", ErrNotConfirmed)
	}
	var seq uint32
	switch {
	case !d.localSeqSet:
		seq = initialSeq()
	case d.localSeq == math.MaxUint32:
		return nil, ErrCSeqExhausted
	default:
		seq = d.localSeq + 1
	}
	req := d.build(method, seq, isTargetRefresh(method))
	req.Add("Content-Length", "0")
	d.localSeq, d.localSeqSet = seq, true
	if method == sip.MethodBye {
		d.state = Terminated
	}
	return req, nil
}

// AckOption changes an ACK built by [Dialog.NewAck] before its
// Content-Length is added.
type AckOption func(ack *sip.Request)

// WithCredentials copies the Authorization and Proxy-Authorization lines of
// invite into the ACK: an ACK to a 2xx carries the same credentials as the
// INVITE it acknowledges (RFC 3261 §13.2.2.4). invite is only read.
func WithCredentials(invite *sip.Request) AckOption {
	return func(ack *sip.Request) {
		ack.CopyFrom(&invite.Headers, "Authorization")
		ack.CopyFrom(&invite.Headers, "Proxy-Authorization")
	}
}

// NewAck builds the ACK for a 2xx response to the INVITE (initial or re-)
// whose CSeq number is inviteCSeq (RFC 3261 §13.2.2.4). It is built like any
// request in the dialog, without Contact, with CSeq "inviteCSeq ACK", and
// leaves the local sequence number alone. Like every request here it has no
// Via: the caller adds one with a new branch and sends the ACK through the
// transport directly, as an ACK to a 2xx is not a transaction.
//
// The dialog must be, or have been, confirmed: a 2xx retransmitted after the
// dialog was terminated (by the BYE that follows the ACK of an unwanted fork,
// say) must still be acknowledged. An early dialog gives [ErrNotConfirmed];
// a CSeq above the local sequence number, which this side never sent,
// [ErrCSeqOutOfOrder].
func (d *Dialog) NewAck(inviteCSeq uint32, opts ...AckOption) (*sip.Request, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case !d.confirmed && d.state == Terminated:
		return nil, fmt.Errorf("%w: never confirmed", ErrTerminated)
	case !d.confirmed:
		return nil, fmt.Errorf("%w: ack needs a 2xx", ErrNotConfirmed)
	case !d.localSeqSet || inviteCSeq > d.localSeq:
		return nil, fmt.Errorf("%w: no invite was sent with cseq %d", ErrCSeqOutOfOrder, inviteCSeq)
	}
	ack := d.build(sip.MethodAck, inviteCSeq, false)
	for _, opt := range opts {
		opt(ack)
	}
	ack.Add("Content-Length", "0")
	return ack, nil
}

// build makes a request from the dialog state (RFC 3261 §12.2.1.1). d.mu is
// held.
func (d *Dialog) build(method string, seq uint32, contact bool) *sip.Request {
	ruri := d.remoteTarget
	routes := d.routeSet
	if len(routes) > 0 && !routes[0].URI.Params.Has("lr") {
		// Strict routing: the first route becomes the Request-URI and the
		// remote target the last Route.
		ruri = routes[0].URI
		routes = append(routes[1:len(routes):len(routes)], sip.Address{URI: d.remoteTarget})
	}
	req := sip.NewRequest(method, requestURI(ruri))
	for i := range routes {
		req.Add("Route", routes[i].String())
	}
	req.Add("Max-Forwards", maxForwards)
	to := withTag(d.remote, d.id.RemoteTag)
	from := withTag(d.local, d.id.LocalTag)
	req.Add("To", to.String())
	req.Add("From", from.String())
	req.Add("Call-ID", d.id.CallID)
	req.Add("CSeq", sip.CSeq{Seq: seq, Method: method}.String())
	if contact && d.contactSet {
		req.Add("Contact", d.contact.String())
	}
	return req
}

// requestURI strips from u what a Request-URI must not carry: URI headers
// and the method parameter (RFC 3261 §19.1.1, table 1).
func requestURI(u sip.URI) sip.URI {
	u.Headers = ""
	u.Params = u.Params.Del("method")
	return u
}

// isToken reports whether s is a non-empty RFC 3261 token, which a method
// must be: it goes into the request line unescaped.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '!' || c == '%' || c == '*' ||
			c == '_' || c == '+' || c == '`' || c == '\'' || c == '~':
		default:
			return false
		}
	}
	return true
}
