package transaction

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
)

// Overload. Each server transaction's handler runs in a goroutine of its
// own, so when requests come faster than the CPUs serve them the backlog
// is not a queue the layer sees but runnable goroutines: every handler
// then waits longer for a CPU before it starts, and a client that waits
// past T1 sends its request again, which doubles the load. The layer
// measures that wait, from the request's handover to the handler's
// start, smoothed over the last handlers (an exponentially weighted mean
// of weight 1/overloadSmoothing), and is overloaded while it exceeds
// Config.OverloadDelay. Overloaded tells the Admit hook so, for the
// sources that bring their share of the new requests or more: refusing their
// new work at once, statelessly, costs a small fraction of serving it,
// and keeps what is served within the delay, so that the goodput stays
// near the most the machine can serve instead of collapsing into
// retransmissions and timeouts.
//
// The refusal is proportional, not all or nothing: at a mean wait of d
// past the limit, a share (d-limit)/limit of the new work is refused, all
// of it from twice the limit on. Refusing everything as soon as the limit
// is passed made the layer swing between serving nothing new and serving
// everything; and a wait just past the limit, which a machine shared with
// other processes shows now and then, is no reason to refuse most work.
// The limit is well under T1 (500 ms), the wait after which a UDP client
// sends its request again. The decision is taken when a request leaves
// the transport queue, after its wait there, and the mean lags: a limit
// of 200 ms (all shed at 400 ms) let waits pass T1 at twice the knee,
// and the retransmissions cut the goodput to half the knee's.
//
// The floor. A long wait is a reason to refuse only when it is our own
// backlog that makes it: requests queued below the layer
// (Config.QueueLen) and handlers handed over that have not started. On a
// machine shared with other processes the system may keep the gateway
// off the CPUs for a while; the few requests then in flight wait long,
// and the mean says overloaded, but refusing new work shortens no wait
// that the host imposes, and on a busy host it refused one REGISTER in
// ten far below the knee, and went on refusing right after an overload
// while the queues were already empty. So with Config.QueueLen set the
// layer never sheds while fewer than shedFloor requests wait; a real
// overload fills the queues past it within some tens of milliseconds.
// Without Config.QueueLen there is no floor: the layer does not know what
// waits below it.
//
// Each request's own wait. The mean lags: it moves as requests leave the
// transport's queue, after their wait there, and the refusals it drives
// came in swings, the queue at twice the knee going from empty to 14,000
// messages (a second's work, past T1) and back within seconds. So a new
// request that itself waited in the transport's queue (HandleWaited)
// past four fifths of T1 (400 ms), and at least twice the limit, where
// the mean's refusal is whole, is refused whatever the mean says: served,
// it would be answered after its client sent it again. The backlog a
// swing leaves is answered at once instead of served late. At twice the
// limit (200 ms) it refused, in the bursts of a busy host, requests that
// would have been answered in time: less goodput than main, and 503s in
// the step after an overload.
// The floor holds here too, and so does the source's share: the
// transport serves its sources round-robin, so a light source's requests
// wait little even behind a flood, and a trunk under its weighted share
// goes on.
//
// The client transactions. An admitted call needs client transactions
// of its own later: the INVITE it forwards, then the BYE. Beyond
// Config.MaxClientTransactions working ones Request fails: the proxy
// would answer the INVITEs and BYEs of calls it had admitted, challenged
// and authenticated with 500, and their clients, expecting a 180 or a
// 200, time out. So the layer is also overloaded while more than
// clientShare of that bound is working: new work is refused, at once,
// before it can start a call that would fail half way. The client
// transactions fill over seconds, not in bursts, so this bound is a
// steady signal, and it leaves the rest of the bound for the work
// admitted.
//
// Only the working ones count: those without a final response yet. A
// BYE's transaction lingers for Timer K (5 s over UDP) after its answer,
// to absorb retransmissions of it; counted, at 3,200 calls a second the
// BYEs alone held 16,000 of the 20,000 and the layer shed 1,442 calls of
// 32,000 with 503 at half a core's load, where Kamailio carried 3,600
// calls a second. A lingering one is no work, and at the bound the oldest
// makes room (Request).
//
// The mean moves only when handlers start. A layer that refuses every new
// request starts none, so a mean older than delay.Stale says nothing:
// the layer is not overloaded then, and the next requests, let in,
// measure afresh.

// DefaultOverloadDelay is the handlers' mean wait for a CPU past which
// the layer is overloaded.
const DefaultOverloadDelay = 100 * time.Millisecond

// shedFloor is the backlog under which the layer never sheds (see above
// and Config.QueueLen).
const shedFloor = 64

// clientShare is the share of Config.MaxClientTransactions past which
// the layer is overloaded (see above): 3/4.
const clientShareNum, clientShareDen = 3, 4

