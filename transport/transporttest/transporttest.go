// Package transporttest is the harness of the SIP transports' tests,
// which run over real sockets on loopback: it serves a transport or a
// Layer for the length of a test (Serve, ServeLayer), records what they
// deliver and waits for it with deadlines (Recorder; Record and Answer
// serve with one), plays the peer as a raw UDP socket, a TCP connection
// or a WebSocket (UDPPeer, TCPPeer, DialWS), collects logs to wait for a
// line (Logs) and makes in-memory TLS certificates (TLSConfigs).
// Goroutine leaks are checked with internal/leakcheck:
//
//	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
//	tr := ... // a transport listening on loopback, closed at the end
//	rec := transporttest.Record(t, tr)
//	p := transporttest.DialTCP(t, tr.LocalAddr())
//	p.Write(transporttest.OptionsRequest("call-1", sip.TCP))
//	m := rec.Message(t)
package transporttest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Timeout bounds every wait of this package: a test that waits longer has
// failed, not become slow.
const Timeout = 10 * time.Second

// Recorder is a transport.Handler that keeps what it receives, in order,
// for a test to take with Message and FlowClosed. Make it with
// NewRecorder.
type Recorder struct {
	ctx context.Context // the test's: its end ends every wait
	// OnMessage, when set, is called with each message before it is
	// recorded (from the caller's goroutine), e.g. to answer it.
	OnMessage func(sip.Message)
	// Max, when positive, makes HandleMessage wait while Max messages are
	// recorded and not taken, as a slow consumer does: the transport must
	// then slow its peer down, not lose messages. Set it before the
	// Recorder is used.
	Max int

	guarded
	msgs   []sip.Message
	closed []sip.Addr
	closes map[uint64]int // flow-closed notifications by flow id
}

// NewRecorder returns an empty Recorder. When the test ends it fails t if
// a flow was reported closed more than once: a transport tells of each
// closed connection exactly once. Make the Recorder before serving it,
// so that this check runs after the transport has stopped.
func NewRecorder(t testing.TB) *Recorder {
	r := &Recorder{ctx: t.Context(), closes: make(map[uint64]int)}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		var twice []uint64
		for flow, n := range r.closes {
			if n > 1 {
				twice = append(twice, flow)
			}
		}
		slices.Sort(twice)
		for _, flow := range twice {
			t.Errorf("flow %d reported closed %d times", flow, r.closes[flow])
		}
	})
	return r
}

// HandleMessage records msg.
func (r *Recorder) HandleMessage(msg sip.Message) {
	if r.OnMessage != nil {
		r.OnMessage(msg)
	}
	_ = r.wait(r.ctx, func() bool {
		if r.Max > 0 && len(r.msgs) >= r.Max {
			return false
		}
		r.msgs = append(r.msgs, msg)
		r.changedLocked()
		return true
	})
}

// HandleFlowClosed records flow.
func (r *Recorder) HandleFlowClosed(flow sip.Addr) {
	r.mu.Lock()
	r.closed = append(r.closed, flow)
	r.closes[flow.Flow]++
	r.changedLocked()
	r.mu.Unlock()
}

// Message takes the oldest recorded message, waiting up to Timeout for
// one; it fails the test when none comes.
func (r *Recorder) Message(t testing.TB) sip.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	m, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("no message within %v", Timeout)
	}
	return m
}

// Next takes the oldest recorded message, waiting for one until ctx ends.
// Unlike Message it may be called from any goroutine.
func (r *Recorder) Next(ctx context.Context) (sip.Message, error) {
	var m sip.Message
	err := r.wait(ctx, func() bool {
		if len(r.msgs) == 0 {
			return false
		}
		m, r.msgs = r.msgs[0], r.msgs[1:]
		r.changedLocked() // for a HandleMessage waiting below Max
		return true
	})
	return m, err
}

// FlowClosed takes the oldest flow-closed notification, waiting up to
// Timeout for one; it fails the test when none comes.
func (r *Recorder) FlowClosed(t testing.TB) sip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	var a sip.Addr
	if r.wait(ctx, func() bool {
		if len(r.closed) == 0 {
			return false
		}
		a, r.closed = r.closed[0], r.closed[1:]
		return true
	}) != nil {
		t.Fatalf("no flow closed within %v", Timeout)
	}
	return a
}

// NoMessage fails the test if a message is recorded and not taken.
func (r *Recorder) NoMessage(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) > 0 {
		t.Fatalf("unexpected message delivered:\n%s", r.msgs[0])
	}
}

// Counts returns how many messages and flow-closed notifications are
// recorded and not yet taken.
func (r *Recorder) Counts() (messages, closed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), len(r.closed)
}

// WaitMessages waits up to Timeout until n messages are recorded and not
// taken, and reports whether they are.
func (r *Recorder) WaitMessages(n int) bool {
	ctx, cancel := context.WithTimeout(r.ctx, Timeout)
	defer cancel()
	return r.wait(ctx, func() bool { return len(r.msgs) >= n }) == nil
}
