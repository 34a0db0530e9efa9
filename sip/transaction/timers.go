package transaction

import (
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/delay"
)

// Timers. A transaction arms up to six timers and most are stopped before
// they fire (E and F when the response comes, the 100 Trying when the TU
// answers first). Each used to be a clock timer of its own, whose
// callback the real clock runs in a new goroutine, with a closure and a
// method value allocated per arming. Now every transaction timer of a
// Layer is an entry of one structure, ordered by when it fires (lanes
// below), and only the earliest entry has a clock timer, the alarm. When the alarm goes off
// it fires every entry that is due, in one goroutine, in order. On the
// real clock the alarm is set to a multiple of alarmGrain after the
// Layer's start, so that the timers due within one grain fire together:
// a timer fires at most alarmGrain late, nothing next to T1 (500 ms). On
// any other clock (clock.Fake in tests) the alarm is exact.
const alarmGrain = 2 * time.Millisecond

// Lanes. A Layer holds tens of thousands of armed timers under load
// (every non-INVITE server transaction over UDP waits 32 s for Timer J),
// and a binary heap of them all took a walk of 17 levels, a cache miss
// each, for every timer that fired or stopped. But the timers are armed
// with a few durations only (T1 and its doublings, T2, T4, the 64*T1 of
// J, F, B, H, L, M): timers of one duration fire in the order they were
// armed. So the timers of each duration wait in a lane of their own, a
// list in firing order (append at the tail, unlink from anywhere), and
// the heap orders only the lanes, by their first timer: a few entries.
// Beyond maxLanes durations (which the layer's own timers never reach)
// the rest share the last lane, where a timer is put in order by a walk
// from the tail.
const maxLanes = 64

// timerLane is the timers of one duration, in firing order.
type timerLane struct {
	d          time.Duration
	head, tail *timerSlot
	pos        int // 1 + its index in the heap; 0 while empty
}

// timerHeap holds the armed timers of a Layer's transactions. Its lock is
// a leaf: taken with a transaction's lock held, never the other way.
type timerHeap struct {
	clock clock.Clock
	base  time.Time     // origin of timerSlot.at and of the grain
	grain time.Duration // 0: exact
	// mono is base as delay.Now, for the real clock (grain > 0): its
	// time is read from the monotonic clock alone, one read where
	// time.Now takes two.
	mono int64

	ring func() // fire, as a func made once

	mu      sync.Mutex
	lanes   []*timerLane // every lane made, by duration
	h       []*timerLane // the lanes with timers, a heap by their head
	seq     uint64
	alarm   clock.Timer
	alarmAt int64 // as timerSlot.at
	closed  bool
}

// init sets the heap up on clock c.
func (th *timerHeap) init(c clock.Clock) {
	th.clock, th.base = c, c.Now()
	th.ring = th.fire
	if _, real := c.(clock.Real); real {
		th.grain = alarmGrain
		th.mono = delay.Now()
	}
}

// now is the clock's time as timerSlot.at counts it.
func (th *timerHeap) now() int64 {
	if th.grain > 0 {
		return delay.Now() - th.mono
	}
	return int64(th.clock.Now().Sub(th.base))
}

// handedAt returns delay.Now for a handler handed over now, a moment
// after now() gave born: born itself on the real clock, whose now() is
// delay.Now less mono, saving a read of the clock per transaction.
func (th *timerHeap) handedAt(born int64) int64 {
	if th.grain > 0 {
		return born + th.mono
	}
	return delay.Now()
}

// lane returns the lane of duration d, made when new. Called with th.mu
// held.
func (th *timerHeap) lane(d time.Duration) *timerLane {
	for _, ln := range th.lanes {
		if ln.d == d {
			return ln
		}
	}
	if len(th.lanes) == maxLanes {
		return th.lanes[maxLanes-1]
	}
	ln := &timerLane{d: d}
	th.lanes = append(th.lanes, ln)
	return ln
}

