package b2bua

import (
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
)

// Sentinel errors. Errors returned by this package, and the causes that
// CallInfo and the logs report for an ended call, wrap one of them (or an
// error of the media package), so callers branch with errors.Is.
var (
	// ErrInvalidOptions means New was given Options without a required
	// field.
	ErrInvalidOptions = errors.New("b2bua: invalid options")
	// ErrNoCall means Hangup was given the id of no current call.
	ErrNoCall = errors.New("b2bua: no such call")
	// ErrClosed means the B2BUA is closing: new calls get 503, calls in
	// progress end with BYE (or 503 before they were answered).
	ErrClosed = errors.New("b2bua: closed")
	// ErrTooManyCalls means Options.MaxCalls calls are in progress: the new
	// one gets 503.
	ErrTooManyCalls = errors.New("b2bua: too many calls")
	// ErrHangup ends a call on Hangup (the admin API): BYE on both legs,
	// or 480 to the caller before the answer.
	ErrHangup = errors.New("b2bua: hung up")
	// ErrCanceled ends a call whose caller sent CANCEL before the answer.
	ErrCanceled = errors.New("b2bua: canceled by the caller")
	// ErrBye ends a call on a BYE from one leg; the error names the leg.
	ErrBye = errors.New("b2bua: bye")
	// ErrRejected ends a call whose callee answered with a failure
	// response; the error names the status.
	ErrRejected = errors.New("b2bua: rejected by the callee")
	// ErrNoAnswer ends a call that rang for longer than
	// Options.RingTimeout.
	ErrNoAnswer = errors.New("b2bua: no answer")
	// ErrNoAck ends a call whose caller never acknowledged the 2xx
	// (RFC 3261 §13.3.1.4).
	ErrNoAck = errors.New("b2bua: no ack for the 2xx")
	// ErrSessionExpired ends a call whose session timer ran out (RFC 4028
	// §10): the refresher of a leg did not refresh in time.
	ErrSessionExpired = errors.New("b2bua: session expired")
	// ErrFlowLost ends a call when the connection that reaches one of
	// its legs (a browser's WebSocket) closed and no new connection of
	// the same user agent replaced it within Options.FlowGrace: BYE on
	// the other leg.
	ErrFlowLost = errors.New("b2bua: connection lost")
	// ErrDialogGone ends a call when a request in one of its dialogs was
	// answered 481 or 408, or timed out (RFC 3261 §12.2.1.2).
	ErrDialogGone = errors.New("b2bua: dialog gone")
	// ErrNotCrossing means Call was given a call that does not cross
	// between a WebRTC and a classic SIP endpoint: both legs are browsers,
	// or neither is. Such calls are for the proxy.
	ErrNotCrossing = errors.New("b2bua: call does not cross between webrtc and sip")
	// ErrTransferred ends a call whose transferee reported that the
	// transfer target answered (a NOTIFY with a 2xx sipfrag): BYE on both
	// legs.
	ErrTransferred = errors.New("b2bua: transferred")
	// ErrProtocol means a peer broke offer/answer: a 2xx without the SDP
	// answer, an ACK without the answer that a late offer needs.
	ErrProtocol = errors.New("b2bua: protocol error")
)

// statusOf maps why a call could not be set up, or why a request in it
// failed, to the SIP status answered: the one place where errors become
// responses.
func statusOf(err error) (code int, reason string) {
	switch {
	case errors.Is(err, media.ErrNoCommonCodec):
		return 488, ""
	case errors.Is(err, media.ErrInvalidSDP):
		return 488, "Not Acceptable Here (invalid SDP)"
	case errors.Is(err, media.ErrState):
		return 491, ""
	case errors.Is(err, media.ErrNoPorts):
		return 503, "Service Unavailable (no RTP port)"
	case errors.Is(err, ErrClosed), errors.Is(err, ErrTooManyCalls):
		return 503, ""
	case errors.Is(err, ErrCanceled), errors.Is(err, ErrBye):
		return 487, ""
	case errors.Is(err, ErrHangup):
		return 480, ""
	case errors.Is(err, ErrNoAnswer):
		return 408, "Request Timeout (no answer)"
	case errors.Is(err, ErrNotCrossing):
		return 500, "Server Internal Error (not a webrtc-sip crossing)"
	case errors.Is(err, ErrProtocol):
		return 502, ""
	}
	return 500, ""
}

// failureFor maps the callee's final failure response to the one the
// caller gets. Most pass through with their reason phrase; those that are
// about the B2BUA's own request, not about the call, do not.
func failureFor(res *sip.Response) (code int, reason string) {
	code, reason = res.StatusCode, res.Reason
	switch {
	case code < 300 || code > 699:
		return 500, ""
	case code < 400:
		// A redirect names contacts of the far side: the browser cannot
		// follow them past the gateway, and the gateway does not recurse.
		return 480, ""
	case code == 401 || code == 407:
		// A trunk challenging the gateway: the caller cannot answer for it.
		return 502, "Bad Gateway (callee requires authentication)"
	case code == 420 || code == 421 || code == 422 || code == 423:
		return 500, ""
	case code == 503 && !res.Source.IsValid():
		// Synthesized by the transaction layer: the callee is unreachable.
		return 480, ""
	case code == 503:
		return 502, ""
	}
	return code, reason
}

// byeFrom is the cause of a call ended by a BYE from the leg of role.
func byeFrom(role string) error { return fmt.Errorf("%w from the %s", ErrBye, role) }

// quoteWarning makes text safe inside the quoted warn-text of a Warning
// header.
func quoteWarning(text string) string {
	text = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	return "\"" + text + "\""
}

// warnCodecs adds to a 488 the Warning that names what each side offered
// (RFC 3261 §20.43, code 399: miscellaneous), when err says it.
func (b *B2BUA) warnCodecs(res *sip.Response, err error) {
	var m *media.CodecMismatchError
	if res.StatusCode != 488 || !errors.As(err, &m) {
		return
	}
	list := func(l []string) string {
		if len(l) == 0 {
			return "none"
		}
		return strings.Join(l, " ")
	}
	host := "-"
	if b.opts.Identity != nil {
		host = b.opts.Identity.Domain()
	}
	res.Add("Warning", "399 "+host+" "+quoteWarning("no common codec: offered "+list(m.Offered)+"; allowed "+list(m.Allowed)))
}
