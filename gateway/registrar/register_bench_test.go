package registrar_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// benchUsers is how many accounts BenchmarkRegisterDigest registers in
// turn, as scripts/bench-sip.sh does with sipp.
const benchUsers = 1000

// registerBench is the registrar of BenchmarkRegisterDigest: the gateway's
// wiring (a digest Server with a secret, the default throttle, MD5
// challenges) over a location store whose journal is on tmpfs when the
// machine has one, as in scripts/bench-sip.sh.
type registerBench struct {
	reg *registrar.Registrar
	srv *digest.Server
	loc *location.Memory
}

func newRegisterBench(b *testing.B) *registerBench {
	list := make([]accounts.Account, benchUsers)
	for i := range list {
		list[i] = accounts.FromPassword(fmt.Sprintf("u%d", i), domain, "pw-secret")
	}
	store, err := accounts.NewStore(list)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err = os.MkdirTemp("/dev/shm", "registrar-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	} else {
		b.Logf("no /dev/shm: the journal is on %s, and its syncs count", dir)
	}
	loc, err := location.Open(location.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { loc.Close() })
	srv := &digest.Server{Realm: domain, Secret: []byte("0123456789abcdef0123456789abcdef")}
	reg, err := registrar.New(registrar.Options{
		Identity: registrar.DomainIdentity(domain), Accounts: store, Location: loc, Digest: srv,
	})
	if err != nil {
		b.Fatal(err)
	}
	return &registerBench{reg: reg, srv: srv, loc: loc}
}

