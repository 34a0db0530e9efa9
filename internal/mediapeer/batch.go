package mediapeer

import "net/netip"

// batchMax is the most datagrams per system call of a batchConn.
const batchMax = 64

// batchMsg is one datagram of a batch.
type batchMsg struct {
	// Buf: the datagram to send, or the one received (in the batch's
	// buffer, until the next read).
	Buf []byte
	// Addr: the destination of a datagram sent, the source of one received.
	Addr netip.AddrPort
	// Local: the source address of a datagram sent (invalid: the
	// socket's), the destination address of one received.
	Local netip.Addr
	// At: when the kernel received the datagram, Unix nanoseconds (0:
	// it did not say).
	At int64
}
