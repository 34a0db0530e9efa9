package transporttest

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// Load is a loopback UDP client for benchmarks of a server's whole
// receive, handle and answer path: it sends requests, a reader counts the
// answers, and Wait keeps the requests unanswered under a bound, so that
// the socket buffers, which the kernel caps, do not overflow and the
// benchmark measures serving, not the kernel dropping what the sender
// outruns. An answer that does not come within a second is counted lost
// (on loopback with a small bound there are none; on a starved machine a
// late one may be counted).
type Load struct {
	conn     *net.UDPConn
	check    func(answer []byte) bool
	answered atomic.Int64
	rejected atomic.Int64
	progress chan struct{}
	done     chan struct{}
	timer    *time.Timer
	sent     int
	lost     int
}

// NewLoad dials server from 127.0.0.1 and starts the reader, which the
// test's cleanup stops. check, when not nil, tells the answers expected
// from the others (Rejected counts those).
func NewLoad(tb testing.TB, server netip.AddrPort, check func(answer []byte) bool) *Load {
	tb.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		tb.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	ld := &Load{conn: conn, check: check, progress: make(chan struct{}, 1), done: make(chan struct{}), timer: time.NewTimer(time.Hour)}
	go ld.read()
	tb.Cleanup(func() {
		conn.Close()
		<-ld.done
		ld.timer.Stop()
	})
	return ld
}

func (ld *Load) read() {
	defer close(ld.done)
	buf := make([]byte, 4096)
	for {
		n, err := ld.conn.Read(buf)
		if err != nil {
			return
		}
		if ld.check != nil && !ld.check(buf[:n]) {
			ld.rejected.Add(1)
		}
		ld.Answer()
	}
}

// Answer counts one answer that came some other way: for a benchmark of
// a server that does not answer, its handler counts what it received.
// It is safe to call from any goroutine.
func (ld *Load) Answer() {
	ld.answered.Add(1)
	select {
	case ld.progress <- struct{}{}:
	default:
	}
}

// Send sends one request, which is to get one answer.
func (ld *Load) Send(tb testing.TB, msg []byte) {
	if _, err := ld.conn.Write(msg); err != nil {
		tb.Fatal(err)
	}
	ld.sent++
}

// Wait returns once at most limit requests are unanswered, counting lost
// those whose answer did not come within a second.
func (ld *Load) Wait(limit int) {
	for ld.sent-ld.lost-int(ld.answered.Load()) > limit {
		ld.timer.Reset(time.Second)
		select {
		case <-ld.progress:
		case <-ld.timer.C:
			ld.lost = ld.sent - int(ld.answered.Load())
		}
	}
}

// Answered returns the answers received so far.
func (ld *Load) Answered() int { return int(ld.answered.Load()) }

// Lost returns the requests whose answer Wait gave up on.
func (ld *Load) Lost() int { return ld.lost }

// Rejected returns the answers that check refused.
func (ld *Load) Rejected() int { return int(ld.rejected.Load()) }
