package dialog

import (
	"fmt"

	"github.com/switchboard/switchboard/sip"
)

// ReceiveRequest updates the dialog with a request received in it (RFC 3261
// §12.2.2). It returns an error, and changes nothing, when the request must
// be refused:
//
//   - [ErrMismatch] (answer 481): the Call-ID or a tag is not the dialog's;
//   - [ErrTerminated] (answer 481): the dialog has ended;
//   - [ErrCSeqOutOfOrder] (answer 500): the CSeq number is below the remote
//     sequence number;
//   - [ErrNotConfirmed] (answer 500 with Retry-After, RFC 3261 §14.2): an
//     INVITE in an early dialog;
//   - [ErrMalformed] (answer 400): a target refresh request with a Contact
//     that is not exactly one sip or sips URI.
//
// Otherwise the remote sequence number becomes the request's CSeq, a target
// refresh request (INVITE, UPDATE, SUBSCRIBE, NOTIFY) with a Contact
// replaces the remote target, and a BYE terminates the dialog (the caller
// answers it 200, and answers 487 to a pending INVITE). ACK and CANCEL
// reuse the CSeq of their INVITE: they are checked against the dialog ID
// only and change nothing.
//
// Detecting overlapping re-INVITEs (491, RFC 3261 §14.2) needs transaction
// state and is the caller's job.
func (d *Dialog) ReceiveRequest(req *sip.Request) error {
	if id := IDFromRequest(req, true); id != d.id {
		return fmt.Errorf("%w: %s", ErrMismatch, id)
	}
	cseq := req.CSeq()
	var target sip.Address
	refresh := false
	if isTargetRefresh(req.Method) {
		var err error
		if target, refresh, err = contactOf(&req.Headers); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Terminated {
		return fmt.Errorf("%w: %s received", ErrTerminated, req.Method)
	}
	if req.Method == sip.MethodAck || req.Method == sip.MethodCancel {
		return nil
	}
	if d.remoteSeqSet && cseq.Seq < d.remoteSeq {
		return fmt.Errorf("%w: cseq %d below %d", ErrCSeqOutOfOrder, cseq.Seq, d.remoteSeq)
	}
	if d.state == Early && req.Method == sip.MethodInvite {
		return fmt.Errorf("%w: invite in an early dialog", ErrNotConfirmed)
	}
	d.remoteSeq, d.remoteSeqSet = cseq.Seq, true
	if refresh {
		d.remoteTarget = target.URI
	}
	if req.Method == sip.MethodBye {
		d.state = Terminated
	}
	return nil
}

// ReceiveResponse updates the dialog with a response to a request this side
// sent in it, including, at the UAC, further responses to the request that
// created it (RFC 3261 §12.1.2, §12.2.1.2, §13.2.2.4):
//
//   - a 2xx to the creating request confirms an early dialog: the route set
//     is recomputed from the 2xx's Record-Route, and its Contact becomes the
//     remote target; the route set never changes afterwards;
//   - a later 101-199 to the creating INVITE on the early dialog replaces the
//     remote target when it carries a Contact (RFC 3261 is silent; the
//     latest Contact is where the peer wants PRACK and UPDATE);
//   - a failure response to the creating request terminates the early
//     dialog;
//   - a 2xx to a target refresh request (re-INVITE, UPDATE, SUBSCRIBE,
//     NOTIFY) replaces the remote target with its Contact, if present;
//   - a 481 or 408 to any request terminates the dialog (RFC 3261
//     §12.2.1.2). A transaction timeout counts as a 408: call
//     [Dialog.Terminate]. Except a 481 or 408 (or a timeout) to a request
//     of a subscription usage (NOTIFY, SUBSCRIBE, REFER) in a dialog that
//     an INVITE created: it ends that subscription only (RFC 5057 §5),
//     which the caller keeps; the INVITE usage, and so the dialog,
//     goes on, and the caller does not call [Dialog.Terminate].
//
// Once the dialog has ended, responses change nothing (the 200 to a BYE
// arrives then); a 2xx to the creating request of an early dialog that
// ended gives [ErrTerminated]: [Forks] makes a new dialog for such an
// answer, to be acknowledged and ended with a BYE. It returns [ErrMismatch]
// for a response of another dialog and [ErrMalformed] for a bad Contact or
// Record-Route in a response that would update the dialog, changing
// nothing. 100 Trying is ignored. With several forks, let [Forks] route the
// responses to the creating INVITE.
func (d *Dialog) ReceiveResponse(res *sip.Response) error {
	code := res.StatusCode
	if code == 100 {
		return nil
	}
	if id := IDFromResponse(res, true); id != d.id {
		return fmt.Errorf("%w: %s", ErrMismatch, id)
	}
	cseq := res.CSeq()
	creating := d.uac && cseq.Seq == d.createSeq && cseq.Method == d.createMethod

	// Parse what the update needs before locking and changing anything.
	var (
		target    sip.Address
		hasTarget bool
		routes    []sip.Address
		err       error
	)
	success := code >= 200 && code < 300
	if code < 300 && (creating || success && isTargetRefresh(cseq.Method)) {
		if target, hasTarget, err = contactOf(&res.Headers); err != nil {
			return err
		}
	}
	if creating && success {
		if routes, err = reversedRecordRoutes(res); err != nil {
			return err
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Terminated {
		if creating && success && !d.confirmed {
			// An answer that raced the end of an early dialog (a CANCEL,
			// a 2xx from another fork): it needs a dialog of its own.
			return fmt.Errorf("%w: 2xx for an early dialog that ended", ErrTerminated)
		}
		return nil
	}
	switch {
	case (code == 481 || code == 408) && d.createMethod == sip.MethodInvite && subscriptionUsage(cseq.Method):
		// The subscription that the request belongs to is gone, not the
		// call that shares its dialog (RFC 5057 §5: a 481, a 408 or a
		// timeout ends only the usage of its request): the caller ends
		// the subscription.
	case code == 481 || code == 408:
		d.state = Terminated
	case creating && d.state == Early:
		switch {
		case code >= 300:
			d.state = Terminated
		case success:
			d.state, d.confirmed = Confirmed, true
			d.routeSet = routes
			fallthrough
		default:
			if hasTarget {
				d.remoteTarget = target.URI
			}
		}
	case creating:
		// A retransmitted or late response to the creating request of a
		// confirmed dialog: the route set and target are fixed.
	case success && hasTarget:
		d.remoteTarget = target.URI
	}
	return nil
}

// SendResponse updates the dialog with a response this side sends to a
// request received in it, including, at the UAS, later responses to the
// request that created it:
//
//   - a 2xx to the creating request confirms an early dialog;
//   - a failure response to the creating request terminates the early
//     dialog;
//   - a response with a Contact to the creating request, or a 2xx with a
//     Contact to a target refresh request, makes that Contact the local
//     Contact of later requests.
//
// The route set and remote target do not change: at the UAS they come from
// the requests. It returns [ErrMismatch] for a response of another dialog
// and [ErrMalformed] for a bad Contact; responses on a terminated dialog
// (the 200 to a BYE) are accepted and change nothing. 100 Trying is
// ignored.
func (d *Dialog) SendResponse(res *sip.Response) error {
	code := res.StatusCode
	if code == 100 {
		return nil
	}
	if id := IDFromResponse(res, false); id != d.id {
		return fmt.Errorf("%w: %s", ErrMismatch, id)
	}
	cseq := res.CSeq()
	creating := !d.uac && cseq.Seq == d.createSeq && cseq.Method == d.createMethod
	success := code >= 200 && code < 300
	var contact sip.Address
	hasContact := false
	if creating && code < 300 || success && isTargetRefresh(cseq.Method) {
		var err error
		if contact, hasContact, err = contactOf(&res.Headers); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Terminated {
		return nil
	}
	if creating && d.state == Early {
		switch {
		case code >= 300:
			d.state = Terminated
			return nil
		case success:
			d.state, d.confirmed = Confirmed, true
		}
	}
	if hasContact {
		d.contact, d.contactSet = contact, true
	}
	return nil
}

// subscriptionUsage reports the methods whose requests belong to a
// subscription usage of a dialog (RFC 5057 §3, RFC 6665, RFC 3515) rather
// than to its INVITE usage.
func subscriptionUsage(method string) bool {
	switch method {
	case sip.MethodNotify, sip.MethodSubscribe, sip.MethodRefer:
		return true
	}
	return false
}
