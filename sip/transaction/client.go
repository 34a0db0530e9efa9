package transaction

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// responseBuffer is the capacity of ClientTx.Responses. Provisional
// responses may use all but one slot, which is kept for the final response.
const responseBuffer = 8

// ClientTx is a client transaction (RFC 3261 §17.1 with RFC 6026): INVITE
// (Calling, Proceeding, Completed, Accepted, Terminated) or non-INVITE
// (Trying, Proceeding, Completed, Terminated).
//
// Responses are delivered on a buffered channel and never block the
// transaction: when the TU does not read, provisional responses beyond the
// buffer are dropped, but the first final response always has a slot. Later
// 2xx responses to an INVITE (retransmissions, other forks) are delivered
// while there is room; one that does not fit is dropped, and the UAS
// retransmits it until it is acknowledged (§13.3.1.4), so a TU that resumes
// reading still sees it.
type ClientTx struct {
	core
	req      *sip.Request
	dst      sip.Addr
	key      clientKey
	invite   bool
	reliable bool
	// forwarding: started with a Forwarding context; Timer F is then
	// ForwardTimerF.
	forwarding bool

	retrans  timerSlot // A or E
	interval time.Duration
	timeout  timerSlot // B or F
	linger   timerSlot // D or K
	accepted timerSlot // M

	ack        *sip.Request // built at the first non-2xx final response
	responses  chan *sip.Response
	respClosed bool
	done       chan struct{}
	err        error

	// released: the TU reads no more (Release); a 2xx goes to
	// Config.OnStrayResponse and ends the transaction.
	released bool

	cancelPending bool // Cancel was called before a provisional response
	cancelSent    bool
	cancelReason  string // the Reason header of the CANCEL, if any
	reported      bool   // OnFinal was called

	// Guarded by Layer.mu: on the Layer's list of lingering client
	// transactions (lingerClient), and its place there.
	lingering bool
	link      link[*ClientTx]
}

func newClientTx(l *Layer, req *sip.Request, dst sip.Addr, via sip.Via) *ClientTx {
	tx := &ClientTx{
		req:       req,
		dst:       dst,
		key:       clientKey{via.Branch(), knownMethod(req.Method)},
		invite:    req.Method == sip.MethodInvite,
		reliable:  dst.Reliable(),
		responses: make(chan *sip.Response, responseBuffer),
		done:      make(chan struct{}),
	}
	tx.init(l, tx, &tx.retrans, &tx.timeout, &tx.linger, &tx.accepted)
	if tx.invite {
		tx.state = StateCalling
	} else {
		tx.state = StateTrying
	}
	return tx
}

func (tx *ClientTx) listLink(int) *link[*ClientTx] { return &tx.link }

// knownMethod returns m, as package sip's constant when it is a known
// method: a key that outlives its request (shed) must not hold a slice of
// the text it was parsed from.
func knownMethod(m string) string {
	if k, ok := sip.KnownMethod(m); ok {
		return k
	}
	return strings.Clone(m)
}

// Request returns the request the transaction sends, or nil once a final
// response has arrived: the transaction then lets it go (shed), since it
// sends it no more.
func (tx *ClientTx) Request() *sip.Request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.req
}

// shed lets go of the request once a final response has arrived: the
// transaction sends it no more (the ACK of a non-2xx is built already),
// and Timers D, K and M keep it for up to 64*T1 only to absorb
// retransmitted responses. Called with the lock held.
func (tx *ClientTx) shed() { tx.req = nil }

// Responses returns the channel on which the responses are delivered: the
// provisional ones, the final one, and for an INVITE every 2xx that arrives
// in the Accepted state. A timeout delivers a synthesized 408 and a
// transport error a synthesized 503 (their Source is the zero Addr). The
// channel is closed when no more responses will come: right after the final
// response, except after a 2xx to an INVITE, where it stays open until Timer
// M ends the Accepted state. A response received is the TU's: the
// transaction reads it no more once it is on the channel, so that a proxy
// may change it to forward it (remove its Via) without a copy.
func (tx *ClientTx) Responses() <-chan *sip.Response { return tx.responses }

