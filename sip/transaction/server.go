package transaction

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// ServerTx is a server transaction (RFC 3261 §17.2 with RFC 6026): INVITE
// (Proceeding, Completed, Confirmed, Accepted, Terminated) or non-INVITE
// (Trying, Proceeding, Completed, Terminated). Its responses go to the
// request's Source.
//
// The TU sends each response once with Respond; the transaction retransmits
// non-2xx final responses to an INVITE (Timer G) and answers request
// retransmissions with the last response. A 2xx to an INVITE moves it to
// Accepted, where the TU itself retransmits the 2xx until the ACK arrives
// (§13.3.1.4, RFC 6026): call Respond again with the same response, or use
// Respond2xx, which does it on the right schedule. The ACK for a 2xx goes to
// the Handler with a nil *ServerTx.
type ServerTx struct {
	core
	req      *sip.Request
	dst      sip.Addr
	reliable bool
	rfc3261  bool
	key      serverKey
	// legacy holds the keys of an RFC 2543 transaction, nil for others:
	// most transactions, which two legacyKeys in line would make half as
	// big again.
	legacy *legacyKeys

	// inviteState is an INVITE's own state, nil for other methods: it
	// tells an INVITE transaction (invite).
	*inviteState

	last   *sip.Response // most recent response sent
	toTag  string        // To tag of the responses sent
	linger timerSlot     // I or J
	// wire is the final response of a non-INVITE as it went, kept in
	// place of last once the handler has returned (Resender), and dst
	// then is where it went.
	wire []byte

	done chan struct{} // made by Done, guarded by mu
	err  error

	handlerDone bool
	reported    bool  // OnFinal was called
	lingerAsked bool  // list was called
	endAtOnce   bool  // a CANCEL without a place: no Timer J
	born        int64 // timerHeap.now when it was made
	handed      int64 // delay.Now when the handler's goroutine was started

	// The handler's context is the transaction itself (handlerContext):
	// endCtx ends it when the handler returns, when the transaction ends
	// or is canceled, and when the Layer's context ends (endContexts).
	// ctxEnded is read without mu (Err); ctxDone, made by its Done, and
	// afters, the functions its AfterFunc registered, are guarded by mu.
	ctxEnded atomic.Bool
	ctxDone  chan struct{}
	afters   *afterFunc

	// Guarded by Layer.mu: the place the transaction holds (see bound.go).
	weight  int         // the places it takes (weight)
	load    *sourceLoad // its source's, while it holds its places
	running bool        // its handler runs
	inTable bool        // in the Layer's tables
	listed  bool        // on the lingering lists
	links   [2]link[*ServerTx]
	// sameBranch is the next transaction of Layer.servers with the same
	// branch.
	sameBranch *ServerTx
}

// inviteState is what only an INVITE server transaction has: four of
// its timers and what they send, and its cancellation. Out of line, it
// leaves a non-INVITE transaction (a REGISTER's, two for each
// registration) in a smaller size class: those are most transactions,
// each allocated and cleared for its request and kept for Timer J.
type inviteState struct {
	trying     *sip.Response // 100 Trying, once it was due
	tryingT    timerSlot
	retrans    timerSlot // G
	interval   time.Duration
	timeout    timerSlot // H
	accepted   timerSlot // L
	ok2xx      timerSlot // Respond2xx
	okIntvl    time.Duration
	ok         *sip.Response
	canceled   chan struct{}
	isCanceled bool
}

// legacyKeys are the keys of an RFC 2543 server transaction: key, and
// for an INVITE the key its ACK matches once a final response set the To
// tag (ack, when hasAck).
type legacyKeys struct {
	key, ack legacyKey
	hasAck   bool
}

// invite reports whether tx is an INVITE transaction.
func (tx *ServerTx) invite() bool { return tx.inviteState != nil }

