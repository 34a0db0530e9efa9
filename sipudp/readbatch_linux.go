package sipudp

import (
	"github.com/switchboard/switchboard/internal/mmsg"
	"github.com/switchboard/switchboard/transport"
	"golang.org/x/sys/unix"
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
//
// Each datagram comes with the time the kernel took it (SO_TIMESTAMPNS),
// passed to a transport.ArrivedHandler: under overload datagrams wait in
// the socket's buffer before the read loop gets to them, up to its 8 MiB
// (some 6,000 REGISTERs, seconds at the rate a starved loop reads), and
// a wait measured from the read missed all of that. When the socket
// refuses the option, the times are 0 and the wait starts at the read.
func (t *Transport) readBatches(h transport.Handler) (bool, error) {
	batch, err := mmsg.New(mmsg.Config{Slots: readBatch, Size: t.bufSize, IPv6: !t.is4, Control: true})
	if err != nil {
		return false, nil
	}
	rc, err := t.conn.SyscallConn()
	if err != nil {
		return false, nil
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
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
			t.handle(d.B, d.Src, d.At, h)
		}
	}
}
