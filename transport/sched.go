package transport

import (
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
)

// item is one unit of work for the upper Handler: a message, or (msg nil)
// the closing of a flow.
type item struct {
	msg    sip.Message
	closed sip.Addr
	size   int   // what msg holds in memory, roughly (msgSize)
	at     int64 // delay.Now when it was queued
	lane   uint8 // the lane of its source it waits in (laneOf)
	// dup is the hash of a datagram request's dupKey while it waits
	// (dupKey.hash); zero for the rest.
	dup uint64
	// resent: a datagram request that its client sends again when no
	// answer comes (not an ACK, not a CANCEL, which ends a call): one the
	// scheduler may drop on arrival when its source's queue is too old
	// (limits.maxWait).
	resent bool
}

// dupKey names a request by what a retransmission of it repeats: the
// branch of its top Via, its method and the address it came from (RFC
// 3261 §17.2.3 matches on the Via's sent-by; the source address stands
// for it, and a retransmission comes from the same one), and its Call-ID,
// so that a client that reuses a branch across calls loses nothing.
type dupKey struct {
	branch, method, callID string
	src                    netip.AddrPort
}

// dupSeed seeds dupKey.hash anew in each process, so that no sender can
// pick branches whose hashes meet another request's.
var dupSeed = maphash.MakeSeed()

// hash is k's 64-bit hash, never 0 (which stands for no key). The queue
// keeps hashes rather than keys: 8 bytes a request, hashed once, where
// the keys' map (three strings and an address, hashed on each of a
// push's two lookups and again on the delete, the strings compared on a
// hit) was 4 % of the CPU at 2x the REGISTER knee, with thousands of
// requests queued and the table out of the caches. Two requests queued at
// once whose different keys hash alike (about one in 2^64 / n for n
// queued) make the second a duplicate: dropped as its retransmission
// would be, so its client sends it again.
func (k dupKey) hash() uint64 {
	var h maphash.Hash
	h.SetSeed(dupSeed)
	h.WriteString(k.branch)
	h.WriteByte(0)
	h.WriteString(k.method)
	h.WriteByte(0)
	h.WriteString(k.callID)
	h.WriteByte(0)
	a := k.src.Addr().As16()
	h.Write(a[:])
	h.WriteString(k.src.Addr().Zone())
	h.WriteByte(0)
	h.WriteByte(byte(k.src.Port() >> 8))
	h.WriteByte(byte(k.src.Port()))
	return max(h.Sum64(), 1)
}

// msgOverhead is what a parsed message holds besides its text: the
// sip.Request or sip.Response with its inline header arrays, about 1.7 KiB.
const msgOverhead = 2 << 10

// msgSize is roughly what m holds in memory: the parsed structure, and the
// one copy of the message's text that its strings point into.
func msgSize(m sip.Message) int {
	n := msgOverhead + len(m.Payload())
	for _, f := range m.Header().Fields() {
		n += len(f.Name) + len(f.Value) + 4
	}
	return n
}

// Fairness under load. The last 1/reserveShare of each total cap is kept
// for light sources, those with fewer than lightLoad items queued, and
// for sources under their fair share of the rest: when a few sources
// flood, they fill the shared space up to the reserve, and a source that
// sends now and then still gets in. A source alone may fill all the
// shared space: a trunk, an SBC or a load balancer sends everything from
// one address.
const (
	reserveShare = 8
	lightLoad    = 8
)

// limits are the caps of a scheduler. The per-source ones bind only when
// positive.
type limits struct {
	perSource, total           int // items
	perSourceBytes, totalBytes int // msgSize of the items
	// maxWait, when positive, is the wait (ns, as item.at) past which a
	// source's queue is too old: its resent items are refused on arrival
	// while its oldest item has waited longer.
	maxWait int64
}

// nLanes is how many lanes a source's queue is split into in each class
// (see source).
const nLanes = 16