// Done is closed when the transaction terminates, which may be after
// Responses is closed (Timers D, K and M absorb retransmissions).
func (tx *ClientTx) Done() <-chan struct{} { return tx.done }

// Err returns why the transaction ended: nil after a final response,
// ErrTimeout, an error wrapping ErrTransport, or ErrClosed. It is final once
// Responses is closed, except that a transport error while sending the ACK
// of a non-2xx response may still set it before Done is closed.
func (tx *ClientTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// State returns the current state.
func (tx *ClientTx) State() State {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.state
}

// Release tells the transaction that the TU reads its Responses no more:
// a proxy that forwarded its final response and has nothing left to
// decide. An INVITE transaction in the Accepted state then ends at once,
// and so does one that reaches it later: the 2xx that arrive afterwards
// (retransmissions, other forks) match no transaction and go to
// Config.OnStrayResponse, which a proxy forwards statelessly as it would
// from Accepted (RFC 6026 §7.3), without a TU that waits for Timer M. A
// 2xx that ends a released transaction goes there too. In other states
// the transaction runs on (it acknowledges a non-2xx itself), and
// provisional and non-2xx responses are dropped.
func (tx *ClientTx) Release() {
	tx.mu.Lock()
	var ob outbox
	tx.released = true
	if tx.state == StateAccepted {
		tx.terminate(&ob, nil)
	}
	tx.mu.Unlock()
	tx.flushCtx(tx.l.ctx, ob)
}

// Cancel cancels an INVITE (RFC 3261 §9.1): it sends a CANCEL built by
// NewCancel to the same destination in a client transaction of its own, or,
// before any provisional response has arrived, as soon as one does. The
// outcome shows on the INVITE transaction (typically a 487). Cancel does
// nothing once a final response has arrived or when called again. Errors of
// the CANCEL transaction itself are only logged.
func (tx *ClientTx) Cancel() error { return tx.CancelWithReason("") }

// CancelWithReason is Cancel with a Reason header (RFC 3326) on the
// CANCEL, e.g. SIP;cause=200;text="Call completed elsewhere" when another
// branch of a fork answered, so that the phone does not show a missed
// call. An empty reason sends none.
func (tx *ClientTx) CancelWithReason(reason string) error {
	if !tx.invite {
		return fmt.Errorf("%w: only an invite can be canceled", ErrInvalidRequest)
	}
	tx.mu.Lock()
	switch {
	case tx.state == StateCalling:
		tx.cancelPending = true
		tx.cancelReason = reason
		tx.mu.Unlock()
		return nil
	case tx.state == StateProceeding && !tx.cancelSent:
		tx.cancelSent = true
		tx.cancelReason = reason
		tx.mu.Unlock()
		tx.startCancel()
		return nil
	}
	tx.mu.Unlock()
	return nil
}

func (tx *ClientTx) startCancel() {
	tx.mu.Lock()
	inv, reason := tx.req, tx.cancelReason
	tx.mu.Unlock()
	if inv == nil {
		return // a final response came meanwhile: nothing left to cancel
	}
	req := NewCancel(inv)
	if reason != "" {
		req.Add("Reason", reason)
	}
	c, err := tx.l.Request(tx.l.ctx, req, tx.dst)
	if err != nil {
		tx.l.log.Debug("sip transaction: sending cancel", "branch", tx.key.branch, "err", err)
		return
	}
	_ = c // runs on its own; its responses are not needed
}

// start arms the first timers and queues the first transmission (§17.1.1.2,
// §17.1.2.2). Called with the lock held.
func (tx *ClientTx) start(ob *outbox) {
	if tx.state == StateTerminated { // closed in between
		return
	}
	t := &tx.l.t
	if tx.invite {
		if !tx.reliable {
			tx.interval = t.a
			tx.arm(ob, &tx.retrans, t.a)
		}
		tx.arm(ob, &tx.timeout, t.b)
	} else {
		if !tx.reliable {
			tx.interval = t.e
			tx.arm(ob, &tx.retrans, t.e)
		}
		f := t.f
		if tx.forwarding {
			f = t.fwdF
		}
		tx.arm(ob, &tx.timeout, f)
	}
	ob.send(tx.req, tx.dst)
}

// onRetransmit is Timer A (INVITE: the interval doubles) or Timer E
// (non-INVITE: it doubles up to T2, and is T2 in Proceeding).
func (tx *ClientTx) onRetransmit(ob *outbox) {
	switch tx.state {
	case StateCalling:
		tx.interval *= 2
	case StateTrying:
		tx.interval = min(2*tx.interval, tx.l.t.t2)
	case StateProceeding: // non-INVITE only: A is stopped in Proceeding
		tx.interval = tx.l.t.t2
	default:
		return
	}
	ob.send(tx.req, tx.dst)
	tx.arm(ob, &tx.retrans, tx.interval)
}

// onTimeout is Timer B (Calling) or Timer F (Trying, Proceeding).
func (tx *ClientTx) onTimeout(ob *outbox) {
	switch tx.state {
	case StateCalling, StateTrying, StateProceeding:
		tx.l.log.Debug("sip transaction: client timeout", "method", tx.req.Method, "branch", tx.key.branch)
		tx.deliver(tx.synthesize(408), true)
		tx.terminate(ob, ErrTimeout)
	}
}

// onLinger is Timer D or K; onAccepted is Timer M.
func (tx *ClientTx) onLinger(ob *outbox)   { tx.terminate(ob, nil) }
func (tx *ClientTx) onAccepted(ob *outbox) { tx.terminate(ob, nil) }

// receive runs the state machine for a response matched to tx.
func (tx *ClientTx) receive(res *sip.Response) {
	tx.mu.Lock()
	var ob outbox
	if tx.invite {
		tx.receiveInvite(&ob, res)
	} else {
		tx.receiveNonInvite(&ob, res)
	}
	tx.mu.Unlock()
	tx.flushCtx(tx.l.ctx, ob)
}

func (tx *ClientTx) receiveInvite(ob *outbox, res *sip.Response) {
	code := res.StatusCode
	t := &tx.l.t
	switch tx.state {
	case StateCalling, StateProceeding:
		switch {
		case code < 200:
			if tx.state == StateCalling {
				tx.retrans.stop()
				tx.timeout.stop()
				tx.state = StateProceeding
				if tx.cancelPending && !tx.cancelSent {
					tx.cancelSent = true
					ob.cancel = true
				}
			}
			tx.deliver(res, false)
		case code < 300:
			tx.retrans.stop()
			tx.timeout.stop()
			tx.state = StateAccepted
			tx.deliver(res, true)
			tx.shed()
			if tx.released {
				ob.stray = res
				tx.terminate(ob, nil)
				return
			}
			tx.arm(ob, &tx.accepted, t.m)
			tx.lingers()
		default:
			tx.retrans.stop()
			tx.timeout.stop()
			tx.state = StateCompleted
			tx.ack = tx.buildAck(res)
			ob.send(tx.ack, tx.dst)
			tx.deliver(res, true)
			tx.closeResponses()
			tx.shed()
			tx.arm(ob, &tx.linger, unreliable(t.d, tx.reliable))
			tx.lingers()
		}
	case StateCompleted:
		if code >= 300 { // a retransmission of the final response
			ob.send(tx.ack, tx.dst)
		}
	case StateAccepted:
		if code >= 200 && code < 300 {
			tx.deliver(res, true)
		}
	}
}

func (tx *ClientTx) receiveNonInvite(ob *outbox, res *sip.Response) {
	switch tx.state {
	case StateTrying, StateProceeding:
		if res.StatusCode < 200 {
			tx.state = StateProceeding
			tx.deliver(res, false)
			return
		}
		tx.retrans.stop()
		tx.timeout.stop()
		tx.state = StateCompleted
		tx.deliver(res, true)
		tx.closeResponses()
		tx.shed()
		tx.arm(ob, &tx.linger, unreliable(tx.l.t.k, tx.reliable))
		tx.lingers()
	}
	// Completed: retransmissions are absorbed.
}

// lingers notes that the transaction, at its final response, works no
// more: it waits for a timer only to absorb retransmissions, and does not
// count against MaxClientTransactions as working (Request, Overloaded).
// One that ends right after its response (a zero timer, over a reliable
// transport) is left off the list. Called with the lock held.
func (tx *ClientTx) lingers() {
	if tx.linger.armed || tx.accepted.armed {
		tx.l.lingerClient(tx)
	}
}

// deliver queues res for the TU without ever blocking: only this
// transaction sends on the channel, under its lock, and only when there is
// room. Called with the lock held.
func (tx *ClientTx) deliver(res *sip.Response, final bool) {
	if final && !tx.reported {
		tx.reported = true
		if f := tx.l.onFinal; f != nil {
			f(false, tx.key.method, res.StatusCode)
		}
	}
	if tx.respClosed || tx.released {
		return
	}
	room := cap(tx.responses)
	if !final {
		room-- // keep a slot for the final response
	}
	if len(tx.responses) >= room {
		tx.l.log.Debug("sip transaction: tu not reading, dropping response", "status", res.StatusCode, "branch", tx.key.branch)
		return
	}
	tx.responses <- res
}

func (tx *ClientTx) closeResponses() {
	if !tx.respClosed {
		tx.respClosed = true
		close(tx.responses)
	}
}

// terminate moves to Terminated. Called with the lock held.
func (tx *ClientTx) terminate(ob *outbox, err error) {
	if tx.state == StateTerminated {
		return
	}
	tx.state = StateTerminated
	tx.retrans.stop()
	tx.timeout.stop()
	tx.linger.stop()
	tx.accepted.stop()
	if err != nil && tx.err == nil {
		tx.err = err
	}
	tx.closeResponses()
	close(tx.done)
	ob.removed = true
}

// flushCtx sends what a step queued, then runs its zero-duration timer.
func (tx *ClientTx) flushCtx(ctx context.Context, ob outbox) {
	for i := 0; i < ob.n; i++ {
		m := ob.msgs[i]
		if err := tx.l.sender.Send(ctx, m.msg, m.dst); err != nil {
			tx.transportError(err)
			ob.nDue = 0
			break
		}
	}
	if ob.removed {
		tx.l.removeClient(tx)
	}
	if ob.cancel {
		tx.startCancel()
	}
	if ob.stray != nil {
		tx.l.handleStray(ob.stray)
	}
	ob.runDue()
}

// fire runs the step of the timer s, armed with gen, unless it was
// stopped or re-armed since. It never waits for the TU: it takes only
// this transaction's lock.
func (tx *ClientTx) fire(s *timerSlot, gen uint64) {
	if tx.take(s, gen) {
		var ob outbox
		tx.onTimer(s, &ob)
		tx.mu.Unlock()
		tx.flushCtx(tx.l.ctx, ob)
	}
}

// onTimer runs the step of the timer s. Called with the lock held.
func (tx *ClientTx) onTimer(s *timerSlot, ob *outbox) {
	switch s {
	case &tx.retrans:
		tx.onRetransmit(ob)
	case &tx.timeout:
		tx.onTimeout(ob)
	case &tx.linger:
		tx.onLinger(ob)
	case &tx.accepted:
		tx.onAccepted(ob)
	}
}

// transportError: before a final response the TU gets a synthesized 503
// (§8.1.3.1); in Completed (the ACK failed) an INVITE transaction just
// ends, and a non-INVITE one, which sends nothing more, keeps its outcome
// (an ICMP error may report a retransmission late).
func (tx *ClientTx) transportError(cause error) {
	err := fmt.Errorf("%w: %w", ErrTransport, cause)
	tx.mu.Lock()
	var ob outbox
	switch tx.state {
	case StateCalling, StateTrying, StateProceeding:
		tx.l.log.Debug("sip transaction: client transport error", "method", tx.req.Method, "err", cause)
		tx.deliver(tx.synthesize(503), true)
		tx.terminate(&ob, err)
	case StateCompleted:
		if tx.invite {
			tx.terminate(&ob, err)
		}
	}
	tx.mu.Unlock()
	if ob.removed {
		tx.l.removeClient(tx)
	}
}

// shutdown is Layer.Close's.
func (tx *ClientTx) shutdown() { tx.shutdownWith(ErrClosed) }

// shutdownWith terminates the transaction with err, at once.
func (tx *ClientTx) shutdownWith(err error) {
	tx.mu.Lock()
	var ob outbox
	tx.terminate(&ob, err)
	tx.mu.Unlock()
	if ob.removed {
		tx.l.removeClient(tx)
	}
}

// synthesize builds the response the TU gets for a timeout or a transport
// error.
func (tx *ClientTx) synthesize(code int) *sip.Response {
	res := sip.NewResponse(tx.req, code, "")
	warm(&res.Headers)
	return res
}

// buildAck builds the ACK for a non-2xx final response (§17.1.1.3): the
// INVITE's Request-URI, Call-ID, From and CSeq number, method ACK, the To of
// the response, a single Via equal to the INVITE's top Via, and the
// INVITE's Route headers. Max-Forwards is the INVITE's (or 70).
func (tx *ClientTx) buildAck(res *sip.Response) *sip.Request {
	// The top Via is formatted only now: most INVITEs end with a 2xx,
	// whose ACK is not the transaction's.
	ack := NewAck(tx.req, res)
	warm(&ack.Headers)
	return ack
}

// sameHop builds a request that follows inv hop by hop, as the ACK of a
// non-2xx and a CANCEL do: inv's Request-URI, Call-ID, From, CSeq number and
// Route headers, method as given, the single Via via, the To of toFrom, and
// inv's Max-Forwards (or 70).
func sameHop(inv *sip.Request, method, via string, toFrom *sip.Headers) *sip.Request {
	r := sip.NewRequest(method, inv.URI)
	if via != "" {
		r.Add("Via", via)
	}
	if mf := inv.Get("Max-Forwards"); mf != "" {
		r.Add("Max-Forwards", mf)
	} else {
		r.Add("Max-Forwards", "70")
	}
	r.CopyFrom(toFrom, "To")
	r.CopyFrom(&inv.Headers, "From")
	r.CopyFrom(&inv.Headers, "Call-ID")
	r.Add("CSeq", sip.CSeq{Seq: inv.CSeq().Seq, Method: method}.String())
	r.CopyFrom(&inv.Headers, "Route")
	r.Add("Content-Length", "0")
	return r
}

// NewAck builds the ACK of res, a non-2xx final response to inv (RFC 3261
// §17.1.1.3): inv's Request-URI, Call-ID, From, CSeq number and Route, the
// To of res (with its tag), and inv's top Via as its only Via. A client
// transaction sends it by itself; NewAck is for a UA that runs without one.
func NewAck(inv *sip.Request, res *sip.Response) *sip.Request {
	var via string
	if v, ok := inv.TopVia(); ok {
		via = v.String()
	}
	return sameHop(inv, sip.MethodAck, via, &res.Headers)
}

// NewCancel builds the CANCEL of inv (RFC 3261 §9.1): the same Request-URI,
// Call-ID, To, From and CSeq number (method CANCEL), a single Via equal to
// inv's top Via (so the CANCEL has the INVITE's branch), inv's Route
// headers, and inv's Max-Forwards (or 70). Start it with Layer.Request to
// the INVITE's destination, or use ClientTx.Cancel.
func NewCancel(inv *sip.Request) *sip.Request {
	var via string
	if v, ok := inv.TopVia(); ok {
		via = v.String()
	}
	return sameHop(inv, sip.MethodCancel, via, &inv.Headers)
}
