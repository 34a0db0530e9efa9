package mediapeer

import (
	"time"
)

// paceCursor walks one pacing loop's share of a schedule: n streams each
// send once per period, stream i at offset i·period/n in it (so the sends
// of all streams are spread evenly over the period), and loop k of loops
// serves the streams i ≡ k (mod loops), in the order of their offsets.
// A stream whose send is more than a period late is skipped for that
// round, as a time.Ticker drops ticks, so that an overloaded generator
// shows as sends skipped rather than as bursts that would pile into the
// next round. The zero value is not usable; see newPaceCursor.
type paceCursor struct {
	n, loops, k int
	period      time.Duration
	t0          time.Time
	tick        int // the round
	i           int // the next stream: k, k+loops, …
}

// newPaceCursor starts loop k's walk at t0, its first round.
func newPaceCursor(n, loops, k int, period time.Duration, t0 time.Time) *paceCursor {
	return &paceCursor{n: n, loops: loops, k: k, period: period, t0: t0, i: k}
}

// next is when the next send is due.
func (c *paceCursor) next() time.Time {
	return c.t0.Add(time.Duration(c.tick)*c.period + time.Duration(c.i)*c.period/time.Duration(c.n))
}

func (c *paceCursor) advance() {
	c.i += c.loops
	if c.i >= c.n {
		c.i = c.k
		c.tick++
	}
}

// take hands send every stream due by now+slack, in order, with its round
// and how late it is (never negative), skipping those more than a period
// late (counted in skipped), and returns when the next is due. It stops
// after max sends, so that a caller's batch is bounded; next is then
// already due.
func (c *paceCursor) take(now time.Time, slack time.Duration, max int, send func(i, tick int, late time.Duration)) (next time.Time, skipped int) {
	if c.k >= c.n {
		return now.Add(time.Hour), 0 // no streams for this loop
	}
	sent := 0
	for sent < max {
		due := c.next()
		if due.After(now.Add(slack)) {
			return due, skipped
		}
		late := max0(now.Sub(due))
		if late > c.period {
			skipped++
		} else {
			send(c.i, c.tick, late)
			sent++
		}
		c.advance()
	}
	return c.next(), skipped
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
