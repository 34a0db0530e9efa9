package transport

import (
	"sync/atomic"
	"time"
)

// The queue's wait. When messages come faster than the workers take them
// the queue grows, and a message waits there before any layer above sees
// it: the transaction layer's measure of its handlers' wait misses that
// part. The Layer measures it, smoothed over the last messages (an
// exponentially weighted mean of weight 1/waitSmoothing), for the
// overload measure above it (QueueDelay).
const (
	waitSmoothing = 16
	// waitStale: a mean not refreshed for this long says nothing. The
	// workers refresh it with every message they take, so it goes stale
	// only while the queue stands empty.
	waitStale = 100 * time.Millisecond
)

// monoEpoch is the origin of monoNow.
var monoEpoch = time.Now()

// monoNow returns the monotonic time in ns since monoEpoch.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// waitMeter is a smoothed mean of waits, with the time of its last sample.
type waitMeter struct {
	mean atomic.Int64 // ns
	last atomic.Int64 // monoNow of the last sample
}

// sample adds the wait of something queued at since (monoNow) and taken
// now.
func (m *waitMeter) sample(since int64) {
	now := monoNow()
	d := now - since
	for {
		old := m.mean.Load()
		if m.mean.CompareAndSwap(old, old+(d-old)/waitSmoothing) {
			break
		}
	}
	m.last.Store(now)
}

// get returns the mean, or 0 when it is stale.
func (m *waitMeter) get() time.Duration {
	if monoNow()-m.last.Load() >= int64(waitStale) {
		return 0
	}
	return time.Duration(m.mean.Load())
}

// QueueDelay is how long received messages wait for a worker, on average
// over the last ones; zero when no message was taken for 100 ms. It is
// meant for transaction.Config.QueueDelay: a queue that grows is the
// first sign of overload, before the handlers wait for a CPU.
func (l *Layer) QueueDelay() time.Duration { return l.queueWait.get() }
