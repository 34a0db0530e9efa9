package sipws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// conn is one WebSocket connection, one flow. Its reader runs on the
// goroutine of ServeHTTP; its pinger is a goroutine of its own that ends
// before serve returns. Writes come from the reader (keep-alive answers,
// stateless 400s), the pinger and Send; websocket.Conn serialises them
// (every method but Reader and Read may be called concurrently).
type conn struct {
	t   *Transport
	ctx context.Context // the handshake's values, no end
	ws  *websocket.Conn
	h   transport.Handler
	src sip.Addr

	// entry is the connection's line in t.conns; Touch it at every
	// message either way.
	entry *transport.ConnEntry[*conn]
}

// serve reads the connection until it ends, then reports the flow closed.
func (c *conn) serve() {
	t := c.t
	t.log.Debug("sipws: flow open", "flow", c.src)

	var pingDone chan struct{}
	stop := make(chan struct{})
	if t.pingInterval > 0 {
		pingDone = make(chan struct{})
		go func() {
			defer close(pingDone)
			c.keepalive(stop)
		}()
	}

	err := c.read()

	// Unreachable first, so that a Send racing with the close fails with
	// ErrFlowClosed instead of writing into a closing connection.
	t.unregister(c)
	// Before closing: a ping failing because of the close is not a dead
	// peer to report.
	close(stop)
	if errors.Is(err, websocket.ErrMessageTooBig) {
		// The library has sent the 1009 close frame; wait for the peer's
		// answer so that it sees why.
		c.ws.Close(websocket.StatusMessageTooBig, "message too big")
	} else {
		c.ws.CloseNow()
	}
	if pingDone != nil {
		<-pingDone
	}
	t.log.Debug("sipws: flow closed", "flow", c.src, "cause", err)
	c.h.HandleFlowClosed(c.src)
}

// read handles messages until the connection fails or closes.
func (c *conn) read() error {
	ctx := c.ctx
	var buf []byte
	for {
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			return err
		}
		if buf, err = readAll(r, buf); err != nil {
			return err
		}
		c.entry.Touch()
		res := c.t.readFrame(c.src, buf)
		if res.err != nil {
			if res.reply != nil {
				c.t.log.Debug("sipws: rejected bad request", "flow", c.src, "err", res.err)
			} else {
				c.t.log.Info("sipws: dropped bad message", "flow", c.src, "err", res.err)
			}
		}
		if res.msg != nil {
			c.h.HandleMessage(res.msg)
		}
		if res.reply != nil {
			if err := c.write(ctx, res.reply); err != nil {
				return err
			}
		}
		if cap(buf) > maxKeptReadBuf {
			buf = nil // the message kept its own copy
		}
	}
}

// maxKeptReadBuf bounds the read buffer a connection keeps between
// messages: enough for an INVITE with a WebRTC offer, while one large
// message per connection cannot pin MaxFrameSize on every flow.
const maxKeptReadBuf = 16 << 10

// readAll reads r to its end into buf, reusing buf's memory. The read
// limit set on the connection bounds it.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// write sends one message in one WebSocket message: text when it is UTF-8,
// as RFC 7118 §5.1 asks, else binary (a body may be any octets).
func (c *conn) write(ctx context.Context, b []byte) error {
	typ := websocket.MessageText
	if !utf8.Valid(b) {
		typ = websocket.MessageBinary
	}
	// Stamped before the bytes go out, as siptcp does and for its reason:
	// a peer that sees our message (a keep-alive answer) and acts at once
	// must find the connection active from then on, which a stamp taken
	// after the write may miss. A failed write ends the connection.
	c.entry.Touch()
	return c.ws.Write(ctx, typ, b)
}

// keepalive pings the peer every PingInterval and closes the connection
// when a pong does not come within PongTimeout. TCP alone would take many
// minutes to notice a browser tab that vanished with its network.
func (c *conn) keepalive(stop <-chan struct{}) {
	tick := time.NewTicker(c.t.pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.t.pongTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err == nil {
			continue
		}
		select {
		case <-stop:
			return // the connection is ending for another reason
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return // closed by Close or by the reader
		}
		c.t.log.Info("sipws: peer not answering pings, closing", "flow", c.src, "err", err)
		// No close handshake with a peer that does not answer.
		c.ws.CloseNow()
		return
	}
}

// frameResult is what to do with one received WebSocket message.
type frameResult struct {
	msg   sip.Message // to deliver, with its Source set
	reply []byte      // to send back: a keep-alive answer or a stateless 400
	err   error       // why the frame was not a message, to log
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// readFrame turns the payload of one WebSocket message from src into a
// message or an answer. It holds no state and never blocks.
func (t *Transport) readFrame(src sip.Addr, data []byte) frameResult {
	if len(bytes.Trim(data, "\r\n")) == 0 {
		// RFC 5626 §4.4.1 keep-alive as JsSIP and SIP.js send it: a double
		// CRLF asks for a single one. A lone CRLF is a pong; ignore it.
		if bytes.Contains(data, crlfcrlf) {
			return frameResult{reply: crlf}
		}
		return frameResult{}
	}
	msg, err := t.parser.ParseMessage(data)
	if err != nil {
		// One message per frame (RFC 7118 §5.2): octets after the body, a
		// second message included, are a malformed message, answered as
		// any other when it is a request with a usable Via.
		if reply, ok := transport.Reject(data, err); ok {
			return frameResult{reply: reply, err: err}
		}
		return frameResult{err: err}
	}
	transport.SetSource(msg, src)
	return frameResult{msg: msg}
}
