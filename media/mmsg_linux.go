//go:build linux

package media

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgBatch is a fixed set of datagram buffers with the headers that
// recvmmsg and sendmmsg take, so that one system call moves many
// datagrams. Its memory is allocated once; nothing is allocated per
// datagram. A batch is used by one goroutine at a time.
type mmsgBatch struct {
	v6    bool // the socket's family: AF_INET6, else AF_INET
	size  int  // of each buffer
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	buf   []byte                  // len(hdrs) buffers of size bytes
	lens  []int                   // send side: the length of each queued datagram
	n     int                     // send side: datagrams queued
}

func newMmsgBatch(slots, size int, v6 bool) *mmsgBatch {
	m := &mmsgBatch{
		v6:    v6,
		size:  size,
		hdrs:  make([]unix.Mmsghdr, slots),
		iovs:  make([]unix.Iovec, slots),
		names: make([]unix.RawSockaddrInet6, slots),
		buf:   make([]byte, slots*size),
		lens:  make([]int, slots),
	}
	for i := range m.hdrs {
		m.iovs[i].Base = &m.buf[i*size]
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
		m.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	}
	return m
}

// slot returns the whole buffer of slot i.
func (m *mmsgBatch) slot(i int) []byte { return m.buf[i*m.size : (i+1)*m.size : (i+1)*m.size] }

// recv reads up to len(hdrs) datagrams from fd without waiting: the
// number read, or an error (unix.EAGAIN when none was there).
func (m *mmsgBatch) recv(fd uintptr) (int, error) {
	for i := range m.hdrs {
		m.iovs[i].SetLen(m.size)
		m.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(m.names[i]))
		m.hdrs[i].Hdr.Flags = 0
		m.hdrs[i].Len = 0
	}
	// The retry loop is not shared with send's and rawUDP's: the
	// conversions of pointers to uintptr must stay in the argument list
	// of the assembly call, which keeps what they point to in place.
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		runtime.KeepAlive(m)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// datagram returns datagram i of the last recv and its source; ok is
// false when it was truncated (larger than a buffer) or its source is not
// of the socket's family.
func (m *mmsgBatch) datagram(i int) (b []byte, src netip.AddrPort, ok bool) {
	h := &m.hdrs[i]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, netip.AddrPort{}, false
	}
	src, ok = m.source(i)
	return m.slot(i)[:h.Len], src, ok
}

func (m *mmsgBatch) source(i int) (netip.AddrPort, bool) {
	sa := &m.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port), true
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// putSockaddr writes dst into sa as the kernel takes it from a socket of
// family v6 (AF_INET6), else AF_INET, and returns its length; false when
// dst is not of that family. IPv4 peers of an AF_INET6 socket go as
// IPv4-mapped addresses.
func putSockaddr(sa *unix.RawSockaddrInet6, v6 bool, dst netip.AddrPort) (uint32, bool) {
	a := dst.Addr()
	switch {
	case !v6 && a.Is4():
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], dst.Port())
		return unix.SizeofSockaddrInet4, true
	case v6 && a.IsValid():
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
		return unix.SizeofSockaddrInet6, true
	}
	return 0, false
}

// next returns the buffer of the next datagram to send, nil when the
// batch is full.
func (m *mmsgBatch) next() []byte {
	if m.n == len(m.hdrs) {
		return nil
	}
	return m.slot(m.n)
}

// queue adds the datagram written at the start of next() (n bytes) for
// dst; false when dst is not of the socket's family.
func (m *mmsgBatch) queue(n int, dst netip.AddrPort) bool {
	i := m.n
	salen, ok := putSockaddr(&m.names[i], m.v6, dst)
	if !ok {
		return false
	}
	m.hdrs[i].Hdr.Namelen = salen
	m.iovs[i].SetLen(n)
	m.hdrs[i].Hdr.Flags = 0
	m.lens[i] = n
	m.n++
	return true
}

// send writes the queued datagrams from start on fd without waiting: the
// number the kernel took (from start), or an error for datagram start.
func (m *mmsgBatch) send(fd uintptr, start int) (int, error) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[start])), uintptr(m.n-start), unix.MSG_DONTWAIT, 0, 0)
		runtime.KeepAlive(m)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

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
	m     *mmsgBatch
	evs   [2]unix.EpollEvent
	n     int  // datagrams in the batch
	next  int  // the next one to hand out
	empty bool // the last recvmmsg found the queue empty

	calls, datagrams atomic.Uint64
}

// newICEReader takes c's socket for the reader and closes c; nil when it
// cannot, c untouched.
func newICEReader(c *net.UDPConn) *iceReader {
	local, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP)
	if !ok {
		return nil
	}
	fd, err := dupSocket(c)
	if err != nil {
		return nil
	}
	r := &iceReader{sock: &rawUDP{fd: fd, v6: !local.Unmap().Is4()}, ep: -1, stop: -1, m: newMmsgBatch(iceReadSlots, iceReadSize, !local.Unmap().Is4())}
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
		i := r.next
		r.next++
		if b, src, ok := r.m.datagram(i); ok {
			return b, src, fresh, nil
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
			if _, err := unix.EpollWait(r.ep, r.evs[:], -1); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			r.empty = false
			continue
		}
		n, err := r.m.recv(uintptr(r.sock.fd))
		if errors.Is(err, unix.EAGAIN) {
			r.empty = true
			continue
		}
		if err != nil {
			return err
		}
		r.calls.Add(1)
		r.datagrams.Add(uint64(n))
		r.n, r.empty = n, n < len(r.m.hdrs)
		return nil
	}
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
