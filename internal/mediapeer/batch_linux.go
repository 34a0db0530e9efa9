//go:build linux

package mediapeer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/switchboard/switchboard/internal/mmsg"
	"golang.org/x/sys/unix"
)

// batchConn is a UDP socket that sends and receives up to batchMax
// datagrams per system call (an mmsg.Batch each way), through Go's poller
// so that a reader parks rather than spins. A sent datagram may carry its
// own source address (IP_PKTINFO), and a received one tells the address it
// was sent to and when the kernel received it (SO_TIMESTAMPNS): so one
// socket bound to the wildcard address on lo plays many browsers, each on
// its own loopback address. One goroutine reads and one writes at a time;
// writeOne may be called from any goroutine.
type batchConn struct {
	conn   *net.UDPConn
	raw    syscall.RawConn
	port   uint16
	rd, wr *mmsg.Batch
}

// batchRcvbuf is the receive buffer asked of the kernel (SO_RCVBUFFORCE
// as root, else up to net.core.rmem_max): 1,000 calls send a socket
// 25,000 datagrams a second.
const batchRcvbuf = 8 << 20

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
	cfg := mmsg.Config{Slots: batchMax, Size: genBuf, Control: true}
	if c.rd, err = mmsg.New(cfg); err == nil {
		c.wr, err = mmsg.New(cfg)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mediapeer: batch socket: %w", err)
	}
	return c, nil
}

// Port is the socket's port.
func (c *batchConn) Port() uint16 { return c.port }

func (c *batchConn) Close() error { return c.conn.Close() }

// readBatch reads up to batchMax datagrams into ms, which has room for
// them, blocking until one comes; it returns how many came, or an error
// once the socket is closed. The datagrams' bytes are the batch's: valid
// until the next readBatch.
func (c *batchConn) readBatch(ms []batchMsg) (int, error) {
	if len(ms) < batchMax {
		return 0, fmt.Errorf("mediapeer: batch read into %d messages, want %d", len(ms), batchMax)
	}
	n, err := c.rd.RecvConn(c.raw)
	if err != nil {
		return 0, err
	}
	for i := range n {
		d := c.rd.Datagram(i)
		ms[i] = batchMsg{Buf: d.B, Addr: d.Src, Local: d.Dst, At: d.At}
	}
	return n, nil
}

// writeBatch sends ms, as many per system call as the kernel takes. A
// datagram the kernel refuses is skipped and counted in failed, with the
// first such error.
func (c *batchConn) writeBatch(ms []batchMsg) (failed int, err error) {
	for len(ms) > 0 {
		n := min(len(ms), batchMax)
		c.wr.Reset()
		for i := range n {
			m := &ms[i]
			if len(m.Buf) == 0 {
				// sent as an empty datagram would be a lie
				return failed + len(ms), fmt.Errorf("mediapeer: batch message %d: nothing to send to %v", i, m.Addr)
			}
			if qerr := c.wr.Queue(m.Buf, m.Addr, m.Local); qerr != nil {
				return failed + len(ms), fmt.Errorf("mediapeer: batch message %d: %d bytes to %v from %v: %w", i, len(m.Buf), m.Addr, m.Local, qerr)
			}
		}
		for from := 0; from < n; {
			sent, serr := c.wr.SendConn(c.raw, from)
			if _, refused := serr.(unix.Errno); serr != nil && !refused {
				return failed + len(ms) - from, serr // the socket is closed
			}
			if serr != nil {
				// the datagram at from was refused: skip it
				failed++
				if err == nil {
					err = serr
				}
				from++
				continue
			}
			from += sent
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
	var oob [64]byte
	n, _, err := c.conn.WriteMsgUDPAddrPort(b, mmsg.AppendSource(oob[:0], src, false), to)
	return n, err
}