// overload is the measure of the handlers' wait.
type overload struct {
	limit    int64                // Config.OverloadDelay in ns; <= 0: never overloaded
	lateAt   int64                // the wait below the layer past which a request is late (ns)
	queue    func() time.Duration // Config.QueueDelay, or nil
	queueLen func() int           // Config.QueueLen, or nil: no floor
	handlers delay.Mean           // from a request's handover to its handler's start
	waiting  atomic.Int64         // handlers handed over, not started
}

// lateAfter is the wait below the layer past which a new request is late
// (see above): four fifths of t1, and at least twice the limit.
func lateAfter(limit int64, t1 time.Duration) int64 { return max(2*limit, int64(t1)*4/5) }

// late reports whether a request that waited for waited below the layer
// is late (lateAfter), with a backlog over the floor behind it.
func (o *overload) late(waited time.Duration) bool {
	return o.limit > 0 && int64(waited) > o.lateAt && !o.floored()
}

// handed notes a handler handed over, which sample will see start.
func (o *overload) handed() {
	if o.limit > 0 {
		o.waiting.Add(1)
	}
}

// sample adds the wait of a handler that starts now, handed over at
// handed (delay.Now).
func (o *overload) sample(handed int64) {
	if o.limit > 0 {
		o.waiting.Add(-1)
		o.handlers.Sample(handed, delay.Now())
	}
}

// floored reports whether so little waits that a long wait is the host's
// doing, not ours (shedFloor).
func (o *overload) floored() bool {
	if o.queueLen == nil {
		return false
	}
	return int64(o.queueLen())+o.waiting.Load() < shedFloor
}

// wait is what a request waits now before its handler runs: the
// handlers' mean wait, unless stale, and the queue's below the layer.
func (o *overload) wait() int64 {
	d := int64(o.handlers.Get())
	if o.queue != nil {
		d += int64(o.queue())
	}
	return d
}

// over reports whether requests wait too long.
func (o *overload) over() bool {
	return o.limit > 0 && o.wait() > o.limit && !o.floored()
}

// shed reports whether to refuse one more piece of new work: with the
// share (wait-limit)/limit, at random, once over.
func (o *overload) shed() bool {
	if o.limit <= 0 {
		return false
	}
	excess := o.wait() - o.limit
	if excess <= 0 || o.floored() {
		return false
	}
	return excess >= o.limit || rand.Int64N(o.limit) < excess
}

// recentSize is how many of the last new requests Overloaded weighs.
const recentSize = 64

// noteRecent records src as the source of a new request. Called with l.mu
// held.
func (l *Layer) noteRecent(src netip.Addr) {
	l.recent[l.recentAt] = src
	l.recentAt = (l.recentAt + 1) % recentSize
	l.recentN = min(l.recentN+1, recentSize)
}

// Overloaded reports whether the layer is overloaded (requests wait
// longer than Config.OverloadDelay, on average, in the queue below the
// layer (Config.QueueDelay) and for a CPU to run their handler; past the
// limit by a share x of it, it answers true for that share of the calls,
// at random, and always from twice the limit on; or req itself waited
// past 4/5 of T1 below the layer: waited, the wait that HandleWaited was
// given for it and Config.Admit passes on; or the client transactions
// working hold more than 3/4 of Config.MaxClientTransactions) and
// req's source brings at least its share of the load: of the last 64 new
// requests, at least the share its weight is of the weights of their sources
// (Config.SourceWeight). So under overload the sources that bring the
// most are refused, a source alone is refused as much as the load asks,
// and a light one, or a trunk under its weighted share, goes on. It is
// meant for Config.Admit, which decides which requests may be refused:
// new work (a 503 with Retry-After), not what completes work begun
// (requests within a dialog, answers to a challenge). When the layer is
// not overloaded it takes no lock.
//
// The share is of the requests, not of the places held: a flood of
// requests that end at once (challenges, refusals) holds few places, and
// by the places a newcomer would hold its share with nothing.
func (l *Layer) Overloaded(req *sip.Request, waited time.Duration) bool {
	over := l.load.shed() || l.load.late(waited)
	if !over && l.clientsWorking.Load()*clientShareDen <= int64(l.maxClient*clientShareNum) {
		return false
	}
	src := sourceOf(req.Source)
	l.mu.Lock()
	defer l.mu.Unlock()
	var others [recentSize]netip.Addr
	k, mine := 0, 0
	for _, a := range l.recent[:l.recentN] {
		if a == src {
			mine++
			continue
		}
		if !slices.Contains(others[:k], a) {
			others[k] = a
			k++
		}
	}
	weight := l.sourceWeight(src)
	total := weight
	for _, a := range others[:k] {
		total += l.sourceWeight(a)
	}
	return mine*total >= max(l.recentN, 1)*weight
}
