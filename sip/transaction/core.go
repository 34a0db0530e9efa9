package transaction

import (
	"sync"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// outMsg is a message to send once the transaction lock is released.
type outMsg struct {
	msg sip.Message
	dst sip.Addr
	// wire, when set, is a response's bytes from Resender.SendKept, sent
	// again in place of msg.
	wire []byte
	// keep: msg is a server transaction's final response, to be sent
	// with Resender.SendKept and kept as bytes (ServerTx.keep).
	keep bool
}

// outbox collects what a locked state-machine step decided to do, so that
// sending (which may be slow) and calling into the Layer happen after the
// transaction lock is released.
type outbox struct {
	n    int
	msgs [2]outMsg
	// due are zero-duration timers, run after the messages were sent
	// successfully: it is how a zero-duration timer (D, I, J, K on
	// reliable transports) fires "right after" the message that started
	// it left. A step arms at most one.
	due  [2]firing
	nDue int
	// removed: the transaction terminated; take it out of the Layer.
	removed bool
	// cancel: a CANCEL was waiting for a provisional response; send it.
	cancel bool
	// stray: a response for Config.OnStrayResponse (a released
	// transaction's 2xx).
	stray *sip.Response
}

func (o *outbox) send(msg sip.Message, dst sip.Addr) {
	o.msgs[o.n] = outMsg{msg: msg, dst: dst}
	o.n++
}

// sendKept is send for a final response to be kept as bytes.
func (o *outbox) sendKept(res *sip.Response, dst sip.Addr) {
	o.msgs[o.n] = outMsg{msg: res, dst: dst, keep: true}
	o.n++
}

// resend queues wire, kept bytes, for dst.
func (o *outbox) resend(wire []byte, dst sip.Addr) {
	o.msgs[o.n] = outMsg{wire: wire, dst: dst}
	o.n++
}

// runDue fires the zero-duration timers of a step whose messages went out.
func (o *outbox) runDue() {
	for _, f := range o.due[:o.nDue] {
		f.s.c.owner.fire(f.s, f.gen)
	}
}

// timerSlot is one named timer of a transaction, an entry of its Layer's
// timers (timers.go) while armed. gen changes whenever the timer is
// stopped or re-armed, so a firing that had already left the heap when
// the timer was stopped sees that it is stale and does nothing.
type timerSlot struct {
	c     *core  // the transaction, set when it is built
	armed bool   // in the heap (or leaving it to fire); guarded by c.mu
	gen   uint64 // guarded by c.mu

	// Guarded by the heap's lock.
	at         int64  // when it fires, in ns after the heap's base
	seq        uint64 // arming order, among timers of the same at
	fgen       uint64 // gen when armed
	lane       *timerLane
	prev, next *timerSlot // in lane, while in it
}

// firing is a timer due to fire, with the gen it was armed with.
type firing struct {
	s   *timerSlot
	gen uint64
}

// stop disarms the timer. Called with c.mu held.
func (s *timerSlot) stop() {
	if s.armed {
		s.c.l.timers.remove(s)
		s.armed = false
	}
	s.gen++
}

// owner is the transaction type around a core: it runs the step of one
// of its timers (fireStep). Through the interface, an outbox would escape
// to the heap; fireStep keeps it on the stack of the concrete method.
type owner interface {
	fire(s *timerSlot, gen uint64)
}

// core is what client and server transactions share: the lock that guards
// all their state, the state, and timer plumbing.
type core struct {
	l     *Layer
	mu    sync.Mutex
	state State
	owner owner
}

// init sets up the core of the transaction o, whose timers are slots.
func (c *core) init(l *Layer, o owner, slots ...*timerSlot) {
	c.l, c.owner = l, o
	for _, s := range slots {
		s.c = c
	}
}

// arm (re)starts slot s so that the owner's step for it runs under the
// lock after d. A zero d runs it right after the current step's messages
// are sent. Called with the lock held.
func (c *core) arm(ob *outbox, s *timerSlot, d time.Duration) {
	s.stop()
	if d <= 0 {
		ob.due[ob.nDue] = firing{s, s.gen}
		ob.nDue++
		return
	}
	s.armed = true
	c.l.timers.add(s, d)
}

// take locks the transaction for the firing of timer s, armed with gen,
// and reports true, unless the timer was stopped or re-armed since or
// the transaction ended (then it returns false, unlocked). It marks the
// timer fired.
func (c *core) take(s *timerSlot, gen uint64) bool {
	c.mu.Lock()
	if s.gen != gen || c.state == StateTerminated {
		c.mu.Unlock()
		return false
	}
	s.armed = false
	return true
}

// warm parses the typed headers that the stack and transports read, so that
// later reads of them from several goroutines (the TU, timers, the Sender)
// only read the cache of sip.Headers and never write it. A malformed header
// is left for whoever reads it to find.
func warm(h *sip.Headers) { _ = h.Index() }