// newServerTx builds the transaction of req; it is not yet started.
func newServerTx(l *Layer, req *sip.Request, rfc3261 bool, sk serverKey, lk legacyKey) *ServerTx {
	tx := &ServerTx{
		req:      req,
		dst:      req.Source,
		reliable: req.Source.Reliable(),
		rfc3261:  rfc3261,
		key:      sk,
		born:     l.timers.now(),
	}
	if !rfc3261 {
		tx.legacy = &legacyKeys{key: lk}
	}
	if l.ctxDone {
		tx.ctxEnded.Store(true)
	}
	if req.Method == sip.MethodInvite {
		tx.inviteState = &inviteState{canceled: make(chan struct{})}
		tx.init(l, tx, &tx.tryingT, &tx.retrans, &tx.timeout, &tx.linger, &tx.accepted, &tx.ok2xx)
		tx.state = StateProceeding
	} else {
		tx.init(l, tx, &tx.linger)
		tx.state = StateTrying
	}
	return tx
}

// start schedules the automatic 100 Trying of an INVITE (§17.2.1), or
// sends it at once when Config.TryingDelay is negative.
func (tx *ServerTx) start() {
	if !tx.invite() {
		return
	}
	tx.mu.Lock()
	var ob outbox
	if tx.state == StateProceeding && tx.last == nil {
		if tx.l.t.trying < 0 {
			tx.sendTrying(&ob)
		} else {
			tx.arm(&ob, &tx.tryingT, tx.l.t.trying)
		}
	}
	tx.mu.Unlock()
	tx.flushCtx(tx.l.ctx, ob)
}

// sendTrying sends 100 Trying unless the TU has responded.
func (tx *ServerTx) sendTrying(ob *outbox) {
	tx.tryingT.stop()
	if tx.state == StateProceeding && tx.last == nil {
		if tx.trying == nil {
			// Built when it is due, not with the transaction: most
			// INVITEs are answered before it is (a 407, a callee's
			// 180), and a response is the size of a message. Reading
			// the request while its handler reads it too is safe: the
			// handler changes only a clone (Request).
			tx.trying = sip.NewResponse(tx.req, 100, "")
			warm(&tx.trying.Headers)
		}
		tx.last = tx.trying
		ob.send(tx.trying, tx.dst)
	}
}

// Request returns the request of the transaction. It is shared with the
// layer: Clone it before changing it (a proxy forwarding it, say). It
// returns nil once the handler has returned and the transaction only
// absorbs retransmissions (see shed): the handler has its request.
func (tx *ServerTx) Request() *sip.Request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.req
}

// method is the request's method, which the keys keep when the request
// is gone.
func (tx *ServerTx) method() string {
	if tx.rfc3261 {
		return tx.key.method
	}
	return tx.legacy.key.method
}

// Done is closed when the transaction terminates.
func (tx *ServerTx) Done() <-chan struct{} {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done == nil {
		// Made when first asked for: most handlers (a registrar's, a
		// challenge) never wait on it, and a transaction is made for
		// every request.
		if tx.state == StateTerminated {
			return closedDone
		}
		tx.done = make(chan struct{})
	}
	return tx.done
}

// closedDone is the Done of a transaction that terminated before anyone
// asked for it.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Canceled is closed when a CANCEL for this INVITE arrives before its final
// response; the layer has answered the CANCEL with 200, and the TU should
// end the request with 487 Request Terminated (RFC 3261 §9.2). For other
// methods it returns nil, a channel that is never ready.
func (tx *ServerTx) Canceled() <-chan struct{} {
	if !tx.invite() {
		return nil
	}
	return tx.canceled
}

