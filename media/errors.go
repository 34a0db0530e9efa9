package media

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error a Bridge or Engine returns wraps one of them
// (or a context error), so the gateway decides the SIP status with errors.Is
// in one place.
var (
	// ErrNoCommonCodec means the two legs share no audio codec (or an offer
	// carried no usable audio stream). The gateway answers 488 Not
	// Acceptable Here; on a re-INVITE the old session stays in force.
	ErrNoCommonCodec = errors.New("no common codec")
	// ErrInvalidSDP means an SDP body could not be parsed or lacks what the
	// negotiation needs (an audio m= line, a connection address, ICE or DTLS
	// parameters on the WebRTC leg). The gateway answers 400 or 488.
	ErrInvalidSDP = errors.New("invalid sdp")
	// ErrState means an offer/answer method was called out of order, e.g.
	// RTPAnswer before any RTP offer was made, or a re-offer while another
	// is pending (glare: the gateway answers 491 Request Pending).
	ErrState = errors.New("offer/answer out of order")
	// ErrNoPorts means the RTP port range has no free even/odd pair (ports
	// still draining do not count as free). The gateway answers 503.
	ErrNoPorts = errors.New("no free rtp port")
	// ErrInactive ends a bridge on which no RTP arrived from either leg for
	// Options.InactivityTimeout. The gateway sends BYE on both legs.
	ErrInactive = errors.New("media inactivity timeout")
	// ErrWebFailed ends a bridge whose WebRTC leg failed (ICE or DTLS).
	ErrWebFailed = errors.New("webrtc leg failed")
	// ErrClosed is returned by a closed Bridge or Engine, and by Bridge.Err
	// after Close.
	ErrClosed = errors.New("closed")
	// ErrNoDTMF means telephone-event (RFC 4733) was not negotiated on the
	// RTP leg, so SendDTMF cannot send the digit.
	ErrNoDTMF = errors.New("telephone-event not negotiated")
	// ErrChangesRTP means a re-offer of the browser changes what the phone
	// sends or receives (the direction, a codec in use), so WebRefresh
	// cannot answer it on the web leg alone: carry it to the phone with
	// WebReoffer.
	ErrChangesRTP = errors.New("re-offer changes the rtp leg")
	// ErrInvalidOptions means NewEngine was given inconsistent Options.
	ErrInvalidOptions = errors.New("invalid options")
)

// ErrChangesWeb means a re-offer of the phone changes what the browser
// sends or receives beyond what the relay can enforce alone (video added
// or removed), so RTPReoffer cannot answer it on the RTP leg: the gateway
// renegotiates the browser with the offer of WebReofferFor (a re-INVITE
// to the browser) and answers the phone with what WebAnswer returns.
var ErrChangesWeb = errors.New("re-offer changes the web leg")

// CodecMismatchError is the error of a negotiation in which the two legs
// share no codec: Offered names what the offerer offered, Allowed what the
// other side (the policy, or the other leg's offer or answer) allows, as
// "name/rate". It wraps ErrNoCommonCodec; the gateway puts both lists in
// the Warning of its 488.
type CodecMismatchError struct {
	Op      string
	Offered []string
	Allowed []string
}

func (e *CodecMismatchError) Error() string {
	return fmt.Sprintf("media: %s: offered %s, allowed %s: %v", e.Op,
		listOrNone(e.Offered), listOrNone(e.Allowed), ErrNoCommonCodec)
}

// Unwrap makes errors.Is(err, ErrNoCommonCodec) hold.
func (e *CodecMismatchError) Unwrap() error { return ErrNoCommonCodec }

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, " ")
}

// mismatch builds the CodecMismatchError of op.
func mismatch(op string, offered, allowed []Codec) error {
	return &CodecMismatchError{Op: op, Offered: names(offered), Allowed: names(allowed)}
}
