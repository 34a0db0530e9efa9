package b2bua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// uas is the caller's side of the call's INVITE: the server transaction
// given to Call, or the branch that Branch returns to the proxy.
type uas interface {
	Respond(res *sip.Response) error
	Respond2xx(res *sip.Response) (stop func(), err error)
	Canceled() <-chan struct{}
	Done() <-chan struct{}
}

// state is where a call is.
type state int

const (
	stateCalling  state = iota // the callee's INVITE is out, nothing heard
	stateRinging               // a provisional response without early media
	stateEarly                 // early media bridged (an 18x with SDP)
	stateAnswered              // both legs confirmed
	stateEnded
)

func (s state) String() string {
	return [...]string{"calling", "ringing", "early", "answered", "ended"}[s]
}

// Header values of the gateway's requests and responses.
const (
	contentSDP   = "application/sdp"
	maxForwards  = 70
	timerTag     = "timer"
	reliableTag  = "100rel"
	replacesTag  = "replaces"
	callerRole   = "caller"
	calleeRole   = "callee"
	refresherUAC = "uac"
	refresherUAS = "uas"
)

// call is one call crossing: the caller's leg, where the gateway is the
// UAS, the callee's leg, where it is the UAC, and the media bridge between
// them.
//
// Until the callee answers, the call is owned by the goroutine that runs
// Call (the caller's INVITE handler): it alone touches the INVITE
// transactions, and whoever wants the call to end cancels ctx. Once
// answered, hangup ends it from any goroutine.
type call struct {
	b        *B2BUA
	id       string
	log      *slog.Logger
	start    time.Time
	kfInfo   atomic.Bool     // an INFO picture_fast_update is in flight
	ctx      context.Context // done when the call ends; parent of the bridge's
	cancel   context.CancelCauseFunc
	caller   *leg
	callee   *leg
	target   Target
	late     bool // the caller's INVITE had no SDP (late offer)
	finished chan struct{}

	// Owned by the setup goroutine until the answer, then read-only (but
	// binv's responses, read by watch).
	atx       uas
	areq      *sip.Request
	bridge    *media.Bridge
	binv      *transaction.ClientTx
	breq      *sip.Request
	forks     *dialog.Forks
	retried   bool       // the callee's INVITE was sent again after a 422
	heard     bool       // the callee sent a provisional response (not 100)
	failovers []sip.Addr // addresses of the callee's next hop not tried yet
	callerSDP []byte     // the answer for the caller, made from the callee's
	lateOffer []byte     // late offer: the RTP offer for the caller
	bAck      *sip.Request
	// strays are 2xx responses to binv that came after its transaction
	// had ended (B2BUA.HandleStray), for watch.
	strays chan *sip.Response

	xfer transfers // the REFERs relayed, whose NOTIFYs come back

	finishOnce sync.Once

	mu       sync.Mutex
	state    state
	answered time.Time
	cause    error
	oaBusy   bool                 // an offer/answer exchange is under way
	pracked  map[dialog.ID]uint32 // last RSeq acknowledged per early dialog
}

// Call runs the call that req, an INVITE from the caller received in tx,
// starts towards target, and returns once the caller has its final
// response: a 2xx when the callee answered (the call then goes on until
// a BYE), or the failure. Use it as, or from, the transaction.Handler of
// the INVITE: it answers every INVITE it is given.
//
// The caller's leg is WebRTC when its SDP offer uses DTLS-SRTP
// (UDP/TLS/RTP/SAVPF), or when it has no SDP and came over WS or WSS;
// target.WebRTC tells the callee's. Exactly one of them must be a browser.
func (b *B2BUA) Call(ctx context.Context, tx *transaction.ServerTx, req *sip.Request, target Target) {
	// The request is shared with the transaction layer: reading headers
	// fills its parse cache, so work on a copy of our own.
	req = req.Clone()
	if req.Method != sip.MethodInvite {
		_ = tx.Respond(sip.NewResponse(req, 500, "Server Internal Error (not an INVITE)"))
		return
	}
	if res := b.checkInvite(req); res != nil {
		b.log.Info("call refused", "call_id", req.CallID(), "status", res.StatusCode, "reason", res.Reason)
		_ = tx.Respond(res)
		return
	}
	c := b.newCall(ctx, tx, req, target)
	_ = tx.Respond(sip.NewResponse(req, 100, ""))
	c.run()
}

