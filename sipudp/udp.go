// Package sipudp is the SIP transport over UDP (RFC 3261 §18): one socket
// that receives datagrams in a fixed number of read loops, parses each as
// one message and hands it to a transport.Handler, and sends every
// message, requests and responses, from that same socket, so that the
// source port of what it sends is its listening port (what rport and
// symmetric-response NAT traversal rely on, RFC 3581).
//
// Keep-alives: datagrams made of CR and LF only (sent by some phones) are
// ignored, and STUN Binding requests on the SIP port (RFC 5626 §4.4.2) are
// answered with the source address as seen here.
//
// ICMP errors: on Linux, a datagram that comes back as undeliverable (an
// ICMP destination unreachable, RFC 3261 §18.4) is reported to a Handler
// that implements transport.UnreachableHandler, with its destination and
// the start of the datagram, so that the transaction that sent it ends at
// once with 503 instead of retransmitting to a closed port. Elsewhere such
// errors go unheard, as before.
//
// The rest of the UDP rules live in package transport, which sees all
// transports: received/rport stamping, response routing and the move of
// large requests to TCP (RFC 3261 §18.1.1).
package sipudp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// maxPayload is the largest UDP payload over IPv6 (65535 minus the UDP
// header); IPv4 allows 20 bytes less, and the kernel refuses what does not
// fit.
const maxPayload = 65527

// Options configures a Transport. The zero value is ready to use.
type Options struct {
	// Limits bound what the parser accepts. A datagram larger than
	// Limits.MaxMessageSize is answered with 513 when its Via is readable,
	// and dropped.
	Limits sip.Limits
	// Readers is the number of read loops on the socket. Default 1: one
	// loop parses well over 100,000 small messages a second. On Linux the
	// loops take turns on one batch, so that datagrams are handed on in
	// the order they came; the workers of a transport.Layer stand in for
	// them when they fall behind (Poll).
	Readers int
	// ReadBuffer and WriteBuffer set the socket buffer sizes in bytes
	// (SO_RCVBUF, SO_SNDBUF), capped by the system; 0 keeps the system
	// default. A bigger read buffer absorbs bursts.
	ReadBuffer, WriteBuffer int
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
}

// Transport is a SIP transport over one UDP socket. It implements
// transport.Transport.
type Transport struct {
	conn    *net.UDPConn
	local   sip.Addr
	is4     bool // the socket is AF_INET: IPv4-mapped destinations are unmapped
	parser  sip.Parser
	readers int
	bufSize int
	log     *slog.Logger

	// errq is set when ICMP errors are read (Linux); unreach is where
	// they go, the Handler of Serve when it wants them.
	errq    bool
	unreach atomic.Pointer[unreachable]

	// rc is the socket's RawConn, taken once: the batched reads and the
	// error queue's go through it. Nil when the socket has none.
	rc syscall.RawConn
	// raw is the descriptor that Send writes to (write_linux.go).
	raw rawSocket
	// writes counts the system calls that sent datagrams: the tests see
	// by it that the answers of a run of work left together.
	writes atomic.Uint64
	// reads is the batch the read loops and Poll read into, set by Serve
	// (readbatch_linux.go); nil without batched reads.
	reads atomic.Pointer[reads]

	serving   atomic.Bool
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

var (
	_ transport.Batcher = (*Transport)(nil)
	_ transport.Poller  = (*Transport)(nil)
)

// Listen opens a UDP socket on addr ("127.0.0.1:5060", "[::1]:5060",
// ":5060" for every address of both families) and returns a Transport on
// it. ctx bounds the listening only.
func Listen(ctx context.Context, addr string, opts Options) (*Transport, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("sipudp: listen: %w", err)
	}
	t, err := New(pc.(*net.UDPConn), opts)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return t, nil
}

