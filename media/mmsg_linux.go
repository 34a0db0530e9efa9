//go:build linux

package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/switchboard/switchboard/internal/mmsg"
	"golang.org/x/sys/unix"
)

// iceReadSlots is how many datagrams one read of the shared ICE socket
// takes at most; iceReadSize is pion's receive MTU, what its mux would
// read itself.
const (
	iceReadSlots = 16
	iceReadSize  = 8192
)

// iceReader reads the shared ICE socket a batch at a time (recvmmsg) and
// hands the datagrams out one by one, to pion's mux read loop. The socket
// is out of Go's network poller (see dupSocket), which would wake a thread
// for each datagram: the read loop waits in epoll_wait itself, on an epoll
// set of the socket (edge-triggered: it is read until a recvmmsg comes
// back short) and of an eventfd that close writes. Sends go through sock.
type iceReader struct {
	sock     *rawUDP
	ep, stop int
	closing  atomic.Bool

	// mu is held by a read while it uses the descriptors; close closes
	// them under it.
	mu    sync.Mutex
	m     *mmsg.Batch
	evs   [2]unix.EpollEvent
	n     int  // datagrams in the batch
	next  int  // the next one to hand out
	empty bool // the last recvmmsg found the queue empty
	// polled: the reader's owner waits for ep in Go's network poller
	// (iceWaits) before a read that needs the set's events; the read
	// takes them without waiting, errNotReady when there are none.
	polled bool

	calls, datagrams atomic.Uint64
}

// newICEReader takes c's socket for the reader and closes c; nil when it
// cannot, c untouched.
func newICEReader(c *net.UDPConn) *iceReader {
	local, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP)
	if !ok {
		return nil
	}
	v6 := !local.Unmap().Is4()
	m, err := mmsg.New(mmsg.Config{Slots: iceReadSlots, Size: iceReadSize, IPv6: v6})
	if err != nil {
		return nil
	}
	fd, err := dupSocket(c)
	if err != nil {
		return nil
	}
	r := &iceReader{sock: &rawUDP{fd: fd, v6: v6}, ep: -1, stop: -1, m: m}
	if r.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err == nil {
		r.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	}
	if err == nil {
		err = unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: 1})
	}
	if err == nil {
		err = unix.EpollCtl(r.ep, unix.EPOLL_CTL_ADD, r.stop, &unix.EpollEvent{Events: unix.EPOLLIN})
	}
	if err != nil {
		for _, d := range []int{fd, r.ep, r.stop} {
			if d >= 0 {
				_ = unix.Close(d)
			}
		}
		return nil
	}
	_ = c.Close()
	return r
}

// writer is the sending half of the socket.
func (r *iceReader) writer() udpWriter { return r.sock }

// read returns the next datagram, valid until the next call; fresh is set
// when a system call brought it (the first of a batch). Truncated
// datagrams are skipped. It fails with net.ErrClosed after close.
func (r *iceReader) read() (b []byte, src netip.AddrPort, fresh bool, err error) {
	for {
		for r.next >= r.n {
			if err := r.fill(); err != nil {
				return nil, netip.AddrPort{}, false, err
			}
			fresh = true
		}
		d := r.m.Datagram(r.next)
		r.next++
		if !d.Truncated && d.Src.IsValid() {
			return d.B, d.Src, fresh, nil
		}
	}
}

func (r *iceReader) fill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next, r.n = 0, 0
	for {
		if r.closing.Load() {
			return net.ErrClosed
		}
		if r.empty {
			if r.polled {
				// The owner waited for the set in Go's poller:
				// its events are taken without waiting, and
				// without them the owner waits again.
				n, err := epollNow(r.ep, r.evs[:])
				if err != nil {
					return err
				}
				if n == 0 {
					return errNotReady
				}
			} else if _, err := unix.EpollWait(r.ep, r.evs[:], -1); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			r.empty = false
			continue
		}
		n, err := r.m.Recv(uintptr(r.sock.fd))
		if errors.Is(err, unix.EAGAIN) {
			r.empty = true
			continue
		}
		if err != nil {
			return err
		}
		r.calls.Add(1)
		r.datagrams.Add(uint64(n))
		r.n, r.empty = n, n < r.m.Cap()
		return nil
	}
}

// recv reads a batch into r.m for the engine's poller, which reads the
// socket in place of read when it has it (fastConn.feed): EAGAIN when the
// socket is empty, net.ErrClosed after close.
func (r *iceReader) recv() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing.Load() {
		return 0, net.ErrClosed
	}
	n, err := r.m.Recv(uintptr(r.sock.fd))
	if err != nil {
		return 0, err
	}
	r.calls.Add(1)
	r.datagrams.Add(uint64(n))
	return n, nil
}

// errNotReady: a read found the socket empty and the epoll set without
// events; its owner waits for the set and reads again.
var errNotReady = errors.New("media: ice reader: nothing to read yet")

// readyNow takes the epoll set's events when it has some now, without
// waiting: true when the next read reads the socket (or finds the reader
// closed) rather than waiting.
func (r *iceReader) readyNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing.Load() {
		return true
	}
	n, err := epollNow(r.ep, r.evs[:])
	if err != nil || n == 0 {
		return false
	}
	r.empty = false
	return true
}

// close wakes a read that waits, which then fails, and closes the
// descriptors once it has.
func (r *iceReader) close() {
	if r.closing.Swap(true) {
		return
	}
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(r.stop, one[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sock.close()
	_ = unix.Close(r.ep)
	_ = unix.Close(r.stop)
}
