package media

import (
	"net"
	"net/netip"
	"sync"
)

// pionQueueLen is how many datagrams of the shared ICE socket may wait for
// pion's mux read loop when the engine's poller reads the socket (Linux).
// Beyond it the poller leaves datagrams in the socket's receive buffer
// (muxReadBuffer, megabytes), and the fast path's wait there too. At
// 1,000 calls pion gets about 2,600 datagrams a second (a copy a second
// per leg, STUN both ways, SRTCP): 1,024 cover 0.4 s of its read loop
// kept off the CPU, where 128 held the fast path up dozens of times in 5 s
// on a loaded host. A slot keeps the buffer of the largest datagram it
// carried (1,500 bytes or more).
const pionQueueLen = 1024

// pionQueue carries the shared ICE socket's datagrams that are not the
// fast path's (STUN, DTLS, SRTCP, video, legs on pion's path) from the
// poller that reads the socket to pion's mux read loop
// (fastConn.ReadFromAddrPort), in the order they came. It holds at most
// pionQueueLen; the poller asks for room before each read of the socket
// (reserve) and, refused, stops reading it until the read loop has taken
// half of the queue and called resume.
type pionQueue struct {
	mu sync.Mutex
	// resume is called by pop, without mu, when a held producer may go
	// on; set by the producer (setResume).
	resume func()
	bufs   [pionQueueLen][]byte
	srcs   [pionQueueLen]netip.AddrPort
	head   int // the oldest datagram's slot
	n      int
	held   bool // reserve refused: the producer waits for resume
	closed bool
	holds  uint64
	queued uint64

	ready chan struct{} // a token: something was queued, or the queue closed
}

func newPionQueue() *pionQueue {
	return &pionQueue{resume: func() {}, ready: make(chan struct{}, 1)}
}

// setResume makes f the call that resumes a held producer.
func (q *pionQueue) setResume(f func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resume = f
}

// reserve reports whether k more datagrams fit; when not, the queue
// calls resume once the read loop has made room. A closed queue takes
// everything (and keeps nothing).
func (q *pionQueue) reserve(k int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || pionQueueLen-q.n >= k {
		return true
	}
	if !q.held {
		q.held = true
		q.holds++
	}
	return false
}

// push queues a copy of b from src; reserve said there was room. The read
// loop learns of it at the next notify.
func (q *pionQueue) push(b []byte, src netip.AddrPort) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.n == pionQueueLen {
		return
	}
	i := (q.head + q.n) % pionQueueLen
	s := q.bufs[i]
	if cap(s) < len(b) {
		// Slots grow to the largest datagram they carried: an audio
		// packet or a DTLS record, at most the socket reader's slot.
		s = make([]byte, 0, max(len(b), 1500))
	}
	q.bufs[i] = append(s[:0], b...)
	q.srcs[i] = src
	q.n++
	q.queued++
}

// notify wakes the read loop if it waits.
func (q *pionQueue) notify() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop copies the oldest datagram to p, waiting for one; net.ErrClosed
// once the queue is closed.
func (q *pionQueue) pop(p []byte) (int, netip.AddrPort, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		if q.n > 0 {
			n := copy(p, q.bufs[q.head])
			src := q.srcs[q.head]
			q.head = (q.head + 1) % pionQueueLen
			q.n--
			var resume func()
			if q.held && q.n <= pionQueueLen/2 {
				q.held, resume = false, q.resume
			}
			q.mu.Unlock()
			if resume != nil {
				resume()
			}
			return n, src, nil
		}
		q.mu.Unlock()
		<-q.ready
	}
}

// close ends the queue: a pop that waits fails, what is queued is
// dropped, and a held producer is resumed.
func (q *pionQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	var resume func()
	if q.held {
		q.held, resume = false, q.resume
	}
	clear(q.bufs[:])
	q.n = 0
	q.mu.Unlock()
	if resume != nil {
		resume()
	}
	q.notify()
}

// counts returns how many times the producer was held, and how many
// datagrams were queued.
func (q *pionQueue) counts() (holds, queued uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.holds, q.queued
}