// Err returns why the transaction ended: nil for a normal end (Timers I, J,
// L), ErrTimeout (Timer H: the ACK of a non-2xx final response never
// came), an error wrapping ErrTransport, or ErrClosed.
func (tx *ServerTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// State returns the current state.
func (tx *ServerTx) State() State {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.state
}

// Respond sends res (a response to Request(), with the To tag the TU
// chose) and moves the state machine. After Respond the response belongs to
// the transaction, which may retransmit it: do not change it.
//
// It returns ErrInvalidResponse for a nil response or a status outside
// 100-699, ErrFinalSent after a final response (but a 2xx to an INVITE may
// be sent again in Accepted), ErrTerminated after termination, and an error
// wrapping ErrTransport when the Sender fails, which terminates the
// transaction except in Accepted.
func (tx *ServerTx) Respond(res *sip.Response) error {
	if res == nil || res.StatusCode < 100 || res.StatusCode > 699 {
		return ErrInvalidResponse
	}
	warm(&res.Headers)
	tx.mu.Lock()
	var ob outbox
	err := tx.respond(&ob, res)
	if err == nil && res.StatusCode >= 200 && !tx.reported {
		tx.reported = true
		if f := tx.l.onFinal; f != nil {
			f(true, tx.method(), res.StatusCode)
		}
	}
	tx.mu.Unlock()
	if err != nil {
		return err
	}
	return tx.flushCtx(tx.l.ctx, ob)
}

// Respond2xx sends a 2xx response to an INVITE with Respond, then
// retransmits it as RFC 3261 §13.3.1.4 asks of a UAS core: after T1, then at
// doubling intervals capped at T2, until stop is called (when the ACK
// arrives at the Handler) or the transaction terminates (Timer L, 64*T1 by
// default). It uses timers only, no goroutine. Calling it again replaces the
// response being retransmitted.
func (tx *ServerTx) Respond2xx(res *sip.Response) (stop func(), err error) {
	if !tx.invite() || res == nil || res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, fmt.Errorf("%w: respond2xx needs a 2xx to an invite", ErrInvalidResponse)
	}
	if err := tx.Respond(res); err != nil {
		return nil, err
	}
	tx.mu.Lock()
	var ob outbox
	if tx.state == StateAccepted {
		tx.ok = res
		tx.okIntvl = tx.l.t.t1
		tx.arm(&ob, &tx.ok2xx, tx.okIntvl)
	}
	tx.mu.Unlock()
	return func() {
		tx.mu.Lock()
		tx.ok2xx.stop()
		tx.maybeLinger()
		tx.mu.Unlock()
	}, nil
}

func (tx *ServerTx) on2xx(ob *outbox) {
	if tx.state != StateAccepted {
		return
	}
	ob.send(tx.ok, tx.dst)
	tx.okIntvl = min(2*tx.okIntvl, tx.l.t.t2)
	tx.arm(ob, &tx.ok2xx, tx.okIntvl)
}

// respond runs the state machine for a response from the TU. Called with
// the lock held.
func (tx *ServerTx) respond(ob *outbox, res *sip.Response) error {
	code := res.StatusCode
	t := &tx.l.t
	if tag := res.To().Tag(); tag != "" {
		tx.toTag = tag
	}
	if tx.invite() {
		switch tx.state {
		case StateProceeding:
			tx.tryingT.stop()
			tx.last = res
			ob.send(res, tx.dst)
			switch {
			case code < 200:
			case code < 300:
				tx.state = StateAccepted
				tx.indexAck(res)
				tx.arm(ob, &tx.accepted, t.l)
			default:
				tx.state = StateCompleted
				tx.indexAck(res)
				if !tx.reliable {
					tx.interval = t.g
					tx.arm(ob, &tx.retrans, t.g)
				}
				tx.arm(ob, &tx.timeout, t.h)
				tx.maybeLinger()
			}
			return nil
		case StateAccepted:
			if code >= 200 && code < 300 {
				ob.send(res, tx.dst)
				return nil
			}
			return ErrFinalSent
		case StateCompleted, StateConfirmed:
			return ErrFinalSent
		}
		return ErrTerminated
	}
	switch tx.state {
	case StateTrying, StateProceeding:
		tx.last = res
		if code < 200 {
			ob.send(res, tx.dst)
			tx.state = StateProceeding
			return nil
		}
		tx.state = StateCompleted
		// A refusal (>= 300) sent within T1 of its request ends at once,
		// as over a reliable transport, rather than stay for Timer J: the
		// request had no effect, so a retransmission (no sooner than T1
		// later) handled anew gets the same answer as quickly (a challenge
		// gets a fresh nonce), and a flood of refused requests (wrong
		// passwords, challenges) then pins no memory. RFC 3261 §8.2.7
		// lets a UAS answer so statelessly. So does a CANCEL that found
		// no place (handleCancel). A refusal that took longer (a proxy's
		// 408 after its branch timed out) stays, so that a retransmission
		// gets it again at once instead of being handled as long again;
		// a 2xx stays too: its request may have changed something, and
		// must not be carried out twice.
		j := unreliable(t.j, tx.reliable)
		if tx.endAtOnce || code >= 300 && tx.l.timers.now()-tx.born < int64(t.t1) {
			j = 0
		}
		if j > 0 && tx.l.resender != nil {
			ob.sendKept(res, tx.dst)
		} else {
			ob.send(res, tx.dst)
		}
		tx.arm(ob, &tx.linger, j)
		tx.maybeLinger()
		return nil
	case StateCompleted:
		return ErrFinalSent
	}
	return ErrTerminated
}

