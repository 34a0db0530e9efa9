package b2bua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// serve answers a request received in one of the call's dialogs. It runs
// in the request's handler goroutine and returns once it has answered.
// sent passes the turn of the leg's next request on (see Options.Order):
// called once what req becomes on the other leg was sent, and by the
// caller once serve returns.
func (c *call) serve(l *leg, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	if !sip.IsKnownMethod(req.Method) {
		c.respond(tx, l.reply(req, 501, ""))
		return
	}
	var before sip.URI
	if d := l.dialog(); d != nil {
		before = d.RemoteTarget()
	}
	if !c.receive(l, tx, req) {
		return
	}
	if !l.web && (req.Method == sip.MethodInvite || req.Method == sip.MethodUpdate) {
		l.retarget(req, before)
	}
	switch req.Method {
	case sip.MethodBye:
		c.respond(tx, l.reply(req, 200, ""))
		c.log.Info("bye", "leg", l.role)
		c.hangup(byeFrom(l.role), l)
	case sip.MethodInvite:
		c.serveOffer(l, tx, req, sent)
	case sip.MethodUpdate:
		if hasSDP(&req.Headers, req.Body) {
			c.serveOffer(l, tx, req, sent)
			return
		}
		// A session refresh (RFC 4028), answered on this leg alone.
		l.sessionFromRequest(req, false)
		res := l.reply(req, 200, "")
		l.sessionHeaders(res, req)
		l.armSession()
		c.respond(tx, res)
	case sip.MethodInfo, sip.MethodMessage:
		c.serveInfo(l, tx, req, sent)
	case sip.MethodRefer:
		c.serveRefer(l, tx, req, sent)
	case sip.MethodNotify:
		c.serveNotify(l, tx, req, sent)
	case sip.MethodOptions:
		c.respond(tx, l.stamp(identity.OptionsResponse(req)))
	case sip.MethodPrack:
		// The gateway sends no reliable provisional responses.
		c.respond(tx, l.reply(req, 481, ""))
	default:
		c.respond(tx, l.stamp(identity.MethodNotAllowed(req)))
	}
}

func (c *call) respond(tx *transaction.ServerTx, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		c.log.Debug("responding", "method", res.CSeq().Method, "status", res.StatusCode, "err", err)
	}
}

// receive checks req against the leg's dialog (RFC 3261 §12.2.2) and
// answers it when it does not belong there.
func (c *call) receive(l *leg, tx *transaction.ServerTx, req *sip.Request) bool {
	d := l.dialog()
	if d == nil {
		c.respond(tx, l.reply(req, 481, ""))
		return false
	}
	err := d.ReceiveRequest(req)
	if err == nil {
		return true
	}
	var res *sip.Response
	switch {
	case errors.Is(err, dialog.ErrCSeqOutOfOrder):
		res = l.reply(req, 500, "Server Internal Error (CSeq out of order)")
	case errors.Is(err, dialog.ErrNotConfirmed):
		res = l.reply(req, 500, "")
		res.Add("Retry-After", strconv.Itoa(rand.IntN(11)))
	case errors.Is(err, dialog.ErrMalformed):
		res = l.reply(req, 400, "Bad Request (invalid Contact)")
	default:
		res = l.reply(req, 481, "")
	}
	c.log.Debug("in-dialog request refused", "leg", l.role, "method", req.Method, "status", res.StatusCode, "err", err)
	c.respond(tx, res)
	return false
}

// onAck takes the ACK of a 2xx the gateway sent on l.
func (c *call) onAck(l *leg, ack *sip.Request) {
	d := l.dialog()
	if d == nil || d.ReceiveRequest(ack) != nil {
		return
	}
	p, stop := l.takeAck(ack)
	if p == nil {
		return // a retransmission
	}
	if stop != nil {
		stop()
	}
	close(p.acked)
	if p.onAck != nil {
		p.onAck(ack)
	}
}

