package transaction

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// outMsg is a message to send once the transaction lock is released.
type outMsg struct {
	msg sip.Message
	dst sip.Addr
}

// outbox collects what a locked state-machine step decided to do, so that
// sending (which may be slow) and calling into the Layer happen after the
// transaction lock is released.
type outbox struct {
	n    int
	msgs [2]outMsg
	// then runs after the messages were sent successfully: it is how a
	// zero-duration timer (D, I, J, K on reliable transports) fires "right
	// after" the message that started it left.
	then func()
	// removed: the transaction terminated; take it out of the Layer.
	removed bool
	// cancel: a CANCEL was waiting for a provisional response; send it.
	cancel bool
	// stray: a response for Config.OnStrayResponse (a released
	// transaction's 2xx).
	stray *sip.Response
}

func (o *outbox) send(msg sip.Message, dst sip.Addr) {
	o.msgs[o.n] = outMsg{msg, dst}
	o.n++
}

// timerSlot holds one named timer of a transaction. gen changes whenever
// the timer is stopped or re-armed, so a callback that was already running
// when Stop was called (real clock) sees that it is stale and does nothing.
type timerSlot struct {
	t   clock.Timer
	gen uint64
}

func (s *timerSlot) stop() {
	if s.t != nil {
		s.t.Stop()
		s.t = nil
	}
	s.gen++
}

// core is what client and server transactions share: the lock that guards
// all their state, the state, and timer plumbing.
type core struct {
	l     *Layer
	mu    sync.Mutex
	state State
	// flush performs an outbox; set by the owner.
	flush func(ctx context.Context, ob outbox)
}

// arm (re)starts slot s so that fn runs under the lock after d. A zero d
// runs fn right after the current step's messages are sent. Called with the
// lock held.
func (c *core) arm(ob *outbox, s *timerSlot, d time.Duration, fn func(*outbox)) {
	s.stop()
	g := s.gen
	if d <= 0 {
		prev := ob.then
		ob.then = func() {
			if prev != nil {
				prev()
			}
			c.fire(s, g, fn)
		}
		return
	}
	s.t = c.l.clock.AfterFunc(d, func() { c.fire(s, g, fn) })
}

// fire runs a timer's step unless the timer was stopped or re-armed since.
// It never waits for the TU: it takes only this transaction's lock.
func (c *core) fire(s *timerSlot, g uint64, fn func(*outbox)) {
	c.mu.Lock()
	if s.gen != g || c.state == StateTerminated {
		c.mu.Unlock()
		return
	}
	s.t = nil
	var ob outbox
	fn(&ob)
	c.mu.Unlock()
	c.flush(c.l.ctx, ob)
}

// warm parses the typed headers that the stack and transports read, so that
// later reads of them from several goroutines (the TU, timers, the Sender)
// only read the cache of sip.Headers and never write it. A malformed header
// is left for whoever reads it to find.
func warm(h *sip.Headers) { _ = h.Index() }
