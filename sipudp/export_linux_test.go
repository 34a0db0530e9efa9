package sipudp

import "github.com/switchboard/switchboard/transport"

// PollMax is the most datagrams one Poll reads.
const PollMax = pollBatches * readBatch

// StartReads makes t readable by Poll alone, handing what it reads to h:
// what Serve sets up, without its read loops.
func StartReads(t *Transport, h transport.Handler) { t.startReads(h) }

// HoldReads takes t's read lock, as a read loop holds it while it hands a
// batch on; release gives it back.
func HoldReads(t *Transport) (release func()) {
	rs := t.reads.Load()
	rs.mu.Lock()
	return rs.mu.Unlock
}