// serveOffer answers a re-INVITE, or an UPDATE with SDP, on l: hold,
// resume, a new address, a session refresh.
//
// From the SIP side the offer is answered on that leg alone (the browser's
// session is never renegotiated); a re-INVITE without SDP gets the
// gateway's current SDP as an offer, whose answer comes in the ACK. From
// the browser the offer is carried to the SIP side in a re-INVITE, and the
// browser's answer made from the phone's.
func (c *call) serveOffer(l *leg, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	if !c.beginOA() {
		res := l.reply(req, 491, "")
		c.respond(tx, res)
		return
	}
	invite := req.Method == sip.MethodInvite
	held := false // the exchange goes on until the ACK
	released := false
	// The exchange is over when the answer leaves: release the call's
	// offer/answer before, as the peer may re-offer as soon as it has it.
	release := func() {
		if !held && !released {
			released = true
			c.endOA()
		}
	}
	defer release()
	respond := func(res *sip.Response) {
		release()
		c.respond(tx, res)
	}
	br := c.media()
	l.sessionFromRequest(req, false)
	body := req.Body
	if !hasSDP(&req.Headers, body) {
		body = nil
	}
	var sdp []byte
	var err error
	var onAck func(*sip.Request)
	switch {
	case !l.web && body != nil:
		sdp, err = br.RTPReoffer(body)
		if !errors.Is(err, media.ErrChangesWeb) {
			break
		}
		// Video comes or goes: the browser is renegotiated (its ICE and
		// DTLS session stays), and the phone answered from its answer.
		var fail *sip.Response
		sdp, fail, err = c.relayOffer(l, tx, body, br.RTPReofferWeb, br.WebAnswer, sent)
		if fail != nil {
			code, reason := relayedFailure(fail)
			respond(l.reply(req, code, reason))
			return
		}
	case !l.web:
		// A re-INVITE without SDP (RFC 3261 §14.1): offer in the 2xx.
		if sdp, err = br.RTPRefresh(); err == nil {
			held = true
			onAck = func(ack *sip.Request) {
				defer c.endOA()
				if !hasSDP(&ack.Headers, ack.Body) {
					_ = br.Rollback()
					return
				}
				if _, err := br.RTPAnswer(ack.Body); err != nil {
					c.log.Info("answer in ack", "leg", l.role, "err", err)
				}
			}
		}
	case body == nil:
		// A browser asking for an offer: its DTLS session is never
		// renegotiated by the gateway.
		err = fmt.Errorf("b2bua: re-invite without offer from the browser: %w", media.ErrNoCommonCodec)
	default:
		// An offer that changes nothing for the phone (an ICE restart
		// after a network change, a refresh) is answered here: the phone
		// is not bothered with a re-INVITE.
		sdp, err = br.WebRefresh(body)
		if err == nil {
			c.log.Info("browser's re-offer answered on its leg alone", "leg", l.role, "method", req.Method)
			break
		}
		if !errors.Is(err, media.ErrChangesRTP) {
			break
		}
		var fail *sip.Response
		sdp, fail, err = c.relayOffer(l, tx, body, br.WebReoffer, br.RTPAnswer, sent)
		if fail != nil {
			code, reason := relayedFailure(fail)
			respond(l.reply(req, code, reason))
			return
		}
	}
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("offer refused", "leg", l.role, "method", req.Method, "status", code, "err", err)
		res := l.reply(req, code, reason)
		c.b.warnCodecs(res, err)
		respond(res)
		return
	}
	res := l.reply(req, 200, "")
	res.SetBody(sdp, contentSDP)
	l.sessionHeaders(res, req)
	if d := l.dialog(); d != nil {
		_ = d.SendResponse(res)
	}
	l.armSession()
	if !invite {
		respond(res)
		return
	}
	var onTimeout func()
	if held {
		onTimeout = func() {
			_ = br.Rollback()
			c.endOA()
		}
	}
	release()
	if err := l.respond2xx(tx, res, onAck, onTimeout); err != nil {
		c.log.Debug("answering re-invite", "leg", l.role, "err", err)
		if held {
			held = false
			_ = br.Rollback()
		}
		return
	}
	c.log.Debug("re-offer answered", "leg", l.role, "method", req.Method)
}

