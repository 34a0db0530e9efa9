package dialog

import "errors"

// Errors returned by this package. They are wrapped with details, so compare
// them with [errors.Is]. The comments say which response a UAS sends when
// the error comes from a request it received.
var (
	// ErrNoDialog means the message pair does not create a dialog: the
	// method is not INVITE, SUBSCRIBE or REFER, the status is 100 or a
	// failure, a provisional response answers a request other than INVITE
	// or carries no To tag, or the request already has a To tag.
	ErrNoDialog = errors.New("dialog: message does not create a dialog")

	// ErrMalformed means a header the dialog needs is absent or malformed:
	// a From tag, the Contact (exactly one sip or sips URI), the
	// Record-Route list. Answer 400 Bad Request.
	ErrMalformed = errors.New("dialog: malformed dialog header")

	// ErrMismatch means the message does not belong to this dialog (or,
	// for [Forks], to the request it tracks): the Call-ID, a tag or the
	// CSeq differs. Answer 481 Call/Transaction Does Not Exist.
	ErrMismatch = errors.New("dialog: message does not match dialog")

	// ErrCSeqOutOfOrder means a request's CSeq number is lower than the
	// remote sequence number (RFC 3261 §12.2.2). Answer 500 Server Internal
	// Error. [Dialog.NewAck] returns it, too, for a CSeq this side never
	// sent.
	ErrCSeqOutOfOrder = errors.New("dialog: cseq out of order")

	// ErrCSeqExhausted means the local sequence number reached 2^32-1 and
	// cannot be incremented: end the dialog.
	ErrCSeqExhausted = errors.New("dialog: local cseq exhausted")

	// ErrTerminated means the dialog has ended: no request can be sent in
	// it, and a request received for it gets 481 Call/Transaction Does Not
	// Exist.
	ErrTerminated = errors.New("dialog: dialog terminated")

	// ErrNotConfirmed means the request is not allowed in an early dialog:
	// an ACK, a re-INVITE (answer 500 with Retry-After, RFC 3261 §14.2, when
	// received), or a BYE from the callee (RFC 3261 §15).
	ErrNotConfirmed = errors.New("dialog: dialog not confirmed")

	// ErrBadMethod means [Dialog.NewRequest] was asked for ACK (use
	// [Dialog.NewAck]), CANCEL (built from the INVITE by the transaction
	// layer, RFC 3261 §9.1) or a string that is not a method token.
	ErrBadMethod = errors.New("dialog: method not allowed here")
)
