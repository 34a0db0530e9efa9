// Package mmsg moves many UDP datagrams per system call (sendmmsg,
// recvmmsg) on Linux.
//
// A Batch is a fixed set of slots: a buffer, a socket address and,
// when asked for, a control buffer each, with the headers the kernel
// takes, all allocated once by New, so that nothing is allocated per
// datagram. Datagrams are queued (Next, Queue) and sent (Send, SendConn),
// or received (Recv, RecvConn) and read (Datagram). Sends may carry their
// own source address (IP_PKTINFO, IPV6_PKTINFO) and receives tell the
// address a datagram was sent to and when the kernel took it
// (SO_TIMESTAMPNS), when the socket was asked for them.
//
// The raw descriptor calls (Send, Recv, SendTo) never wait: they are for
// sockets taken out of Go's network poller, and are raw system calls,
// which Go's scheduler does not see. The RawConn calls (SendConn,
// RecvConn) wait in Go's poller while the socket would block.
//
// Elsewhere than on Linux New fails with ErrUnsupported.
package mmsg

import (
	"errors"
	"fmt"
	"net/netip"
)

// Caps of a batch.
const (
	// MaxSlots is the most datagrams of a batch: the kernel's limit of
	// messages per sendmmsg (UIO_MAXIOV).
	MaxSlots = 1024
	// MaxSize is the largest buffer of a slot: the largest UDP payload.
	MaxSize = 65535
)

// Config says what a batch holds.
type Config struct {
	// Slots is how many datagrams one system call moves, 1 to MaxSlots.
	Slots int
	// Size is the bytes of each slot's buffer, 1 to MaxSize: a datagram
	// received larger is cut to it (Datagram.Truncated), and a larger one
	// is not queued.
	Size int
	// IPv6: the socket is AF_INET6, else AF_INET. An AF_INET6 socket
	// sends to IPv4 peers as IPv4-mapped addresses.
	IPv6 bool
	// Control gives each slot room for control messages: a source
	// address on sends, and a destination address and receive time on
	// receives.
	Control bool
}

func (c Config) check() error {
	switch {
	case c.Slots < 1 || c.Slots > MaxSlots:
		return fmt.Errorf("mmsg: %d slots, want 1 to %d", c.Slots, MaxSlots)
	case c.Size < 1 || c.Size > MaxSize:
		return fmt.Errorf("mmsg: slots of %d bytes, want 1 to %d", c.Size, MaxSize)
	}
	return nil
}

// Errors of Queue and SendTo, and of New where the system cannot batch.
var (
	ErrFull        = errors.New("mmsg: batch full")
	ErrFamily      = errors.New("mmsg: address not of the socket's family")
	ErrTooLarge    = errors.New("mmsg: datagram larger than a slot")
	ErrNoControl   = errors.New("mmsg: a source address needs a batch with control buffers")
	ErrUnsupported = errors.New("mmsg: batched UDP needs Linux")
)

// Datagram is one datagram of the last receive.
type Datagram struct {
	// B is the datagram, in the batch's buffer: valid until the next
	// receive. Cut to the buffer's size when Truncated.
	B []byte
	// Src is where it came from; invalid when the kernel gave an address
	// of another family.
	Src netip.AddrPort
	// Dst is the address it was sent to, when the socket asked for it
	// (IP_PKTINFO, IPV6_RECVPKTINFO) and the batch has control buffers.
	Dst netip.Addr
	// At is when the kernel received it, Unix nanoseconds, when the
	// socket asked for it (SO_TIMESTAMPNS); else 0.
	At int64
	// Truncated: it was larger than the buffer.
	Truncated bool
}
