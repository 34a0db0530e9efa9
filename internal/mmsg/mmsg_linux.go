//go:build linux

package mmsg

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// controlSize is a slot's control buffer: a receive time and an
// in6_pktinfo (the larger of the two families'), each in its own message,
// a multiple of 8 so that every slot's buffer is aligned for a cmsghdr.
const controlSize = 80

// Batch is a fixed set of datagram slots and the headers that sendmmsg
// and recvmmsg take. One goroutine uses a batch at a time; a socket is
// best given one batch for receives and one for sends.
type Batch struct {
	cfg   Config
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []Sockaddr
	ctl   []byte // Slots control buffers of controlSize, nil without
	buf   []byte // Slots buffers of Size
	n     int    // queued, or received by the last receive

	// The RawConn calls' state, and their closures made once, so that
	// a call allocates nothing.
	rcStart, rcN int
	rcErr        error
	rcRecv       func(fd uintptr) bool
	rcSend       func(fd uintptr) bool
}

// New makes a batch; it fails when cfg is out of its caps.
func New(cfg Config) (*Batch, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	b := &Batch{
		cfg:   cfg,
		hdrs:  make([]unix.Mmsghdr, cfg.Slots),
		iovs:  make([]unix.Iovec, cfg.Slots),
		names: make([]Sockaddr, cfg.Slots),
		buf:   make([]byte, cfg.Slots*cfg.Size),
	}
	if cfg.Control {
		b.ctl = make([]byte, cfg.Slots*controlSize)
	}
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
		b.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i].raw))
	}
	b.rcRecv = func(fd uintptr) bool {
		n, err := b.Recv(fd)
		if err == unix.EAGAIN {
			return false
		}
		b.rcN, b.rcErr = n, err
		return true
	}
	b.rcSend = func(fd uintptr) bool {
		n, err := b.Send(fd, b.rcStart)
		if err == unix.EAGAIN {
			return false
		}
		b.rcN, b.rcErr = n, err
		return true
	}
	return b, nil
}

// Cap is how many datagrams the batch holds.
func (b *Batch) Cap() int { return len(b.hdrs) }

// Len is how many datagrams are queued, or came with the last receive.
func (b *Batch) Len() int { return b.n }

// Reset empties the queue.
func (b *Batch) Reset() { b.n = 0 }

func (b *Batch) slot(i int) []byte {
	s := b.cfg.Size
	return b.buf[i*s : (i+1)*s : (i+1)*s]
}

// Next returns the buffer of the next datagram to queue, to write it in
// place; nil when the batch is full.
func (b *Batch) Next() []byte {
	if b.n == len(b.hdrs) {
		return nil
	}
	return b.slot(b.n)
}

// Queue adds datagram p for dst, from src (invalid: the socket's own
// address). p is sent where it is, not copied: written in Next's buffer,
// or in memory of the caller's that stays unchanged until the batch is
// sent.
func (b *Batch) Queue(p []byte, dst netip.AddrPort, src netip.Addr) error {
	i := b.n
	switch {
	case i == len(b.hdrs):
		return ErrFull
	case len(p) > b.cfg.Size:
		return ErrTooLarge
	case src.IsValid() && b.ctl == nil:
		return ErrNoControl
	}
	h := &b.hdrs[i].Hdr
	salen, ok := b.names[i].Put(dst, b.cfg.IPv6)
	if !ok {
		return ErrFamily
	}
	h.Namelen = salen
	h.Control = nil
	h.SetControllen(0)
	if src.IsValid() {
		ctl := b.control(i)
		l, ok := putSource(ctl, src, b.cfg.IPv6)
		if !ok {
			return ErrFamily
		}
		h.Control = &ctl[0]
		h.SetControllen(l)
	}
	if len(p) > 0 {
		b.iovs[i].Base = &p[0]
	} else {
		b.iovs[i].Base = &b.buf[i*b.cfg.Size]
	}
	b.iovs[i].SetLen(len(p))
	h.Flags = 0
	b.n++
	return nil
}

