package b2bua

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// branchBuffer is the capacity of Leg.Responses; the last slot is kept
// for the final response.
const branchBuffer = 16

// Leg is a call the B2BUA runs as one branch of a request that the proxy
// forks over browsers and phones alike: to the proxy it looks like the
// client transaction of that branch. Its responses are the caller's, ready
// to forward upstream as they are: built from the caller's INVITE, with
// the B2BUA's To tag and Contact and the SDP translated, so that a caller
// whose 2xx comes from a Leg has its dialog with the B2BUA.
type Leg struct {
	id string
	tx *branchTx
}

// Branch starts a call from the caller of req, an INVITE the proxy
// received, to target, and returns at once; the proxy reads the call's
// responses from Leg.Responses like those of any branch, and Cancel (or
// ctx) gives the branch up. Everything else is as for Call: the caller's
// ACK and in-dialog requests reach the B2BUA through HandleInDialog.
func (b *B2BUA) Branch(ctx context.Context, req *sip.Request, target Target) *Leg {
	req = req.Clone()
	bt := newBranchTx(b.clock)
	if res := b.checkInvite(req); res != nil {
		_ = bt.Respond(res)
		return &Leg{tx: bt}
	}
	c := b.newCall(ctx, bt, req, target)
	leg := &Leg{id: c.id, tx: bt}
	run := func() {
		stop := context.AfterFunc(ctx, leg.Cancel)
		defer stop()
		c.run()
	}
	if !b.spawn(run) {
		_ = bt.Respond(c.callerResponse(statusOf(ErrClosed)))
	}
	return leg
}

// ID returns the id of the Leg's call, as Calls and Hangup know it; "" when
// the request was refused before a call was made.
func (l *Leg) ID() string { return l.id }

// Responses returns the channel of the branch's responses: provisional
// ones, then the final one; after a 2xx, its retransmissions until the
// caller's ACK. It is closed when no more will come. Sends never block:
// provisional responses that do not fit are dropped.
func (l *Leg) Responses() <-chan *sip.Response { return l.tx.responses }

// Cancel gives the branch up: before the callee's answer the call ends
// with a CANCEL towards the callee and a 487 on Responses; after, nothing
// happens (the caller ends an unwanted answer with BYE).
func (l *Leg) Cancel() { l.tx.cancel("") }

// CancelWithReason is Cancel with a Reason header (RFC 3326) on the CANCEL
// towards the callee, e.g. SIP;cause=200;text="Call completed elsewhere",
// so that the phone does not show a missed call. The header is sent when
// the callee has answered provisionally; before, the plain CANCEL goes.
func (l *Leg) CancelWithReason(reason string) { l.tx.cancel(reason) }

// branchTx is the caller's side of a Leg's call: the uas that puts its
// responses on a channel instead of sending them.
type branchTx struct {
	clock     clock.Clock
	responses chan *sip.Response
	canceled  chan struct{}
	done      chan struct{}

	mu         sync.Mutex
	state      int // 0 proceeding, 1 failed, 2 answered
	respClosed bool
	isCanceled bool
	reason     string // of the cancel, for the CANCEL's Reason header
	ok         *sip.Response
	okTimer    clock.Timer
	okGen      uint64
	interval   time.Duration
	linger     clock.Timer
}

const (
	branchProceeding = iota
	branchFailed
	branchAnswered
)

func newBranchTx(clk clock.Clock) *branchTx {
	return &branchTx{
		clock:     clk,
		responses: make(chan *sip.Response, branchBuffer),
		canceled:  make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// deliver queues res without blocking. t.mu is held.
func (t *branchTx) deliver(res *sip.Response, final bool) {
	if t.respClosed {
		return
	}
	room := cap(t.responses)
	if !final {
		room--
	}
	if len(t.responses) < room {
		t.responses <- res
	}
}

// end closes Responses and Done. t.mu is held.
func (t *branchTx) end() {
	if t.respClosed {
		return
	}
	t.respClosed = true
	close(t.responses)
	close(t.done)
	t.okGen++
	if t.okTimer != nil {
		t.okTimer.Stop()
	}
	if t.linger != nil {
		t.linger.Stop()
	}
}

func (t *branchTx) Respond(res *sip.Response) error {
	if res.StatusCode == 100 {
		return nil // the proxy sends its own
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.state {
	case branchFailed:
		return transaction.ErrFinalSent
	case branchAnswered:
		if !res.IsSuccess() {
			return transaction.ErrFinalSent
		}
		t.deliver(res, true)
		return nil
	}
	switch {
	case res.StatusCode < 200:
		t.deliver(res, false)
	case res.IsSuccess():
		t.state = branchAnswered
		t.deliver(res, true)
		// The caller's ACK comes within 64*T1 (RFC 3261 §13.3.1.4).
		t.linger = t.clock.AfterFunc(64*transaction.DefaultT1, func() {
			t.mu.Lock()
			t.end()
			t.mu.Unlock()
		})
	default:
		t.state = branchFailed
		t.deliver(res, true)
		t.end()
	}
	return nil
}

// Respond2xx delivers res and delivers it again on the schedule of RFC
// 3261 §13.3.1.4 until stop (the ACK) or the end of the branch: the proxy
// forwards each, as it does the retransmissions of any UAS.
func (t *branchTx) Respond2xx(res *sip.Response) (func(), error) {
	if err := t.Respond(res); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.ok = res
	t.interval = transaction.DefaultT1
	t.okGen++
	t.armOK(t.okGen)
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.okGen++
		if t.okTimer != nil {
			t.okTimer.Stop()
		}
		// Acknowledged: nothing more will come.
		t.end()
	}, nil
}

// armOK schedules the next retransmission of the 2xx. t.mu is held.
func (t *branchTx) armOK(gen uint64) {
	t.okTimer = t.clock.AfterFunc(t.interval, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if gen != t.okGen || t.respClosed {
			return
		}
		t.deliver(t.ok, true)
		t.interval = min(2*t.interval, transaction.DefaultT2)
		t.armOK(gen)
	})
}

func (t *branchTx) Canceled() <-chan struct{} { return t.canceled }
func (t *branchTx) Done() <-chan struct{}     { return t.done }

func (t *branchTx) cancel(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == branchProceeding && !t.isCanceled {
		t.isCanceled = true
		t.reason = reason
		close(t.canceled)
	}
}

// cancelReason is the Reason the branch was canceled with.
func (t *branchTx) cancelReason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason
}
