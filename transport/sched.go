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
}

// source is the queue of one source IP address.
type source struct {
	key   netip.Addr
	items []item // FIFO: items[head:] are pending
	head  int
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
	perSource int
	total     int
	closed    bool
	free      []*source // recycled sources, to spare an allocation per burst
}

func newScheduler(perSource, total int) *scheduler {
	s := &scheduler{
		sources:   make(map[netip.Addr]*source),
		perSource: perSource,
		total:     total,
	}
	s.cond.L = &s.mu
	return s
}

// push queues it for key. Unless force is set it refuses (returns false)
// when the source already has perSource items pending or the scheduler
// holds total items. Flow-closed notifications are forced: there is at most
// one per connection, and losing one would leave a dead binding behind.
func (s *scheduler) push(key netip.Addr, it item, force bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	src := s.sources[key]
	if !force && (s.pending >= s.total || src != nil && src.len() >= s.perSource) {
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
	s.sources, s.ready, s.readyHead, s.pending = nil, nil, 0, 0
	s.mu.Unlock()
	s.cond.Broadcast()
}

// len returns how many items are queued.
func (s *scheduler) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}
