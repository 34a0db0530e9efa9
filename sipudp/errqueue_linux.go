package sipudp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// ICMP errors. An unconnected UDP socket hears nothing of them unless
// IP_RECVERR (IPV6_RECVERR) is on; then each ICMP error that comes back
// for a datagram the socket sent is queued on the socket's error queue,
// with the datagram's destination and as much of it as the ICMP message
// quoted, and the socket's pending error is set: the next receive, or
// send, fails once with it (ECONNREFUSED for a closed port). The read
// loop and Send take that failure as the signal to read the queue, which
// must be emptied anyway: it is charged to the receive buffer.

// maxDrain bounds the reports read in one go, so that a flood of ICMP
// messages does not keep a read loop from datagrams. What is left is read
// at the next signal; the kernel bounds the queue by the receive buffer.
const maxDrain = 256

// enableErrQueue turns IP_RECVERR on for the socket fd, and IPV6_RECVERR
// for an IPv6 socket (IP_RECVERR then covers its IPv4-mapped peers).
func enableErrQueue(fd uintptr, is4 bool) error {
	if is4 {
		return unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVERR, 1)
	}
	err := unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
	// An IPv6-only socket has no IPv4 side to report on.
	_ = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVERR, 1)
	return err
}

// isICMPError reports whether err is how the socket signals queued ICMP
// errors: the errno that Linux makes of an ICMP error.
func isICMPError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENONET,
		unix.ENOPROTOOPT, unix.EPROTO, unix.EMSGSIZE, unix.EOPNOTSUPP, unix.EACCES:
		return true
	}
	return false
}

// drainErrQueue reads the socket's error queue (at most maxDrain entries)
// and reports each failure to deliver, RFC 3261 §18.4's way: destination
// unreachable and parameter problem are failures, the others (TTL
// exceeded, fragmentation needed, local errors) are not. It does not
// block, and may run in several goroutines at once.
func (t *Transport) drainErrQueue() {
	rc := t.rc
	if rc == nil {
		return
	}
	var buf [2048]byte // an ICMPv6 message quotes at most 1232 bytes
	var oob [128]byte
	for range maxDrain {
		var (
			n, oobn int
			from    unix.Sockaddr
			rerr    error
		)
		// Control, not Read: Read would wait for the read loop, which
		// holds the socket's read lock while it waits for a datagram.
		if err := rc.Control(func(fd uintptr) {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		}); err != nil || rerr != nil {
			return // EAGAIN: empty; anything else: nothing to read either
		}
		dst, ok := sockaddrAddrPort(from)
		if !ok {
			continue
		}
		ee, ok := extendedErr(oob[:oobn])
		if !ok || !deliveryFailure(ee) {
			continue
		}
		cause := fmt.Errorf("sipudp: %s: %w: %w", dst, transport.ErrUnreachable, syscall.Errno(ee.Errno))
		t.log.Debug("destination unreachable", "dst", dst, "icmp_type", ee.Type, "icmp_code", ee.Code, "err", syscall.Errno(ee.Errno))
		if h := t.unreach.Load(); h != nil {
			h.HandleUnreachable(sip.Addr{Transport: sip.UDP, AddrPort: dst}, buf[:n], cause)
		}
	}
}

func sockaddrAddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// sizeofExtendedErr is the size of struct sock_extended_err.
const sizeofExtendedErr = 16

// extendedErr finds the sock_extended_err of an error-queue message.
func extendedErr(oob []byte) (unix.SockExtendedErr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return unix.SockExtendedErr{}, false
	}
	for _, m := range msgs {
		ip := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
		ip6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (ip || ip6) && len(m.Data) >= sizeofExtendedErr {
			d := m.Data
			return unix.SockExtendedErr{
				Errno:  binary.NativeEndian.Uint32(d[0:]),
				Origin: d[4],
				Type:   d[5],
				Code:   d[6],
				Info:   binary.NativeEndian.Uint32(d[8:]),
				Data:   binary.NativeEndian.Uint32(d[12:]),
			}, true
		}
	}
	return unix.SockExtendedErr{}, false
}

// ICMP types and codes (RFC 792, RFC 4443) that end a transaction.
const (
	icmpDestUnreachable  = 3
	icmpFragNeeded       = 4 // a code of icmpDestUnreachable: path MTU, not a failure
	icmpParamProblem     = 12
	icmp6DestUnreachable = 1
	icmp6ParamProblem    = 4
)

func deliveryFailure(ee unix.SockExtendedErr) bool {
	switch ee.Origin {
	case unix.SO_EE_ORIGIN_ICMP:
		return ee.Type == icmpDestUnreachable && ee.Code != icmpFragNeeded || ee.Type == icmpParamProblem
	case unix.SO_EE_ORIGIN_ICMP6:
		return ee.Type == icmp6DestUnreachable || ee.Type == icmp6ParamProblem
	}
	return false
}