// New returns a Transport on an open socket, which it owns from then on.
func New(conn *net.UDPConn, opts Options) (*Transport, error) {
	if opts.ReadBuffer > 0 {
		if err := conn.SetReadBuffer(opts.ReadBuffer); err != nil {
			return nil, fmt.Errorf("sipudp: read buffer: %w", err)
		}
	}
	if opts.WriteBuffer > 0 {
		if err := conn.SetWriteBuffer(opts.WriteBuffer); err != nil {
			return nil, fmt.Errorf("sipudp: write buffer: %w", err)
		}
	}
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	t := &Transport{
		conn:    conn,
		local:   sip.Addr{Transport: sip.UDP, AddrPort: la},
		is4:     la.Addr().Is4(),
		parser:  sip.Parser{Limits: opts.Limits},
		readers: max(opts.Readers, 1),
		log:     opts.Logger,
		done:    make(chan struct{}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("transport", sip.UDP, "local", la)
	t.rc, _ = conn.SyscallConn()
	if err := t.initSocket(); err != nil {
		t.log.Debug("ICMP errors will not be reported", "err", err)
	} else {
		t.errq = true
	}
	// One byte more than the largest message accepted, so that a datagram
	// over the limit shows as such instead of arriving cut.
	maxMsg := opts.Limits.WithDefaults().MaxMessageSize
	t.bufSize = min(maxMsg+1, maxPayload+1)
	return t, nil
}

// Network returns sip.UDP.
func (t *Transport) Network() string { return sip.UDP }

// LocalAddr returns the address the socket is bound to.
func (t *Transport) LocalAddr() sip.Addr { return t.local }

// Close closes the socket, which ends Serve. It is safe to call more than
// once.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.done)
		t.closeRaw()
		err = t.conn.Close()
	})
	return err
}

