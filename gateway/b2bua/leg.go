package b2bua

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// leg is one side of a call: the dialog with the caller (the gateway is
// its UAS) or with the callee (its UAC), with its own Call-ID, tags, CSeq
// and Contact.
type leg struct {
	c       *call
	role    string // callerRole or calleeRole
	web     bool   // the peer is a browser
	contact sip.Address
	key     legKey
	uri     sip.URI // the peer, for CallInfo
	user    string  // the user of ours the peer is, "" for a trunk or stranger

	mu         sync.Mutex
	dst        sip.Addr  // where the leg's requests go; see dest
	down       *flowDown // while dst is a connection that closed
	dlg        *dialog.Dialog
	acks       map[uint32]*pendingAck // 2xx sent on the leg, by CSeq, until their ACK
	session    sessionTimer
	peerUpdate bool // the peer allows UPDATE
	// reinvite is the last re-INVITE sent on the leg that got a 2xx, and
	// reinviteAck its ACK, sent again for a 2xx to it that comes after
	// its transaction ended (ackAgain). Under mu.
	reinvite, reinviteAck *sip.Request

	// turn is the leg's sending turn, a one-place semaphore: see start.
	turn chan struct{}
}

func newLeg(c *call, role string, web bool, dst sip.Addr, key legKey, uri sip.URI) *leg {
	return &leg{
		c:       c,
		role:    role,
		web:     web,
		dst:     dst,
		contact: c.b.opts.Identity.Contact(contactUser, dst.Transport),
		key:     key,
		uri:     uri,
		acks:    make(map[uint32]*pendingAck),
		turn:    make(chan struct{}, 1),
	}
}

// contactUser is the user part of the gateway's Contact in its calls.
const contactUser = "switchboard"

// stampVia puts the gateway's top Via, with a new branch, on a request
// going to dst.
func (l *leg) stampVia(req *sip.Request, dst sip.Addr) {
	req.PrependVia(l.c.b.opts.Identity.Via(dst.Transport, sip.Params(";branch="+sip.NewBranch()+";rport")))
}

// dest returns where the leg's requests go: the peer's address, or the
// connection that reaches it, which a reconnect or a phone that moved
// changes.
func (l *leg) dest() sip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dst
}

func (l *leg) setDest(dst sip.Addr) {
	l.mu.Lock()
	l.dst = dst
	l.mu.Unlock()
}

func (l *leg) dialog() *dialog.Dialog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dlg
}

func (l *leg) setDialog(d *dialog.Dialog) {
	d.SetLocalContact(l.contact)
	l.mu.Lock()
	l.dlg = d
	l.mu.Unlock()
}

func (l *leg) info() LegInfo {
	l.mu.Lock()
	dst, down := l.dst, l.down
	l.mu.Unlock()
	li := LegInfo{
		CallID:   l.key.callID,
		LocalTag: l.key.localTag,
		URI:      l.uri.String(),
		Dst:      dst.String(),
		WebRTC:   l.web,
	}
	if down != nil {
		li.FlowDownSince = down.since
	}
	if d := l.dialog(); d != nil {
		li.RemoteTag = d.ID().RemoteTag
	}
	return li
}

// send stamps the gateway's Via on req and starts its client transaction
// towards the leg's peer. While the connection that reaches the peer is
// down, it waits for the new one (or the end of Options.FlowGrace, or
// ctx).
func (l *leg) send(ctx context.Context, req *sip.Request) (*transaction.ClientTx, error) {
	dst, err := l.waitFlow(ctx)
	if err != nil {
		return nil, fmt.Errorf("b2bua: %s to the %s: %w", req.Method, l.role, err)
	}
	return l.transmit(ctx, req, dst)
}

// transmit stamps the gateway's Via on req and starts its client
// transaction towards dst.
func (l *leg) transmit(ctx context.Context, req *sip.Request, dst sip.Addr) (*transaction.ClientTx, error) {
	l.stampVia(req, dst)
	tx, err := l.c.b.opts.Transactions.Request(ctx, req, dst)
	if err != nil {
		return nil, fmt.Errorf("b2bua: %s to the %s: %w", req.Method, l.role, err)
	}
	return tx, nil
}

// errNotBuilt wraps why start sent nothing: the call ended first, the
// dialog could not carry the request (gone, or ended by a BYE), or fill
// refused it.
var errNotBuilt = errors.New("b2bua: request not built")

