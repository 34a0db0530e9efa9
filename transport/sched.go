package transport

import (
	"net/netip"
	"sync"

	"github.com/switchboard/switchboard/sip"
)

// item is one unit of work for the upper Handler: a message, or (msg nil)
// the closing of a flow.
type item struct {
	msg    sip.Message
	closed sip.Addr
	size   int   // what msg holds in memory, roughly (msgSize)
	at     int64 // delay.Now when msg was queued
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
}

// source is the queue of one source IP address.
type source struct {
	key   netip.Addr
	items []item // FIFO: items[head:] are pending
	head  int
	bytes int // size of the pending items
	// scheduled is set while the source is in the ready list or a worker
	// holds it; a source is served by one worker at a time, which keeps
	// its messages in order (a REGISTER is handled before the closing of
	// its flow) and caps what one source takes to one worker.
	scheduled bool
}

func (s *source) len() int { return len(s.items) - s.head }

// scheduler queues work per source and hands it to workers round-robin
// across sources, so that a flooding source fills only its own queue and
// waits its turn like every other.
type scheduler struct {
	mu      sync.Mutex
	cond    sync.Cond
	sources map[netip.Addr]*source
	ready   []*source // FIFO of sources with work: ready[readyHead:]
	// readyHead indexes the first ready source; the slice is compacted
	// when the head passes half of it, so it never grows without bound.
	readyHead int
	pending   int
	bytes     int
	lim       limits
	closed    bool
	free      []*source // recycled sources, to spare an allocation per burst
}

func newScheduler(lim limits) *scheduler {
	s := &scheduler{
		sources: make(map[netip.Addr]*source),
		lim:     lim,
	}
	s.cond.L = &s.mu
	return s
}

// fits reports whether the caps let an item of size in for src (nil: a
// source with nothing queued). Called with s.mu held.
func (s *scheduler) fits(src *source, size int) bool {
	n, b := 0, 0
	if src != nil {
		n, b = src.len(), src.bytes
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

// push queues it for key. Unless force is set it refuses (returns false)
// when the caps do not let it in (fits). Flow-closed notifications are
// forced: there is at most one per connection, and losing one would leave
// a dead binding behind.
func (s *scheduler) push(key netip.Addr, it item, force bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	src := s.sources[key]
	if !force && !s.fits(src, it.size) {
		return false
	}
	if src == nil {
		src = s.newSource(key)
		s.sources[key] = src
	}
	if src.head > 0 && len(src.items) == cap(src.items) {
		n := copy(src.items, src.items[src.head:])
		clear(src.items[n:])
		src.items, src.head = src.items[:n], 0
	}
	src.items = append(src.items, it)
	src.bytes += it.size
	s.bytes += it.size
	s.pending++
	if !src.scheduled {
		src.scheduled = true
		s.ready = append(s.ready, src)
		s.cond.Signal()
	}
	return true
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

// next finishes prev (the source whose item the worker just handled, or
// nil) and waits for the next item. ok is false once the scheduler is
// closed.
func (s *scheduler) next(prev *source) (src *source, it item, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev != nil {
		s.release(prev)
	}
	for len(s.ready) == s.readyHead && !s.closed {
		s.cond.Wait()
	}
	if s.closed {
		return nil, item{}, false
	}
	src = s.ready[s.readyHead]
	s.ready[s.readyHead] = nil
	s.readyHead++
	switch {
	case s.readyHead == len(s.ready):
		s.ready, s.readyHead = s.ready[:0], 0
	case s.readyHead > len(s.ready)/2 && s.readyHead > 32:
		n := copy(s.ready, s.ready[s.readyHead:])
		clear(s.ready[n:])
		s.ready, s.readyHead = s.ready[:n], 0
	}
	it = src.items[src.head]
	src.items[src.head] = item{}
	src.head++
	src.bytes -= it.size
	s.bytes -= it.size
	s.pending--
	return src, it, true
}

// release puts a served source back at the end of the ready list when it
// has more work (round-robin), or forgets it, so that the map holds only
// sources with pending work and does not grow with every address seen.
func (s *scheduler) release(src *source) {
	if src.len() > 0 {
		s.ready = append(s.ready, src)
		return
	}
	delete(s.sources, src.key)
	src.items, src.head, src.scheduled = src.items[:0], 0, false
	if cap(src.items) <= 64 && len(s.free) < 1024 {
		s.free = append(s.free, src)
	}
}

// close wakes every worker and drops what is queued.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.sources, s.ready, s.readyHead, s.pending, s.bytes = nil, nil, 0, 0, 0
	s.mu.Unlock()
	s.cond.Broadcast()
}

// len returns how many items are queued, and their size.
func (s *scheduler) len() (n, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending, s.bytes
}
