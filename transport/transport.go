// Package transport is the common layer of the SIP transports: the
// interface that sipudp, siptcp and sipws implement, and the Layer that the
// gateway uses to send and receive over all of them.
package transport

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Errors that callers branch on.
var (
	// ErrFlowClosed means a message had to go over a connection (flow) that
	// no longer exists (RFC 5626 §5.3: the caller answers 430 Flow Failed
	// or drops the binding).
	ErrFlowClosed = errors.New("flow closed")
	// ErrNoTransport means no transport serves the destination's transport.
	ErrNoTransport = errors.New("no transport for destination")
	// ErrTooLarge means a message exceeds what the transport may carry.
	ErrTooLarge = errors.New("message too large for transport")
	// ErrClosed means the transport was closed.
	ErrClosed = errors.New("transport closed")
	// ErrNoRoute means a response cannot be routed: its top Via is missing
	// or names no reachable address (RFC 3261 §18.2.2).
	ErrNoRoute = errors.New("no route for message")
	// ErrBadFlowToken means a flow token was forged, damaged or made with
	// another secret.
	ErrBadFlowToken = errors.New("invalid flow token")
)

// Transport is one listening SIP transport (UDP, TCP, TLS, WS or WSS).
type Transport interface {
	// Network returns the transport name, sip.UDP, sip.TCP, sip.TLS, sip.WS
	// or sip.WSS.
	Network() string
	// LocalAddr returns the address the transport listens on, which goes
	// into the sent-by of the Vias it stamps.
	LocalAddr() sip.Addr
	// Send writes a complete message to dst. With dst.Flow set it must use
	// that connection and fails with ErrFlowClosed when it is gone;
	// otherwise a datagram transport sends to dst.AddrPort and a
	// connection-oriented one reuses a connection to dst.AddrPort or dials
	// one (WS cannot dial: ErrFlowClosed).
	Send(ctx context.Context, msg sip.Message, dst sip.Addr) error
	// Serve receives until ctx is done or the transport is closed, calling
	// h for each message and each closed connection. It returns nil after
	// Close or when ctx ends.
	Serve(ctx context.Context, h Handler) error
	// Close stops the transport and closes its connections.
	Close() error
}

// A Poller is a Transport whose read loop a worker of the Layer can stand
// in for. When every CPU is busy, a read loop waiting in Go's network
// poller is woken late (the poller runs when a CPU has nothing else to
// do, or every 10 ms from the runtime's monitor), and a datagram
// transport's socket then fills with datagrams that no overload measure
// sees: they wait there, unanswered, until the kernel drops them and
// their clients send them again, and again. So while the workers are
// busy each of them polls now and then, and what waits is read into the
// Layer's queue, where it is served in turn or refused at once.
type Poller interface {
	// Poll reads what waits to be read, a bounded amount, without
	// waiting, and hands it to the Handler given to Serve as the read
	// loops do, in the order it came. It returns at once when a read is
	// under way, or before Serve.
	Poll()
}

// A WireSender is a datagram Transport that sends a message's wire form
// as given. A server transaction keeps the bytes its final response went
// as, not the parsed response, to answer its request's retransmissions
// (Layer.SendKept, Layer.Resend).
type WireSender interface {
	Transport
	// SendWire writes b, one whole message, to dst.AddrPort.
	SendWire(ctx context.Context, b []byte, dst sip.Addr) error
}

// Handler receives what transports read. Its methods are called from read
// loops, so they must not block: queue the work.
type Handler interface {
	// HandleMessage is called with every parsed message; msg.Src() says
	// where it came from.
	HandleMessage(msg sip.Message)
	// HandleFlowClosed is called once when a connection (flow) closes, so
	// that bindings and calls on it can be dropped.
	HandleFlowClosed(flow sip.Addr)
}

// A WaitHandler is a Handler that learns how long each message waited in
// the Layer's queue for a worker: the Layer calls HandleWaited instead of
// HandleMessage. Under overload a server judges each new request by its
// own wait, refusing those that waited too long: a mean of the waits lags
// a queue that grows, and refusals decided on it came late and in swings.
type WaitHandler interface {
	Handler
	// HandleWaited is HandleMessage for msg, which waited for waited.
	HandleWaited(msg sip.Message, waited time.Duration)
}

// A Batcher is a Transport that writes several messages with one system
// call (sendmmsg for UDP). The Layer's workers gather in a batch the
// stateless answers given while they handle a run of work (Layer.Reply),
// and write them together.
type Batcher interface {
	Transport
	// NewBatch returns an empty batch, or nil when the transport cannot
	// batch. One goroutine uses a batch at a time.
	NewBatch() Batch
}

// Batch is messages that a Batcher writes together.
type Batch interface {
	// Add serialises msg for dst into the batch. It reports false,
	// having added nothing, when msg is to be sent alone: the batch is
	// full, msg is larger than its room, or dst is of another family.
	Add(msg sip.Message, dst sip.Addr) bool
	// Len is how many messages were added since the last Flush.
	Len() int
	// Flush writes the messages added and empties the batch. A message
	// that fails is lost (UDP allows it); Flush returns the first error.
	Flush() error
}
