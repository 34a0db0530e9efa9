package transaction

import (
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
)

// The handlers' pool keeps at most maxIdleWorkers goroutines waiting for
// work, and lets one go once it has waited idleWorkerTTL: a burst of
// handlers that block together (on one journal write, on a next hop) and
// are released together leaves many workers idle at once, and a pool
// that dropped those beyond a small cap at once started as many again at
// the next burst, each growing its stack anew (runtime.morestack,
// copystack). A worker's stack is what it grew to, 8 to 16 KiB under the
// registrar, so the cap is some 16 MiB at worst, held only while bursts
// that large keep coming.
const (
	maxIdleWorkers = 1024
	idleWorkerTTL  = 10 * time.Second
)

// pool runs the handlers of server transactions on goroutines that
// outlive them. The idle workers form a stack: the one that went idle
// last works next, so that a steady load keeps the same few workers (and
// their stacks, and the caches) warm, and the bottom of the stack is the
// one idle longest, which dispatch lets go once it has waited past the
// TTL, one per dispatch. A worker waits on a channel of its own, which
// dispatch sends to: one wake-up per handler, no select.
type pool struct {
	mu      sync.Mutex
	idle    []*worker // oldest first
	closed  bool
	max     int   // idle workers kept
	ttl     int64 // ns an idle worker is kept, by delay.Now
	started int   // workers started so far
	wg      sync.WaitGroup
}

// worker is a goroutine of the pool, as dispatch reaches it.
type worker struct {
	work  chan *ServerTx // nil: end
	since int64          // delay.Now when it went idle
}

func newPool() *pool {
	return &pool{max: maxIdleWorkers, ttl: int64(idleWorkerTTL)}
}

// dispatch runs tx's handler on an idle worker, or on a new one when none
// waits. now is delay.Now.
//
// Layer.Close waits for the handlers (Layer.handlers) before the
// workers: dispatch runs only between a handler's handlers.Add and its
// Done, so no worker is added once Close waits for them.
func (p *pool) dispatch(l *Layer, tx *ServerTx, now int64) {
	var w, old *worker
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if len(p.idle) > 0 && now-p.idle[0].since > p.ttl {
			old = p.idle[0]
			n := copy(p.idle, p.idle[1:])
			p.idle[n] = nil
			p.idle = p.idle[:n]
		}
	} else {
		p.started++
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if old != nil {
		old.work <- nil
	}
	if w != nil {
		w.work <- tx
		return
	}
	go p.run(l, tx)
}

// run is a worker: it runs tx's handler, then those dispatch hands it,
// until it is let go.
func (p *pool) run(l *Layer, tx *ServerTx) {
	defer p.wg.Done()
	w := &worker{work: make(chan *ServerTx, 1)}
	for tx != nil {
		reserveStack(false)
		l.load.sample(tx.handed)
		l.serve(tx)
		tx = p.wait(w)
	}
}

// handlerStack is the stack room a worker makes before each handler: a
// worker's stack is what it grew to, 8 to 16 KiB under the registrar.
const handlerStack = 12 << 10

// reserveStack makes room for handlerStack bytes on the calling
// goroutine's stack. It is called two frames deep, where the runtime's
// copy of a stack that must grow is cheap; the handler's deepest call,
// where the stack grew otherwise, makes the copy adjust some twenty
// frames. A worker's stack grows there twice or three times from the
// runtime's starting size, and again after the collector halves it while
// the worker waits: when the handlers in flight swing by more than the
// idle workers kept, as under overload, workers are started and let go
// by the thousand, and runtime.newstack was 2.7-5.0 % of the gateway's
// CPU at 2x the REGISTER knee. never is false: the buffer sits in the
// frame, so the stack check on entry makes room for it, but is never
// written.
//
//go:noinline
func reserveStack(never bool) {
	if never {
		var buf [handlerStack]byte
		keepStack(&buf)
	}
}

//go:noinline
func keepStack(*[handlerStack]byte) {}

// wait puts w on the idle stack and waits for its next transaction; nil
// when the pool is closed or has idle workers enough.
func (p *pool) wait(w *worker) *ServerTx {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		return nil
	}
	w.since = delay.Now()
	p.idle = append(p.idle, w)
	p.mu.Unlock()
	return <-w.work
}

// close lets every worker go: the idle ones now, the others when their
// handler returns. It does not wait for them (see stop).
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, w := range idle {
		w.work <- nil
	}
}

// stop closes the pool and waits for its workers to end.
func (p *pool) stop() {
	p.close()
	p.wg.Wait()
}

// counts returns how many workers wait for work, and how many were
// started so far.
func (p *pool) counts() (idle, started int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle), p.started
}