// indexAck lets the ACK of an RFC 2543 INVITE, which carries the To tag of
// the final response, find the transaction.
func (tx *ServerTx) indexAck(res *sip.Response) {
	if tx.rfc3261 || tx.legacy.hasAck {
		return
	}
	k := tx.legacy.key
	k.toTag = res.To().Tag()
	if k == tx.legacy.key {
		return
	}
	tx.legacy.ack, tx.legacy.hasAck = k, true
	tx.l.addAckKey(tx, k)
}

// onRetransmit is Timer G.
func (tx *ServerTx) onRetransmit(ob *outbox) {
	if tx.state != StateCompleted {
		return
	}
	ob.send(tx.last, tx.dst)
	tx.interval = min(2*tx.interval, tx.l.t.t2)
	tx.arm(ob, &tx.retrans, tx.interval)
}

// onTimeout is Timer H.
func (tx *ServerTx) onTimeout(ob *outbox) {
	if tx.state == StateCompleted {
		tx.l.log.Debug("sip transaction: no ack for final response", "branch", tx.key.branch)
		tx.terminate(ob, ErrTimeout)
	}
}

// onLinger is Timer I or J; onAccepted is Timer L.
func (tx *ServerTx) onLinger(ob *outbox)   { tx.terminate(ob, nil) }
func (tx *ServerTx) onAccepted(ob *outbox) { tx.terminate(ob, nil) }

// receive runs the state machine for a request matched to tx: a
// retransmission, or an ACK. It reports whether req must go to the Handler
// (an ACK in Accepted).
func (tx *ServerTx) receive(req *sip.Request) (toTU bool) {
	tx.mu.Lock()
	var ob outbox
	ack := req.Method == sip.MethodAck
	switch tx.state {
	case StateTrying: // absorbed
	case StateProceeding:
		switch {
		case ack: // no final response to acknowledge yet
		case tx.last != nil:
			ob.send(tx.last, tx.dst)
		case tx.invite(): // retransmitted before 100 Trying went: send it now
			tx.sendTrying(&ob)
		}
	case StateCompleted:
		switch {
		case ack && tx.invite():
			tx.retrans.stop()
			tx.timeout.stop()
			tx.state = StateConfirmed
			tx.arm(&ob, &tx.linger, unreliable(tx.l.t.i, tx.reliable))
			tx.maybeLinger()
		case ack:
		case tx.wire != nil:
			ob.resend(tx.wire, tx.dst)
		default:
			ob.send(tx.last, tx.dst)
		}
	case StateConfirmed: // ACK retransmissions absorbed
	case StateAccepted:
		toTU = ack // INVITE retransmissions are absorbed (RFC 6026 §8.7)
	}
	tx.mu.Unlock()
	tx.flushCtx(tx.l.ctx, ob)
	return toTU
}

