// Package delay measures how long work waits before it is served: a
// smoothed mean of the last waits, which says nothing once no work was
// served for a while. The transport layer measures its queue with it and
// the transaction layer its handlers' wait for a CPU; together they are
// the gateway's overload measure.
package delay

import (
	"sync/atomic"
	"time"
)

const (
	// Smoothing is the weight 1/Smoothing of each new wait in the mean
	// (an exponentially weighted mean over about the last Smoothing).
	Smoothing = 16
	// Stale: a mean not refreshed for this long says nothing, since the
	// work it measured has stopped coming (or is all refused).
	Stale = 100 * time.Millisecond
)

// epoch is the origin of Now.
var epoch = time.Now()

// Now returns the monotonic time in ns since an arbitrary origin: waits
// are wall time, whatever clock the timers run on.
func Now() int64 { return int64(time.Since(epoch)) }

// Mean is a smoothed mean of waits with the time of its last sample. The
// zero value is an empty mean; it is safe for concurrent use.
type Mean struct {
	mean atomic.Int64 // ns
	last atomic.Int64 // Now of the last sample
}

// Sample adds the wait of work queued at since and served at now (both
// from Now).
func (m *Mean) Sample(since, now int64) {
	d := now - since
	for {
		old := m.mean.Load()
		if m.mean.CompareAndSwap(old, old+(d-old)/Smoothing) {
			break
		}
	}
	m.last.Store(now)
}

// Get returns the mean, or 0 when its last sample is older than Stale.
func (m *Mean) Get() time.Duration {
	if Now()-m.last.Load() >= int64(Stale) {
		return 0
	}
	return time.Duration(m.mean.Load())
}

// Last returns the mean as the last sample left it, stale or not: for
// reports of what the waits were.
func (m *Mean) Last() time.Duration { return time.Duration(m.mean.Load()) }