// Work begun first. Under overload most of what waits is new work (the
// INVITEs and REGISTERs that start an exchange), which the transaction
// layer answers with 503 once it has waited too long; behind it in one
// queue waited what carries on the work already admitted: the INVITE
// that answers a challenge, the callee's 180 and 200, the ACK, the BYE.
// Those waited as long as the new work, past T1, and were sent again,
// and past the client's patience: at twice the knee of proxied calls,
// calls that had been admitted timed out while new ones were refused. So
// a source's datagrams wait in two classes of lanes: begun (responses,
// requests with a To tag, within a dialog or acknowledging an answer,
// and requests with credentials, which answer a challenge) and fresh
// (the rest: new requests, CANCELs, which must not overtake their
// INVITE, and everything from a stream, whose messages keep the order of
// their connection whatever they are). The workers take begun work
// first, round-robin between sources within each class; new work waits,
// and so its wait is what measures the overload (headWait) and what the
// transaction layer sheds on.
//
// Credentials are the client's claim, and a flood may carry them: after
// begunBurst begun items in a row taken while fresh work waited, a fresh
// one is taken, so that begun work, honest or not, cannot keep the new
// work of every source from being answered, if only with a 503.
//
// Late new work goes first. Past the knee by three times and more, the
// begun work of the calls admitted kept the workers busy for seconds,
// and new INVITEs, taken one in eight, waited up to 8 s: their clients
// sent each three and four times, their 503s came after the clients had
// given up, and the retransmissions, read and dropped, overflowed the
// sockets (37,000-59,000 of 168,000 calls timed out at 5,600/s, against
// 5,000-10,000 on main).
// New work that has waited lateWait will be refused by the transaction
// layer, at the cost of a 503: so while the new work next in turn has
// waited that long it is taken before the begun work, and the queue of
// new work drains at the speed of refusals, not of calls.
const (
	fresh = iota
	begun
	nClasses
)

// lateWait is how long new work waits before it is late (see above): the
// wait past which the transaction layer refuses a new request whatever
// its mean (4/5 of T1), in delay.Now's nanoseconds.
const lateWait = int64(400 * time.Millisecond)

// begunBurst is how many begun items are taken in a row while fresh ones
// wait (see above). An admitted call brings some six begun messages per
// new INVITE; at twice the knee, half the INVITEs are shed: three begun
// items per fresh one, well inside it.
const begunBurst = 7

// classOf is the class of the lanes m waits in (see fresh and begun): nil
// for the closing of a flow.
func classOf(m sip.Message) uint8 {
	if m == nil || m.Src().Flow != 0 {
		return fresh
	}
	req, ok := m.(*sip.Request)
	switch {
	case !ok:
		return begun
	case req.Method == sip.MethodCancel:
		return fresh
	case req.ContinuesWork():
		return begun
	}
	return fresh
}

// lane is a FIFO of a source's items that must be handled in order.
type lane struct {
	items []item // items[head:] are pending
	head  int
	busy  bool // a worker holds the lane (handles its head item)
	ready bool // in its source's ring
}

func (q *lane) len() int { return len(q.items) - q.head }

// source is the queue of one source IP address. Its items wait in
// lanes, of two classes (fresh and begun, each with its lanes, ring and
// place in the ready lists): the items of one class and one dialog or
// transaction (one Call-ID) over UDP, and those of one connection over a
// stream transport, go to the same lane (laneOf), and a lane is held by
// one worker at a time, which keeps them in order (the ACK before the
// BYE, a REGISTER before the closing of its flow). Different lanes of a
// source are served by different workers at once: a trunk, an SBC or a
// load test sends everything from one address, and a source served by
// one worker at a time got one core's worth of the transport layer, its
// queue growing until requests timed out in it. Between sources the
// service stays round-robin: a source takes one turn in the ready list of
// a class whatever number of lanes it has ready in it.
type source struct {
	key netip.Addr
	// lanes[c*nLanes:][:nLanes] are those of class c.
	lanes [nClasses * nLanes]lane
	ring  [nClasses]laneRing
	bytes int // the size of the pending items in all lanes
	// count is the pending items of each class.
	count [nClasses]int
	// floor is, for each class, at most the item.at of its oldest
	// pending item: that of the item that found the class empty, or the
	// oldest found since (stale). Items come in the order of their at
	// (but for a few microseconds between read loops), so it only lags.
	floor  [nClasses]int64
	held   int            // lanes held by workers
	queued [nClasses]bool // in the scheduler's ready list of the class
}