func (b *Batch) control(i int) []byte {
	return b.ctl[i*controlSize : (i+1)*controlSize : (i+1)*controlSize]
}

// Send writes the queued datagrams from start on to fd without waiting:
// how many the kernel took (from start), or the error of datagram start
// (unix.EAGAIN when the socket's buffer is full). The queue stays until
// Reset.
func (b *Batch) Send(fd uintptr, start int) (int, error) {
	if start < 0 || start >= b.n {
		return 0, nil
	}
	// Each of the system call loops of the package is written out: the
	// conversions of pointers to uintptr must stay in the argument list
	// of the call, which keeps what they point to in place.
	//
	// The calls are raw (no entersyscall): with MSG_DONTWAIT they never
	// sleep, and Go's scheduler need not hand the P off. A Syscall6
	// also wakes the runtime's sysmon thread whenever the process was
	// idle before it (sched.sysmonwait), and sysmon then ticks every
	// 20 µs for a millisecond or more: at a few hundred wake-ups a
	// second, as a media relay below saturation has, that was a tenth
	// of the relay's CPU in context switches and nanosleeps.
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[start])), uintptr(b.n-start), unix.MSG_DONTWAIT, 0, 0)
		runtime.KeepAlive(b)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// Recv reads up to Cap datagrams from fd without waiting: how many came,
// or an error (unix.EAGAIN when none was there). It replaces the queue.
func (b *Batch) Recv(fd uintptr) (int, error) {
	b.n = 0
	for i := range b.hdrs {
		h := &b.hdrs[i]
		b.iovs[i].Base = &b.buf[i*b.cfg.Size]
		b.iovs[i].SetLen(b.cfg.Size)
		h.Hdr.Namelen = uint32(unsafe.Sizeof(b.names[i].raw))
		if b.ctl != nil {
			h.Hdr.Control = &b.ctl[i*controlSize]
			h.Hdr.SetControllen(controlSize)
		} else {
			h.Hdr.Control = nil
			h.Hdr.SetControllen(0)
		}
		h.Hdr.Flags = 0
		h.Len = 0
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		runtime.KeepAlive(b)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		b.n = int(n)
		return b.n, nil
	}
}

// SendConn sends the queued datagrams from start on through rc, waiting
// in Go's poller while the socket's buffer is full: how many the kernel
// took, or the error of datagram start.
func (b *Batch) SendConn(rc syscall.RawConn, start int) (int, error) {
	b.rcStart = start
	if err := rc.Write(b.rcSend); err != nil {
		return 0, err
	}
	return b.rcN, b.rcErr
}

// RecvConn reads up to Cap datagrams through rc, waiting in Go's poller
// until one comes: how many came, or an error once rc is closed.
func (b *Batch) RecvConn(rc syscall.RawConn) (int, error) {
	if err := rc.Read(b.rcRecv); err != nil {
		b.n = 0
		return 0, err
	}
	return b.rcN, b.rcErr
}

// Queued returns datagram i (0 to Len-1) as queued to send: its bytes
// and where it goes, for a caller that sends it alone after all.
func (b *Batch) Queued(i int) (p []byte, dst netip.AddrPort) {
	p = unsafe.Slice(b.iovs[i].Base, int(b.iovs[i].Len))
	dst, _ = b.names[i].AddrPort()
	return p, dst
}

// Datagram returns datagram i (0 to Len-1) of the last receive.
func (b *Batch) Datagram(i int) Datagram {
	h := &b.hdrs[i]
	d := Datagram{
		B:         b.slot(i)[:min(int(h.Len), b.cfg.Size)],
		Truncated: h.Hdr.Flags&unix.MSG_TRUNC != 0,
	}
	d.Src, _ = b.names[i].AddrPort()
	if b.ctl != nil {
		d.Dst, d.At = parseControl(b.control(i)[:min(int(h.Hdr.Controllen), controlSize)])
	}
	return d
}