// add queues s to fire after d. Called with s's transaction lock held.
func (th *timerHeap) add(s *timerSlot, d time.Duration) {
	now := th.now()
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.closed {
		return // the Layer is closed, its transactions are terminated
	}
	th.seq++
	s.at, s.seq, s.fgen = now+int64(d), th.seq, s.gen
	ln := th.lane(d)
	// Timers of one duration come in the order of their at, but for
	// those armed at once by goroutines that took the lock in the other
	// order (and those of the shared last lane): walk back past them.
	p := ln.tail
	for p != nil && p.at > s.at {
		p = p.prev
	}
	s.lane, s.prev = ln, p
	if p == nil {
		s.next, ln.head = ln.head, s
	} else {
		s.next, p.next = p.next, s
	}
	if s.next == nil {
		ln.tail = s
	} else {
		s.next.prev = s
	}
	if ln.head != s {
		return
	}
	if ln.pos == 0 {
		ln.pos = len(th.h) + 1
		th.h = append(th.h, ln)
	}
	th.up(ln.pos - 1)
	if ln.pos == 1 {
		th.schedule(now)
	}
}

// remove takes s out of its lane, if it is in one. The alarm is left as
// it is: if it was s's, it finds nothing due and is set again.
func (th *timerHeap) remove(s *timerSlot) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if s.lane == nil {
		return
	}
	th.unlink(s)
	if len(th.h) == 0 && th.alarm != nil {
		th.alarm.Stop()
		th.alarm = nil
	}
}

// unlink takes s out of its lane, and the heap's order along. Called with
// th.mu held.
func (th *timerHeap) unlink(s *timerSlot) {
	ln := s.lane
	head := ln.head == s
	if s.prev == nil {
		ln.head = s.next
	} else {
		s.prev.next = s.next
	}
	if s.next == nil {
		ln.tail = s.prev
	} else {
		s.next.prev = s.prev
	}
	s.lane, s.prev, s.next = nil, nil, nil
	switch {
	case !head:
	case ln.head != nil:
		th.down(ln.pos - 1) // its head fires later now
	default:
		i, last := ln.pos-1, len(th.h)-1
		if i != last {
			th.swap(i, last)
		}
		th.h[last] = nil
		th.h = th.h[:last]
		ln.pos = 0
		if i != last {
			th.down(i)
			th.up(i)
		}
	}
}

// schedule sets the alarm for the earliest timer, unless it is set for
// then or earlier already. Called with th.mu held and the heap not empty.
func (th *timerHeap) schedule(now int64) {
	at := th.h[0].head.at
	if g := int64(th.grain); g > 0 {
		at = (at + g - 1) / g * g
	}
	if th.alarm != nil && at >= th.alarmAt {
		return
	}
	if th.alarm != nil {
		th.alarm.Stop()
	}
	th.alarmAt = at
	th.alarm = th.clock.AfterFunc(time.Duration(at-now), th.ring)
}

// fire is the alarm: it fires every timer due, in order, and sets the
// alarm for the next. An alarm that was stopped too late may fire too:
// it finds nothing due, or fires early what the current alarm would have.
func (th *timerHeap) fire() {
	now := th.now()
	var buf [32]firing
	due := buf[:0]
	th.mu.Lock()
	if th.alarm != nil && now >= th.alarmAt {
		th.alarm = nil // it is this one, or due anyway
	}
	for len(th.h) > 0 && th.h[0].head.at <= now {
		s := th.h[0].head
		due = append(due, firing{s, s.fgen})
		th.unlink(s)
	}
	if len(th.h) > 0 && !th.closed {
		th.schedule(now)
	}
	th.mu.Unlock()
	for _, f := range due {
		f.s.c.owner.fire(f.s, f.gen)
	}
}

// close stops the alarm for good.
func (th *timerHeap) close() {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.closed = true
	if th.alarm != nil {
		th.alarm.Stop()
		th.alarm = nil
	}
}

// less orders lanes by their first timer.
func (th *timerHeap) less(i, j int) bool {
	a, b := th.h[i].head, th.h[j].head
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (th *timerHeap) swap(i, j int) {
	th.h[i], th.h[j] = th.h[j], th.h[i]
	th.h[i].pos, th.h[j].pos = i+1, j+1
}

func (th *timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !th.less(i, p) {
			return
		}
		th.swap(i, p)
		i = p
	}
}

func (th *timerHeap) down(i int) {
	n := len(th.h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && th.less(r, c) {
			c = r
		}
		if !th.less(c, i) {
			return
		}
		th.swap(i, c)
		i = c
	}
}
