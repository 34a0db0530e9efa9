package transport

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/switchboard/switchboard/sip"
)

// Stateless answers in batches. Under overload most of what a worker
// handles is refused at once, statelessly (a 503 with Retry-After), and
// the sendto of each refusal was the largest part of its cost: about 4
// µs a datagram on this VM, where a sendmmsg of 16 costs about 1.2 µs a
// datagram. So a stateless answer given while a worker handles a request
// (Layer.Reply) waits in the worker's batch and leaves with the others
// of its run of work: when the worker finds nothing more to do, before
// it waits, or once flushAt answers wait, or once the oldest has waited
// for holdItems items. Nothing waits for company when the worker is
// idle: a lone refusal leaves as soon as its request is handled.
//
// An earlier batching of every send (h-regcpu) handed what queued to a
// flusher goroutine, which waited for a CPU behind the runnable handlers:
// answers late enough for their clients to send again. Here the worker
// that queued an answer writes it itself, with no hand-off.
const (
	// flushAt is how many answers a worker holds at most: what one
	// sendmmsg of a transport's batch takes.
	flushAt = 16
	// holdItems is how many items a worker handles at most while an
	// answer waits in its batch: under a light refusal rate, amid served
	// work that takes tens of microseconds an item, an answer leaves
	// within a millisecond or two, well inside T1.
	holdItems = 32
)

// worker is the state of one of the Layer's workers that Reply reaches.
type worker struct {
	// cur is the request the worker handles now: Reply holds only its
	// answers. Read without mu to find the worker; cleared under mu
	// (handled), so that once cleared no answer joins the batches.
	cur atomic.Pointer[sip.Request]

	mu      sync.Mutex
	batches []pendingBatch // a transport's batch once it has had one
	items   int            // items handled since the oldest answer held
}

// pendingBatch is a worker's batch for one transport.
type pendingBatch struct {
	t Transport
	b Batch // nil: t cannot batch
}

// Reply sends res, a stateless answer to req (a refusal, a 481 to a
// stray CANCEL), as Send would to req.Source. When a worker of the Layer
// is handling req, on the calling goroutine, and the transport batches,
// the answer waits in the worker's batch and leaves with the others of
// its run (see flushAt): errors are then logged, not returned, as the
// loss of a datagram. The transaction layer calls it for its stateless
// answers (transaction.Replier).
func (l *Layer) Reply(ctx context.Context, req *sip.Request, res *sip.Response) error {
	if req.Source.Flow == 0 && !l.cfg.Trace {
		if r := l.active.Load(); r != nil {
			for _, w := range r.workers {
				if w.cur.Load() == req {
					if w.hold(l, req, res) {
						return nil
					}
					break
				}
			}
		}
	}
	return l.Send(ctx, res, req.Source)
}

// hold puts res, the answer to req, in w's batch for its transport; false
// when it is to be sent alone: req is no longer w's, the Via names no
// address, or the transport does not batch res.
func (w *worker) hold(l *Layer, req *sip.Request, res *sip.Response) bool {
	t, dst, ok := l.viaTarget(res)
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.Load() != req {
		return false
	}
	b := w.batch(t)
	if b == nil || !b.Add(res, dst) {
		return false
	}
	if b.Len() >= flushAt {
		w.flush(l)
	}
	return true
}

// viaTarget returns the transport and address that res goes to when its
// top Via names an address (ResponseAddr), as it nearly always does;
// false otherwise, and when no transport serves that address: Send then
// finds the way, or reports why there is none.
func (l *Layer) viaTarget(res *sip.Response) (Transport, sip.Addr, bool) {
	via, ok := res.TopVia()
	if !ok {
		return nil, sip.Addr{}, false
	}
	a, ok := ResponseAddr(via)
	if !ok {
		return nil, sip.Addr{}, false
	}
	t, err := l.pick(a.Transport, a.AddrPort.Addr())
	if err != nil {
		return nil, sip.Addr{}, false
	}
	return t, a, true
}

// batch returns w's batch for t, nil when t does not batch. Called with
// w.mu held.
func (w *worker) batch(t Transport) Batch {
	for i := range w.batches {
		if w.batches[i].t == t {
			return w.batches[i].b
		}
	}
	var b Batch
	if bt, ok := t.(Batcher); ok {
		b = bt.NewBatch()
	}
	w.batches = append(w.batches, pendingBatch{t: t, b: b})
	return b
}

// handling marks req as the request w handles now. No lock: an answer
// held for the request before it, which handled cleared, cannot match.
func (w *worker) handling(req *sip.Request) { w.cur.Store(req) }

// handled is called after each item: the request w handled is no longer
// its own (Reply holds nothing more for it), and what w holds is written
// once the oldest answer has waited holdItems items. It reports whether
// answers are still held. One lock an item.
func (w *worker) handled(l *Layer) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.Store(nil)
	if w.held() == 0 {
		return false
	}
	if w.items++; w.items >= holdItems {
		w.flush(l)
	}
	return w.held() > 0
}

// held is how many answers w holds, in all its batches. Called with w.mu
// held.
func (w *worker) held() int {
	n := 0
	for _, p := range w.batches {
		if p.b != nil {
			n += p.b.Len()
		}
	}
	return n
}

// done writes what w holds: its run of work is over.
func (w *worker) done(l *Layer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flush(l)
}

// flush writes every batch of w. Called with w.mu held.
func (w *worker) flush(l *Layer) {
	for _, p := range w.batches {
		if p.b == nil || p.b.Len() == 0 {
			continue
		}
		if n, err := p.b.Len(), p.b.Flush(); err != nil {
			l.log.Debug("sending stateless answers failed", "transport", p.t.Network(), "answers", n, "err", err)
		}
	}
	w.items = 0
}