// Sockaddr is a socket address as the kernel takes and gives it, with
// room for either family.
type Sockaddr struct {
	raw unix.RawSockaddrInet6
}

// Put writes dst in the form a socket of family v6 (AF_INET6, else
// AF_INET) takes, and returns its length; false when dst is not of that
// family.
// IPv4 peers of an AF_INET6 socket go as IPv4-mapped addresses.
func (sa *Sockaddr) Put(dst netip.AddrPort, v6 bool) (uint32, bool) {
	a := dst.Addr()
	switch {
	case !v6 && a.Is4():
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], dst.Port())
		return unix.SizeofSockaddrInet4, true
	case v6 && a.IsValid():
		sa.raw = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.raw.Port))[:], dst.Port())
		return unix.SizeofSockaddrInet6, true
	}
	return 0, false
}

// AddrPort is the address the kernel wrote (IPv4-mapped ones unmapped);
// false when it is of neither family.
func (sa *Sockaddr) AddrPort() (netip.AddrPort, bool) {
	switch sa.raw.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port), true
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.raw.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.raw.Addr).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// SendTo sends one datagram p to dst on fd without waiting; sa is the
// room for the address, so that nothing is allocated, and v6 the
// socket's family.
func SendTo(fd uintptr, p []byte, dst netip.AddrPort, v6 bool, sa *Sockaddr) (int, error) {
	salen, ok := sa.Put(dst, v6)
	if !ok {
		return 0, ErrFamily
	}
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(ptr), uintptr(len(p)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa.raw)), uintptr(salen))
		runtime.KeepAlive(p)
		runtime.KeepAlive(sa)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// AppendSource appends to oob the control message that sends a datagram
// from src on a socket of family v6 (IPV6_PKTINFO), else AF_INET
// (IP_PKTINFO); oob unchanged when src is not of that family.
func AppendSource(oob []byte, src netip.Addr, v6 bool) []byte {
	var m [controlSize]byte
	if l, ok := putSource(m[:], src, v6); ok {
		return append(oob, m[:l]...)
	}
	return oob
}

// putSource writes into ctl the control message that sends from src and
// returns its length; false when src is not of the socket's family.
func putSource(ctl []byte, src netip.Addr, v6 bool) (int, bool) {
	size := unix.SizeofInet4Pktinfo
	lvl, typ := unix.IPPROTO_IP, unix.IP_PKTINFO
	switch {
	case v6 && src.IsValid():
		size, lvl, typ = unix.SizeofInet6Pktinfo, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	case v6 || !src.Is4():
		return 0, false
	}
	space := unix.CmsgSpace(size)
	clear(ctl[:space])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	h.Level, h.Type = int32(lvl), int32(typ)
	h.SetLen(unix.CmsgLen(size))
	data := unsafe.Pointer(&ctl[unix.CmsgLen(0)])
	if v6 {
		(*unix.Inet6Pktinfo)(data).Addr = src.As16()
	} else {
		(*unix.Inet4Pktinfo)(data).Spec_dst = src.As4()
	}
	return space, true
}

// parseControl takes the destination address (IP_PKTINFO, IPV6_PKTINFO)
// and the kernel's receive time (SO_TIMESTAMPNS) from a datagram's
// control messages; what it does not know, or cannot read, it passes over.
func parseControl(ctl []byte) (dst netip.Addr, at int64) {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			break
		}
		data := ctl[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
			at = (*unix.Timespec)(unsafe.Pointer(&data[0])).Nano()
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			dst = netip.AddrFrom4((*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Addr)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16((*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])).Addr).Unmap()
		}
		space := unix.CmsgSpace(l - unix.CmsgLen(0))
		if space >= len(ctl) {
			break
		}
		ctl = ctl[space:]
	}
	return dst, at
}
