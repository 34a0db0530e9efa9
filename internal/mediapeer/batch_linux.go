//go:build linux

package mediapeer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchConn is a UDP socket that sends and receives up to batchMax
// datagrams per system call (sendmmsg, recvmmsg), through Go's poller so
// that a reader parks rather than spins. A sent datagram may carry its
// own source address (IP_PKTINFO), and a received one tells the address it
// was sent to and when the kernel received it (SO_TIMESTAMPNS): so one
// socket bound to the wildcard address on lo plays many browsers, each on
// its own loopback address. One goroutine reads and one writes at a time;
// writeOne may be called from any goroutine.
type batchConn struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	port uint16

	rd batchHdrs
	wr batchHdrs
	// the system calls' state, kept here so that the closures handed to
	// the RawConn are made once and allocate nothing per call
	rdN, wrN, wrFrom int
	rdErr, wrErr     error
	rdFn, wrFn       func(fd uintptr) bool
}

// batchHdrs are the kernel's views of a batch: headers, one buffer each,
// addresses and control buffers.
type batchHdrs struct {
	hdrs  [batchMax]unix.Mmsghdr
	iov   [batchMax]unix.Iovec
	names [batchMax]unix.RawSockaddrInet4
	oob   [batchMax][batchOOB]byte
}

const (
	// batchOOB holds a receive timestamp and an IP_PKTINFO, each in its
	// own control message.
	batchOOB = 64
	// batchRcvbuf is the receive buffer asked of the kernel (SO_RCVBUFFORCE
	// as root, else up to net.core.rmem_max): 1,000 calls send a socket
	// 25,000 datagrams a second.
	batchRcvbuf = 8 << 20
)

// listenBatch opens a batch socket on addr. anyOnLo: addr is the wildcard
// address and the socket takes only what comes over the loopback device
// (SO_BINDTODEVICE), so that it can send from, and receive for, any
// address of 127.0.0.0/8 without listening on the host's other interfaces.
func listenBatch(ctx context.Context, addr netip.AddrPort, anyOnLo bool) (*batchConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if anyOnLo {
				if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"); serr != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE lo: %w", serr)
					return
				}
				if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1); serr != nil {
					serr = fmt.Errorf("IP_PKTINFO: %w", serr)
					return
				}
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); serr != nil {
				serr = fmt.Errorf("SO_TIMESTAMPNS: %w", serr)
				return
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchRcvbuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, batchRcvbuf)
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchRcvbuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, batchRcvbuf)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("mediapeer: batch socket on %v: %w", addr, err)
	}
	conn := pc.(*net.UDPConn)
	raw, err := conn.SyscallConn()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mediapeer: batch socket: %w", err)
	}
	c := &batchConn{conn: conn, raw: raw, port: conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	c.rdFn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rd.hdrs[0])), uintptr(c.rdN), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		c.rdN, c.rdErr = int(n), nil
		if e != 0 {
			c.rdN, c.rdErr = 0, e
		}
		return true
	}
	c.wrFn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.wr.hdrs[c.wrFrom])), uintptr(c.wrN-c.wrFrom), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		c.wrN, c.wrErr = int(n), nil
		if e != 0 {
			c.wrN, c.wrErr = 0, e
		}
		return true
	}
	return c, nil
}

// Port is the socket's port.
func (c *batchConn) Port() uint16 { return c.port }

func (c *batchConn) Close() error { return c.conn.Close() }

// readBatch reads up to len(ms) (at most batchMax) datagrams, blocking
// until one comes; it returns how many came, or an error once the socket
// is closed.
func (c *batchConn) readBatch(ms []batchMsg) (int, error) {
	n := min(len(ms), batchMax)
	if n == 0 {
		return 0, nil
	}
	h := &c.rd
	for i := range n {
		b := ms[i].Buf[:cap(ms[i].Buf)]
		if len(b) == 0 {
			return 0, errors.New("mediapeer: batch read into an empty buffer")
		}
		h.iov[i].Base = &b[0]
		h.iov[i].SetLen(len(b))
		h.hdrs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&h.names[i])),
			Namelen: unix.SizeofSockaddrInet4,
			Iov:     &h.iov[i],
			Iovlen:  1,
			Control: &h.oob[i][0],
		}}
		h.hdrs[i].Hdr.SetControllen(batchOOB)
	}
	c.rdN = n
	if err := c.raw.Read(c.rdFn); err != nil {
		return 0, err
	}
	if c.rdErr != nil {
		return 0, c.rdErr
	}
	for i := range c.rdN {
		m := &ms[i]
		m.N = int(h.hdrs[i].Len)
		m.Buf = m.Buf[:cap(m.Buf)][:m.N]
		m.Addr = sockaddrToAddrPort(&h.names[i])
		m.Local, m.At = parseBatchOOB(h.oob[i][:min(int(h.hdrs[i].Hdr.Controllen), batchOOB)])
	}
	return c.rdN, nil
}

