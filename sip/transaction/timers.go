package transaction

import (
	"sync"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Timers. A transaction arms up to six timers and most are stopped before
// they fire (E and F when the response comes, the 100 Trying when the TU
// answers first). Each used to be a clock timer of its own, whose
// callback the real clock runs in a new goroutine, with a closure and a
// method value allocated per arming. Now every transaction timer of a
// Layer is an entry of one heap, ordered by when it fires, and only the
// earliest entry has a clock timer, the alarm. When the alarm goes off
// it fires every entry that is due, in one goroutine, in order. On the
// real clock the alarm is set to a multiple of alarmGrain after the
// Layer's start, so that the timers due within one grain fire together:
// a timer fires at most alarmGrain late, nothing next to T1 (500 ms). On
// any other clock (clock.Fake in tests) the alarm is exact.
const alarmGrain = 2 * time.Millisecond

// timerHeap holds the armed timers of a Layer's transactions. Its lock is
// a leaf: taken with a transaction's lock held, never the other way.
type timerHeap struct {
	clock clock.Clock
	base  time.Time     // grain origin
	grain time.Duration // 0: exact

	ring func() // fire, as a func made once

	mu      sync.Mutex
	h       []*timerSlot
	seq     uint64
	alarm   clock.Timer
	alarmAt time.Time
	closed  bool
}

// init sets the heap up on clock c.
func (th *timerHeap) init(c clock.Clock) {
	th.clock, th.base = c, c.Now()
	th.ring = th.fire
	if _, real := c.(clock.Real); real {
		th.grain = alarmGrain
	}
}

// add queues s to fire after d. Called with s's transaction lock held.
func (th *timerHeap) add(s *timerSlot, d time.Duration) {
	now := th.clock.Now()
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.closed {
		return // the Layer is closed, its transactions are terminated
	}
	th.seq++
	s.at, s.seq, s.fgen = now.Add(d), th.seq, s.gen
	s.pos = len(th.h) + 1
	th.h = append(th.h, s)
	th.up(s.pos - 1)
	if s.pos == 1 {
		th.schedule(now)
	}
}

// remove takes s out of the heap, if it is there. The alarm is left as
// it is: if it was s's, it finds nothing due and is set again.
func (th *timerHeap) remove(s *timerSlot) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if s.pos == 0 {
		return
	}
	i, last := s.pos-1, len(th.h)-1
	if i != last {
		th.swap(i, last)
	}
	th.h[last] = nil
	th.h = th.h[:last]
	s.pos = 0
	if i != last {
		th.down(i)
		th.up(i)
	}
	if len(th.h) == 0 && th.alarm != nil {
		th.alarm.Stop()
		th.alarm = nil
	}
}

// schedule sets the alarm for the earliest entry, unless it is set for
// then or earlier already. Called with th.mu held and the heap not empty.
func (th *timerHeap) schedule(now time.Time) {
	at := th.h[0].at
	if th.grain > 0 {
		off := at.Sub(th.base)
		off = (off + th.grain - 1) / th.grain * th.grain
		at = th.base.Add(off)
	}
	if th.alarm != nil && !at.Before(th.alarmAt) {
		return
	}
	if th.alarm != nil {
		th.alarm.Stop()
	}
	th.alarmAt = at
	th.alarm = th.clock.AfterFunc(at.Sub(now), th.ring)
}

// fire is the alarm: it fires every entry due, in order, and sets the
// alarm for the next. An alarm that was stopped too late may fire too:
// it finds nothing due, or fires early what the current alarm would have.
func (th *timerHeap) fire() {
	now := th.clock.Now()
	var buf [32]firing
	due := buf[:0]
	th.mu.Lock()
	if th.alarm != nil && !now.Before(th.alarmAt) {
		th.alarm = nil // it is this one, or due anyway
	}
	for len(th.h) > 0 && !th.h[0].at.After(now) {
		s := th.h[0]
		due = append(due, firing{s, s.fgen})
		last := len(th.h) - 1
		th.swap(0, last)
		th.h[last] = nil
		th.h = th.h[:last]
		s.pos = 0
		th.down(0)
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

func (th *timerHeap) less(i, j int) bool {
	a, b := th.h[i], th.h[j]
	return a.at.Before(b.at) || a.at.Equal(b.at) && a.seq < b.seq
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