// laneRing holds the lanes of a class with work and no worker, in the
// order they became ready: l[(head+i)%nLanes] for i < n.
type laneRing struct {
	l       [nLanes]uint8
	head, n uint8
}

func (r *laneRing) push(l uint8) {
	r.l[(r.head+r.n)%nLanes] = l
	r.n++
}

func (r *laneRing) pop() uint8 {
	l := r.l[r.head]
	r.head = (r.head + 1) % nLanes
	r.n--
	return l
}

// stale reports whether the item of class c that has waited longest in s
// (which has items of c) was queued more than maxWait before now. The
// lanes are looked at only when floor says it may be, which then becomes
// exact: one comparison per push while the queue is young, not a walk of
// its lanes. The classes are apart: new work that waits long, as it does
// under overload, does not make a source's BYEs stale.
func (s *source) stale(c uint8, now, maxWait int64) bool {
	if now-s.floor[c] <= maxWait {
		return false
	}
	at := int64(math.MaxInt64)
	for i := range nLanes {
		if q := &s.lanes[int(c)*nLanes+i]; q.len() > 0 {
			at = min(at, q.items[q.head].at)
		}
	}
	s.floor[c] = at
	return now-at > maxWait
}

// hold is what a worker holds while it handles an item: a lane of a
// source.
type hold struct {
	src  *source
	lane uint8
}

// pushResult is what push did with an item.
type pushResult int

const (
	queued    pushResult = iota
	refused              // over the caps
	duplicate            // a retransmission of a request still queued: dropped
	stale                // its source's queue is too old (limits.maxWait)
)

// scheduler queues work per source and hands it to workers round-robin
// across sources, begun work first (begun), so that a flooding source
// fills only its own queue and waits its turn like every other.
type scheduler struct {
	mu      sync.Mutex
	cond    sync.Cond
	sources map[netip.Addr]*source
	// ready holds, for each class, the sources with a ready lane of it.
	ready   [nClasses]readyList
	streak  int // begun items taken in a row while fresh ones waited
	idle    int // workers waiting in next
	pending int
	bytes   int
	lim     limits
	closed  bool
	free    []*source // recycled sources, to spare an allocation per burst
	// dups holds the dupKey hash of every datagram request queued, so
	// that its retransmissions, which a client sends when the queue is
	// slow, are not queued again behind it: bounded by the total cap.
	dups map[uint64]struct{}
}

// readyList is a FIFO of sources: q[head:]. The slice is compacted when
// the head passes half of it, so it never grows without bound.
type readyList struct {
	q    []*source
	head int
}

func (r *readyList) len() int { return len(r.q) - r.head }

func (r *readyList) push(src *source) { r.q = append(r.q, src) }

func (r *readyList) peek() *source { return r.q[r.head] }

func (r *readyList) pop() *source {
	src := r.q[r.head]
	r.q[r.head] = nil
	r.head++
	switch {
	case r.head == len(r.q):
		r.q, r.head = r.q[:0], 0
	case r.head > len(r.q)/2 && r.head > 32:
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q, r.head = r.q[:n], 0
	}
	return src
}

func newScheduler(lim limits) *scheduler {
	s := &scheduler{
		sources: make(map[netip.Addr]*source),
		dups:    make(map[uint64]struct{}),
		lim:     lim,
	}
	s.cond.L = &s.mu
	return s
}

// pending is the items src has queued, in all lanes.
func (src *source) pending() int { return src.count[fresh] + src.count[begun] }

