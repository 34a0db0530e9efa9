package sipudp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/mmsg"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// rawSocket is the socket's descriptor as Send writes to it: a sendto of
// its own with MSG_DONTWAIT (mmsg.SendTo), not through net.UDPConn. The
// UDPConn takes the descriptor's write lock for every datagram, so two
// goroutines answering at once queued on it, the second parked and woken
// (and its stack grown by the runtime's semaphore code) for a send the
// kernel takes in parallel anyway; and its system call goes through the
// scheduler (entersyscall), which wakes sysmon whenever the process was
// idle. A sendto that would block (EAGAIN: the send buffer is full) goes
// the UDPConn's way after all, which waits in Go's poller.
type rawSocket struct {
	// mu is held for reading by each send and for writing by Close, so
	// that the descriptor is never closed, and perhaps reused for some
	// other file, under a send.
	mu     sync.RWMutex
	fd     uintptr
	ok     bool // fd was read: raw sends are on
	closed bool
}

// initSocket reads the descriptor of t's socket, once, for the raw sends
// (without it sends go through the UDPConn) and to turn the error queue
// on (enableErrQueue), whose error it returns.
func (t *Transport) initSocket() error {
	if t.rc == nil {
		return errors.New("socket without a descriptor")
	}
	var errq error
	err := t.rc.Control(func(fd uintptr) {
		t.raw.fd, t.raw.ok = fd, true
		errq = enableErrQueue(fd, t.is4)
	})
	if err != nil {
		return err
	}
	return errq
}

// closeRaw stops the raw sends before the socket is closed.
func (t *Transport) closeRaw() {
	t.raw.mu.Lock()
	t.raw.closed = true
	t.raw.mu.Unlock()
}

// writeRaw sends b to dst with one sendto. done is false when the datagram
// is to go through the UDPConn instead: raw sends are off, or the socket's
// send buffer is full, or dst is not of the socket's family.
func (t *Transport) writeRaw(b []byte, dst netip.AddrPort) (done bool, err error) {
	if !t.raw.ok {
		return false, nil
	}
	var sa mmsg.Sockaddr
	t.raw.mu.RLock()
	if t.raw.closed {
		t.raw.mu.RUnlock()
		return true, net.ErrClosed
	}
	_, err = mmsg.SendTo(t.raw.fd, b, dst, !t.is4, &sa)
	t.raw.mu.RUnlock()
	switch {
	case err == nil:
		return true, nil
	case err == unix.EAGAIN, err == mmsg.ErrFamily:
		// A full buffer waits in Go's poller; an address of the other
		// family gets the UDPConn's own error.
		return false, nil
	}
	return true, os.NewSyscallError("sendto", err)
}

// The batches of stateless answers (transport.Batcher): sendBatchSlots
// datagrams of at most sendBatchSize bytes each, what a 503 or a 481
// takes with room to spare; a larger answer goes alone. 64 KiB a worker.
const (
	sendBatchSlots = 16
	sendBatchSize  = 4096
)

// sendBatch is a transport.Batch of t: datagrams written in place into
// an mmsg.Batch and sent with one sendmmsg.
type sendBatch struct {
	t  *Transport
	mb *mmsg.Batch
}

// NewBatch returns a batch for stateless answers (transport.Batcher), nil
// when raw sends are off.
func (t *Transport) NewBatch() transport.Batch {
	if !t.raw.ok {
		return nil
	}
	mb, err := mmsg.New(mmsg.Config{Slots: sendBatchSlots, Size: sendBatchSize, IPv6: !t.is4})
	if err != nil {
		return nil
	}
	return &sendBatch{t: t, mb: mb}
}

// Add writes msg into the batch's next slot for dst.
func (b *sendBatch) Add(msg sip.Message, dst sip.Addr) bool {
	slot := b.mb.Next()
	if slot == nil || !dst.AddrPort.IsValid() {
		return false
	}
	p := msg.AppendTo(slot[:0])
	if len(p) > len(slot) {
		return false // it outgrew the slot: sent alone
	}
	return b.mb.Queue(p, b.t.dst(dst.AddrPort), netip.Addr{}) == nil
}

// Len is how many datagrams wait.
func (b *sendBatch) Len() int { return b.mb.Len() }

// Flush sends what waits with sendmmsg, from the first datagram not yet
// taken on. A datagram the kernel refuses (the socket's buffer full, a
// pending ICMP error of the socket) goes alone the way Send writes it,
// which waits in Go's poller or reads the error queue and tries again.
func (b *sendBatch) Flush() error {
	defer b.mb.Reset()
	var first error
	for start := 0; start < b.mb.Len(); {
		b.t.raw.mu.RLock()
		if b.t.raw.closed {
			b.t.raw.mu.RUnlock()
			return net.ErrClosed
		}
		b.t.writes.Add(1)
		n, err := b.mb.Send(b.t.raw.fd, start)
		b.t.raw.mu.RUnlock()
		if err == nil && n > 0 {
			start += n
			continue
		}
		p, dst := b.mb.Queued(start)
		if err := b.t.write(p, dst); err != nil && first == nil {
			first = fmt.Errorf("sipudp: send to %s: %w", dst, err)
		}
		start++
	}
	return first
}