// run begins the call and sets it up, or answers why it could not.
func (c *call) run() {
	if err := c.begin(); err != nil {
		if cause := context.Cause(c.ctx); cause != nil {
			err = cause // ended meanwhile (Close, Hangup)
		}
		code, reason := statusOf(err)
		c.log.Info("call not started", "err", err, "status", code)
		res := c.callerResponse(code, reason)
		c.b.warnCodecs(res, err)
		if errors.Is(err, ErrTooManyCalls) {
			res.Set("Retry-After", strconv.Itoa(int(c.b.opts.BusyRetryAfter/time.Second)))
		}
		c.respondCallerWith(res)
		c.finish(err)
		return
	}
	c.setup()
}

func (b *B2BUA) newCall(ctx context.Context, tx uas, req *sip.Request, target Target) *call {
	id := sip.NewTag()
	// The call outlives the INVITE it came with: its context keeps the
	// INVITE's values, not its end.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	c := &call{
		b:         b,
		id:        id,
		log:       b.log.With("call", id, "call_id", req.CallID()), // the caller's: one grep finds the proxy's lines too
		start:     b.clock.Now(),
		ctx:       ctx,
		cancel:    cancel,
		atx:       tx,
		areq:      req,
		target:    target,
		late:      len(req.Body) == 0,
		finished:  make(chan struct{}),
		pracked:   make(map[dialog.ID]uint32),
		failovers: append([]sip.Addr(nil), target.Failover...),
		strays:    make(chan *sip.Response, strayQueue),
	}
	c.caller = newLeg(c, callerRole, IsWebRTC(req), req.Source, legKey{req.CallID(), sip.NewTag()}, req.From().URI)
	c.callee = newLeg(c, calleeRole, target.WebRTC, target.Dst, legKey{sip.NewCallID(), sip.NewTag()}, target.URI)
	c.caller.peerUpdate = req.HasToken("Allow", sip.MethodUpdate)
	c.caller.user, c.callee.user = target.CallerUser, target.User
	return c
}

// IsWebRTC reports whether an INVITE comes from a browser: DTLS-SRTP in
// its SDP, or no SDP and a WebSocket transport. The gateway uses it to tell
// calls that cross from calls the proxy can carry.
func IsWebRTC(req *sip.Request) bool {
	if len(req.Body) > 0 {
		return bytes.Contains(req.Body, []byte("/TLS/RTP/SAVP"))
	}
	return req.Source.Transport == sip.WS || req.Source.Transport == sip.WSS
}

// begin registers the call, makes its bridge, turns the caller's offer
// into the callee's and sends the callee's INVITE.
func (c *call) begin() error {
	target := c.target
	c.log.Info("call", "from", c.caller.uri.String(), "to", target.URI.String(),
		"caller_webrtc", c.caller.web, "callee_webrtc", c.callee.web, "late_offer", c.late, "dst", target.Dst.String(),
		"callee_call_id", c.callee.key.callID)
	if c.caller.web == c.callee.web {
		return ErrNotCrossing
	}
	if c.caller.web && c.late {
		return fmt.Errorf("b2bua: webrtc caller without an offer: %w", media.ErrInvalidSDP)
	}
	if err := c.b.register(c); err != nil {
		return err
	}
	bridge, err := c.b.opts.Engine.NewBridgeWith(c.ctx, c.id, media.BridgeOptions{Codecs: target.Codecs})
	if err != nil {
		return err
	}
	bridge.OnKeyframeRequest(c.pictureFastUpdate)
	c.mu.Lock()
	c.bridge = bridge // under the lock for info, which Calls runs anywhere
	c.mu.Unlock()
	c.tellRTPPeer()
	var offer []byte
	switch {
	case c.caller.web:
		offer, err = bridge.WebOffer(c.areq.Body)
	case c.late:
		offer, err = bridge.LateOffer()
	default:
		offer, err = bridge.RTPOffer(c.areq.Body)
	}
	if err != nil {
		return err
	}
	req := c.calleeInvite(target, offer)
	c.breq = req
	if c.forks, err = dialog.NewForks(req); err != nil {
		return fmt.Errorf("b2bua: callee invite: %w", err)
	}
	tx, err := c.callee.send(c.ctx, req)
	for err != nil && len(c.failovers) > 0 && !errors.Is(err, context.Canceled) {
		// The first address could not even be sent to: the next one.
		c.log.Info("callee unreachable, failing over", "dst", c.callee.dest().String(), "err", err)
		c.callee.setDest(c.failovers[0])
		c.failovers = c.failovers[1:]
		c.tellRTPPeer()
		req.PopVia() // send stamps a new one
		tx, err = c.callee.send(c.ctx, req)
	}
	if err != nil {
		return err
	}
	c.binv = tx
	return nil
}

