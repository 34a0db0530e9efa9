package sipudp

import (
	"github.com/switchboard/switchboard/internal/mmsg"
	"github.com/switchboard/switchboard/transport"
)

// readBatch is how many datagrams one read takes when that many wait
// (recvmmsg, Linux): under load one system call instead of one each. A
// read returns what is there without waiting for more, so a lone
// datagram is not held back. Each read loop's buffers take readBatch
// times the largest datagram it accepts (512 KiB at the default 64 KiB
// limit), allocated once.
const readBatch = 8

// readBatches is the read loop with batched reads. It reports false,
// having read nothing, when it cannot set them up.
func (t *Transport) readBatches(h transport.Handler) (bool, error) {
	batch, err := mmsg.New(mmsg.Config{Slots: readBatch, Size: t.bufSize, IPv6: !t.is4})
	if err != nil {
		return false, nil
	}
	rc := t.rc
	if rc == nil {
		return false, nil
	}
	var r reader
	for {
		n, err := batch.RecvConn(rc)
		if err != nil {
			if done, err := r.failed(t, err); done {
				return true, err
			}
			continue
		}
		r.failures = 0
		for i := range n {
			d := batch.Datagram(i)
			if !d.Src.IsValid() {
				continue // an address of another family: nothing to answer
			}
			t.handle(d.B, d.Src, h)
		}
	}
}
