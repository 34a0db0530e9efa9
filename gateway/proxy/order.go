package proxy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Defaults of the ordering of in-dialog requests.
const (
	// DefaultMaxQueued bounds the requests of one dialog, from one side,
	// that the proxy holds in order at once: waiting for their turn or
	// being forwarded. A user agent sends the next request of a dialog
	// after the answer to the last one, bar a few NOTIFYs in a row; more
	// is a flood, answered 503.
	DefaultMaxQueued = 32
	// DefaultOrderWait is how long a request waits for those of its
	// dialog that arrived before it and have not been forwarded: the
	// transaction layer may have refused one of them after it arrived,
	// and a request whose handler has not started in that time is not
	// waited for any more.
	DefaultOrderWait = 2 * time.Second
)

// orderKey names the requests of one dialog sent by one of its sides: the
// Call-ID and the tags, From first. Each side sends with its own tag in
// From, so the key holds the direction too.
type orderKey struct {
	callID, from, to string
}

// ticket is the place of one request in its dialog's order.
type ticket struct {
	req     *sip.Request
	key     orderKey
	at      time.Time     // when it arrived
	turn    chan struct{} // closed when the request may be forwarded
	turned  bool
	entered bool // its handler is serving it
}

// order keeps the in-dialog requests of one dialog, from one side, in the
// order they arrived on their way out of the proxy. The transaction layer
// runs the handler of each request in a goroutine of its own, so that two
// NOTIFYs read in order from one connection would otherwise race each
// other to the next hop, and a browser (SIP.js) answers the one that
// comes second with a lower CSeq with 500.
//
// A request takes its place as it arrives (Proxy.Arrive, in the source's
// order) and waits for its turn in ServeSIP; the turn passes on once it
// was sent (or answered by the proxy). Requests of other dialogs do not
// wait for each other. Nothing here runs a goroutine: the waiting is done
// by the handlers.
type order struct {
	mu        sync.Mutex
	queues    map[orderKey][]*ticket
	tickets   map[*sip.Request]*ticket
	max       int
	wait      time.Duration
	clk       clock.Clock
	lastSweep time.Time

	refused, skipped uint64
}

// OrderStats counts the work of the ordering of in-dialog requests, for
// metrics.
type OrderStats struct {
	// Queued is the number of in-dialog requests held in order now.
	Queued int
	// Refused counts the requests answered 503 because their dialog had
	// MaxQueued requests held already.
	Refused uint64
	// Skipped counts the requests given up on by those behind them: they
	// did not reach the proxy's handler within OrderWait of arriving
	// (refused by the transaction layer after they arrived, say).
	Skipped uint64
}

func newOrder(max int, wait time.Duration, clk clock.Clock) *order {
	return &order{
		queues:  make(map[orderKey][]*ticket),
		tickets: make(map[*sip.Request]*ticket),
		max:     max,
		wait:    wait,
		clk:     clk,
	}
}

// ordered reports whether req takes a place in the order of its dialog:
// a request with a To tag that starts a transaction (an ACK has none, a
// CANCEL goes on its own).
func ordered(req *sip.Request) (orderKey, bool) {
	if req.Method == sip.MethodAck || req.Method == sip.MethodCancel {
		return orderKey{}, false
	}
	to := req.To().Tag()
	if to == "" {
		return orderKey{}, false
	}
	return orderKey{req.CallID(), req.From().Tag(), to}, true
}

// arrive gives req its place, reporting false when its dialog has max
// requests held already.
func (o *order) arrive(req *sip.Request) bool {
	key, ok := ordered(req)
	if !ok {
		return true
	}
	now := o.clk.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.lastSweep) >= o.wait {
		o.sweep(now)
	}
	q := o.queues[key]
	if len(q) >= o.max {
		o.refused++
		return false
	}
	if _, dup := o.tickets[req]; dup {
		return true
	}
	t := &ticket{req: req, key: key, at: now, turn: make(chan struct{})}
	o.queues[key] = append(q, t)
	o.tickets[req] = t
	if len(q) == 0 {
		t.give()
	}
	return true
}

func (t *ticket) give() {
	if !t.turned {
		t.turned = true
		close(t.turn)
	}
}

// await waits for req's turn: until the requests of its dialog that
// arrived before it were forwarded, or ctx ends. Those ahead that have not
// reached a handler after o.wait are given up on. It returns the function
// that passes the turn on, which the caller must call once req was sent
// or answered (more calls do nothing). A request without a place (it
// arrived before the proxy was asked, or was given up on) does not wait.
func (o *order) await(ctx context.Context, req *sip.Request) (done func()) {
	o.mu.Lock()
	t := o.tickets[req]
	if t == nil {
		o.mu.Unlock()
		return func() {}
	}
	t.entered = true
	o.mu.Unlock()
	done = sync.OnceFunc(func() { o.forget(req) })
	select {
	case <-t.turn:
		return done
	default:
	}
	expired := make(chan struct{})
	timer := o.clk.AfterFunc(o.wait, func() { close(expired) })
	defer timer.Stop()
	select {
	case <-t.turn:
		return done
	case <-ctx.Done():
		return done
	case <-expired:
	}
	// What is still ahead reached a handler: it is being forwarded, or
	// waits for its own turn, and passes the turn on in a bounded time
	// (its transaction's at most).
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
func (o *order) giveUpAhead(t *ticket) {
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

// forget removes req's place, passing the turn to the next request of its
// dialog when it was req's.
func (o *order) forget(req *sip.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.tickets[req]; t != nil {
		o.remove(t)
	}
}

// sweep drops the places of requests that arrived more than o.wait ago
// and never reached the proxy's handler (refused by the transaction
// layer, or served by the B2BUA and not forgotten yet), so that a dialog
// none of whose requests comes any more keeps nothing.
func (o *order) sweep(now time.Time) {
	o.lastSweep = now
	for _, t := range o.tickets {
		if !t.entered && now.Sub(t.at) >= o.wait {
			o.remove(t)
		}
	}
}

// remove takes t out of the index and of its dialog's queue, passing the
// turn to the next request when it was t's. o.mu is held.
func (o *order) remove(t *ticket) {
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

// stats returns the counters.
func (o *order) stats() OrderStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return OrderStats{Queued: len(o.tickets), Refused: o.refused, Skipped: o.skipped}
}

// Arrive gives req, a request just read from the network, its place in
// the order of its dialog (the requests with its Call-ID and tags): the
// proxy forwards the requests of one dialog from one side in the order
// Arrive saw them. It must be called in the order the requests arrived
// from their source, before their handler may run: the transaction
// layer's Config.Admit is such a place. It returns nil, or a 503 to
// answer req with when its dialog has MaxQueued requests held already.
// A request that Arrive saw but that ServeSIP will not see must be
// handed to Forget.
func (p *Proxy) Arrive(req *sip.Request) *sip.Response {
	if p.order.arrive(req) {
		return nil
	}
	p.log.Warn("proxy: too many requests of one dialog waiting to be forwarded", "call_id", req.CallID(),
		"method", req.Method, "source", req.Source.String(), "max", p.order.max)
	res := sip.NewResponse(req, 503, "Too Many Requests In Dialog")
	res.Set("Retry-After", "1")
	return res
}

// Forget gives up the place that Arrive gave req, for a request served
// by someone else than the proxy; it does nothing for others.
func (p *Proxy) Forget(req *sip.Request) { p.order.forget(req) }

// OrderStats returns the counters of the ordering of in-dialog requests.
func (p *Proxy) OrderStats() OrderStats { return p.order.stats() }