// cancelable reports whether the INVITE has no final response yet, and
// returns the To tag its responses carry so far, choosing one if none did:
// the 200 to the CANCEL and the 487 that follows carry the same tag
// (RFC 3261 §16.10).
func (tx *ServerTx) cancelable() (ok bool, toTag string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if !tx.invite() || tx.state != StateProceeding {
		return false, ""
	}
	if tx.toTag == "" {
		tx.toTag = sip.NewTag()
	}
	return true, tx.toTag
}

// ToTag returns the To tag of the responses sent so far, "" if none had
// one; after a CANCEL, the tag its 200 carried, which the 487 should carry
// too.
func (tx *ServerTx) ToTag() string {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.toTag
}

// signalCancel closes Canceled, unless a final response was sent
// meanwhile.
func (tx *ServerTx) signalCancel() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.invite() && tx.state == StateProceeding && !tx.isCanceled {
		tx.isCanceled = true
		close(tx.canceled)
		tx.endCtx()
	}
}

// terminate moves to Terminated. Called with the lock held.
func (tx *ServerTx) terminate(ob *outbox, err error) {
	if tx.state == StateTerminated {
		return
	}
	tx.state = StateTerminated
	tx.linger.stop()
	if tx.invite() {
		tx.tryingT.stop()
		tx.retrans.stop()
		tx.timeout.stop()
		tx.accepted.stop()
		tx.ok2xx.stop()
	}
	if err != nil && tx.err == nil {
		tx.err = err
	}
	if tx.done != nil {
		close(tx.done)
	}
	tx.endCtx()
	ob.removed = true
}

// maybeLinger puts the transaction on the Layer's lists of those that may
// be ended early once it only absorbs retransmissions: its handler has
// returned and its final response is out (Completed, Confirmed), or its
// 2xx is (Accepted), unless Respond2xx still retransmits it. Called with
// the lock held.
func (tx *ServerTx) maybeLinger() {
	if !tx.handlerDone {
		return
	}
	switch tx.state {
	case StateCompleted, StateConfirmed:
	case StateAccepted:
		if tx.ok2xx.armed {
			return
		}
	default:
		return
	}
	tx.shed()
	if tx.lingerAsked {
		return
	}
	tx.lingerAsked = true
	tx.l.list(tx)
}

// shed lets go of the messages that a transaction which only absorbs
// retransmissions no longer needs, for the up to 64*T1 (Timers J, L) that
// it lingers: under call overload those lingering transactions are most of
// the heap. The request goes (the handler, which had it, has returned),
// and so does the 100 Trying; in Accepted and Confirmed every response
// goes too, since a retransmitted INVITE is absorbed without an answer
// (RFC 6026 §8.7) and so is an ACK; only Completed keeps its final
// response, which it sends again (Timer G, retransmitted requests).
// Layer.list lets go of the request's text behind the keys. Called with
// the lock held, once the handler has returned.
func (tx *ServerTx) shed() {
	tx.req = nil
	if tx.invite() {
		tx.trying = nil
	}
	switch tx.state {
	case StateAccepted:
		tx.last = nil
		if !tx.ok2xx.armed {
			tx.ok = nil
		}
	case StateConfirmed:
		tx.last = nil
	case StateCompleted:
		if tx.wire != nil {
			tx.last = nil
		}
	}
}

// handlerReturned runs when ServeSIP returns: it answers the request if the
// handler did not, and frees the slot if the transaction is over.
func (tx *ServerTx) handlerReturned() {
	tx.mu.Lock()
	tx.handlerDone = true
	pending := tx.state == StateTrying || tx.state == StateProceeding
	canceled := tx.invite() && tx.isCanceled
	tx.mu.Unlock()
	if pending {
		code := 500
		if canceled {
			code = 487
		}
		if err := tx.Respond(tx.autoResponse(code)); err != nil {
			tx.l.log.Debug("sip transaction: answering for the handler", "status", code, "err", err)
		}
	}
	tx.mu.Lock()
	tx.maybeLinger()
	tx.mu.Unlock()
	tx.l.handlerDone(tx)
}

