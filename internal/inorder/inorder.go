// Package inorder keeps the in-dialog requests of one dialog, sent by one
// of its sides, in the order they arrived on their way out of the
// gateway: the proxy forwards them, the B2BUA relays them to its other
// leg. The transaction layer runs the handler of each request in a
// goroutine of its own, so that two NOTIFYs read in order from one
// connection would otherwise race each other to the next hop, and a
// browser (SIP.js) answers the one that comes second with a lower CSeq
// with 500.
//
// A request takes its place as it arrives ([Order.Arrive], in its
// source's order: the transaction layer's Config.Admit) and waits for its
// turn in its handler ([Order.Await]); the turn passes on once it was sent
// (or answered). Requests of other dialogs do not wait for each other.
// Nothing here runs a goroutine: the waiting is done by the handlers.
package inorder

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Defaults of an Order.
const (
	// DefaultMaxQueued bounds the requests of one dialog, from one side,
	// held in order at once: waiting for their turn or being sent. A
	// user agent sends the next request of a dialog after the answer to
	// the last one, bar a few NOTIFYs in a row; more is a flood, answered
	// 503.
	DefaultMaxQueued = 32
	// DefaultWait is how long a request waits for those of its dialog
	// that arrived before it and have not been sent: the transaction
	// layer may have refused one of them after it arrived, and a request
	// whose handler has not started in that time is not waited for any
	// more.
	DefaultWait = 2 * time.Second
)

// Options configures an Order; the zero value takes the defaults.
type Options struct {
	// MaxQueued bounds the requests of one dialog, from one side, held
	// at once; default DefaultMaxQueued.
	MaxQueued int
	// Wait is how long a request waits for one ahead of it that never
	// reached a handler; default DefaultWait.
	Wait time.Duration
	// Clock runs Wait; nil is the system clock.
	Clock clock.Clock
}

// key names the requests of one dialog sent by one of its sides: the
// Call-ID and the tags, From first. Each side sends with its own tag in
// From, so the key holds the direction too.
type key struct {
	callID, from, to string
}

// ticket is the place of one request in its dialog's order.
type ticket struct {
	req     *sip.Request
	key     key
	at      time.Time     // when it arrived
	turn    chan struct{} // closed when the request may be sent
	turned  bool
	entered bool // its handler is serving it
}

// Order keeps the in-dialog requests of each dialog, from each side, in
// the order they arrived. It is safe for concurrent use; one Order may
// serve several handlers (the gateway's proxy and B2BUA share one, as a
// request reaches one of them only).
type Order struct {
	mu        sync.Mutex
	queues    map[key][]*ticket
	tickets   map[*sip.Request]*ticket
	max       int
	wait      time.Duration
	clk       clock.Clock
	lastSweep time.Time

	refused, skipped uint64
}

// Stats counts the work of an Order, for metrics.
type Stats struct {
	// Queued is the number of in-dialog requests held in order now, and
	// Entered how many of them a handler has: waiting for their turn or
	// being sent.
	Queued, Entered int
	// Refused counts the requests refused (503) because their dialog had
	// MaxQueued requests held already.
	Refused uint64
	// Skipped counts the places given up because their requests did not
	// reach a handler within Wait of arriving (refused by the transaction
	// layer after they arrived, say): by the requests behind them, or by
	// the sweep.
	Skipped uint64
}

// New returns an Order.
func New(opts Options) *Order {
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	return &Order{
		queues:  make(map[key][]*ticket),
		tickets: make(map[*sip.Request]*ticket),
		max:     opts.MaxQueued,
		wait:    opts.Wait,
		clk:     clock.Or(opts.Clock),
	}
}

// MaxQueued is the bound on the requests of one dialog, from one side,
// held at once.
func (o *Order) MaxQueued() int { return o.max }

// ordered reports whether req takes a place in the order of its dialog:
// a request with a To tag that starts a transaction (an ACK has none, a
// CANCEL goes on its own).
func ordered(req *sip.Request) (key, bool) {
	if req.Method == sip.MethodAck || req.Method == sip.MethodCancel {
		return key{}, false
	}
	to := req.To().Tag()
	if to == "" {
		return key{}, false
	}
	return key{req.CallID(), req.From().Tag(), to}, true
}

// Arrive gives req, a request just read from the network, its place in
// the order of its dialog (the requests with its Call-ID and tags). It
// must be called in the order the requests arrived from their source,
// before their handler may run. It reports false when req's dialog has
// MaxQueued requests held already: req is to be refused. A request that
// Arrive saw but whose handler will not Await it must be handed to
// Forget. Requests outside a dialog, ACKs and CANCELs take no place.
func (o *Order) Arrive(req *sip.Request) bool {
	k, ok := ordered(req)
	if !ok {
		return true
	}
	now := o.clk.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.lastSweep) >= o.wait {
		o.sweep(now)
	}
	if _, dup := o.tickets[req]; dup {
		return true // it has its place: a full queue does not take it away
	}
	q := o.queues[k]
	if len(q) >= o.max {
		// Places given up on may fill it between two sweeps.
		q = o.sweepQueue(k, now)
	}
	if len(q) >= o.max {
		o.refused++
		return false
	}
	t := &ticket{req: req, key: k, at: now, turn: make(chan struct{})}
	o.queues[k] = append(q, t)
	o.tickets[req] = t
	if len(q) == 0 {
		t.give()
	}
	return true
}

