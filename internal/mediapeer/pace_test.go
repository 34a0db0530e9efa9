package mediapeer

import (
	"slices"
	"testing"
	"time"
)

type paceSend struct {
	i, tick int
	late    time.Duration
}

func takeAll(c *paceCursor, now time.Time, max int) (sends []paceSend, next time.Time, skipped int) {
	next, skipped = c.take(now, 0, max, func(i, tick int, late time.Duration) {
		sends = append(sends, paceSend{i, tick, late})
	})
	return sends, next, skipped
}

// TestPaceSpread: each loop sends its streams at their offsets, spread
// over the period (stream i at i·period/n), every period, and says when
// the next is due.
func TestPaceSpread(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const n, loops = 10, 2
	period := 20 * time.Millisecond
	for k := range loops {
		c := newPaceCursor(n, loops, k, period, t0)
		var all []paceSend
		now := c.next()
		if want := t0.Add(time.Duration(k) * period / n); now != want {
			t.Fatalf("loop %d starts at %v, want %v", k, now.Sub(t0), want.Sub(t0))
		}
		for range 3 * n / loops {
			s, next, skipped := takeAll(c, now, 64)
			if skipped != 0 {
				t.Fatalf("loop %d skipped %d on time", k, skipped)
			}
			if len(s) != 1 {
				t.Fatalf("loop %d at %v: sends %v, want one", k, now.Sub(t0), s)
			}
			all = append(all, s...)
			if want := next.Sub(now); want != 2*period/n {
				t.Fatalf("loop %d: next in %v, want %v", k, want, 2*period/n)
			}
			now = next
		}
		for j, s := range all {
			wantI, wantTick := k+loops*(j%(n/loops)), j/(n/loops)
			if s.i != wantI || s.tick != wantTick || s.late != 0 {
				t.Errorf("loop %d send %d: %+v, want stream %d round %d on time", k, j, s, wantI, wantTick)
			}
		}
	}
}

// TestPaceLateAndSkipped: a loop that wakes late sends what is due in
// order, with how late; one more than a period behind skips the sends of
// the rounds it missed rather than sending them in a burst; a batch cap
// stops a wake-up's sends with the next already due.
func TestPaceLateAndSkipped(t *testing.T) {
	t0 := time.Unix(1000, 0)
	period := 20 * time.Millisecond
	c := newPaceCursor(4, 1, 0, period, t0) // streams at 0, 5, 10, 15 ms

	s, next, skipped := takeAll(c, t0.Add(12*time.Millisecond), 64)
	want := []paceSend{{0, 0, 12 * time.Millisecond}, {1, 0, 7 * time.Millisecond}, {2, 0, 2 * time.Millisecond}}
	if !slices.Equal(s, want) || skipped != 0 || next != t0.Add(15*time.Millisecond) {
		t.Fatalf("12 ms late: %v, skipped %d, next %v; want %v", s, skipped, next.Sub(t0), want)
	}

	// 3 periods later: the sends due more than a period ago are skipped
	s, next, skipped = takeAll(c, t0.Add(3*period+7*time.Millisecond), 64)
	// due: 15 (round 0); 20, 25, 30, 35 (round 1); 40..55 (round 2); 60, 65 (round 3)
	// more than 20 ms late at 67: the 7 due before 47 ms
	want = []paceSend{{2, 2, 17 * time.Millisecond}, {3, 2, 12 * time.Millisecond}, {0, 3, 7 * time.Millisecond}, {1, 3, 2 * time.Millisecond}}
	if !slices.Equal(s, want) || skipped != 7 || next != t0.Add(70*time.Millisecond) {
		t.Fatalf("a stall: %v, skipped %d, next %v; want %v, 7 skipped, next 70ms", s, skipped, next.Sub(t0), want)
	}

	// the batch cap
	// at 99 ms: 70 and 75 skipped, 80 and 85 sent, 90 and 95 left due
	s, next, skipped = takeAll(c, t0.Add(4*period+19*time.Millisecond), 2)
	want = []paceSend{{0, 4, 19 * time.Millisecond}, {1, 4, 14 * time.Millisecond}}
	if !slices.Equal(s, want) || skipped != 2 || next != t0.Add(90*time.Millisecond) {
		t.Fatalf("capped at 2: %v, skipped %d, next %v; want %v, 2 skipped and the next already due at 90ms", s, skipped, next.Sub(t0), want)
	}
}

// TestPaceMoreLoopsThanStreams: a loop without streams never sends.
func TestPaceMoreLoopsThanStreams(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newPaceCursor(1, 2, 1, 20*time.Millisecond, t0)
	if s, next, skipped := takeAll(c, t0.Add(time.Second), 64); len(s) != 0 || skipped != 0 || !next.After(t0.Add(time.Second)) {
		t.Fatalf("sends %v, skipped %d, next %v", s, skipped, next)
	}
}
