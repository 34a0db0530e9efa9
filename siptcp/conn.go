package siptcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// conn is one connection: a flow.
type conn struct {
	t       *Transport
	nc      net.Conn
	addr    sip.Addr // transport, remote address, flow id
	inbound bool

	entry *transport.ConnEntry[*conn] // in t.conns

	wmu       sync.Mutex // one message written at a time
	closeOnce sync.Once
}

var crlf = []byte("\r\n")

// serve runs the connection until it closes; it is the connection's only
// reader and it alone ends it, so the closing is reported exactly once.
func (c *conn) serve() {
	defer c.t.wg.Done()
	defer c.finish()
	if tc, ok := c.nc.(*tls.Conn); ok && c.inbound {
		ctx, cancel := context.WithTimeout(c.t.life, c.t.opts.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.t.log.Debug("tls handshake failed", "remote", c.addr.AddrPort, "err", err)
			return
		}
	}
	select {
	case <-c.t.ready:
	case <-c.t.life.Done():
		return
	}
	c.read(c.t.h)
}

// finish closes the connection, forgets it and tells the Handler.
func (c *conn) finish() {
	c.close()
	c.t.remove(c)
	select {
	case <-c.t.ready:
		c.t.h.HandleFlowClosed(c.addr)
	default: // Serve never started: no one to tell
	}
}

// close closes the connection and reports whether this call did.
func (c *conn) close() bool {
	closed := false
	c.closeOnce.Do(func() {
		closed = true
		c.nc.Close()
	})
	return closed
}

func (c *conn) read(h transport.Handler) {
	f := newFramer(&c.t.parser, c.t.maxMsg)
	for {
		buf := f.space()
		if len(buf) == 0 {
			// Cannot happen: the framer fails before its buffer is full.
			c.t.log.Error("stream buffer full", "remote", c.addr.AddrPort, "flow", c.addr.Flow)
			return
		}
		// No read deadline: the transport's sweep closes idle connections,
		// with a timeout that depends on what the gateway says of them.
		n, rerr := c.nc.Read(buf)
		if n > 0 {
			c.entry.Touch()
		}
		f.wrote(n)
		if !c.drain(f, h) {
			return
		}
		if rerr != nil {
			c.logEnd(rerr, len(f.pending()))
			return
		}
	}
}

// drain handles every complete event in the buffer; false means the
// stream is broken and the connection must close.
func (c *conn) drain(f *framer, h transport.Handler) bool {
	for {
		ev, frame, err := f.next()
		if err != nil {
			if c.reject(f.pending(), err) {
				c.lingeringClose()
			}
			return false
		}
		switch ev {
		case none:
			return true
		case ping:
			if c.write(c.t.life, crlf) != nil {
				return false
			}
		case message:
			c.deliver(frame, h)
		}
	}
}

func (c *conn) deliver(frame []byte, h transport.Handler) {
	msg, err := c.t.parser.ParseMessage(frame)
	if err != nil {
		// The frame was whole, so the stream stays in step: answer and
		// go on.
		_ = c.reject(frame, err)
		return
	}
	transport.SetSource(msg, c.addr)
	h.HandleMessage(msg)
}

// reject answers an unparseable message on the connection when it can,
// and reports whether it did.
func (c *conn) reject(data []byte, err error) bool {
	resp, ok := transport.Reject(data, err)
	c.t.log.Debug("unparseable message", "remote", c.addr.AddrPort, "flow", c.addr.Flow,
		"size", len(data), "answered", ok, "err", err)
	return ok && c.write(c.t.life, resp) == nil
}

// Bounds of lingeringClose.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// lingeringClose ends a connection that still has unread input after an
// answer was written (a 513 to an oversized message): closing at once
// would make the kernel reset the connection, and the reset can destroy
// the answer before the peer reads it. So: half-close, read and discard
// for a little while, then close (what net/http does for the same reason).
func (c *conn) lingeringClose() {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.nc.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if c.nc.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c.nc, lingerBytes)
}

func (c *conn) logEnd(err error, pending int) {
	switch {
	case pending > 0:
		c.t.log.Debug("connection closed mid-message", "remote", c.addr.AddrPort, "flow", c.addr.Flow,
			"pending", pending, "err", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.log.Debug("idle connection closed", "remote", c.addr.AddrPort, "flow", c.addr.Flow)
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		c.t.log.Debug("connection closed", "remote", c.addr.AddrPort, "flow", c.addr.Flow)
	default:
		c.t.log.Debug("connection failed", "remote", c.addr.AddrPort, "flow", c.addr.Flow, "err", err)
	}
}

// write writes b whole within WriteTimeout and ctx's deadline. On failure
// it closes the connection, whose reader then reports the flow closed.
func (c *conn) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Traffic is stamped before the bytes go out, as a read is stamped
	// before what it carries is handled: a peer that sees our bytes (a
	// keep-alive answer, say) must see the connection active from then
	// on, and a stamp taken after the write could land later than what
	// the peer does next, with a fake clock even minutes later. A failed
	// write closes the connection, so its stamp does not matter.
	c.entry.Touch()
	deadline := time.Now().Add(c.t.opts.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := c.nc.SetWriteDeadline(deadline)
	if err == nil {
		_, err = c.nc.Write(b)
	}
	if err != nil {
		c.close()
		return fmt.Errorf("siptcp: write to %s: %w: %w", c.addr, transport.ErrFlowClosed, err)
	}
	return nil
}
