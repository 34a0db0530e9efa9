package sipudp_test

import (
	"bytes"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// benchMessage is a small REGISTER as phones send them (about 400 bytes).
const benchMessage = "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK5d3e8a7f21;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:1000@127.0.0.1>;tag=8f2c1b7a\r\n" +
	"To: <sip:1000@127.0.0.1>\r\n" +
	"Call-ID: 3c26700d4f1c7a35@10.0.0.1\r\n" +
	"CSeq: 42 REGISTER\r\n" +
	"Contact: <sip:1000@10.0.0.1:5062;transport=udp>;expires=3600\r\n" +
	"User-Agent: Switchboard-Bench/1.0\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER, MESSAGE\r\n" +
	"Expires: 3600\r\n" +
	"Content-Length: 0\r\n\r\n"

// counter is the upper handler of the receive benchmarks: it counts
// each message as the Load's answer.
type counter struct{ ld *transporttest.Load }

func (c counter) HandleMessage(sip.Message) { c.ld.Answer() }

func (c counter) HandleFlowClosed(sip.Addr) {}

// window bounds the datagrams in flight, so that the socket buffer (which
// the kernel caps) does not overflow: the benchmark measures the receive
// path, not the kernel dropping what the sender outruns.
const window = 256

// benchReceive sends b.N datagrams from one goroutine through a real
// loopback socket to the handler of what server makes of the transport,
// and reports messages per second.
func benchReceive(b *testing.B, server func(tr *sipudp.Transport) transporttest.Server) {
	tr, err := sipudp.Listen(context.Background(), "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	ld := transporttest.NewLoad(b, tr.LocalAddr().AddrPort, nil)
	transporttest.Serve(b, server(tr), counter{ld})
	msg := []byte(benchMessage)
	branch := bytes.Index(msg, []byte("z9hG4bK")) + len("z9hG4bK")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for i := range b.N {
		ld.Wait(window - 1)
		newBranch(msg, branch, i)
		ld.Send(b, msg)
	}
	ld.Wait(0)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	n := float64(ld.Answered())
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	// CPU time of the whole process (sender, kernel work of both sockets,
	// receiver) per message: unlike msgs/s it hardly moves when other
	// processes load the machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/msg")
	b.ReportMetric(float64(ld.Lost()), "lost")
}

// newBranch writes i as the ten hex digits of msg's branch at: a new
// transaction each time. The Layer drops a datagram that repeats a
// request still queued as its retransmission, and the same REGISTER
// sent over and over lost some 255 of every run in BenchmarkReceiveLayer.
func newBranch(msg []byte, at, i int) {
	const hex = "0123456789abcdef"
	for k := at + 9; k >= at; k-- {
		msg[k] = hex[i&15]
		i >>= 4
	}
}

// cpuTime returns the user and system CPU time used by the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReceive measures socket → parse → handler with the transport
// alone: the read loop calls the handler directly.
func BenchmarkReceive(b *testing.B) {
	benchReceive(b, func(tr *sipudp.Transport) transporttest.Server { return tr })
}

// BenchmarkReceiveLayer measures socket → parse → Layer (per-source
// queue, worker, received/rport stamping) → handler: what the transaction
// layer will see.
func BenchmarkReceiveLayer(b *testing.B) {
	benchReceive(b, func(tr *sipudp.Transport) transporttest.Server {
		return transporttest.NewLayer(transport.Config{}, tr)
	})
}

// sendSetup opens a transport and a loopback peer that reads what it is
// sent until the benchmark ends, and returns the transport, a 400-byte
// request and the peer's address.
func sendSetup(b *testing.B) (*sipudp.Transport, sip.Message, sip.Addr) {
	tr, err := sipudp.Listen(context.Background(), "127.0.0.1:0", sipudp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	peer.SetReadBuffer(8 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, err := peer.Read(buf); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { peer.Close(); <-done })
	m, err := sip.ParseMessage([]byte(options("bench-send")))
	if err != nil {
		b.Fatal(err)
	}
	return tr, m, sip.Addr{Transport: sip.UDP, AddrPort: peer.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// BenchmarkSend measures Send of a 400-byte request to a loopback peer:
// serialisation and the write, with ICMP errors on where the system has
// them.
func BenchmarkSend(b *testing.B) {
	tr, m, dst := sendSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Send(ctx, m, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendParallel measures Send of a 400-byte request from four
// goroutines per GOMAXPROCS at once (eight on this 2-core machine) to a
// loopback peer: what the answers of several
// transaction handlers cost when they meet at the socket. Besides
// cpu-ns/msg (getrusage: the senders, the kernel and the peer's reader)
// it reports the voluntary context switches per message, the threads
// parked on the way.
func BenchmarkSendParallel(b *testing.B) {
	tr, m, dst := sendSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	cpu0, sw0 := cpuTime(), switches()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Send(ctx, m, dst); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu, sw := cpuTime()-cpu0, switches()-sw0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(sw)/float64(b.N), "vcsw/msg")
}

// BenchmarkAnswer measures what a request costs the SIP stack end to end
// on a real loopback socket: read, parse, the Layer's queue and worker,
// a server transaction, its handler's 401 and the sendto; the client's
// own writes and reads are in it too. Besides cpu-ns/req it reports the
// process's voluntary context switches and the sending system calls per
// request (benchRequests).
func BenchmarkAnswer(b *testing.B) {
	tr, err := sipudp.Listen(context.Background(), "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	l := transporttest.NewLayer(transport.Config{}, tr)
	tx := transaction.New(context.Background(), l, transaction.HandlerFunc(func(_ context.Context, st *transaction.ServerTx, req *sip.Request) {
		res := sip.NewResponse(req, 401, "")
		res.SetToTag("bench")
		_ = st.Respond(res)
	}), transaction.Config{})
	defer tx.Close()
	transporttest.Serve(b, l, transport.HandlerFuncs{Message: tx.HandleMessage, Waited: tx.HandleWaited})
	benchRequests(b, tr, transporttest.NewLoad(b, tr.LocalAddr().AddrPort, nil))
}

// benchRequests sends b.N REGISTERs, each a new transaction, through ld
// to the stack on tr, and reports per answer the process's CPU time and
// voluntary context switches (getrusage: the threads that parked and
// were woken) and the system calls that sent datagrams, and the answers
// lost.
func benchRequests(b *testing.B, tr *sipudp.Transport, ld *transporttest.Load) {
	msg := []byte(benchMessage)
	branch := bytes.Index(msg, []byte("z9hG4bK")) + len("z9hG4bK")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, sw0, w0 := cpuTime(), switches(), sipudp.Writes(tr)
	for i := range b.N {
		ld.Wait(window - 1)
		newBranch(msg, branch, i)
		ld.Send(b, msg)
	}
	ld.Wait(0)
	cpu, sw, w := cpuTime()-cpu0, switches()-sw0, sipudp.Writes(tr)-w0
	b.StopTimer()
	n := float64(ld.Answered())
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/req")
	b.ReportMetric(float64(sw)/n, "vcsw/req")
	b.ReportMetric(float64(w)/n, "writes/req")
	b.ReportMetric(float64(ld.Lost()), "lost")
}

// switches returns the process's voluntary context switches so far.
func switches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw
}

// BenchmarkRefuse is BenchmarkAnswer for a request that the transaction
// layer refuses as new work under overload, as the gateway's Admit does
// (a 503 with Retry-After, statelessly): what one refusal costs the SIP
// stack end to end on a real loopback socket, the client's writes and
// reads included. Beside BenchmarkAnswer (a request served by a server
// transaction) it says what shedding saves, and what is left to cut.
func BenchmarkRefuse(b *testing.B) {
	tr, err := sipudp.Listen(context.Background(), "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	l := transporttest.NewLayer(transport.Config{}, tr)
	tx := transaction.New(context.Background(), l, transaction.HandlerFunc(func(context.Context, *transaction.ServerTx, *sip.Request) {
		b.Error("a request was served")
	}), transaction.Config{
		QueueDelay: l.QueueDelay, QueueLen: l.QueueLen,
		Admit: func(req *sip.Request, _ time.Duration) (*sip.Response, bool) {
			res := sip.NewResponse(req, 503, "Overloaded")
			res.Set("Retry-After", "5")
			return res, false
		},
	})
	defer tx.Close()
	transporttest.Serve(b, l, transport.HandlerFuncs{Message: tx.HandleMessage, Waited: tx.HandleWaited})
	ld := transporttest.NewLoad(b, tr.LocalAddr().AddrPort, func(answer []byte) bool {
		return bytes.HasPrefix(answer, []byte("SIP/2.0 503 ")) && bytes.Contains(answer, []byte("\r\nRetry-After: 5\r\n"))
	})
	benchRequests(b, tr, ld)
	if r := ld.Rejected(); r > 0 {
		b.Errorf("%d answers were not a 503 with Retry-After", r)
	}
}