// start builds a request of method in d (the leg's dialog when nil), has
// fill, if set, complete it, and starts its client transaction towards
// the leg's peer.
//
// The CSeq is taken and the request handed to the transaction layer
// under the leg's turn, so that the requests of a leg leave in the order
// of their CSeqs, whichever goroutine sends them: requests relayed from
// the other leg, and the gateway's own (session refreshes, keyframe
// requests, BYE). A peer answers a request whose CSeq is lower than one
// it has seen with 500 (RFC 3261 §12.2.2). While the connection to the
// peer is down (waitFlow), the turn waits for it with the request: those
// that come later wait behind.
func (l *leg) start(ctx context.Context, d *dialog.Dialog, method string, fill func(*sip.Request) error) (*sip.Request, *transaction.ClientTx, error) {
	// Checked first: a request of a call that ended takes no CSeq.
	if err := context.Cause(ctx); err != nil {
		return nil, nil, fmt.Errorf("%w: %s to the %s: %w", errNotBuilt, method, l.role, err)
	}
	select {
	case l.turn <- struct{}{}:
	default:
		if f := l.c.b.onTurnWait; f != nil {
			f(l.role, method)
		}
		select {
		case l.turn <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: %s to the %s: %w", errNotBuilt, method, l.role, context.Cause(ctx))
		}
	}
	defer func() { <-l.turn }()
	dst, err := l.waitFlow(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s to the %s: %w", errNotBuilt, method, l.role, err)
	}
	if d == nil {
		if d = l.dialog(); d == nil {
			return nil, nil, fmt.Errorf("%w: %w: no dialog with the %s", errNotBuilt, ErrDialogGone, l.role)
		}
	}
	req, err := d.NewRequest(method)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s to the %s: %w", errNotBuilt, method, l.role, err)
	}
	if ua := l.c.b.opts.UserAgent; ua != "" {
		req.Add("User-Agent", ua)
	}
	if fill != nil {
		if err := fill(req); err != nil {
			return nil, nil, fmt.Errorf("%w: %s to the %s: %w", errNotBuilt, method, l.role, err)
		}
	}
	tx, err := l.transmit(ctx, req, dst)
	if err != nil {
		return nil, nil, err
	}
	return req, tx, nil
}

// do sends a request of method in the leg's dialog, completed by fill
// (see start), and returns its final response: the dialog learns it, a
// 2xx to a re-INVITE is acknowledged, and a 481 or 408 ends the call
// (the dialog is gone; to a NOTIFY, only its subscription is, RFC 5057
// §5.4). When ctx ends first an INVITE is canceled and ctx's cause
// returned.
func (l *leg) do(ctx context.Context, method string, fill func(*sip.Request) error) (*sip.Response, error) {
	return l.relay(ctx, method, fill, nil)
}

// relay is do for a request that relays one received on the other leg:
// sent, if set, is called once the request left (or could not), so that
// the next request of that leg may be relayed (Options.Order) without
// waiting for its answer.
func (l *leg) relay(ctx context.Context, method string, fill func(*sip.Request) error, sent func()) (*sip.Response, error) {
	req, tx, err := l.start(ctx, nil, method, fill)
	if sent != nil {
		sent()
	}
	if err != nil {
		return nil, err
	}
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				return nil, fmt.Errorf("b2bua: %s to the %s: %w", req.Method, l.role, tx.Err())
			}
			if res.StatusCode < 200 {
				continue
			}
			d := l.dialog()
			_ = d.ReceiveResponse(res)
			if req.Method == sip.MethodInvite && res.IsSuccess() {
				if ack, err := l.ack(d, res); err == nil {
					l.mu.Lock()
					l.reinvite, l.reinviteAck = req, ack
					l.mu.Unlock()
					l.c.b.spawn(func() { l.reack(tx, ack) })
				}
			}
			if (res.StatusCode == 481 || res.StatusCode == 408) && req.Method != sip.MethodNotify {
				l.c.log.Info("dialog gone", "leg", l.role, "method", req.Method, "status", res.StatusCode)
				l.c.hangup(fmt.Errorf("%w: %d to %s on the %s's leg", ErrDialogGone, res.StatusCode, req.Method, l.role), l)
			}
			return res, nil
		case <-ctx.Done():
			if req.Method == sip.MethodInvite {
				_ = tx.Cancel()
			}
			return nil, context.Cause(ctx)
		}
	}
}

// ack acknowledges res, a 2xx to an INVITE of d, and returns the ACK.
func (l *leg) ack(d *dialog.Dialog, res *sip.Response) (*sip.Request, error) {
	ack, err := d.NewAck(res.CSeq().Seq)
	if err != nil {
		return nil, fmt.Errorf("b2bua: ack to the %s: %w", l.role, err)
	}
	l.stampVia(ack, l.dest())
	l.sendAck(ack)
	return ack, nil
}

// sendAck sends an ACK for a 2xx, which is no transaction (RFC 3261
// §17.1.1.3): straight to the transport, even after the call ended (the
// 2xx that crossed a CANCEL is acknowledged, then ended with BYE).
func (l *leg) sendAck(ack *sip.Request) {
	if err := l.c.b.opts.Sender.Send(context.WithoutCancel(l.c.ctx), ack, l.dest()); err != nil {
		l.c.log.Debug("sending ack", "leg", l.role, "err", err)
	}
}

