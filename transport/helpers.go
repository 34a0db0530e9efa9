package transport

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// flowIDs numbers the connections of every transport of the process, so
// that a flow id alone names one connection whatever transport owns it: the
// Layer routes a response by it, and a flow token (see EncodeFlowToken)
// stays unambiguous.
var flowIDs atomic.Uint64

// NextFlowID returns a new flow id, never 0. Connection-oriented transports
// (siptcp, sipws) take the id of each connection from here.
func NextFlowID() uint64 { return flowIDs.Add(1) }

// SetSource records where a received message came from (Request.Source or
// Response.Source). Transports call it before handing msg on.
func SetSource(msg sip.Message, src sip.Addr) {
	switch m := msg.(type) {
	case *sip.Request:
		m.Source = src
	case *sip.Response:
		m.Source = src
	}
}

// Reject returns the stateless answer to a message that failed to parse
// with err (RFC 3261 §16.3/§8.2 and DESIGN.md "Rules for bad input"): the
// status and reason of the *sip.ParseError in err, with the Via, From, To,
// Call-ID and CSeq of data, so that the sender stops retransmitting. ok is
// false when err carries no *sip.ParseError, data is a response, or data
// has no usable Via: then nothing can be sent. Transports send resp back to
// where data came from (the source address or the same connection) and log
// the fault with their own Logger; Reject does not log, so that each
// transport keeps its logs under its own name.
func Reject(data []byte, err error) (resp []byte, ok bool) {
	var perr *sip.ParseError
	if !errors.As(err, &perr) {
		return nil, false
	}
	return sip.RejectBytes(data, perr)
}

// bufPool holds serialisation buffers, so that sending a message allocates
// nothing in the steady state.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// GetBuffer returns an empty buffer from a shared pool, for serialising a
// message with AppendTo. Give it back with PutBuffer.
func GetBuffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer returns b to the pool. Buffers that grew beyond 64 KiB are
// dropped so that one huge message does not pin memory.
func PutBuffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// HandlerFuncs adapts functions to a Handler, e.g. to join the
// transaction layer's HandleMessage with the registrar's reaction to a
// closed flow:
//
//	transport.HandlerFuncs{Message: tx.HandleMessage, FlowClosed: reg.FlowClosed}
//
// A nil field ignores that event.
type HandlerFuncs struct {
	Message    func(sip.Message)
	FlowClosed func(sip.Addr)
	// Unreachable, when set, receives what UnreachableHandler does.
	Unreachable func(dst sip.Addr, quote []byte, cause error)
	// Waited, when set, receives the messages instead of Message, with
	// their wait in the Layer's queue (WaitHandler).
	Waited func(sip.Message, time.Duration)
}

// HandleMessage calls f.Message.
func (f HandlerFuncs) HandleMessage(msg sip.Message) {
	if f.Message != nil {
		f.Message(msg)
	}
}

// HandleWaited calls f.Waited, or f.Message without the wait.
func (f HandlerFuncs) HandleWaited(msg sip.Message, waited time.Duration) {
	if f.Waited != nil {
		f.Waited(msg, waited)
		return
	}
	f.HandleMessage(msg)
}

// HandleFlowClosed calls f.FlowClosed.
func (f HandlerFuncs) HandleFlowClosed(flow sip.Addr) {
	if f.FlowClosed != nil {
		f.FlowClosed(flow)
	}
}
