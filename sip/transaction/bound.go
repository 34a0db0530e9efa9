package transaction

import (
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// The bound on server transactions (Config.MaxServerTransactions) is kept
// in places: a server transaction takes one when it is created and gives it
// back once it has terminated and its handler has returned; a handler of an
// ACK without transaction holds one while it runs. A large request takes
// more than one, one per placeSize bytes it holds, so that the bound is
// one on memory too: 10,000 requests of 64 KiB would otherwise hold
// 640 MiB. Places are counted per source too, so that the bound can
// refuse the sources that hold many rather than whoever comes next:
//
//   - with MaxServerTransactionsPerSource set, a source at it ends its own
//     oldest answered transaction to make room, or is refused;
//   - past max-max/reserveShare places (the shared part), a heavy source
//     (holding lightLoad places or more) that holds more than its fair
//     share of the shared part makes room from its own answered
//     transactions, or is refused. A source's share is the shared part
//     times its weight (Config.SourceWeight) over the weights of the
//     sources that hold places: a source alone may use all of it, and a
//     trunk of weight 10 holds ten times what one phone holds before it
//     pays. Light sources, and sources under their share, may go on into
//     the reserve;
//   - at max, the oldest answered transaction of any source is ended;
//   - new work (a request that is neither within a dialog nor an answer
//     to a challenge: sip.Request.ContinuesWork) is refused once working
//     transactions (those not lingering) hold max-max/beginShare places,
//     whatever lingers: the rest is kept for work begun, a BYE above all,
//     since a call that cannot end holds its media and dialog state until
//     timers expire. Lingering transactions are ended for work begun as
//     for new work.
//
// "Answered" means lingering: the handler has returned and the transaction
// is in Completed or Confirmed, where it only absorbs retransmissions and
// the ACK, or in Accepted without a 2xx to retransmit, where it absorbs
// retransmitted INVITEs and passes ACKs on. Ending one early loses that
// absorption: a retransmitted request starts a new transaction, and an ACK
// reaches the Handler without one. That is the price of a bounded table
// under load; until the bound is reached nothing is ended early.
const (
	// reserveShare: the last max/reserveShare places are for light
	// sources.
	reserveShare = 8
	// lightLoad: a source that holds fewer places is light.
	lightLoad = 8
	// beginShare: the last max/beginShare places held by working
	// transactions are for work begun.
	beginShare = 4
	// warnEvery spaces the warnings about refused requests, which come by
	// the thousand a second under a flood.
	warnEvery = 10 * time.Second
	// placeSize is the memory one place stands for: a request holding
	// more takes a place per placeSize.
	placeSize = 4 << 10
	// reqOverhead is what a parsed request holds besides its text (the
	// sip.Request with its inline header arrays); a response is as big.
	reqOverhead = 2 << 10
	// txOverhead is what a lingering server transaction holds besides
	// its final response (shed): the ServerTx, its handler's ended
	// context, its channels and its key.
	txOverhead = 1 << 10
)

// weight is the number of places req takes: one per placeSize of what it
// holds (its text, as header fields and body, and its structure), at least
// one, at most max.
func weight(req *sip.Request, max int) int {
	return places(reqOverhead+textSize(&req.Headers, req.Body), max)
}

// textSize is the text of a message, as header fields and body.
func textSize(h *sip.Headers, body []byte) int {
	n := len(body)
	for _, f := range h.Fields() {
		n += len(f.Name) + len(f.Value) + 4
	}
	return n
}

// places is the number of places that n bytes take: at least one, at
// most max.
func places(n, max int) int { return min(max, 1+(n-1)/placeSize) }

// lingerWeight is the places a lingering transaction takes once it has
// let go of its request (shed): its own size and its final response's,
// which a UAS chose and may have made large. Called with tx.mu held.
func (tx *ServerTx) lingerWeight(max int) int {
	n := txOverhead + len(tx.wire)
	if tx.last != nil {
		n += reqOverhead + textSize(&tx.last.Headers, tx.last.Body)
	}
	return places(n, max)
}

// placeCap is the most places one request may take: all a source may
// hold.
func (l *Layer) placeCap() int {
	if l.perSource > 0 {
		return l.perSource
	}
	return l.max
}

// sourceOf is the unit of the per-source bound: the IP address, and for
// IPv6 its /64, the block one subscriber usually gets, so that an attacker
// cannot rotate through it. Ports are left out: one host can open any
// number of them.
func sourceOf(a sip.Addr) netip.Addr {
	ip := a.AddrPort.Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// sourceLoad is what one source holds.
type sourceLoad struct {
	src       netip.Addr
	places    int
	weight    int               // Config.SourceWeight, asked when the source came
	lingering txList[*ServerTx] // of sourceList, oldest first
}

// sourceWeight is the weight of src for the fair shares: Config.SourceWeight,
// at least 1 and at most maxWeight.
func (l *Layer) sourceWeight(src netip.Addr) int {
	if l.weigh == nil {
		return 1
	}
	return min(max(l.weigh(src), 1), maxWeight)
}

// maxFreeLoads bounds the sourceLoads kept for reuse.
const maxFreeLoads = 64

// maxWeight caps a source's weight, so that shares stay well inside an int.
const maxWeight = 1 << 16

// The two lists a lingering transaction is on.
const (
	globalList = iota
	sourceList
)

// link is a transaction's place in one txList.
type link[P any] struct{ prev, next P }

// linked is a pointer to a transaction that txLists link through
// listLink(idx), its link in the list idx.
type linked[P any] interface {
	comparable
	listLink(idx int) *link[P]
}

// txList is an intrusive FIFO of transactions, linked through their
// listLink(idx): adding and removing one cost O(1) and allocate nothing.
// It is guarded by Layer.mu.
type txList[P linked[P]] struct {
	head, tail P
	idx        int
	n          int // transactions listed
}

func (q *txList[P]) push(tx P) {
	var none P
	lk := tx.listLink(q.idx)
	lk.prev, lk.next = q.tail, none
	if q.tail != none {
		q.tail.listLink(q.idx).next = tx
	} else {
		q.head = tx
	}
	q.tail = tx
	q.n++
}

func (q *txList[P]) remove(tx P) {
	var none P
	lk := tx.listLink(q.idx)
	if lk.prev != none {
		lk.prev.listLink(q.idx).next = lk.next
	} else {
		q.head = lk.next
	}
	if lk.next != none {
		lk.next.listLink(q.idx).prev = lk.prev
	} else {
		q.tail = lk.prev
	}
	*lk = link[P]{}
	q.n--
}

func (tx *ServerTx) listLink(idx int) *link[*ServerTx] { return &tx.links[idx] }

// acquire takes a place for src, ending answered transactions early when
// the bounds ask for it; they are returned, to be ended with endEvicted
// once l.mu is released, whether a place was had or not. It returns the
// source's load, nil when no place was had, which the holder keeps for
// release: a source's load stays in l.sources while it holds places, so
// the map is asked once per place taken, not at every step. Called with
// l.mu held.
func (l *Layer) acquire(src netip.Addr, w int) (load *sourceLoad, evicted []*ServerTx) {
	load = l.sources[src]
	weight, total := 0, l.weights
	if load != nil {
		weight = load.weight
	} else {
		weight = l.sourceWeight(src)
		total += weight
	}
	// end ends the oldest transaction of q, if there is one. The source's
	// load is let go (release) when that took its last place.
	end := func(q *txList[*ServerTx]) bool {
		if q.head == nil {
			return false
		}
		tx := q.head
		l.evict(tx)
		evicted = append(evicted, tx)
		if load != nil && load.places == 0 {
			load = nil
		}
		return true
	}
	endOwn := func() bool { return load != nil && end(&load.lingering) }
	// The places the source holds, after its evictions.
	holds := func() int {
		if load != nil {
			return load.places
		}
		return 0
	}
	// Each loop ends: an end frees at least one place, or fails.
	for l.perSource > 0 && holds()+w > l.perSource {
		if !endOwn() {
			return nil, evicted
		}
	}
	shared := l.max - l.max/reserveShare
	if held := holds(); l.places+w > shared && held >= lightLoad && held+w > shared*weight/total {
		for l.places+w > shared {
			if !endOwn() {
				return nil, evicted
			}
		}
	}
	for l.places+w > l.max {
		if !end(&l.lingering) {
			return nil, evicted
		}
	}
	if load == nil {
		if n := len(l.freeLoads); n > 0 {
			load = l.freeLoads[n-1]
			l.freeLoads = l.freeLoads[:n-1]
		} else {
			load = &sourceLoad{lingering: txList[*ServerTx]{idx: sourceList}}
		}
		load.src, load.weight = src, weight
		l.sources[src] = load
		l.weights += weight
	}
	load.places += w
	l.places += w
	return load, evicted
}

// newWorkFull reports whether w places more for new work would take
// working transactions into the part of the bound kept for work begun.
// Called with l.mu held.
func (l *Layer) newWorkFull(w int) bool {
	return l.places-l.lingerPlaces+w > l.max-l.max/beginShare
}

// release gives back w places of the source of load, which acquire
// returned. Called with l.mu held.
func (l *Layer) release(load *sourceLoad, w int) {
	load.places -= w
	l.places -= w
	if load.places == 0 {
		delete(l.sources, load.src)
		l.weights -= load.weight
		// A source with no places has no lingering transaction either:
		// its load is as new, and is kept for the next one, since a
		// phone's transactions come one after the other.
		if len(l.freeLoads) < maxFreeLoads && load.lingering.head == nil {
			l.freeLoads = append(l.freeLoads, load)
		}
	}
}

// freePlace gives back tx's places once it is out of the tables and its
// handler has returned. Called with l.mu held.
func (l *Layer) freePlace(tx *ServerTx) {
	if tx.load != nil && !tx.inTable && !tx.running {
		l.release(tx.load, tx.weight)
		tx.load = nil
	}
}

// list puts tx, which only absorbs retransmissions now, on the lists of
// transactions that may be ended early.
func (l *Layer) list(tx *ServerTx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !tx.inTable || tx.load == nil || tx.listed {
		return
	}
	tx.listed = true
	// Its places now count what it holds from here on, its request gone
	// (shed): the bound stays one on memory, whatever size the response
	// it keeps. More places than the bound allows are given back at the
	// next request, which ends lingering ones to make room (acquire).
	if w := tx.lingerWeight(l.placeCap()); w != tx.weight {
		tx.load.places += w - tx.weight
		l.places += w - tx.weight
		tx.weight = w
	}
	if tx.rfc3261 && (tx.invite() || tx.linger.armed) {
		// The key's strings are slices of the request's text: copied,
		// they let it go (shed). Not for a non-INVITE transaction that
		// ends right after its answer (Timer J of 0: a reliable
		// transport, a quick refusal), which would pay the copy for
		// nothing. tx.mu is held too (maybeLinger), so that no reader of
		// tx.key sees it change. The map's key is its first
		// transaction's branch: assigning the copy with the same value
		// replaces it.
		tx.key = tx.key.detached()
		if l.servers[tx.key.branch] == tx {
			l.servers[tx.key.branch] = tx
		}
	}
	l.lingering.push(tx)
	l.lingerPlaces += tx.weight
	tx.load.lingering.push(tx)
}

// unlist takes tx off those lists. Called with l.mu held.
func (l *Layer) unlist(tx *ServerTx) {
	if !tx.listed {
		return
	}
	tx.listed = false
	l.lingering.remove(tx)
	l.lingerPlaces -= tx.weight
	tx.load.lingering.remove(tx)
}

// evict takes a lingering tx out of the tables and frees its place; the
// caller ends it with endEvicted after releasing l.mu. Called with l.mu
// held.
func (l *Layer) evict(tx *ServerTx) {
	l.counts.Evicted++
	l.unlinkServer(tx)
}

// endEvicted terminates transactions that evict took out.
func endEvicted(txs []*ServerTx) {
	for _, tx := range txs {
		tx.shutdownWith(nil)
	}
}

// overloaded counts a request refused for the bounds and logs it, at most
// once per warnEvery with the number not logged since. Called with l.mu
// held; it unlocks it.
func (l *Layer) overloaded(method string, src sip.Addr) {
	l.counts.Rejected++
	now := l.clock.Now()
	if !l.warned.IsZero() && now.Sub(l.warned) < warnEvery {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet, places, sources := l.quiet, l.places, len(l.sources)
	l.warned, l.quiet = now, 0
	l.mu.Unlock()
	l.log.Warn("sip transaction: refusing requests: too many transactions", "method", method, "source", src,
		"max", l.max, "max_per_source", l.perSource, "open", places, "sources", sources,
		"refused_since_last_warning", quiet, "err", ErrTooManyTransactions)
}
