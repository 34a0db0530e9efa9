package transport

import (
	"time"

	"github.com/switchboard/switchboard/internal/delay"
)

// QueueDelay is how long received messages wait for a worker, on average
// over the last ones (package delay); zero when no message was taken for
// delay.Stale. When messages come faster than the workers take them the
// queue grows, and a message waits there before any layer above sees it:
// the transaction layer's measure of its handlers' wait misses that part.
// It is meant for transaction.Config.QueueDelay: a queue that grows is the
// first sign of overload, before the handlers wait for a CPU.
//
// While messages wait it is at least the wait of the next one to be
// served: the mean moves only as messages are taken, and when the
// workers fall behind it lags the queue that grows by the very wait it
// measures, so that shedding based on it came late, after requests had
// waited past T1 and been sent again.
func (l *Layer) QueueDelay() time.Duration {
	d := l.queueWait.Get()
	if r := l.active.Load(); r != nil {
		d = max(d, time.Duration(r.sched.headWait(delay.Now())))
	}
	return d
}

// QueueLen is how many received messages wait for a worker now. It is
// meant for transaction.Config.QueueLen: a wait with hardly anything
// queued is the host's doing, not an overload of ours.
func (l *Layer) QueueLen() int {
	if r := l.active.Load(); r != nil {
		n, _ := r.sched.len()
		return n
	}
	return 0
}