// writeBatch sends ms, as many per system call as the kernel takes. A
// datagram the kernel refuses is skipped and counted in failed, with the
// first such error.
func (c *batchConn) writeBatch(ms []batchMsg) (failed int, err error) {
	for len(ms) > 0 {
		n := min(len(ms), batchMax)
		h := &c.wr
		for i := range n {
			m := &ms[i]
			if len(m.Buf) == 0 || !m.Addr.Addr().Is4() {
				// nothing to send, or not an address of this socket's
				// family: sent as an empty datagram would be a lie
				return failed + len(ms), fmt.Errorf("mediapeer: batch message %d: %d bytes to %v", i, len(m.Buf), m.Addr)
			}
			h.iov[i].Base = &m.Buf[0]
			h.iov[i].SetLen(len(m.Buf))
			addrPortToSockaddr(m.Addr, &h.names[i])
			h.hdrs[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
				Name:    (*byte)(unsafe.Pointer(&h.names[i])),
				Namelen: unix.SizeofSockaddrInet4,
				Iov:     &h.iov[i],
				Iovlen:  1,
			}}
			if m.Local.IsValid() {
				ol := putPktinfo(h.oob[i][:], m.Local)
				h.hdrs[i].Hdr.Control = &h.oob[i][0]
				h.hdrs[i].Hdr.SetControllen(ol)
			}
		}
		for c.wrFrom = 0; c.wrFrom < n; {
			c.wrN = n
			if rerr := c.raw.Write(c.wrFn); rerr != nil {
				return failed + len(ms) - c.wrFrom, rerr
			}
			if c.wrErr != nil {
				// the datagram at wrFrom was refused: skip it
				failed++
				if err == nil {
					err = c.wrErr
				}
				c.wrFrom++
				continue
			}
			c.wrFrom += c.wrN
		}
		ms = ms[n:]
	}
	return failed, err
}

// writeOne sends one datagram from src (invalid: the socket's address),
// from any goroutine: the browsers' STUN and DTLS, and sends outside a
// pacing loop.
func (c *batchConn) writeOne(b []byte, to netip.AddrPort, src netip.Addr) (int, error) {
	if !src.IsValid() {
		return c.conn.WriteToUDPAddrPort(b, to)
	}
	var oob [batchOOB]byte
	n, _, err := c.conn.WriteMsgUDPAddrPort(b, oob[:putPktinfo(oob[:], src)], to)
	return n, err
}

// putPktinfo writes an IP_PKTINFO control message that sends from src
// and returns its length.
func putPktinfo(oob []byte, src netip.Addr) int {
	space := unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	clear(oob[:space])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	pi.Spec_dst = src.As4()
	return space
}

// parseBatchOOB takes the destination address (IP_PKTINFO) and the
// kernel's receive time (SO_TIMESTAMPNS) from a datagram's control
// messages.
func parseBatchOOB(oob []byte) (dst netip.Addr, at int64) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			at = ts.Nano()
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			dst = netip.AddrFrom4(pi.Addr)
		}
		space := unix.CmsgSpace(l - unix.CmsgLen(0))
		if space >= len(oob) {
			break
		}
		oob = oob[space:]
	}
	return dst, at
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet4) netip.AddrPort {
	if sa.Family != unix.AF_INET {
		return netip.AddrPort{}
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16(p[:]))
}

func addrPortToSockaddr(a netip.AddrPort, sa *unix.RawSockaddrInet4) {
	*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	binary.BigEndian.PutUint16(p[:], a.Port())
}
