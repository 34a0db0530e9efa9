package sipudp

import (
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/internal/mmsg"
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

// initRaw reads the descriptor of t's socket; without it sends go
// through the UDPConn.
func (t *Transport) initRaw() {
	rc, err := t.conn.SyscallConn()
	if err != nil {
		return
	}
	var fd uintptr
	if rc.Control(func(d uintptr) { fd = d }) != nil {
		return
	}
	t.raw.fd, t.raw.ok = fd, true
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