// ackAgain sends the ACK of the leg's last answered re-INVITE again when
// res, a 2xx that matched no client transaction, answers that re-INVITE
// (answers): its transaction, which passes the retransmissions on to
// reack, was ended early at the client transactions' bound. It reports
// whether it did.
func (l *leg) ackAgain(res *sip.Response) bool {
	l.mu.Lock()
	req, ack := l.reinvite, l.reinviteAck
	l.mu.Unlock()
	if ack == nil || !answers(res, req) {
		return false
	}
	l.sendAck(ack)
	return true
}

// reack sends ack again for every retransmission of the 2xx to tx, until
// the transaction ends or the call does.
func (l *leg) reack(tx *transaction.ClientTx, ack *sip.Request) {
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				return
			}
			if res.IsSuccess() {
				l.sendAck(ack)
			}
		case <-l.c.ctx.Done():
			return
		}
	}
}

// bye ends the leg's dialog with a BYE, unless it has ended already.
func (l *leg) bye() {
	if d := l.dialog(); d != nil && d.State() == dialog.Confirmed {
		l.byeDialog(d, true)
	}
}

// byeDialog sends BYE in d and waits for its final response in a
// goroutine that Close waits for; wait false sends it from the current
// goroutine, which is already one.
func (l *leg) byeDialog(d *dialog.Dialog, async bool) {
	run := func() {
		// The call's context is done: the BYE outlives it.
		_, tx, err := l.start(context.WithoutCancel(l.c.ctx), d, sip.MethodBye, nil)
		if errors.Is(err, errNotBuilt) {
			l.c.log.Debug("bye", "leg", l.role, "err", err)
			return
		}
		if err != nil {
			l.c.log.Info("bye", "leg", l.role, "err", err)
			return
		}
		for res := range tx.Responses() {
			if res.StatusCode >= 200 {
				l.c.log.Debug("bye answered", "leg", l.role, "status", res.StatusCode)
			}
		}
	}
	if !async || !l.c.b.spawn(run) {
		run()
	}
}

// pendingAck is a 2xx the gateway sent to an INVITE on a leg, waiting for
// its ACK.
type pendingAck struct {
	stop      func()
	acked     chan struct{}
	isAcked   bool
	onAck     func(ack *sip.Request)
	onTimeout func()
}

// respond2xx sends res, a 2xx to the INVITE of tx, and retransmits it
// until the ACK (see call.onAck). onAck, if set, gets the ACK; onTimeout,
// if set, runs when none came before the transaction ended (64*T1).
func (l *leg) respond2xx(tx uas, res *sip.Response, onAck func(*sip.Request), onTimeout func()) error {
	cseq := res.CSeq().Seq
	p := &pendingAck{acked: make(chan struct{}), onAck: onAck, onTimeout: onTimeout}
	l.mu.Lock()
	l.acks[cseq] = p
	l.mu.Unlock()
	stop, err := tx.Respond2xx(res)
	l.mu.Lock()
	if err != nil {
		delete(l.acks, cseq)
		l.mu.Unlock()
		return err
	}
	p.stop = stop
	acked := p.isAcked
	l.mu.Unlock()
	if acked {
		stop()
		return nil
	}
	l.c.b.spawn(func() {
		select {
		case <-p.acked:
		case <-tx.Done():
			l.mu.Lock()
			timedOut := l.acks[cseq] == p
			if timedOut {
				delete(l.acks, cseq)
			}
			l.mu.Unlock()
			if timedOut && p.onTimeout != nil {
				l.c.log.Info("no ack for the 2xx", "leg", l.role, "cseq", cseq)
				p.onTimeout()
			}
		case <-l.c.ctx.Done():
		}
	})
	return nil
}

// takeAck returns the pending 2xx that ack acknowledges, marking it
// acknowledged, and the function that stops its retransmissions (nil when
// respond2xx has yet to learn it, and will call it itself); nil for a
// retransmitted ACK.
func (l *leg) takeAck(ack *sip.Request) (*pendingAck, func()) {
	cseq := ack.CSeq().Seq
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.acks[cseq]
	if p == nil {
		return nil, nil
	}
	delete(l.acks, cseq)
	p.isAcked = true
	return p, p.stop
}

// stamp adds what every response of the leg carries to res, a response
// built elsewhere: the leg's To tag, and Server.
func (l *leg) stamp(res *sip.Response) *sip.Response {
	res.SetToTag(l.key.localTag)
	if ua := l.c.b.opts.UserAgent; ua != "" {
		res.Add("Server", ua)
	}
	return res
}

// reply builds a response to req, a request received in the leg's
// dialog, with the gateway's Contact on a 2xx to a target refresh.
func (l *leg) reply(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	res.SetToTag(l.key.localTag)
	if code >= 200 && code < 300 && (req.Method == sip.MethodInvite || req.Method == sip.MethodUpdate) {
		res.Add("Contact", l.contact.String())
		res.Add("Allow", identity.Allow)
		res.Add("Supported", identity.CallSupported(false, l.c.b.opts.SessionExpires > 0))
	}
	if ua := l.c.b.opts.UserAgent; ua != "" {
		res.Add("Server", ua)
	}
	return res
}