// fits reports whether the caps let an item of size in for src (nil: a
// source with nothing queued). Called with s.mu held.
func (s *scheduler) fits(src *source, size int) bool {
	n, b := 0, 0
	if src != nil {
		n, b = src.pending(), src.bytes
	}
	switch {
	case s.lim.perSource > 0 && n >= s.lim.perSource:
		return false
	case s.lim.perSourceBytes > 0 && b+size > s.lim.perSourceBytes:
		return false
	case s.pending >= s.lim.total || s.bytes+size > s.lim.totalBytes:
		return false
	}
	shared, sharedBytes := s.lim.total-s.lim.total/reserveShare, s.lim.totalBytes-s.lim.totalBytes/reserveShare
	if s.pending < shared && s.bytes+size <= sharedBytes || n < lightLoad {
		return true
	}
	// In the reserve: a source under its share of the shared space (every
	// source with work counts, this one too) goes on, a heavy one stops.
	sources := len(s.sources)
	if src == nil {
		sources++
	}
	return n < shared/sources && b+size <= sharedBytes/sources
}

// push queues it for key in its lane, of the class of its message
// (classOf). Unless force is set it refuses it when the caps do not let
// it in (fits). Flow-closed notifications are forced: there is at most
// one per connection, and losing one would leave a dead binding behind.
func (s *scheduler) push(key netip.Addr, it item, force bool) pushResult {
	c := classOf(it.msg)
	it.lane = c*nLanes + it.lane%nLanes
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return refused
	}
	if it.dup != 0 {
		if _, ok := s.dups[it.dup]; ok {
			return duplicate
		}
	}
	src := s.sources[key]
	if !force && !s.fits(src, it.size) {
		return refused
	}
	if !force && it.resent && s.lim.maxWait > 0 && src != nil && src.count[c] > 0 && src.stale(c, it.at, s.lim.maxWait) {
		return stale
	}
	if src == nil {
		src = s.newSource(key)
		s.sources[key] = src
	}
	if src.count[c] == 0 {
		src.floor[c] = it.at
	}
	if it.dup != 0 {
		s.dups[it.dup] = struct{}{}
	}
	ln := &src.lanes[it.lane]
	if ln.head > 0 && len(ln.items) == cap(ln.items) {
		n := copy(ln.items, ln.items[ln.head:])
		clear(ln.items[n:])
		ln.items, ln.head = ln.items[:n], 0
	}
	ln.items = append(ln.items, it)
	src.count[c]++
	src.bytes += it.size
	s.bytes += it.size
	s.pending++
	if !ln.busy && !ln.ready {
		ln.ready = true
		src.ring[c].push(it.lane)
		s.enqueue(src, c)
	}
	return queued
}

// enqueue puts src, which has a ready lane of class c, in the ready list
// of c unless it is there, and wakes a worker for it. Called with s.mu
// held.
func (s *scheduler) enqueue(src *source, c uint8) {
	if src.queued[c] {
		return
	}
	src.queued[c] = true
	s.ready[c].push(src)
	if s.idle > 0 {
		s.cond.Signal()
	}
}

// readyLen is how many sources have a ready lane, counted once per class.
// Called with s.mu held.
func (s *scheduler) readyLen() int { return s.ready[fresh].len() + s.ready[begun].len() }

// class picks the class to take the next item from, of those with a
// ready lane: begun, but for one fresh item after begunBurst begun ones
// in a row, and fresh while the fresh item next in turn has waited
// lateWait. Called with s.mu held.
func (s *scheduler) class() uint8 {
	if s.ready[begun].len() == 0 {
		s.streak = 0
		return fresh
	}
	if s.ready[fresh].len() == 0 {
		s.streak = 0
		return begun
	}
	if s.streak >= begunBurst || delay.Now()-s.headAt(fresh) > lateWait {
		s.streak = 0
		return fresh
	}
	s.streak++
	return begun
}

// headAt is when the item next in turn in class c was queued; c has a
// ready source. Called with s.mu held.
func (s *scheduler) headAt(c uint8) int64 {
	src := s.ready[c].peek()
	r := &src.ring[c]
	ln := &src.lanes[r.l[r.head]]
	return ln.items[ln.head].at
}