// Refusal is the answer to a request that Arrive refused: 503, to be
// retried in a second, when those ahead of it have gone.
func Refusal(req *sip.Request) *sip.Response {
	res := sip.NewResponse(req, 503, "Too Many Requests In Dialog")
	res.Set("Retry-After", "1")
	return res
}

func (t *ticket) give() {
	if !t.turned {
		t.turned = true
		close(t.turn)
	}
}

// Await waits for req's turn: until the requests of its dialog that
// arrived before it were sent, or ctx ends. Those ahead that have not
// reached a handler Wait after req arrived are given up on. It returns
// the function that passes the turn on, which the caller must call once
// req was sent or answered (more calls do nothing). A request without a place (it
// arrived before Arrive was asked, or was given up on) does not wait.
//
// The caller must hold nothing that a request ahead of req needs to be
// sent: it waits for them.
func (o *Order) Await(ctx context.Context, req *sip.Request) (done func()) {
	o.mu.Lock()
	t := o.tickets[req]
	if t == nil {
		o.mu.Unlock()
		return func() {}
	}
	t.entered = true
	o.mu.Unlock()
	done = sync.OnceFunc(func() { o.Forget(req) })
	select {
	case <-t.turn:
		return done
	default:
	}
	// Those ahead arrived before req: Wait after req arrived, they are
	// all Wait old. A handler that started late does not wait a whole
	// Wait more.
	if left := o.wait - o.clk.Now().Sub(t.at); left > 0 {
		expired := make(chan struct{})
		timer := o.clk.AfterFunc(left, func() { close(expired) })
		defer timer.Stop()
		select {
		case <-t.turn:
			return done
		case <-ctx.Done():
			return done
		case <-expired:
		}
	}
	// What is still ahead reached a handler: it is being sent, or waits
	// for its own turn, and passes the turn on in a bounded time (its
	// transaction's at most).
	o.giveUpAhead(t)
	select {
	case <-t.turn:
	case <-ctx.Done():
	}
	return done
}

// giveUpAhead drops the places ahead of t whose requests never reached a
// handler: refused by the transaction layer after they arrived, or sent
// elsewhere.
func (o *Order) giveUpAhead(t *ticket) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, x := range slices.Clone(o.queues[t.key]) {
		if x == t {
			break
		}
		if !x.entered {
			o.remove(x)
			o.skipped++
		}
	}
}

// Forget removes req's place, passing the turn to the next request of its
// dialog when it was req's; it does nothing for a request without one.
func (o *Order) Forget(req *sip.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.tickets[req]; t != nil {
		o.remove(t)
	}
}

// sweep drops the places of requests that arrived more than o.wait ago
// and never reached a handler (refused by the transaction layer, or
// served by no one and not forgotten yet), so that a dialog none of
// whose requests comes any more keeps nothing.
func (o *Order) sweep(now time.Time) {
	o.lastSweep = now
	for _, t := range o.tickets {
		if o.stale(t, now) {
			o.remove(t)
			o.skipped++
		}
	}
}

// stale reports whether t's request never reached a handler within Wait
// of arriving.
func (o *Order) stale(t *ticket, now time.Time) bool {
	return !t.entered && now.Sub(t.at) >= o.wait
}

// sweepQueue drops the places of the dialog side k that are stale as
// sweep says, and returns what is left of its queue. o.mu is held.
func (o *Order) sweepQueue(k key, now time.Time) []*ticket {
	for _, t := range slices.Clone(o.queues[k]) {
		if o.stale(t, now) {
			o.remove(t)
			o.skipped++
		}
	}
	return o.queues[k]
}

// remove takes t out of the index and of its dialog's queue, passing the
// turn to the next request when it was t's. o.mu is held.
func (o *Order) remove(t *ticket) {
	delete(o.tickets, t.req)
	q := o.queues[t.key]
	if i := slices.Index(q, t); i >= 0 {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(o.queues, t.key)
		return
	}
	o.queues[t.key] = q
	q[0].give()
}

// Stats returns the counters.
func (o *Order) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	entered := 0
	for _, t := range o.tickets {
		if t.entered {
			entered++
		}
	}
	return Stats{Queued: len(o.tickets), Entered: entered, Refused: o.refused, Skipped: o.skipped}
}
