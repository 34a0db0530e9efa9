package transport

import "time"

// QueueDelay is how long received messages wait for a worker, on average
// over the last ones (package delay); zero when no message was taken for
// delay.Stale. When messages come faster than the workers take them the
// queue grows, and a message waits there before any layer above sees it:
// the transaction layer's measure of its handlers' wait misses that part.
// It is meant for transaction.Config.QueueDelay: a queue that grows is the
// first sign of overload, before the handlers wait for a CPU.
func (l *Layer) QueueDelay() time.Duration { return l.queueWait.Get() }

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
