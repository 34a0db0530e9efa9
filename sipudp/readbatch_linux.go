package sipudp

import (
	"sync"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/mmsg"
	"github.com/switchboard/switchboard/transport"
)

// readBatch is how many datagrams one read takes when that many wait
// (recvmmsg, Linux): under load one system call instead of one each. A
// read returns what is there without waiting for more, so a lone
// datagram is not held back. The buffers take readBatch times the
// largest datagram accepted (512 KiB at the default 64 KiB limit),
// allocated once per Serve.
const readBatch = 8

// pollBatches bounds the reads of one Poll: 128 datagrams, a few
// milliseconds of a worker's time at most, so that a flood read for
// the read loop does not keep the workers from the work already queued.
const pollBatches = 16

// reads is the batch that the read loops and Poll read into, and what
// they hand the datagrams to. mu makes a read and the handing on of what
// it read one step, so that datagrams are handed on in the order they
// came whoever reads them.
type reads struct {
	mu    sync.Mutex
	batch *mmsg.Batch
	h     transport.Handler
}

// readBatches is the read loop with batched reads. It reports false,
// having read nothing, when it cannot set them up.
func (t *Transport) readBatches(h transport.Handler) (bool, error) {
	rs := t.reads.Load()
	if rs == nil {
		return false, nil
	}
	var (
		n    int
		rerr error
	)
	// recv runs under the RawConn's read lock: it returns holding rs.mu
	// when it read something or failed, and false, without it, when
	// nothing is there, so that the read loop waits in Go's poller.
	recv := func(fd uintptr) bool {
		rs.mu.Lock()
		n, rerr = rs.batch.Recv(fd)
		if rerr == unix.EAGAIN {
			rs.mu.Unlock()
			return false
		}
		return true
	}
	var r reader
	for {
		if err := t.rc.Read(recv); err != nil {
			// recv did not return true: rs.mu is not held.
			if done, err := r.failed(t, err); done {
				return true, err
			}
			continue
		}
		if rerr != nil {
			rs.mu.Unlock()
			if done, err := r.failed(t, rerr); done {
				return true, err
			}
			continue
		}
		r.failures = 0
		t.handleBatch(rs, n)
		rs.mu.Unlock()
	}
}

// startReads sets up the batch of the read loops and of Poll, which
// hand datagrams to h; without batched reads (or a descriptor to read)
// both are off, and the read loops read one datagram a call.
func (t *Transport) startReads(h transport.Handler) {
	if t.rc == nil || !t.raw.ok {
		return
	}
	batch, err := mmsg.New(mmsg.Config{Slots: readBatch, Size: t.bufSize, IPv6: !t.is4})
	if err != nil {
		return
	}
	t.reads.Store(&reads{batch: batch, h: h})
}

// handleBatch hands on the n datagrams of rs's last read; rs.mu is held.
func (t *Transport) handleBatch(rs *reads, n int) {
	for i := range n {
		d := rs.batch.Datagram(i)
		if !d.Src.IsValid() {
			continue // an address of another family: nothing to answer
		}
		t.handle(d.B, d.Src, rs.h)
	}
}

// Poll reads what waits on the socket, up to pollBatches batches,
// without waiting, and hands it on as the read loops do
// (transport.Poller). It returns at once when a read loop or another
// Poll is reading, or before Serve.
func (t *Transport) Poll() {
	rs := t.reads.Load()
	if rs == nil || !rs.mu.TryLock() {
		return
	}
	defer rs.mu.Unlock()
	for range pollBatches {
		t.raw.mu.RLock()
		if t.raw.closed {
			t.raw.mu.RUnlock()
			return
		}
		n, err := rs.batch.Recv(t.raw.fd)
		t.raw.mu.RUnlock()
		if err != nil {
			if t.errq && isICMPError(err) {
				t.drainErrQueue()
				continue
			}
			return // nothing waits (EAGAIN), or the read loop will see it
		}
		t.handleBatch(rs, n)
		if n < readBatch {
			return
		}
	}
}