// Serve reads datagrams until ctx is done or the transport is closed, and
// calls h with every message. When ctx ends it closes the transport. It
// returns nil then, and an error only when the socket fails for good.
func (t *Transport) Serve(ctx context.Context, h transport.Handler) error {
	if !t.serving.CompareAndSwap(false, true) {
		return errors.New("sipudp: serve called twice")
	}
	if u, ok := h.(transport.UnreachableHandler); ok {
		t.unreach.Store(&unreachable{u})
	}
	stop := context.AfterFunc(ctx, func() { t.Close() })
	defer stop()
	t.startReads(h)
	errs := make(chan error, t.readers)
	var wg sync.WaitGroup
	for range t.readers {
		wg.Go(func() { errs <- t.readLoop(h) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readLoop reads datagrams into buffers reused for every read: the parser
// copies what it keeps. On Linux a read takes up to readBatch datagrams
// (readbatch_linux.go); elsewhere one.
func (t *Transport) readLoop(h transport.Handler) error {
	if ok, err := t.readBatches(h); ok {
		return err
	}
	return t.readEach(h)
}

// readEach is the read loop without batches: one datagram a call.
func (t *Transport) readEach(h transport.Handler) error {
	buf := make([]byte, t.bufSize)
	var r reader
	for {
		n, src, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if done, err := r.failed(t, err); done {
				return err
			}
			continue
		}
		r.failures = 0
		t.handle(buf[:n], src, h)
	}
}

// reader is what a read loop keeps between reads: the failed reads in a
// row.
type reader struct{ failures int }

// failed deals with a read's error: it reports whether the loop is done,
// with the error to return (nil once the transport is closed).
func (r *reader) failed(t *Transport, err error) (bool, error) {
	select {
	case <-t.done:
		return true, nil
	default:
	}
	if errors.Is(err, net.ErrClosed) {
		return true, nil
	}
	if t.errq && isICMPError(err) {
		// The signal of queued ICMP errors, not a failure.
		t.drainErrQueue()
		return false, nil
	}
	// Errors on an unconnected UDP socket are rare and passing (ICMP
	// reports, memory pressure): back off and go on, but give up on one
	// that never clears.
	r.failures++
	if r.failures > 16 {
		return true, fmt.Errorf("sipudp: read: %w", err)
	}
	t.log.Warn("read failed", "err", err)
	select {
	case <-t.done:
		return true, nil
	case <-time.After(time.Duration(r.failures) * 10 * time.Millisecond):
	}
	return false, nil
}

func (t *Transport) handle(data []byte, src netip.AddrPort, h transport.Handler) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if isKeepAlive(data) {
		return
	}
	if isSTUNBinding(data) {
		t.answerSTUN(data, src)
		return
	}
	msg, err := t.parser.ParseDatagram(data)
	if err != nil {
		t.reject(data, src, err)
		return
	}
	transport.SetSource(msg, sip.Addr{Transport: sip.UDP, AddrPort: src})
	h.HandleMessage(msg)
}

// isKeepAlive reports datagrams of CR, LF and NUL only: the "\r\n\r\n"
// pings of RFC 5626 §3.5.1 sent over UDP by some phones, and the NUL
// padding others use. There is no answer to give over UDP (the RFC 5626
// way is STUN).
func isKeepAlive(data []byte) bool {
	for _, c := range data {
		if c != '\r' && c != '\n' && c != 0 {
			return false
		}
	}
	return true
}

// reject answers an unparseable request statelessly, to its source
// address: the Via of a message that did not parse is not to be trusted
// further than that.
func (t *Transport) reject(data []byte, src netip.AddrPort, err error) {
	resp, ok := transport.Reject(data, err)
	t.log.Debug("unparseable message", "source", src, "size", len(data), "answered", ok, "err", err)
	if !ok {
		return
	}
	if err := t.write(resp, t.dst(src)); err != nil {
		t.log.Debug("sending stateless answer failed", "source", src, "err", err)
	}
}

func (t *Transport) answerSTUN(req []byte, src netip.AddrPort) {
	var arr [96]byte
	resp := appendSTUNResponse(arr[:0], req, src)
	if err := t.write(resp, t.dst(src)); err != nil {
		t.log.Debug("sending stun answer failed", "source", src, "err", err)
	}
}

// dst adapts a destination to the socket's family.
func (t *Transport) dst(ap netip.AddrPort) netip.AddrPort {
	if t.is4 {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

// Send writes msg as one datagram to dst.AddrPort, from the listening
// socket. dst.Flow is ignored: a UDP "flow" is its address. A message that
// does not fit in a datagram fails with transport.ErrTooLarge.
func (t *Transport) Send(ctx context.Context, msg sip.Message, dst sip.Addr) error {
	b := transport.GetBuffer()
	defer transport.PutBuffer(b)
	*b = msg.AppendTo(*b)
	return t.SendWire(ctx, *b, dst)
}

// SendWire writes b, one whole message, to dst (transport.WireSender).
func (t *Transport) SendWire(ctx context.Context, b []byte, dst sip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !dst.AddrPort.IsValid() {
		return fmt.Errorf("sipudp: send to %q: %w", dst, transport.ErrNoRoute)
	}
	if len(b) > maxPayload {
		return fmt.Errorf("sipudp: %d bytes: %w", len(b), transport.ErrTooLarge)
	}
	if err := t.write(b, t.dst(dst.AddrPort)); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("sipudp: send: %w", transport.ErrClosed)
		}
		return fmt.Errorf("sipudp: send to %s: %w", dst.AddrPort, err)
	}
	return nil
}

// unreachable holds the Handler that ICMP errors are reported to.
type unreachable struct{ transport.UnreachableHandler }

// sendTries bounds the writes of one datagram: each failed one consumed a
// pending ICMP error of the socket (see drainErrQueue).
const sendTries = 4

// write sends b to dst. With ICMP errors on, a write fails with the
// socket's pending error, which belongs to an earlier datagram to some
// other destination; nothing was sent then, so it reads the error queue
// and tries again.
func (t *Transport) write(b []byte, dst netip.AddrPort) error {
	var err error
	for range sendTries {
		if err = t.writeOnce(b, dst); err == nil || !t.errq || !isICMPError(err) {
			return err
		}
		t.drainErrQueue()
	}
	return err
}

// writeOnce sends b to dst with a raw sendto where it can (writeRaw),
// else through the UDPConn.
func (t *Transport) writeOnce(b []byte, dst netip.AddrPort) error {
	t.writes.Add(1)
	if done, err := t.writeRaw(b, dst); done {
		return err
	}
	_, err := t.conn.WriteToUDPAddrPort(b, dst)
	return err
}
