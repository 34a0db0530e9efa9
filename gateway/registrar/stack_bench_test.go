package registrar_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// BenchmarkRegisterUDP is BenchmarkRegisterWire through the whole SIP
// stack on a real loopback socket: the UDP read loop, the transport
// layer's queue and workers, the transaction layer (a server transaction
// per REGISTER, the 200's kept for Timer J and ended early once the
// table is full, as under sipp load), the registrar, and a sendto per
// response. A client socket sends both REGISTERs of each registration at
// once (their Call-ID keeps them in order) with at most 64 registrations
// unanswered, and counts the answers.
//
// Besides ns/op it reports the process's CPU time per registration
// (cpu-ns/op, getrusage; the client's writes and reads are in it), its
// voluntary context switches, and the answers that never came within a
// second (lost; on loopback with this window, none). Under callgrind
// (see BenchmarkRegisterWire) the slope between two -benchtime counts,
// less BenchmarkRegisterWire's -wire.setup-only slope, is the user-space
// instructions of a registration end to end.
func BenchmarkRegisterUDP(b *testing.B) {
	rb := newRegisterBench(b)
	all := make([][2][]byte, b.N)
	for i := range all {
		all[i] = rb.datagrams(b, i+1, i+1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr, err := sipudp.Listen(ctx, "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	tl := transporttest.NewLayer(transport.Config{}, tr)
	txl := transaction.New(ctx, tl, transaction.HandlerFunc(func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
		_ = tx.Respond(rb.reg.ServeRegister(ctx, req))
	}), transaction.Config{QueueDelay: tl.QueueDelay, QueueLen: tl.QueueLen})
	defer txl.Close()
	transporttest.Serve(b, tl, transport.HandlerFuncs{Message: txl.HandleMessage, Waited: txl.HandleWaited})
	// "SIP/2.0 200" or "SIP/2.0 401": anything else (a 503) would mean
	// the bench measures shedding, not serving.
	ld := transporttest.NewLoad(b, tr.LocalAddr().AddrPort, func(answer []byte) bool {
		return len(answer) > 12 && (string(answer[8:11]) == "200" || string(answer[8:11]) == "401")
	})
	const window = 2 * 64
	cpu := &cpuMeter{b: b}
	sw0 := voluntarySwitches()
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	for _, d := range all {
		ld.Wait(window - 2)
		ld.Send(b, d[0])
		ld.Send(b, d[1])
	}
	ld.Wait(0)
	cpu.stop()
	b.StopTimer()
	cpu.report()
	b.ReportMetric(float64(voluntarySwitches()-sw0)/float64(b.N), "vcsw/op")
	b.ReportMetric(float64(ld.Lost()), "lost")
	if n := ld.Rejected(); n > 0 {
		b.Errorf("%d answers were neither 401 nor 200", n)
	}
}

// voluntarySwitches is the process's voluntary context switches so far:
// the threads that parked and were woken.
func voluntarySwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw
}
