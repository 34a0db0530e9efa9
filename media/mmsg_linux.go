//go:build linux

package media

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
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
	sa := &m.names[i]
	a := dst.Addr()
	switch {
	case !m.v6 && a.Is4():
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], dst.Port())
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	case m.v6 && a.IsValid():
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
	default:
		return false
	}
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
// hands the datagrams out one by one. Used by pion's mux read loop only.
type iceReader struct {
	raw    syscall.RawConn
	m      *mmsgBatch
	n      int // datagrams in the batch
	next   int // the next one to hand out
	err    error
	readFn func(uintptr) bool

	calls, datagrams atomic.Uint64
}

func newICEReader(c *net.UDPConn) *iceReader {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	local, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP)
	if !ok {
		return nil
	}
	r := &iceReader{raw: raw, m: newMmsgBatch(iceReadSlots, iceReadSize, !local.Unmap().Is4())}
	r.readFn = r.recv
	return r
}

// read returns the next datagram, valid until the next call; fresh is set
// when a system call brought it (the first of a batch). Truncated
// datagrams are skipped.
func (r *iceReader) read() (b []byte, src netip.AddrPort, fresh bool, err error) {
	for {
		for r.next >= r.n {
			r.next, r.n, r.err = 0, 0, nil
			if err := r.raw.Read(r.readFn); err != nil {
				return nil, netip.AddrPort{}, false, err
			}
			if r.err != nil {
				return nil, netip.AddrPort{}, false, r.err
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

func (r *iceReader) recv(fd uintptr) bool {
	n, err := r.m.recv(fd)
	if errors.Is(err, unix.EAGAIN) {
		return false // wait until the socket is readable
	}
	r.n, r.err = n, err
	if err == nil {
		r.calls.Add(1)
		r.datagrams.Add(uint64(n))
	}
	return true
}