func (s *scheduler) newSource(key netip.Addr) *source {
	if n := len(s.free); n > 0 {
		src := s.free[n-1]
		s.free = s.free[:n-1]
		src.key = key
		return src
	}
	return &source{key: key}
}

// next finishes prev (what the worker held for the item it just handled;
// zero: nothing) and waits for the next item. ok is false once the
// scheduler is closed. Unless wait is set it does not wait: with nothing
// ready it returns ok and h zero, so that the worker can write what it
// holds before it waits.
func (s *scheduler) next(prev hold, wait bool) (h hold, it item, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev.src != nil {
		s.release(prev)
	}
	if !wait && s.readyLen() == 0 && !s.closed {
		return hold{}, item{}, true
	}
	for s.readyLen() == 0 && !s.closed {
		s.idle++
		s.cond.Wait()
		s.idle--
	}
	if s.closed {
		return hold{}, item{}, false
	}
	c := s.class()
	src := s.ready[c].pop()
	l := src.ring[c].pop()
	ln := &src.lanes[l]
	ln.ready, ln.busy = false, true
	src.held++
	// The source's other ready lanes of the class wait for its next
	// turn, at the end of the list: round-robin between sources, not
	// between lanes.
	src.queued[c] = false
	if src.ring[c].n > 0 {
		s.enqueue(src, c)
	}
	if s.readyLen() > 0 && s.idle > 0 {
		s.cond.Signal()
	}
	it = ln.items[ln.head]
	ln.items[ln.head] = item{}
	ln.head++
	if ln.head == len(ln.items) {
		ln.items, ln.head = ln.items[:0], 0
	}
	src.count[c]--
	src.bytes -= it.size
	s.bytes -= it.size
	s.pending--
	if it.dup != 0 {
		delete(s.dups, it.dup)
	}
	return hold{src: src, lane: l}, it, true
}

// release gives back the lane h held: ready again when it has more
// work, and the source in the ready list for it; a source with nothing
// queued and no lane held is forgotten, so that the map holds only
// sources with work and does not grow with every address seen.
func (s *scheduler) release(h hold) {
	src, ln := h.src, &h.src.lanes[h.lane]
	ln.busy = false
	src.held--
	if ln.len() > 0 {
		c := h.lane / nLanes
		ln.ready = true
		src.ring[c].push(h.lane)
		s.enqueue(src, c)
		return
	}
	if src.pending() > 0 || src.held > 0 {
		return
	}
	delete(s.sources, src.key)
	if len(s.free) >= maxFree {
		return
	}
	// A recycled source keeps only small lanes: 16 lanes of a source that
	// once queued thousands would otherwise pin their arrays, times the
	// sources kept.
	for i := range src.lanes {
		q := &src.lanes[i]
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > maxFreeLane {
			q.items = nil
		}
	}
	src.ring, src.queued = [nClasses]laneRing{}, [nClasses]bool{}
	s.free = append(s.free, src)
}

// The recycled sources: at most maxFree, each lane keeping an array of
// at most maxFreeLane items, about 5 MiB in all.
const (
	maxFree     = 256
	maxFreeLane = 4
)

// close wakes every worker and drops what is queued.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.sources, s.ready, s.pending, s.bytes, s.dups = nil, [nClasses]readyList{}, 0, 0, nil
	s.mu.Unlock()
	s.cond.Broadcast()
}

// len returns how many items are queued, and their size.
func (s *scheduler) len() (n, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending, s.bytes
}

// headWait is how long the next item to be served of either class has
// waited at now (delay.Now), the longer of the two: the queue's wait as
// it is, where the mean of the waits of the items served lags behind a
// queue that grows, and where begun work, served first, waits little
// while new work waits long. Zero when nothing waits.
func (s *scheduler) headWait(now int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d int64
	for c := range uint8(nClasses) {
		if s.ready[c].len() > 0 {
			d = max(d, now-s.headAt(c))
		}
	}
	return d
}
