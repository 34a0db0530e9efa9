package transaction

import (
	"context"
	"math"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// BenchmarkServerNonInvite measures a non-INVITE server transaction round
// trip: HandleMessage → handler goroutine → Respond → Sender. Over TCP, so
// the transaction ends with the response (J = 0) and the real clock.
func BenchmarkServerNonInvite(b *testing.B) {
	sent := make(chan struct{}, 1)
	sender := senderFunc(func(context.Context, sip.Message, sip.Addr) error {
		sent <- struct{}{}
		return nil
	})
	l := New(context.Background(), sender, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		res := sip.NewResponse(req, 200, "")
		res.SetToTag("bench")
		_ = tx.Respond(res)
	}), Config{})
	defer l.Close()
	reqs := benchRequests(b, phoneTCP, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.HandleMessage(reqs[i])
		<-sent
	}
}

// BenchmarkServerBurst measures server transactions whose handlers block
// together and are released together, as the registrar's wait for one
// journal write releases many at once: bursts of 300 requests, each
// handler waiting until all 300 have started, then answering from a
// 6 KiB deep stack, as deep as the registrar's. It reports the handler
// goroutines created and the process's CPU time per transaction: a pool
// that let the workers beyond its idle cap exit started them again at
// the next burst, each growing its stack anew.
func BenchmarkServerBurst(b *testing.B) {
	const burst = 300
	var sent atomic.Int64
	done := make(chan struct{}, burst)
	sender := senderFunc(func(context.Context, sip.Message, sip.Addr) error {
		sent.Add(1)
		done <- struct{}{}
		return nil
	})
	var started atomic.Int64
	var gate atomic.Pointer[chan struct{}]
	l := New(context.Background(), sender, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		g := *gate.Load()
		if started.Add(1)%burst == 0 {
			close(g)
		}
		<-g
		deep(tx, req, 6)
	}), Config{})
	defer l.Close()
	reqs := benchRequests(b, phoneTCP, b.N)
	sample := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	b.ReportAllocs()
	b.ResetTimer()
	metrics.Read(sample)
	created0, cpu0 := sample[0].Value.Uint64(), cpuTime()
	for i := 0; i < b.N; i += burst {
		g := make(chan struct{})
		gate.Store(&g)
		n := min(burst, b.N-i)
		if n < burst {
			close(g) // a short last burst: nobody waits for the rest
		}
		for _, r := range reqs[i : i+n] {
			l.HandleMessage(r)
		}
		for range n {
			<-done
		}
	}
	cpu := cpuTime() - cpu0
	metrics.Read(sample)
	b.StopTimer()
	b.ReportMetric(float64(sample[0].Value.Uint64()-created0)/float64(b.N), "goroutines/tx")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/tx")
}

// deep answers req from n KiB further down the stack.
//
//go:noinline
func deep(tx *ServerTx, req *sip.Request, n int) {
	var frame [1024]byte
	frame[n] = byte(n)
	if n > 0 {
		deep(tx, req, n-1)
	} else {
		res := sip.NewResponse(req, 200, "")
		res.SetToTag("bench")
		_ = tx.Respond(res)
	}
	frameSink.Add(int64(frame[n]))
}

// frameSink keeps deep's frames from being optimised away.
var frameSink atomic.Int64

// cpuTime returns the user and system CPU time used by the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClientNonInvite measures a non-INVITE client transaction:
// Request → Sender, then the 200 through HandleMessage to Responses. Over
// TCP (no Timer E, K = 0); Timer F is armed and stopped on the real clock.
func BenchmarkClientNonInvite(b *testing.B) {
	benchClient(b, peerTCP)
}

// BenchmarkClientNonInviteUDP is the same over UDP: Timers E and F are
// armed and stopped, Timer K stays armed for T4.
func BenchmarkClientNonInviteUDP(b *testing.B) {
	benchClient(b, peerUDP)
}

func benchClient(b *testing.B, dst sip.Addr) {
	// Over UDP each transaction stays for Timer K (T4, 5 s): no bound of
	// client transactions for a benchmark's b.N.
	l := New(context.Background(), senderFunc(func(context.Context, sip.Message, sip.Addr) error { return nil }), nil,
		Config{MaxClientTransactions: math.MaxInt32})
	defer l.Close()
	reqs := benchRequests(b, dst, b.N)
	ress := make([]*sip.Response, b.N)
	for i, r := range reqs {
		ress[i] = response(r, 200, "x")
		ress[i].Source = dst
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx, err := l.Request(ctx, reqs[i], dst)
		if err != nil {
			b.Fatal(err)
		}
		l.HandleMessage(ress[i])
		if res := <-tx.Responses(); res.StatusCode != 200 {
			b.Fatal(res.StatusCode)
		}
	}
}

// benchRequests returns n OPTIONS requests with distinct branches, cloned
// from one parsed message so that the setup stays cheap.
func benchRequests(tb testing.TB, src sip.Addr, n int) []*sip.Request {
	tmpl := msgSpec{method: "OPTIONS", branch: "z9hG4bK", src: src}.req(tb)
	via, _ := tmpl.TopVia()
	reqs := make([]*sip.Request, n)
	for i := range reqs {
		r := tmpl.Clone()
		v := via
		v.Params = sip.Params(";branch=z9hG4bKbench" + strconv.Itoa(i))
		r.SetTopVia(v)
		reqs[i] = r
	}
	return reqs
}

// BenchmarkFreshWorker is what a worker started anew pays to run a
// handler 11 KiB and 11 frames deep, with reserveStack first (as
// pool.run does) and without: its stack's growth from the runtime's
// starting size, copied from the handler's depth or from the top.
func BenchmarkFreshWorker(b *testing.B) {
	for _, reserve := range []bool{false, true} {
		b.Run("reserve="+strconv.FormatBool(reserve), func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					if reserve {
						reserveStack(false)
					}
					deepFrames(10)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}

// deepFrames returns from n+1 frames of 1 KiB down the stack.
//
//go:noinline
func deepFrames(n int) {
	var frame [1024]byte
	frame[n] = byte(n)
	if n > 0 {
		deepFrames(n - 1)
	}
	frameSink.Add(int64(frame[n]))
}