// pair returns the two REGISTERs of one registration of user n from a desk
// phone over UDP, as sipp's bench-register.xml sends them: without
// credentials, then with credentials for a fresh nonce. The nonce is the
// server's own (a challenge is stateless), so the pair can be made ahead.
func (rb *registerBench) pair(b *testing.B, n, call int) (first, second *sip.Request) {
	d := rb.datagrams(b, n, call)
	port := 5060 + n%benchUsers
	src := sip.Addr{Transport: sip.UDP, AddrPort: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
	msg := func(data []byte) *sip.Request {
		m, err := sip.ParseMessage(data)
		if err != nil {
			b.Fatal(err)
		}
		req := m.(*sip.Request)
		req.Source = src
		return req
	}
	return msg(d[0]), msg(d[1])
}

// datagrams returns the two REGISTERs of pair as they come off the wire.
func (rb *registerBench) datagrams(b *testing.B, n, call int) [2][]byte {
	user := fmt.Sprintf("u%d", n%benchUsers)
	port := 5060 + n%benchUsers
	msg := func(cseq int, auth string) []byte {
		return fmt.Appendf(nil, "REGISTER sip:%[2]s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 127.0.0.1:%[3]d;branch=z9hG4bK-%[4]d-%[5]d;rport\r\n"+
			"From: <sip:%[1]s@%[2]s>;tag=4242SIPpTag00%[4]d\r\n"+
			"To: <sip:%[1]s@%[2]s>\r\n"+
			"Call-ID: %[4]d-4242@127.0.0.1\r\n"+
			"CSeq: %[5]d REGISTER\r\n"+
			"Contact: <sip:%[1]s@127.0.0.1:%[3]d;transport=UDP>\r\n"+
			"%[6]s"+
			"Expires: 300\r\n"+
			"Max-Forwards: 70\r\n"+
			"Content-Length: 0\r\n\r\n", user, domain, port, call, cseq, auth)
	}
	ch, err := rb.srv.Challenge("MD5", false)
	if err != nil {
		b.Fatal(err)
	}
	client := &digest.Client{Username: user, Password: "pw-secret"}
	cred, err := client.Authorize(ch, sip.MethodRegister, "sip:"+domain)
	if err != nil {
		b.Fatal(err)
	}
	return [2][]byte{msg(1, ""), msg(2, "Authorization: "+cred.String()+"\r\n")}
}

// BenchmarkRegisterDigest measures one registration of a desk phone over
// UDP with digest, as scripts/bench-sip.sh offers them: a REGISTER
// without credentials answered 401, then one with credentials answered
// 200, a different user each time (u0..u999 in turn, each a refresh of
// its binding under a new Call-ID, journaled). The registrar, the digest
// server, the throttle and the location store with its journal all run,
// and each response is serialised as the transport would. Parsing and the
// client's hashing are done a batch at a time with the timer stopped.
// Besides the wall time per registration it reports the process's CPU
// time per registration (cpu-ns/op), which other jobs on the machine
// disturb less.
// "parallel" runs 64 registrations at once, as the transaction layer does
// under load, so that concurrent journal records share a write; its
// requests are all made before the timer starts (use -benchtime Nx).
func BenchmarkRegisterDigest(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		rb := newRegisterBench(b)
		const batch = 512
		var reqs [][2]*sip.Request
		var buf []byte
		call := 0
		cpu := &cpuMeter{b: b}
		b.ReportAllocs()
		b.ResetTimer()
		cpu.start()
		for i := 0; i < b.N; i++ {
			if len(reqs) == 0 {
				b.StopTimer()
				cpu.stop()
				for range min(batch, b.N-i) {
					call++
					f, s := rb.pair(b, call, call)
					reqs = append(reqs, [2]*sip.Request{f, s})
				}
				cpu.start()
				b.StartTimer()
			}
			p := reqs[0]
			reqs = reqs[1:]
			var err error
			if buf, err = rb.serve(p, buf); err != nil {
				b.Fatal(err)
			}
		}
		cpu.stop()
		cpu.report()
	})
	b.Run("parallel", func(b *testing.B) {
		rb := newRegisterBench(b)
		// Every request is made before the timer starts: RunParallel
		// hands out iterations unevenly, so the goroutines share one list.
		all := make([][2]*sip.Request, b.N)
		for i := range all {
			f, s := rb.pair(b, i+1, i+1)
			all[i] = [2]*sip.Request{f, s}
		}
		var next atomic.Int64
		b.SetParallelism(32)
		cpu := &cpuMeter{b: b}
		b.ReportAllocs()
		b.ResetTimer()
		cpu.start()
		defer func() { cpu.stop(); cpu.report() }()
		b.RunParallel(func(pb *testing.PB) {
			var buf []byte
			var err error
			for pb.Next() {
				if buf, err = rb.serve(all[next.Add(1)-1], buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRegisterWire is BenchmarkRegisterDigest/serial from the
// datagrams on: each REGISTER is parsed as the UDP transport parses it,
// then served and its response written. Every datagram is made before the
// timer starts.
//
// For the instructions per registration, which a busy machine does not
// change, run it under valgrind --tool=callgrind (with
// GODEBUG=asyncpreemptoff=1 and GOMAXPROCS=1) at two -benchtime Nx, with
// and without -wire.setup-only, which makes the datagrams and serves
// none: the slope of the first pair less the slope of the second.
// (--toggle-collect on the serving loop is not reliable with Go: stack
// moves end its collection at random.)
func BenchmarkRegisterWire(b *testing.B) {
	rb := newRegisterBench(b)
	all := make([][2][]byte, b.N)
	for i := range all {
		all[i] = rb.datagrams(b, i+1, i+1)
	}
	if *wireSetupOnly {
		b.ReportMetric(0, "cpu-ns/op")
		return
	}
	cpu := &cpuMeter{b: b}
	b.ReportAllocs()
	b.ResetTimer()
	cpu.start()
	if err := rb.serveWires(all); err != nil {
		b.Fatal(err)
	}
	cpu.stop()
	cpu.report()
}

var wireSetupOnly = flag.Bool("wire.setup-only", false, "BenchmarkRegisterWire makes its datagrams only")

// serveWires serves the registrations of all, from their datagrams.
//
//go:noinline
func (rb *registerBench) serveWires(all [][2][]byte) error {
	var p sip.Parser
	var buf []byte
	for i, d := range all {
		port := 5060 + (i+1)%benchUsers
		src := sip.Addr{Transport: sip.UDP, AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))}
		var reqs [2]*sip.Request
		for k := range d {
			m, err := p.ParseDatagram(d[k])
			if err != nil {
				return err
			}
			reqs[k] = m.(*sip.Request)
			reqs[k].Source = src
		}
		var err error
		if buf, err = rb.serve(reqs, buf); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkRegisterStack measures the stack a registration needs: 500
// goroutines each serve one (both REGISTERs) under a 1 KiB frame, which
// stands for the transaction layer's worker and the gateway's ServeSIP
// above ServeRegister in the server, and wait; the stack memory they hold
// then, per goroutine, is reported as stack-B/goroutine. Go starts a
// goroutine on 2 KiB and doubles the stack, copying it, each time a call
// would pass its end: a path that needs a little over 8 KiB costs every
// new handler goroutine (and every one whose stack the collector shrank)
// a copy of 8 KiB more, and holds 16 KiB.
func BenchmarkRegisterStack(b *testing.B) {
	rb := newRegisterBench(b)
	const n = 500
	pairs := make([][2]*sip.Request, n)
	for i := range pairs {
		f, s := rb.pair(b, i+1, i+1)
		pairs[i] = [2]*sip.Request{f, s}
	}
	var perGoroutine float64
	for b.Loop() {
		runtime.GC()
		before := stackBytes()
		release := make(chan struct{})
		var served, ended sync.WaitGroup
		served.Add(n)
		for i := range n {
			ended.Go(func() {
				underFrame(func() {
					if _, err := rb.serve(pairs[i], nil); err != nil {
						b.Error(err)
					}
				})
				served.Done()
				<-release
			})
		}
		served.Wait()
		perGoroutine = float64(stackBytes()-before) / n
		close(release)
		ended.Wait()
	}
	b.ReportMetric(perGoroutine, "stack-B/goroutine")
}

// underFrame calls f below a frame of 1 KiB.
//
//go:noinline
func underFrame(f func()) byte {
	var pad [1024]byte
	pad[len(pad)-1] = 1
	f()
	return pad[0] + pad[len(pad)-1]
}

// stackBytes is the memory of the goroutines' stacks.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// cpuTime is the CPU time the process has used, user and system: on a
// machine other jobs keep busy it tells the cost of an operation better
// than the wall clock does.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter reports the process's CPU time per operation as cpu-ns/op,
// the time with the timer stopped left out.
type cpuMeter struct {
	b       *testing.B
	total   time.Duration
	started time.Duration
}

func (m *cpuMeter) start() { m.started = cpuTime(m.b) }
func (m *cpuMeter) stop()  { m.total += cpuTime(m.b) - m.started }
func (m *cpuMeter) report() {
	m.b.ReportMetric(float64(m.total.Nanoseconds())/float64(m.b.N), "cpu-ns/op")
}

// serve runs one registration: the 401, then the 200.
func (rb *registerBench) serve(p [2]*sip.Request, buf []byte) ([]byte, error) {
	res := rb.reg.ServeRegister(ctx, p[0])
	if res.StatusCode != 401 {
		return buf, fmt.Errorf("REGISTER without credentials: %d %s", res.StatusCode, res.Reason)
	}
	buf = res.AppendTo(buf[:0])
	res = rb.reg.ServeRegister(ctx, p[1])
	if res.StatusCode != 200 {
		return buf, fmt.Errorf("REGISTER with credentials: %d %s", res.StatusCode, res.Reason)
	}
	return res.AppendTo(buf[:0]), nil
}
