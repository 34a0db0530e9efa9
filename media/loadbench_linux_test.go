//go:build linux

package media

import (
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"
)

// The load bench's receivers take the kernel's receive time of each
// datagram (SO_TIMESTAMPNS, CLOCK_REALTIME), not the time their goroutine
// got to read it: the clients' own scheduling stays out of the latency.

func enableRxTimestamps(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
}

const lbOOBSize = 64

// readStamped reads one datagram and when it reached the socket, in
// nanoseconds since lbEpoch on the wall clock (the receiver's clock when
// the kernel gave none).
func readStamped(c *net.UDPConn, b, oob []byte) (int, netip.AddrPort, time.Duration, error) {
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		return n, from, 0, err
	}
	oob = oob[:oobn]
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= syscall.SizeofCmsghdr+int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[syscall.SizeofCmsghdr]))
			return n, from, time.Duration(ts.Nano() - lbWallEpoch), nil
		}
		const align = int(unsafe.Sizeof(uintptr(0)))
		a := (l + align - 1) &^ (align - 1)
		if a >= len(oob) {
			break
		}
		oob = oob[a:]
	}
	return n, from, lbNow(), nil
}