// autoResponse builds a response of the layer's own, with the To tag of the
// responses already sent, or a new one.
func (tx *ServerTx) autoResponse(code int) *sip.Response {
	tx.mu.Lock()
	req, tag := tx.req, tx.toTag
	tx.mu.Unlock()
	res := sip.NewResponse(req, code, "")
	if tag == "" {
		tag = sip.NewTag()
	}
	res.SetToTag(tag)
	return res
}

// flushCtx sends what a step queued, then runs its zero-duration timer. It
// returns the transport error, if any.
func (tx *ServerTx) flushCtx(ctx context.Context, ob outbox) error {
	var err error
	for i := 0; i < ob.n; i++ {
		m := ob.msgs[i]
		var e error
		switch {
		case m.wire != nil:
			e = tx.l.resender.Resend(ctx, m.wire, m.dst)
		case m.keep:
			var wire []byte
			var to sip.Addr
			if wire, to, e = tx.l.resender.SendKept(ctx, m.msg.(*sip.Response), m.dst); e == nil && wire != nil {
				tx.keep(wire, to)
			}
		default:
			e = tx.l.sender.Send(ctx, m.msg, m.dst)
		}
		if e != nil {
			err = fmt.Errorf("%w: %w", ErrTransport, e)
			tx.transportError(err)
			ob.nDue = 0
			break
		}
	}
	tx.after(ob)
	ob.runDue()
	return err
}

// keep takes wire, the bytes the final response went as to to, in place
// of the response, which goes once the handler has returned (shed): a
// handler may still read it. A transaction that ended meanwhile keeps
// nothing.
func (tx *ServerTx) keep(wire []byte, to sip.Addr) {
	tx.mu.Lock()
	if tx.state == StateCompleted && tx.wire == nil {
		tx.wire, tx.dst = wire, to
		if tx.handlerDone {
			tx.last = nil
		}
	}
	tx.mu.Unlock()
}

// fire runs the step of the timer s, armed with gen, unless it was
// stopped or re-armed since. It never waits for the TU: it takes only
// this transaction's lock.
func (tx *ServerTx) fire(s *timerSlot, gen uint64) {
	if tx.take(s, gen) {
		var ob outbox
		tx.onTimer(s, &ob)
		tx.mu.Unlock()
		_ = tx.flushCtx(tx.l.ctx, ob)
	}
}

// onTimer runs the step of the timer s. Called with the lock held.
func (tx *ServerTx) onTimer(s *timerSlot, ob *outbox) {
	if s == &tx.linger {
		tx.onLinger(ob)
		return
	}
	switch s {
	case &tx.tryingT:
		tx.sendTrying(ob)
	case &tx.retrans:
		tx.onRetransmit(ob)
	case &tx.timeout:
		tx.onTimeout(ob)
	case &tx.accepted:
		tx.onAccepted(ob)
	case &tx.ok2xx:
		tx.on2xx(ob)
	}
}

func (tx *ServerTx) after(ob outbox) {
	if ob.removed {
		tx.l.removeServer(tx)
	}
}

// transportError terminates the transaction (RFC 3261 §17.2.4), except in
// Accepted, where the TU, which retransmits the 2xx, gets the error from
// Respond and the transaction stays to match ACKs (RFC 6026).
func (tx *ServerTx) transportError(err error) {
	tx.mu.Lock()
	var ob outbox
	if tx.state != StateAccepted {
		tx.l.log.Debug("sip transaction: server transport error", "method", tx.method(), "err", err)
		tx.terminate(&ob, err)
	}
	tx.mu.Unlock()
	tx.after(ob)
}

// shutdown is Layer.Close's.
func (tx *ServerTx) shutdown() { tx.shutdownWith(ErrClosed) }

// shutdownWith terminates the transaction with err, at once.
func (tx *ServerTx) shutdownWith(err error) {
	tx.mu.Lock()
	var ob outbox
	tx.terminate(&ob, err)
	tx.mu.Unlock()
	tx.after(ob)
}
