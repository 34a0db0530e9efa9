package delay

import (
	"testing"
	"time"
)

// A mean of the last waits, which says nothing once no work was served
// for Stale.
func TestMean(t *testing.T) {
	var m Mean
	if got := m.Get(); got != 0 {
		t.Fatalf("before any sample: %v", got)
	}
	for range 4 * Smoothing {
		now := Now()
		m.Sample(now-int64(300*time.Millisecond), now)
	}
	if got := m.Get(); got < 200*time.Millisecond || got > time.Second {
		t.Fatalf("after waits of 300 ms: %v", got)
	}
	past := Now() - int64(2*Stale)
	m.Sample(past-int64(300*time.Millisecond), past)
	if got := m.Get(); got != 0 {
		t.Fatalf("stale: %v, want 0", got)
	}
}
