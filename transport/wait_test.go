package transport

import (
	"testing"
	"time"
)

// The queue's wait: a mean of the last waits, which says nothing once no
// message was taken for waitStale.
func TestWaitMeter(t *testing.T) {
	var m waitMeter
	if got := m.get(); got != 0 {
		t.Fatalf("before any sample: %v", got)
	}
	for range 4 * waitSmoothing {
		m.sample(monoNow() - int64(300*time.Millisecond))
	}
	if got := m.get(); got < 200*time.Millisecond || got > time.Second {
		t.Fatalf("after waits of 300 ms: %v", got)
	}
	m.last.Store(monoNow() - int64(2*waitStale))
	if got := m.get(); got != 0 {
		t.Fatalf("stale: %v, want 0", got)
	}
}