// relayedFailure is the status answered to a re-offer that the other leg
// refused: its 491, 488 or 487 as it is, else as failureFor says.
func relayedFailure(fail *sip.Response) (int, string) {
	if fail.StatusCode == 491 || fail.StatusCode == 488 || fail.StatusCode == 487 {
		return fail.StatusCode, fail.Reason
	}
	return failureFor(fail)
}

// relayOffer carries a re-offer on l to the other leg in a re-INVITE and
// returns l's answer, or the other side's failure response: a browser's
// re-offer to the SIP side (WebReoffer, RTPAnswer), or a phone's that
// adds or removes video to the browser (RTPReofferWeb, WebAnswer).
func (c *call) relayOffer(l *leg, tx *transaction.ServerTx, offer []byte, reoffer, answer func([]byte) ([]byte, error), sent func()) ([]byte, *sip.Response, error) {
	br := c.media()
	rtpOffer, err := reoffer(offer)
	if err != nil {
		return nil, nil, err
	}
	other := c.other(l)
	fill := func(req *sip.Request) error {
		other.refreshHeaders(req)
		req.SetBody(rtpOffer, contentSDP)
		return nil
	}
	// The browser may cancel its re-INVITE: so is the relayed one.
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-tx.Canceled():
			cancel(ErrCanceled)
		case <-stop:
		}
	}()
	res, err := other.relay(ctx, sip.MethodInvite, fill, sent)
	if err != nil {
		_ = br.Rollback()
		return nil, nil, err
	}
	if !res.IsSuccess() {
		_ = br.Rollback()
		return nil, res, nil
	}
	other.sessionFromResponse(res)
	other.armSession()
	if !hasSDP(&res.Headers, res.Body) {
		_ = br.Rollback()
		return nil, nil, fmt.Errorf("%w: 2xx to re-invite without sdp", ErrProtocol)
	}
	sdp, err := answer(res.Body)
	if err != nil {
		_ = br.Rollback()
	}
	return sdp, nil, err
}

// serveInfo answers INFO and MESSAGE. DTMF from the browser
// (application/dtmf-relay or application/dtmf, what JsSIP sends) becomes
// RFC 4733 events towards the SIP side; anything else, or DTMF when the
// SIP side has no telephone-event, is relayed to the other leg, and its
// answer relayed back.
func (c *call) serveInfo(l *leg, tx *transaction.ServerTx, req *sip.Request, sent func()) {
	if req.Method == sip.MethodInfo && !l.web && isPictureFastUpdate(req) {
		// RFC 5168: the SIP side asks for a keyframe. The browser gets a
		// PLI; the INFO is answered here and goes no further.
		if err := c.media().RequestKeyframe(); err != nil {
			c.log.Debug("picture_fast_update", "err", err)
		}
		c.respond(tx, l.reply(req, 200, ""))
		return
	}
	if req.Method == sip.MethodInfo && l.web {
		if digit, dur, ok := parseDTMF(req); ok {
			err := c.media().SendDTMF(digit, dur)
			if err == nil {
				c.log.Debug("dtmf", "digit", string(digit), "duration", dur)
				c.respond(tx, l.reply(req, 200, ""))
				return
			}
			if !errors.Is(err, media.ErrNoDTMF) {
				code, reason := statusOf(err)
				c.respond(tx, l.reply(req, code, reason))
				return
			}
		}
	}
	fill := func(out *sip.Request) error {
		for _, h := range []string{"Info-Package", "Content-Disposition", "Subject"} {
			out.CopyFrom(&req.Headers, h)
		}
		if len(req.Body) > 0 {
			out.SetBody(req.Body, req.ContentType())
		}
		return nil
	}
	res, err := c.other(l).relay(c.ctx, req.Method, fill, sent)
	if errors.Is(err, errNotBuilt) {
		c.respond(tx, l.reply(req, 481, ""))
		return
	}
	if err != nil {
		c.respond(tx, l.reply(req, 500, ""))
		return
	}
	code, reason := 200, ""
	if !res.IsSuccess() {
		code, reason = failureFor(res)
		if res.StatusCode == 415 || res.StatusCode == 469 {
			code, reason = res.StatusCode, res.Reason
		}
	}
	c.respond(tx, l.reply(req, code, reason))
}