// calleeInvite builds the callee's INVITE: a new Call-ID, From tag and
// CSeq; the caller's From and To URIs; the gateway's Contact; the offer.
func (c *call) calleeInvite(target Target, offer []byte) *sip.Request {
	a, o := c.areq, &c.b.opts
	req := sip.NewRequest(sip.MethodInvite, target.URI)
	for i := range target.Route {
		req.Add("Route", target.Route[i].String())
	}
	mf := maxForwards
	if v, ok := a.MaxForwards(); ok && v-1 < mf {
		mf = max(v-1, 0)
	}
	req.Add("Max-Forwards", strconv.Itoa(mf))
	from := a.From()
	from.Params = sip.Params("").Set("tag", c.callee.key.localTag)
	req.Add("From", from.String())
	to := a.To()
	to.Params = ""
	req.Add("To", to.String())
	req.Add("Call-ID", c.callee.key.callID)
	req.Add("CSeq", sip.CSeq{Seq: 1, Method: sip.MethodInvite}.String())
	req.Add("Contact", c.callee.contact.String())
	req.Add("Allow", identity.Allow)
	req.Add("Supported", identity.CallSupported(true, o.SessionExpires > 0))
	if o.SessionExpires > 0 {
		req.Add("Session-Expires", seconds(o.SessionExpires))
		req.Add("Min-SE", seconds(o.MinSE))
	}
	// An attended transfer's INVITE (RFC 3891, 3892): the proxy has set
	// its Replaces to the dialog as the callee knows it.
	for _, h := range []string{"Subject", "Priority", "Replaces", "Referred-By"} {
		req.CopyFrom(&a.Headers, h)
	}
	if a.Has("Replaces") && a.HasToken("Require", replacesTag) {
		req.Add("Require", replacesTag)
	}
	if o.UserAgent != "" {
		req.Add("User-Agent", o.UserAgent)
	}
	req.SetBody(offer, contentSDP)
	return req
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// setup waits for the callee's final response, relaying the provisional
// ones, and answers the caller. It returns once the caller has its final
// response.
func (c *call) setup() {
	ring := c.b.clock.AfterFunc(c.b.opts.RingTimeout, func() { c.abort(ErrNoAnswer) })
	defer ring.Stop()
	for {
		select {
		case res, ok := <-c.binv.Responses():
			switch {
			case !ok:
				if c.failover(nil) {
					continue
				}
				c.abandon(fmt.Errorf("%w: callee transaction ended without a response: %w", ErrProtocol, c.binv.Err()))
				return
			case res.StatusCode < 200:
				c.onProvisional(res)
			case res.IsSuccess():
				c.onAnswer(res)
				return
			default:
				if !c.retry422(res) && !c.failover(res) {
					c.onFailure(res)
					return
				}
			}
		case <-c.atx.Canceled():
			c.abandon(ErrCanceled)
			return
		case <-c.ctx.Done():
			c.abandon(context.Cause(c.ctx))
			return
		case <-c.bridge.Done():
			c.abandon(c.bridge.Err())
			return
		}
	}
}

// abort ends a call that is not answered yet with cause; an answered call
// is left alone.
func (c *call) abort(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state < stateAnswered {
		c.cancel(cause)
	}
}

// onProvisional relays a provisional response of the callee to the
// caller, with the SDP translated when it carries early media, and sends
// PRACK when the callee asked for it (RFC 3262).
func (c *call) onProvisional(res *sip.Response) {
	if res.StatusCode == 100 {
		return
	}
	c.heard = true
	fr, err := c.forks.ReceiveResponse(res)
	if err != nil {
		c.log.Debug("callee provisional response", "status", res.StatusCode, "err", err)
	}
	if fr.Dialog != nil && !c.prack(fr.Dialog, res) {
		return // a retransmitted reliable response
	}
	var sdp []byte
	if hasSDP(&res.Headers, res.Body) {
		if sdp, err = c.earlyAnswer(res.Body); err != nil {
			c.log.Info("early media not bridged", "status", res.StatusCode, "err", err)
			sdp = nil
		}
	}
	out := c.callerResponse(res.StatusCode, res.Reason)
	if sdp != nil {
		out.SetBody(sdp, contentSDP)
	}
	if c.caller.dialog() == nil {
		d, err := dialog.NewUAS(c.areq, out)
		if err != nil {
			c.log.Debug("caller early dialog", "err", err)
		} else {
			c.caller.setDialog(d)
		}
	} else {
		_ = c.caller.dialog().SendResponse(out)
	}
	c.mu.Lock()
	if sdp != nil {
		c.state = stateEarly
	} else if c.state == stateCalling {
		c.state = stateRinging
	}
	c.mu.Unlock()
	c.log.Debug("callee provisional response", "status", res.StatusCode, "early_media", sdp != nil)
	if err := c.atx.Respond(out); err != nil {
		c.log.Debug("relaying provisional response", "err", err)
	}
}

// earlyAnswer turns the SDP of the callee's provisional response into what
// the caller gets in its own: the answer to its offer, or nothing for a
// late offer (an unreliable 18x cannot carry the gateway's offer).
func (c *call) earlyAnswer(body []byte) ([]byte, error) {
	switch {
	case c.caller.web:
		// The phone's early answer; its 200 may bring another.
		sdp, err := c.bridge.RTPAnswer(body)
		if err != nil {
			return nil, err
		}
		c.callerSDP = sdp
		return sdp, nil
	case c.late:
		if c.lateOffer == nil {
			off, err := c.bridge.WebAnswer(body)
			if err != nil {
				return nil, err
			}
			c.lateOffer = off
		}
		return nil, nil
	case c.callerSDP == nil:
		sdp, err := c.bridge.WebAnswer(body)
		if err != nil {
			return nil, err
		}
		c.callerSDP = sdp
	}
	return c.callerSDP, nil
}

// finalAnswer is the SDP of the caller's 200: the answer to its offer, or
// the gateway's offer after a late offer.
func (c *call) finalAnswer(res *sip.Response) ([]byte, error) {
	body := res.Body
	if !hasSDP(&res.Headers, body) {
		body = nil
	}
	switch {
	case c.caller.web && body != nil:
		return c.bridge.RTPAnswer(body)
	case c.caller.web, !c.late && c.callerSDP != nil:
		if c.callerSDP == nil {
			return nil, fmt.Errorf("%w: 2xx without sdp answer", ErrProtocol)
		}
		return c.callerSDP, nil
	case c.late && c.lateOffer != nil:
		return c.lateOffer, nil
	case body == nil:
		return nil, fmt.Errorf("%w: 2xx without sdp answer", ErrProtocol)
	}
	return c.bridge.WebAnswer(body)
}

// onAnswer handles the callee's first 2xx: ACK it, answer the caller with
// the translated SDP, and hand the call over to its watcher.
func (c *call) onAnswer(res *sip.Response) {
	fr, err := c.forks.ReceiveResponse(res)
	if err != nil || fr.Dialog == nil {
		c.abandon(fmt.Errorf("%w: callee's 2xx makes no dialog: %w", ErrProtocol, err))
		return
	}
	d := fr.Dialog
	c.callee.setDialog(d)
	c.callee.peerUpdate = res.HasToken("Allow", sip.MethodUpdate)
	ack, err := c.callee.ack(d, res)
	if err != nil {
		c.log.Warn("acknowledging the callee's 2xx", "err", err)
	}
	c.bAck = ack

	sdp, err := c.finalAnswer(res)
	if err != nil {
		c.log.Info("answer not bridged", "err", err)
		c.callee.bye()
		res := c.callerResponse(statusOf(err))
		c.b.warnCodecs(res, err)
		c.respondCallerWith(res)
		c.finish(err)
		return
	}
	c.callee.sessionFromResponse(res)
	out := c.callerResponse(200, "")
	out.SetBody(sdp, contentSDP)
	c.caller.sessionFromRequest(c.areq, true)
	c.caller.sessionHeaders(out, c.areq)
	if ad := c.caller.dialog(); ad != nil {
		_ = ad.SendResponse(out)
	} else if ad, err := dialog.NewUAS(c.areq, out); err == nil {
		c.caller.setDialog(ad)
	} else {
		c.log.Warn("caller dialog", "err", err)
	}

	// Decide under the lock, against hangup: either the call ended while
	// the answer was being made, or it is answered and the caller's 2xx
	// leaves before any BYE can.
	c.mu.Lock()
	if cause := context.Cause(c.ctx); cause != nil {
		c.mu.Unlock()
		c.callee.bye()
		c.respondCaller(statusOf(cause))
		c.finish(cause)
		return
	}
	c.state = stateAnswered
	c.answered = c.b.clock.Now()
	var onAck func(*sip.Request)
	if c.late {
		onAck = c.lateAnswer
	}
	c.caller.armSession()
	c.callee.armSession()
	err = c.caller.respond2xx(c.atx, out, onAck, func() { c.hangup(ErrNoAck, nil) })
	c.mu.Unlock()
	if err != nil {
		c.log.Info("answering the caller", "err", err)
		c.hangup(err, nil)
		return
	}
	c.log.Info("call answered", "callee_dialog", d.ID().String())
	responses := c.binv.Responses()
	if !c.b.spawn(func() { c.watch(responses) }) {
		c.hangup(ErrClosed, nil)
	}
}

// lateAnswer takes the answer in the caller's ACK after a late offer.
func (c *call) lateAnswer(ack *sip.Request) {
	if !hasSDP(&ack.Headers, ack.Body) {
		c.log.Info("ack without the answer to the late offer")
		c.hangup(fmt.Errorf("%w: ack without sdp answer", ErrProtocol), nil)
		return
	}
	if _, err := c.media().RTPAnswer(ack.Body); err != nil {
		c.log.Info("late offer answer", "err", err)
		c.hangup(err, nil)
		return
	}
	c.dropWebVideo(ack.Body)
}

// onFailure relays the callee's failure response to the caller.
func (c *call) onFailure(res *sip.Response) {
	code, reason := failureFor(res)
	c.log.Info("call rejected", "status", res.StatusCode, "reason", res.Reason, "relayed", code)
	out := c.callerResponse(code, reason)
	for _, h := range []string{"Retry-After", "Warning", "Reason"} {
		out.CopyFrom(&res.Headers, h)
	}
	if err := c.atx.Respond(out); err != nil {
		c.log.Debug("relaying the failure", "err", err)
	}
	c.finish(fmt.Errorf("%w: %d %s", ErrRejected, res.StatusCode, res.Reason))
}

// retry422 sends the callee's INVITE again with the larger session
// interval a 422 asks for (RFC 4028 §7.4), once. It reports whether it
// did.
func (c *call) retry422(res *sip.Response) bool {
	if res.StatusCode != 422 || c.retried || c.b.opts.SessionExpires < 0 {
		return false
	}
	minSE, ok, err := res.Uint("Min-SE")
	if !ok || err != nil || minSE == 0 || minSE > 86400 {
		return false
	}
	c.retried = true
	req := c.breq.Clone()
	req.Del("Via")
	cseq := req.CSeq()
	req.Set("CSeq", sip.CSeq{Seq: cseq.Seq + 1, Method: sip.MethodInvite}.String())
	req.Set("Session-Expires", strconv.Itoa(int(minSE)))
	req.Set("Min-SE", strconv.Itoa(int(minSE)))
	forks, err := dialog.NewForks(req)
	if err != nil {
		return false
	}
	tx, err := c.callee.send(c.ctx, req)
	if err != nil {
		c.log.Info("retrying after 422", "err", err)
		return false
	}
	c.log.Debug("callee asked for a longer session interval", "min_se", minSE)
	c.breq, c.forks, c.binv = req, forks, tx
	return true
}

// failover sends the callee's INVITE again to the next address of its next
// hop (RFC 3263 §4.3), as the proxy does for its branches: after res, a
// 503 or a timeout or transport error the client transaction made up (res
// nil: the transaction ended without one), and only while the callee has
// sent nothing but 100. It reports whether it did.
func (c *call) failover(res *sip.Response) bool {
	if c.heard || len(c.failovers) == 0 {
		return false
	}
	if res != nil && res.StatusCode != 503 && !(res.StatusCode == 408 && !res.Source.IsValid()) {
		return false
	}
	next := c.failovers[0]
	c.failovers = c.failovers[1:]
	req := c.breq.Clone()
	req.Del("Via")
	forks, err := dialog.NewForks(req)
	if err != nil {
		return false
	}
	prev := c.callee.dest()
	c.callee.setDest(next)
	c.tellRTPPeer()
	tx, err := c.callee.send(c.ctx, req)
	if err != nil {
		c.log.Info("callee failover", "dst", next.String(), "err", err)
		return c.failover(nil)
	}
	c.log.Info("callee failed over to its next address", "from", prev.String(), "to", next.String())
	c.breq, c.forks, c.binv = req, forks, tx
	return true
}

// abandon ends a call that was not answered: the caller gets the status of
// cause (487 after its CANCEL), the callee a CANCEL.
func (c *call) abandon(cause error) {
	c.cancel(cause)
	cause = context.Cause(c.ctx)
	code, reason := statusOf(cause)
	c.log.Info("call abandoned", "cause", cause, "status", code)
	c.respondCaller(code, reason)
	if c.binv != nil {
		c.cancelCallee()
		binv, forks := c.binv, c.forks
		c.b.spawn(func() { c.drainCanceled(binv, forks) })
	}
	c.finish(cause)
}

// cancelCallee cancels the callee's INVITE, with the Reason the caller's
// side gave (a proxy's "completed elsewhere") when there is one.
func (c *call) cancelCallee() {
	var reason string
	if r, ok := c.atx.(interface{ cancelReason() string }); ok {
		reason = r.cancelReason()
	}
	_ = c.binv.CancelWithReason(reason)
}

// drainCanceled waits for the final response of the callee's canceled
// INVITE: a 2xx that crossed the CANCEL is acknowledged and ended with
// BYE (RFC 3261 §15).
func (c *call) drainCanceled(binv *transaction.ClientTx, forks *dialog.Forks) {
	timeout := make(chan struct{})
	t := c.b.clock.AfterFunc(c.b.opts.CancelTimeout, func() { close(timeout) })
	defer t.Stop()
	for {
		select {
		case res, ok := <-binv.Responses():
			if !ok {
				return
			}
			if res.StatusCode < 200 {
				continue
			}
			if res.IsSuccess() {
				if fr, err := forks.ReceiveResponse(res); err == nil && fr.Dialog != nil {
					c.log.Info("callee answered after the call ended: bye")
					if _, err := c.callee.ack(fr.Dialog, res); err == nil {
						c.callee.byeDialog(fr.Dialog, false)
					}
				}
			}
			return
		case <-timeout:
			c.log.Debug("canceled invite: no final response")
			return
		}
	}
}

// watch runs for an answered call until it ends: it acknowledges the 2xx
// retransmissions of the callee (and ends other forks that answered too),
// those that binv's transaction passes on and those that come after it
// ended (strays), and ends the call when the bridge fails.
func (c *call) watch(responses <-chan *sip.Response) {
	for {
		select {
		case res, ok := <-responses:
			if !ok {
				responses = nil
				continue
			}
			if res.IsSuccess() {
				c.onLate2xx(res)
			}
		case res := <-c.strays:
			if answers(res, c.breq) {
				c.onLate2xx(res)
			}
		case <-c.bridge.Done():
			c.hangup(c.bridge.Err(), nil)
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// answers reports whether res, which matched no client transaction,
// answers req: its CSeq (a 2xx to a re-INVITE of the leg is no answer of
// the call's) and its top Via's branch, which the transaction would have
// matched, so that a forged 2xx needs no less to be taken here than
// there (another fork's answer carries the same branch).
func answers(res *sip.Response, req *sip.Request) bool {
	rv, ok1 := res.TopVia()
	qv, ok2 := req.TopVia()
	return ok1 && ok2 && res.CSeq().Seq == req.CSeq().Seq && rv.Branch() == qv.Branch()
}

// onLate2xx handles a 2xx to the callee's INVITE after the first: a
// retransmission gets the ACK again, another fork's answer an ACK and a
// BYE.
func (c *call) onLate2xx(res *sip.Response) {
	fr, err := c.forks.ReceiveResponse(res)
	if err != nil || fr.Dialog == nil {
		return
	}
	if fr.Extra {
		c.log.Info("another fork answered: bye", "dialog", fr.Dialog.ID().String())
		if _, err := c.callee.ack(fr.Dialog, res); err == nil {
			c.callee.byeDialog(fr.Dialog, false)
		}
		return
	}
	if c.bAck != nil {
		c.callee.sendAck(c.bAck)
	}
}

// hangup ends the call with cause. Before the answer it cancels ctx, and
// the setup goroutine ends the call; after, it sends BYE on the legs other
// than from (the one whose BYE ended the call, or whose dialog is gone).
func (c *call) hangup(cause error, from *leg) {
	c.mu.Lock()
	switch c.state {
	case stateEnded:
		c.mu.Unlock()
		return
	case stateAnswered:
		c.state = stateEnded
		c.cancel(cause)
		c.mu.Unlock()
	default:
		c.cancel(cause)
		c.mu.Unlock()
		return
	}
	c.log.Info("hanging up", "cause", cause)
	for _, l := range []*leg{c.caller, c.callee} {
		if l != from {
			l.bye()
		}
	}
	c.finish(cause)
}

// finish releases what the call holds, once: the bridge, the timers, its
// entries in the tables.
func (c *call) finish(cause error) {
	c.finishOnce.Do(func() {
		c.mu.Lock()
		c.state = stateEnded
		c.cause = cause
		c.cancel(cause)
		c.mu.Unlock()
		c.caller.stopSession()
		c.callee.stopSession()
		var st media.Stats
		if br := c.media(); br != nil {
			_ = br.Close()
			st = br.Stats()
		}
		c.b.unregister(c)
		ci := c.info()
		ci.Ended, ci.Media = c.b.clock.Now(), st
		if cause != nil {
			ci.Cause = cause.Error()
		}
		c.b.remember(ci)
		c.log.Info("call ended", "cause", cause, "duration", c.b.clock.Now().Sub(c.start),
			"web_in", st.Web.PacketsIn, "web_out", st.Web.PacketsOut,
			"rtp_in", st.RTP.PacketsIn, "rtp_out", st.RTP.PacketsOut, "one_way_audio", st.OneWayAudio,
			"web_transport", transportAttr(st.Web.Transport), "web_fast_path", st.Web.FastPath, "rtp_remote", st.RTP.Remote)
		close(c.finished)
	})
}

// callerResponse builds a response to the caller's INVITE with the
// gateway's To tag, and its Contact on 1xx and 2xx.
func (c *call) callerResponse(code int, reason string) *sip.Response {
	res := sip.NewResponse(c.areq, code, reason)
	res.SetToTag(c.caller.key.localTag)
	if code > 100 && code < 300 {
		// The caller's route set (RFC 3261 §12.1.1).
		res.CopyFrom(&c.areq.Headers, "Record-Route")
		res.Add("Contact", c.caller.contact.String())
	}
	if code >= 200 && code < 300 {
		res.Add("Allow", identity.Allow)
		res.Add("Supported", identity.CallSupported(false, c.b.opts.SessionExpires > 0))
	}
	if ua := c.b.opts.UserAgent; ua != "" {
		res.Add("Server", ua)
	}
	return res
}

// respondCaller sends a final failure response to the caller's INVITE.
func (c *call) respondCaller(code int, reason string) {
	c.respondCallerWith(c.callerResponse(code, reason))
}

func (c *call) respondCallerWith(res *sip.Response) {
	if err := c.atx.Respond(res); err != nil && !errors.Is(err, transaction.ErrFinalSent) {
		c.log.Debug("answering the caller", "status", res.StatusCode, "err", err)
	}
}

// media returns the bridge, nil before begin made it.
func (c *call) media() *media.Bridge {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bridge
}

// tellRTPPeer tells the bridge where the SIP side's signalling goes, so
// that RTP latches only from there or from the SDP's address.
func (c *call) tellRTPPeer() {
	l := c.callee
	if l.web {
		l = c.caller
	}
	if br := c.media(); br != nil {
		br.SetRTPPeer(l.dest().AddrPort.Addr())
	}
}

// other returns the leg across from l.
func (c *call) other(l *leg) *leg {
	if l == c.caller {
		return c.callee
	}
	return c.caller
}

// beginOA claims the call's offer/answer for one exchange; false means one
// is under way (glare: answer 491).
func (c *call) beginOA() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oaBusy || c.state != stateAnswered {
		return false
	}
	c.oaBusy = true
	return true
}

func (c *call) endOA() {
	c.mu.Lock()
	c.oaBusy = false
	c.mu.Unlock()
}

// info returns the call's snapshot.
func (c *call) info() CallInfo {
	c.mu.Lock()
	st, answered, br := c.state, c.answered, c.bridge
	c.mu.Unlock()
	ci := CallInfo{
		ID:       c.id,
		State:    st.String(),
		Started:  c.start,
		Answered: answered,
		Caller:   c.caller.info(),
		Callee:   c.callee.info(),
	}
	if br != nil {
		ci.Media = br.Stats()
	}
	return ci
}

// hasSDP reports an SDP body.
func hasSDP(h *sip.Headers, body []byte) bool {
	return len(body) > 0 && mediaType(h.ContentType()) == contentSDP
}

// transportAttr says in the call-end log line how the web leg's media
// went: the gateway's and the browser's candidate type/protocol, the
// browser's address, the gateway's DTLS role and the SRTP profile; "none"
// when ICE and DTLS never came up.
func transportAttr(t *media.Transport) slog.Value {
	if t == nil {
		return slog.StringValue("none")
	}
	attrs := []slog.Attr{
		slog.String("local", t.Local.Type+"/"+t.Local.Protocol),
		slog.String("remote", t.Remote.Type+"/"+t.Remote.Protocol),
		slog.String("remote_address", t.Remote.Address),
		slog.String("dtls_role", t.DTLSRole),
		slog.String("srtp_profile", t.SRTPProfile),
		// How many pairs ICE had checked, and the selected one's counts:
		// enough to tell a path chosen after lost checks from one chosen
		// at once; the admin API keeps every pair (Transport.Checks).
		slog.Int("pairs_checked", len(t.Checks)),
	}
	for _, c := range t.Checks {
		if c.Local == t.Local && c.Remote == t.Remote {
			attrs = append(attrs, slog.String("selected_checks", fmt.Sprintf("%d sent, %d answered, %d received", c.RequestsSent, c.ResponsesReceived, c.RequestsReceived)))
			break
		}
	}
	return slog.GroupValue(attrs...)
}
