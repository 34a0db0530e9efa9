package media

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/internal/udpstat"
)

// The load bench runs in two processes: TestLoadBench is the gateway (one
// Engine, N bridges) and re-executes the test binary as
// TestLoadBenchClients, which plays the N browsers (mediapeer's lean
// browsers, or pion PeerConnections) and the N phones (UDP sockets). So the gateway's CPU and heap are
// measured alone, and the clients do not share the gateway's Go scheduler.
// The two talk JSON lines over two pipes (fd 3 and 4 of the child).
const (
	lbEnv     = "SWITCHBOARD_LOADBENCH"
	lbRoleEnv = "SWITCHBOARD_LOADBENCH_ROLE"
)

// TestLoadBench runs N concurrent bridged calls through one Engine on
// loopback (PCMU 160-byte payloads every 20 ms in both directions) and
// prints, per N: the latency the gateway adds in each direction (p50, p99),
// loss in both directions with the socket drops behind it, the gateway's
// CPU and memory per call. It is skipped unless SWITCHBOARD_LOADBENCH=1:
//
//	SWITCHBOARD_LOADBENCH=1 go test -run TestLoadBench -v -timeout 20m ./media/
//
// SWITCHBOARD_LOADBENCH_N (default "50,100,200,300,500") and
// SWITCHBOARD_LOADBENCH_SECS (default 5) change the levels and the
// measured window. Calls are added level by level and kept, so each level
// measures all calls set up so far. -cpuprofile and -memprofile profile the
// gateway process only. SWITCHBOARD_LOADBENCH_CLIENT=pion plays the
// browsers with pion PeerConnections instead of lean browsers, and
// SWITCHBOARD_LOADBENCH_CLIENT_CPUPROFILE profiles the clients' process.
// SWITCHBOARD_LOADBENCH_NOFASTPATH=1 turns the gateway's SRTP fast path off;
// SWITCHBOARD_LOADBENCH_COALESCE sets Options.Coalesce ("-1ns": none).
// SWITCHBOARD_LOADBENCH_IDLE and SWITCHBOARD_LOADBENCH_IDLE_CPUPROFILE
// measure and profile the idle CPU, SWITCHBOARD_LOADBENCH_CPUPROFILE
// profiles the windows (below).
func TestLoadBench(t *testing.T) {
	if os.Getenv(lbEnv) != "1" {
		t.Skip("set SWITCHBOARD_LOADBENCH=1 to run the media load bench")
	}
	if os.Getenv(lbRoleEnv) != "" {
		t.Skip("the clients' process")
	}
	levels := []int{50, 100, 200, 300, 500}
	if s := os.Getenv("SWITCHBOARD_LOADBENCH_N"); s != "" {
		levels = levels[:0]
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				t.Fatalf("SWITCHBOARD_LOADBENCH_N: %q", s)
			}
			levels = append(levels, n)
		}
	}
	window := 5 * time.Second
	if s := os.Getenv("SWITCHBOARD_LOADBENCH_SECS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("SWITCHBOARD_LOADBENCH_SECS: %q", s)
		}
		window = time.Duration(n) * time.Second
	}

	// SWITCHBOARD_LOADBENCH_IDLE sets the window of the idle CPU (calls
	// up, no media; default 1s), SWITCHBOARD_LOADBENCH_IDLE_CPUPROFILE
	// profiles the gateway in it (a file per level, its name followed by
	// ".N"; not with -cpuprofile, which holds the one profiler).
	idleWindow := time.Second
	if s := os.Getenv("SWITCHBOARD_LOADBENCH_IDLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SWITCHBOARD_LOADBENCH_IDLE: %q", s)
		}
		idleWindow = d
	}
	idleProfile := os.Getenv("SWITCHBOARD_LOADBENCH_IDLE_CPUPROFILE")
	// SWITCHBOARD_LOADBENCH_CPUPROFILE profiles the gateway in each
	// level's window only (a file per level, as above), where
	// -cpuprofile takes the calls' set-up too.
	windowProfile := os.Getenv("SWITCHBOARD_LOADBENCH_CPUPROFILE")

	kind, err := lbClientKind()
	if err != nil {
		t.Fatal(err)
	}
	// Each call holds a browser and a phone socket in the clients'
	// process, an RTP and an RTCP socket in the gateway's; Go raised the
	// soft limit to the hard one, which must hold them.
	lbNofile(t, 2*slices.Max(levels)+200)
	if os.Getenv("SWITCHBOARD_LOADBENCH_VIDEO") == "1" {
		kind = lbPion // the lean browser offers audio only
	}
	t.Logf("clients: %s browsers (%s)", kind, lbClientEnv)

	// SWITCHBOARD_LOADBENCH_NOFASTPATH=1 keeps the audio on pion's
	// pipeline, for a before/after in one tree.
	noFast := os.Getenv("SWITCHBOARD_LOADBENCH_NOFASTPATH") == "1"
	t.Logf("gateway: SRTP fast path %v", !noFast)
	// SWITCHBOARD_LOADBENCH_COALESCE sets Options.Coalesce (a duration,
	// "-1ns" for none).
	var coalesce time.Duration
	if s := os.Getenv("SWITCHBOARD_LOADBENCH_COALESCE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SWITCHBOARD_LOADBENCH_COALESCE: %v", err)
		}
		coalesce = d
	}
	e := newTestEngine(t, Options{InactivityTimeout: time.Hour, DrainTime: -1, NoFastPath: noFast, Coalesce: coalesce})
	t.Logf("gateway: coalesce %v", e.opts.Coalesce)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, stack0, goroutines0 := ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()

	cl := startLBClients(t)
	var bridges []*Bridge
	t.Cleanup(func() {
		for _, b := range bridges {
			_ = b.Close()
		}
	})
	// The gateway's sockets, for their drop counters.
	gwPorts := map[uint16]bool{}
	if a, ok := e.mux.(interface{ LocalAddr() net.Addr }); ok {
		gwPorts[uint16(a.LocalAddr().(*net.UDPAddr).Port)] = true
	}

	if os.Getenv("SWITCHBOARD_LOADBENCH_VIDEO") == "1" {
		lbVideoLevels(t, e, cl, levels, window, gwPorts)
		return
	}

	var rows []string
	for _, n := range levels {
		setupStart, added := time.Now(), n-len(bridges)
		for len(bridges) < n {
			bs, err := lbSetupBatch(e, cl, len(bridges), min(lbBatch, n-len(bridges)), false)
			if err != nil {
				t.Logf("calls from %d: %v", len(bridges), err)
				break
			}
			bridges = append(bridges, bs...)
			for _, b := range bs {
				gwPorts[uint16(b.pair.port)], gwPorts[uint16(b.pair.port+1)] = true, true
			}
		}
		if len(bridges) < n {
			t.Logf("stopped at %d calls", len(bridges))
			break
		}
		setup := time.Since(setupStart)

		var base lbReply
		if err := cl.call(lbCmd{Op: "baseline", N: n, Window: 3 * time.Second}, &base); err != nil {
			t.Fatal(err)
		}

		runtime.GC()
		runtime.ReadMemStats(&ms)
		heapPerCall := float64(int64(ms.HeapInuse)-int64(heap0)) / float64(n)
		stackPerCall := float64(int64(ms.StackInuse)-int64(stack0)) / float64(n)
		goroutinesPerCall := float64(runtime.NumGoroutine()-goroutines0) / float64(n)
		idleCPU := lbIdle(t, n, idleWindow, idleProfile)

		bs0 := e.Stats().Batch
		// For a profiler or perf stat to attach to the window (pid).
		t.Logf("N=%d window of %v starts (gateway pid %d)", n, window, os.Getpid())
		stopProfile := lbProfile(t, windowProfile, n)
		r, err := lbRun(cl, window, gwPorts)
		stopProfile()
		if err != nil {
			t.Fatal(err)
		}
		lbLogBatch(t, n, bs0, e.Stats().Batch)
		c := &r.clients
		// The load generator's cost: its process CPU per packet it
		// handled in the window (sent or received, browsers and phones).
		clientPkts := c.SentWeb + c.SentPh + c.GotWeb + c.GotPh
		clientPerPkt := float64(c.CPU.Nanoseconds()) / 1000 / float64(max(clientPkts, 1))
		row := fmt.Sprintf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d/%d | %d/%d | %d / %d | %.0f %% | %.0f | %.0f %% | %.1f | %.0f |",
			n, us(base.P50), us(base.P99),
			us(c.WebP50-base.P50), us(c.WebP99-base.P99), us(c.PhP50-base.P50), us(c.PhP99-base.P99),
			c.SentWeb-c.GotWeb, c.SentWeb, c.SentPh-c.GotPh, c.SentPh,
			r.gwDrops, c.Drops,
			100*r.cpu.Seconds()/r.elapsed.Seconds(),
			float64(r.cpu.Microseconds())/float64(n)/r.elapsed.Seconds(),
			100*c.CPU.Seconds()/c.Elapsed.Seconds(), clientPerPkt,
			(heapPerCall+stackPerCall)/1024)
		if c.Gen {
			row = lbGenRow(n, base, r)
		}
		t.Logf("N=%d set up in %v (added %d calls); gateway per call: %.1f goroutines, heap %.0f KiB, stacks %.0f KiB, idle CPU %.0f µs per second",
			n, setup.Round(time.Millisecond), added, goroutinesPerCall, heapPerCall/1024, stackPerCall/1024, idleCPU)
		t.Logf("N=%d host during the window: %.0f %% of its %d CPUs busy (all processes), %.1f %% stolen by the hypervisor",
			n, r.host.pct(r.host.busy), runtime.NumCPU(), r.host.pct(r.host.steal))
		if !c.Gen {
			t.Logf("N=%d →browser after the client's stack (pion's, or the lean browser's decryption): p50 %.0f µs, p99 %.0f µs; sends due %d per direction, made %d/%d; host UDP RcvbufErrors %d; gateway in the window: %d GC cycles, %.0f heap allocations per call-second (ICE and RTCP timers: none on the packet path)",
				n, us(c.TrackP50), us(c.TrackP99), c.Due, c.SentPh, c.SentWeb, c.Rcvbuf, r.gcs, float64(r.allocs)/float64(n)/r.elapsed.Seconds())
			t.Logf("N=%d clients' process (%s browsers): %.0f KiB of heap and stacks per call, %.1f goroutines per call; %.1f µs of CPU per packet; lean browsers so far: %d SRTCP received, %d datagrams refused (%d SRTP that did not decrypt)",
				n, kind, float64(c.Mem)/1024/float64(n), float64(c.Goroutines)/float64(n), clientPerPkt, c.LeanRTCP, c.LeanDropped, c.LeanUndecryptable)
		}
		if c.Gen {
			t.Logf("N=%d generator: %d sends planned each way, %d skipped, %d late (> 2 ms; the latest %v), %d refused; %d datagrams for no call, %d for the wrong one; %d sendmmsg and %d recvmmsg in the window",
				n, c.Planned, c.Skipped, c.Late, c.MaxLate.Round(time.Microsecond), c.SendErrors, c.Stray, c.Misrouted, c.SendCalls, c.RecvCalls)
		}
		rows = append(rows, row)
		t.Log(row)
	}
	if err := cl.call(lbCmd{Op: "close"}, nil); err != nil {
		t.Log(err)
	}
	if kind == lbLean {
		lbPrintTable(t, lbGenHeader, lbGenAlign, rows)
		return
	}
	lbPrintTable(t, "| calls | baseline p50 µs | baseline p99 µs | added p50 µs →browser | added p99 µs →browser | added p50 µs →phone | added p99 µs →phone | lost →browser | lost →phone | socket drops gateway / clients | gateway CPU (1 core = 100 %) | gateway CPU µs per call-second | clients CPU | clients CPU µs per packet | gateway KiB per call (heap + stacks) |",
		"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", rows)
}

// lbIdle returns the gateway's CPU per call-second with n calls up and no
// media (ICE checks both ways, RTCP reports, timers) over window,
// profiled into profile+".N" unless profile is empty.
func lbIdle(t *testing.T, n int, window time.Duration, profile string) float64 {
	defer lbProfile(t, profile, n)()
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(window)
	return float64((cpuTime() - c0).Microseconds()) / float64(n) / time.Since(t0).Seconds()
}

// lbProfile starts the CPU profiler into name+".N", unless name is
// empty, and returns what stops it.
func lbProfile(t *testing.T, name string, n int) func() {
	if name == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", name, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		t.Fatalf("profile %s: %v (-cpuprofile holds the profiler)", name, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// lbLogBatch logs the engine's batching between two of its counts (the
// warm-up second and the tail with the window): datagrams per wake-up and
// per system call.
func lbLogBatch(t *testing.T, n int, a, b BatchStats) {
	per := func(x, y uint64) float64 { return float64(x) / float64(max(y, 1)) }
	w, d := b.Wakeups-a.Wakeups, b.RTPDatagrams-a.RTPDatagrams
	ice := b.ICEDatagrams - a.ICEDatagrams
	t.Logf("N=%d gateway batching: poller %d wake-ups (%d coalescing pauses), %.2f RTP datagrams per wake-up, %.2f per recvmmsg; ICE socket %.2f datagrams per recvmmsg, %.2f per sendmmsg, %d pauses of its own read loop; RTP and ICE datagrams per poller wake-up %.2f; %d handed to pion's read loop, %d holds",
		n, w, b.Pauses-a.Pauses, per(d, w), per(d, b.RTPReads-a.RTPReads),
		per(ice, b.ICEReads-a.ICEReads), per(b.ICESent-a.ICESent, b.ICESends-a.ICESends), b.ICEPauses-a.ICEPauses,
		per(d+ice, w), b.PionQueued-a.PionQueued, b.PionHolds-a.PionHolds)
}

// lbNofile fails t unless the process may open need files, raising the
// soft limit when it is lower.
func lbNofile(t *testing.T, need int) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("RLIMIT_NOFILE: %v", err)
	}
	if l.Cur >= uint64(need) {
		return
	}
	l.Cur = min(uint64(need), l.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur < uint64(need) {
		t.Fatalf("RLIMIT_NOFILE: %d open files needed, the hard limit is %d (%v): raise it (ulimit -Hn)", need, l.Max, err)
	}
}

// lbPrintTable logs the markdown table and prints it on stdout.
func lbPrintTable(t *testing.T, header, align string, rows []string) {
	var b strings.Builder
	b.WriteString("\n" + header + "\n" + align + "\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// lbVideoLevels is TestLoadBench with SWITCHBOARD_LOADBENCH_VIDEO=1: at each
// level, N audio-only calls and then N calls with audio and video (VP8,
// about 1 Mbit/s each way), each set set up afresh and ended after its
// window, so that the two rows of a level are taken minutes apart at most
// and their ratio is what to read on a busy host.
func lbVideoLevels(t *testing.T, e *Engine, cl *lbClients, levels []int, window time.Duration, muxPorts map[uint16]bool) {
	var bridges []*Bridge
	end := func() {
		for _, b := range bridges {
			_ = b.Close()
		}
		bridges = nil
		if err := cl.call(lbCmd{Op: "reset"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	defer end()
	var rows []string
	for _, n := range levels {
		var base lbReply
		if err := cl.call(lbCmd{Op: "baseline", N: n, Window: 3 * time.Second}, &base); err != nil {
			t.Fatal(err)
		}
		var perCall [2]float64
		for k, video := range []bool{false, true} {
			end()
			gwPorts := maps.Clone(muxPorts)
			for len(bridges) < n {
				bs, err := lbSetupBatch(e, cl, len(bridges), min(lbBatch, n-len(bridges)), video)
				if err != nil {
					t.Fatalf("calls from %d (video %v): %v", len(bridges), video, err)
				}
				bridges = append(bridges, bs...)
				for _, b := range bs {
					gwPorts[uint16(b.pair.port)], gwPorts[uint16(b.pair.port+1)] = true, true
					if video {
						gwPorts[uint16(b.vid.pair.port)], gwPorts[uint16(b.vid.pair.port+1)] = true, true
					}
				}
			}
			runtime.GC()
			r, err := lbRun(cl, window, gwPorts)
			if err != nil {
				t.Fatal(err)
			}
			c := &r.clients
			perCall[k] = float64(r.cpu.Microseconds()) / float64(n) / r.elapsed.Seconds()
			kind, vlat, vlost := "audio", "– | –", "–"
			if video {
				kind = "audio + video"
				vlat = fmt.Sprintf("%.0f / %.0f | %.0f / %.0f",
					us(c.VWebP50-base.P50), us(c.VWebP99-base.P99), us(c.VPhP50-base.P50), us(c.VPhP99-base.P99))
				vlost = fmt.Sprintf("%d/%d, %d/%d", c.VSentWeb-c.VGotWeb, c.VSentWeb, c.VSentPh-c.VGotPh, c.VSentPh)
			}
			row := fmt.Sprintf("| %d | %s | %.0f / %.0f | %.0f / %.0f | %s | %d/%d, %d/%d | %s | %d / %d | %.0f %% | %.0f | %.0f %% | %.0f %% |",
				n, kind,
				us(c.WebP50-base.P50), us(c.WebP99-base.P99), us(c.PhP50-base.P50), us(c.PhP99-base.P99),
				vlat,
				c.SentWeb-c.GotWeb, c.SentWeb, c.SentPh-c.GotPh, c.SentPh,
				vlost, r.gwDrops, c.Drops,
				100*r.cpu.Seconds()/r.elapsed.Seconds(), perCall[k],
				100*c.CPU.Seconds()/c.Elapsed.Seconds(), r.host.pct(r.host.busy))
			t.Logf("N=%d %s: baseline p50/p99 %.0f/%.0f µs; audio sends due %d per direction, made %d/%d; video sent %d per direction; host UDP RcvbufErrors %d; %.1f %% stolen",
				n, kind, us(base.P50), us(base.P99), c.Due, c.SentPh, c.SentWeb, c.VSentPh, c.Rcvbuf, r.host.pct(r.host.steal))
			t.Log(row)
			rows = append(rows, row)
		}
		ratio := fmt.Sprintf("| %d | **video / audio** |%s **%.2f** | | |", n, strings.Repeat(" |", 8), perCall[1]/perCall[0])
		t.Log(ratio)
		rows = append(rows, ratio)
	}
	lbPrintTable(t, "| calls | media | audio added p50 / p99 µs →browser | audio →phone | video added p50 / p99 µs →browser | video →phone | audio lost →browser, →phone | video lost →browser, →phone | socket drops gateway / clients | gateway CPU (1 core = 100 %) | gateway CPU µs per call-second | clients CPU | host busy (all processes, 2 CPUs = 100 %) |",
		"|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", rows)
}

// lbCmd is a command of the gateway to the clients' process.
type lbCmd struct {
	Op     string        `json:"op"` // new, answer, baseline, run, close
	I      int           `json:"i,omitempty"`
	SDP    string        `json:"sdp,omitempty"`
	GW     string        `json:"gw,omitempty"`
	N      int           `json:"n,omitempty"`
	Window time.Duration `json:"window,omitempty"`
	// Video: the call carries video too (new, answer: the gateway's video
	// address in GWV).
	Video bool   `json:"video,omitempty"`
	GWV   string `json:"gwv,omitempty"`
	// a batch: new makes N calls from I on; answer connects the N calls
	// from I on, with the answers and addresses in SDPs, GWs and GWVs
	SDPs []string `json:"sdps,omitempty"`
	GWs  []string `json:"gws,omitempty"`
	GWVs []string `json:"gwvs,omitempty"`
}

// lbReply is the clients' answer; Ev marks the events of a run ("start",
// "end") before its result.
type lbReply struct {
	Err string `json:"err,omitempty"`
	Ev  string `json:"ev,omitempty"`
	// new: per call, the browser's offer, the phone's port and its video
	// port (0: no video)
	Offers []string `json:"offers,omitempty"`
	Phones []int    `json:"phones,omitempty"`
	VPorts []int    `json:"vports,omitempty"`
	// Client is the clients' kind of browser: lean or pion.
	Client string `json:"client,omitempty"`
	// baseline
	P50, P99 time.Duration `json:",omitempty"`
	// run: →browser at the browser's socket (Web) and after its pion
	// (Track); →phone at the phone's socket (Ph).
	WebP50, WebP99, TrackP50, TrackP99, PhP50, PhP99 time.Duration `json:",omitempty"`
	SentWeb, GotWeb, SentPh, GotPh, Due              int           `json:",omitempty"`
	CPU, Elapsed                                     time.Duration `json:",omitempty"`
	// the same for video, at the sockets
	VWebP50, VWebP99, VPhP50, VPhP99   time.Duration `json:",omitempty"`
	VSentWeb, VGotWeb, VSentPh, VGotPh int           `json:",omitempty"`
	Rcvbuf, Drops                      int64         `json:",omitempty"`
	// the clients' process after the run: heap and stacks in use, and
	// its goroutines
	Mem        uint64 `json:",omitempty"`
	Goroutines int    `json:",omitempty"`
	// the lean browsers' counters since they were made: SRTCP received,
	// datagrams refused (unknown source, bad STUN, SRTP that does not
	// decrypt)
	LeanRTCP, LeanDropped, LeanUndecryptable int64 `json:",omitempty"`
	// the lean generator's (mediapeer.LoadGen) own counts of the window:
	// sends planned (each way), skipped (its loop a period behind), made
	// late, refused; datagrams for no call or the wrong one; the system
	// calls that sent and received; the latest send
	Gen                                    bool          `json:",omitempty"`
	Planned, Skipped, Late, SendErrors     int64         `json:",omitempty"`
	Stray, Misrouted, SendCalls, RecvCalls int64         `json:",omitempty"`
	MaxLate                                time.Duration `json:",omitempty"`
}

// lbClients is the gateway's end of the clients' process.
type lbClients struct {
	cmd *exec.Cmd
	enc *json.Encoder
	dec *json.Decoder
	out bytes.Buffer
}

func startLBClients(t *testing.T) *lbClients {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// SWITCHBOARD_LOADBENCH_CLIENT_BIN runs the clients from another
	// build of this test binary (the same bench, another tree's
	// generator), so that two gateways can be compared against one
	// generator.
	if b := os.Getenv("SWITCHBOARD_LOADBENCH_CLIENT_BIN"); b != "" {
		exe = b
	}
	timeout := 20 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d)
	}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &lbClients{}
	args := []string{exe, "-test.run=^TestLoadBenchClients$", "-test.v", "-test.timeout=" + timeout.String()}
	// The clients run at a lower priority (nice 10 unless
	// SWITCHBOARD_LOADBENCH_CLIENT_NICE says otherwise, 0 for none), so
	// that the gateway's wake-ups do not wait behind the load generator's
	// time slices: in production the gateway does not share its cores with
	// its peers.
	nice := "10"
	if v := os.Getenv("SWITCHBOARD_LOADBENCH_CLIENT_NICE"); v != "" {
		nice = v
	}
	if path, err := exec.LookPath("nice"); err == nil && nice != "0" {
		args = append([]string{path, "-n", nice}, args...)
	}
	c.cmd = exec.Command(args[0], args[1:]...)
	// GOMAXPROCS set for the test is the gateway's; the clients have all
	// the CPUs.
	c.cmd.Env = append(os.Environ(), lbRoleEnv+"=clients", "GOMAXPROCS="+strconv.Itoa(runtime.NumCPU()))
	c.cmd.ExtraFiles = []*os.File{cmdR, repW} // fd 3, 4
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cmdR.Close()
	_ = repW.Close()
	c.enc, c.dec = json.NewEncoder(cmdW), json.NewDecoder(bufio.NewReader(repR))
	t.Cleanup(func() {
		_ = cmdW.Close() // the child ends on EOF
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("clients' process: %v\n%s", err, c.out.String())
			} else if t.Failed() {
				t.Logf("clients' process:\n%s", c.out.String())
			}
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
			t.Logf("clients' process killed\n%s", c.out.String())
		}
		_ = repR.Close()
	})
	return c
}

func (c *lbClients) send(m lbCmd) error { return c.enc.Encode(m) }

func (c *lbClients) recv(r *lbReply) error {
	*r = lbReply{}
	if err := c.dec.Decode(r); err != nil {
		return fmt.Errorf("clients' process: %w", err)
	}
	if r.Err != "" {
		return errors.New(r.Err)
	}
	return nil
}

func (c *lbClients) call(m lbCmd, r *lbReply) error {
	if err := c.send(m); err != nil {
		return err
	}
	if r == nil {
		r = &lbReply{}
	}
	return c.recv(r)
}

// lbSetupBatch makes calls i to i+n-1: the browsers offer, the phones
// answer. The gateway's side of each call is set up on a few goroutines
// and the clients connect theirs in parallel too, so that 1000 calls do
// not take minutes. With video, both offer and answer a VP8 stream beside
// the audio. On an error no bridge of the batch is left open.
func lbSetupBatch(e *Engine, cl *lbClients, i, n int, video bool) ([]*Bridge, error) {
	var r lbReply
	if err := cl.call(lbCmd{Op: "new", I: i, N: n, Video: video}, &r); err != nil {
		return nil, err
	}
	if len(r.Offers) != n || len(r.Phones) != n || len(r.VPorts) != n {
		return nil, fmt.Errorf("the clients made %d offers for %d calls", len(r.Offers), n)
	}
	bridges := make([]*Bridge, n)
	cmd := lbCmd{Op: "answer", I: i, N: n, SDPs: make([]string, n), GWs: make([]string, n), GWVs: make([]string, n)}
	errs := make([]error, n)
	lbParallel(n, 8, func(j int) {
		b, err := e.NewBridge(context.Background(), "load-"+strconv.Itoa(i+j))
		if err != nil {
			errs[j] = err
			return
		}
		bridges[j] = b
		offer, err := b.WebOffer([]byte(r.Offers[j]))
		if err != nil {
			errs[j] = err
			return
		}
		if video {
			m := videoMLine.FindSubmatch(offer)
			if m == nil {
				errs[j] = fmt.Errorf("no m=video in the gateway's offer:\n%s", offer)
				return
			}
			cmd.GWVs[j] = "127.0.0.1:" + string(m[1])
		}
		ans, err := b.RTPAnswer(lbPhoneSDP(r.Phones[j], r.VPorts[j]))
		if err != nil {
			errs[j] = err
			return
		}
		cmd.SDPs[j], cmd.GWs[j] = string(ans), b.RTPAddr().String()
	})
	err := errors.Join(errs...)
	if err == nil {
		err = cl.call(cmd, &r)
	}
	if err != nil {
		for _, b := range bridges {
			if b != nil {
				_ = b.Close()
			}
		}
		return nil, err
	}
	return bridges, nil
}

// lbBatch is how many calls lbSetupBatch sets up at once.
const lbBatch = 50

// lbParallel runs f(0) … f(n-1) on at most workers goroutines and waits.
func lbParallel(n, workers int, f func(j int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for j := int(next.Add(1)) - 1; j < n; j = int(next.Add(1)) - 1 {
				f(j)
			}
		})
	}
	wg.Wait()
}

// lbPhoneSDP is the phone's answer; vport 0: no video.
func lbPhoneSDP(port, vport int) []byte {
	s := "v=0\r\no=phone 4242 1 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
	if vport != 0 {
		s += "m=video " + strconv.Itoa(vport) + " RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
	}
	return []byte(s)
}

type lbResult struct {
	clients      lbReply
	cpu, elapsed time.Duration
	gwDrops      int64
	gcs          uint32 // gateway GC cycles in the window
	allocs       uint64 // gateway heap allocations in the window
	host         hostTimes
}

// hostTimes are the host's CPU times from /proc/stat (all CPUs, in ticks):
// busy (every process, ours and others'), steal (taken by the hypervisor)
// and their total.
type hostTimes struct{ busy, steal, total int64 }

func hostCPU() hostTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostTimes{}
	}
	var h hostTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		h.total += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			h.steal += n
			h.busy += n
		default:
			h.busy += n
		}
	}
	return h
}

func (h hostTimes) sub(o hostTimes) hostTimes {
	return hostTimes{h.busy - o.busy, h.steal - o.steal, h.total - o.total}
}

// pct is the share of the host's CPUs, 100 % being all of them.
func (h hostTimes) pct(v int64) float64 {
	if h.total == 0 {
		return 0
	}
	return 100 * float64(v) / float64(h.total)
}

// lbRun has the clients send for a warm-up second, the window and a tail;
// the gateway's CPU is taken between the clients' start and end events.
func lbRun(cl *lbClients, window time.Duration, gwPorts map[uint16]bool) (lbResult, error) {
	var r lbResult
	if err := cl.send(lbCmd{Op: "run", Window: window}); err != nil {
		return r, err
	}
	var ev lbReply
	if err := cl.recv(&ev); err != nil || ev.Ev != "start" {
		return r, fmt.Errorf("run start: %v %q", err, ev.Ev)
	}
	cpu0, t0, drops0, host0 := cpuTime(), time.Now(), udpSocketDrops(gwPorts), hostCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gc0, alloc0 := ms.NumGC, ms.Mallocs
	if err := cl.recv(&ev); err != nil || ev.Ev != "end" {
		return r, fmt.Errorf("run end: %v %q", err, ev.Ev)
	}
	r.cpu, r.elapsed = cpuTime()-cpu0, time.Since(t0)
	r.host = hostCPU().sub(host0)
	runtime.ReadMemStats(&ms)
	r.gcs, r.allocs = ms.NumGC-gc0, ms.Mallocs-alloc0
	if err := cl.recv(&r.clients); err != nil {
		return r, err
	}
	r.gwDrops = udpSocketDrops(gwPorts) - drops0
	return r, nil
}

// TestLoadBenchClients is the clients' process of TestLoadBench; it does
// nothing unless started by it.
func TestLoadBenchClients(t *testing.T) {
	if os.Getenv(lbEnv) != "1" || os.Getenv(lbRoleEnv) != "clients" {
		t.Skip("started by TestLoadBench")
	}
	cmds := json.NewDecoder(bufio.NewReader(os.NewFile(3, "commands")))
	w := os.NewFile(4, "replies")
	enc := json.NewEncoder(w)
	reply := func(r lbReply) {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	errReply := func(err error) { reply(lbReply{Err: err.Error()}) }
	kind, err := lbClientKind()
	if err != nil {
		t.Fatal(err)
	}
	// SWITCHBOARD_LOADBENCH_CLIENT_CPUPROFILE: a CPU profile of the
	// clients' process, for the load generator's own cost.
	if path := os.Getenv("SWITCHBOARD_LOADBENCH_CLIENT_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	if kind == lbLean && os.Getenv("SWITCHBOARD_LOADBENCH_VIDEO") != "1" {
		lbGenClients(t, cmds, reply, errReply, &cert)
		return
	}
	var mu sync.Mutex // calls, against the keepalive loop; only this goroutine changes it
	var calls []*lbClient
	// Consent (RFC 7675) on every lean call, every 2 s, as a browser
	// does: the gateway must hear from its browsers between runs, when
	// no media flows (pion's browsers have their ICE agent's keepalives).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(2 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			mu.Lock()
			cs := slices.Clone(calls)
			mu.Unlock()
			for _, c := range cs {
				if c.lean != nil {
					_ = c.lean.Keepalive()
				}
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		for _, c := range calls {
			c.close()
		}
	}()
	for {
		var m lbCmd
		if !lbNextCmd(t, cmds, &m) {
			return
		}
		switch m.Op {
		case "new":
			if m.I != len(calls) || m.N <= 0 {
				errReply(fmt.Errorf("new: calls %d+%d with %d made", m.I, m.N, len(calls)))
				continue
			}
			made := make([]*lbClient, m.N)
			errs := make([]error, m.N)
			lbParallel(m.N, 4, func(j int) { made[j], errs[j] = newLBClient(kind, m.Video, &cert) })
			r := lbReply{Offers: make([]string, m.N), Phones: make([]int, m.N), VPorts: make([]int, m.N)}
			for j, c := range made {
				if c == nil {
					continue
				}
				r.Offers[j], r.Phones[j] = c.offer, c.phone.LocalAddr().(*net.UDPAddr).Port
				if c.vphone != nil {
					r.VPorts[j] = c.vphone.LocalAddr().(*net.UDPAddr).Port
				}
			}
			if err := errors.Join(errs...); err != nil {
				for _, c := range made {
					if c != nil {
						c.close()
					}
				}
				errReply(err)
				continue
			}
			mu.Lock()
			calls = append(calls, made...)
			mu.Unlock()
			reply(r)
		case "reset": // end every call
			mu.Lock()
			for _, c := range calls {
				c.close()
			}
			calls = nil
			mu.Unlock()
			reply(lbReply{})
		case "answer":
			if m.I < 0 || m.N <= 0 || m.I+m.N > len(calls) || len(m.SDPs) != m.N || len(m.GWs) != m.N || len(m.GWVs) != m.N {
				errReply(fmt.Errorf("answer: calls %d+%d of %d", m.I, m.N, len(calls)))
				continue
			}
			errs := make([]error, m.N)
			lbParallel(m.N, 32, func(j int) {
				if err := calls[m.I+j].connect(m.SDPs[j], m.GWs[j], m.GWVs[j]); err != nil {
					errs[j] = fmt.Errorf("call %d: %w", m.I+j, err)
				}
			})
			if err := errors.Join(errs...); err != nil {
				errReply(err)
				continue
			}
			reply(lbReply{Client: kind})
		case "baseline":
			p50, p99, err := lbBaseline(m.N, m.Window)
			if err != nil {
				errReply(err)
				continue
			}
			reply(lbReply{P50: p50, P99: p99})
		case "run":
			reply(lbClientsRun(calls, m.Window, reply))
		case "close":
			reply(lbReply{})
			return
		default:
			errReply(fmt.Errorf("unknown op %q", m.Op))
		}
	}
}

// Payload layout: [0:8] send time (ns since lbEpoch on the wall clock,
// which the kernel's receive timestamps use), [8:12] sequence, [12] 1 when
// sent inside the measured window.
var (
	lbEpoch     = time.Now()
	lbWallEpoch = lbEpoch.UnixNano()
)

func lbNow() time.Duration { return time.Duration(time.Now().UnixNano() - lbWallEpoch) }

func stamp(p []byte, seq uint32, measured bool) {
	binary.BigEndian.PutUint32(p[8:], seq)
	if measured {
		p[12] = 1
	} else {
		p[12] = 0
	}
	binary.BigEndian.PutUint64(p[0:], uint64(lbNow()))
}

// lbRecv collects what one receiver saw in the measured window.
type lbRecv struct {
	mu     sync.Mutex
	got    int
	lat    []time.Duration // at the socket
	late   []time.Duration // after the client's pion (browser only)
	primed atomic.Bool     // anything arrived, measured or not
}

// note records payload p, read from the socket at sock (negative when not
// known) and, for the browser (late), handed over by its pion at now.
func (r *lbRecv) note(p []byte, sock, now time.Duration, late bool) {
	r.primed.Store(true)
	if len(p) < 13 || p[12] != 1 {
		return
	}
	sent := time.Duration(binary.BigEndian.Uint64(p))
	r.mu.Lock()
	r.got++
	if sock >= 0 {
		r.lat = append(r.lat, sock-sent)
	}
	if late {
		r.late = append(r.late, now-sent)
	}
	r.mu.Unlock()
}

// collect adds what r received to got, its latencies at the socket to lat
// and, when late is not nil, those after the client's pion to late.
func (r *lbRecv) collect(got *int, lat, late *[]time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*got += r.got
	*lat = append(*lat, r.lat...)
	if late != nil {
		*late = append(*late, r.late...)
	}
}

func (r *lbRecv) reset(n int) {
	r.mu.Lock()
	r.got = 0
	if cap(r.lat) < n {
		r.lat = make([]time.Duration, 0, n)
		r.late = make([]time.Duration, 0, n)
	}
	r.lat, r.late = r.lat[:0], r.late[:0]
	r.mu.Unlock()
}

// stampConn is the browser's UDP socket: it notes when each SRTP packet
// was read from the socket, by sequence number (in the clear in SRTP), so
// that the latency towards the browser can be taken at its socket, like the
// phone's, rather than after its pion stack.
type stampConn struct {
	*net.UDPConn
	oob [lbOOBSize]byte // for the mux's one reader
	// seq<<48 | arrival (ns since lbEpoch), audio and video apart (their
	// sequence numbers overlap), told apart by the payload type
	ring, vring [1024]atomic.Uint64
}

const lbTimeMask = 1<<48 - 1

func (c *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, a, at, err := readStamped(c.UDPConn, b, c.oob[:])
	if err == nil && n >= 12 && b[0]&0xc0 == 0x80 && !isRTCP(b[:n]) {
		seq := binary.BigEndian.Uint16(b[2:])
		ring := &c.ring
		if b[1]&0x7f >= 96 {
			ring = &c.vring
		}
		ring[seq&1023].Store(uint64(seq)<<48 | uint64(at)&lbTimeMask)
	}
	return n, a, err
}

func (c *stampConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(a), nil
}

func (c *stampConn) WriteToAddrPort(b []byte, a netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, a)
}

// readAt returns when the packet with seq was read from the socket.
func (c *stampConn) readAt(seq uint16, video bool) (time.Duration, bool) {
	ring := &c.ring
	if video {
		ring = &c.vring
	}
	v := ring[seq&1023].Load()
	return time.Duration(v & lbTimeMask), uint16(v>>48) == seq
}

// lbClient is one call's browser and phone, in the clients' process.
type lbClient struct {
	// the browser: pion's PeerConnection on its mux and socket, or
	// mediapeer's lean browser on its socket
	pc        *webrtc.PeerConnection
	mux       ice.UDPMux
	sock      *stampConn
	lean      *mediapeer.LeanBrowser
	leanConn  *net.UDPConn
	track     *webTrack
	phone     *net.UDPConn
	gw        netip.AddrPort
	offer     string
	connected chan struct{}
	toWeb     lbRecv
	toPh      lbRecv

	// senders' state: one goroutine at a time
	seqPh, seqWeb uint32
	phPkt         []byte
	webPl         []byte
	webHdr        rtp.Header

	// video, when the call has it: the browser's track, the phone's video
	// socket and the gateway's video address
	vtrack          *webTrack
	vphone          *net.UDPConn
	gwV             netip.AddrPort
	toWebV, toPhV   lbRecv
	seqPhV, seqWebV uint32
	vphPkt, vwebPl  []byte
	vwebHdr         rtp.Header
}

// The load generator's browsers: mediapeer's lean browser (ICE, DTLS and
// SRTP from pion's parts, one read loop per socket) unless
// SWITCHBOARD_LOADBENCH_CLIENT=pion asks for pion PeerConnections, the
// browsers of the earlier tables. Video calls always use pion's: the lean
// browser offers audio only.
const (
	lbClientEnv = "SWITCHBOARD_LOADBENCH_CLIENT"
	lbLean      = "lean"
	lbPion      = "pion"
)

func lbClientKind() (string, error) {
	switch k := os.Getenv(lbClientEnv); k {
	case "", lbLean:
		return lbLean, nil
	case lbPion:
		return lbPion, nil
	default:
		return "", fmt.Errorf("%s=%q: want lean or pion", lbClientEnv, k)
	}
}

// newLBClient makes a call's phone socket and its browser (lean, or pion
// with video), each on a socket of its own. cert is the lean browsers'
// certificate, shared.
func newLBClient(kind string, video bool, cert *tls.Certificate) (*lbClient, error) {
	c := &lbClient{connected: make(chan struct{}), phPkt: make([]byte, 12+160), webPl: make([]byte, 160)}
	fail := func(err error) (*lbClient, error) { c.close(); return nil, err }
	var err error
	if c.phone, err = lbListen(); err != nil {
		return fail(err)
	}
	go lbPhoneReader(c.phone, &c.toPh)
	if video {
		if c.vphone, err = lbListen(); err != nil {
			return fail(err)
		}
		go lbPhoneReader(c.vphone, &c.toPhV)
	}
	if kind == lbLean && !video {
		if err := c.newLean(cert); err != nil {
			return fail(err)
		}
		return c, nil
	}
	if err := c.newPion(video); err != nil {
		return fail(err)
	}
	return c, nil
}

// lbListen opens a loopback UDP socket with receive timestamps and a 1 MiB
// receive buffer.
func lbListen() (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	enableRxTimestamps(conn)
	return conn, nil
}

// lbPhoneReader notes what a phone socket receives until it is closed.
func lbPhoneReader(conn *net.UDPConn, to *lbRecv) {
	var h rtp.Header
	lbReadLoop(conn, func(b []byte, _ netip.AddrPort, at time.Duration) {
		if hl, err := h.Unmarshal(b); err == nil {
			to.note(b[hl:], at, at, false)
		}
	})
}

// lbReadLoop hands f each datagram read from conn, with the time it
// reached the socket, until conn is closed.
func lbReadLoop(conn *net.UDPConn, f func(b []byte, from netip.AddrPort, at time.Duration)) {
	buf, oob := make([]byte, 1500), make([]byte, lbOOBSize)
	for {
		n, from, at, err := readStamped(conn, buf, oob)
		if err != nil {
			return
		}
		f(buf[:n], from, at)
	}
}

// newLean makes the lean browser and its read loop, which takes the
// kernel's receive time of each datagram and, for SRTP, the time after
// decryption (the "after the client's stack" latency).
func (c *lbClient) newLean(cert *tls.Certificate) error {
	conn, err := lbListen()
	if err != nil {
		return err
	}
	if c.lean, err = mediapeer.NewLeanBrowser(conn, cert); err != nil {
		_ = conn.Close()
		return err
	}
	c.leanConn, c.offer = conn, c.lean.Offer()
	var h rtp.Header
	go lbReadLoop(conn, func(b []byte, from netip.AddrPort, at time.Duration) {
		if p, ok, _ := c.lean.Handle(b, from, &h); ok {
			c.toWeb.note(p, at, lbNow(), true)
		}
	})
	return nil
}

// browserPort is the port of the browser's socket.
func (c *lbClient) browserPort() uint16 {
	if c.lean != nil {
		return c.lean.LocalAddr().Port()
	}
	return uint16(c.sock.LocalAddr().(*net.UDPAddr).Port)
}

// newPion makes a pion browser, as light as pion allows (no interceptors:
// it sends no RTCP).
func (c *lbClient) newPion(video bool) error {
	conn, err := lbListen()
	if err != nil {
		return err
	}
	c.sock = &stampConn{UDPConn: conn}
	logs := pionLoggers{context.Background(), testLogger()}
	c.mux = webrtc.NewICEUDPMux(logs.NewLogger("ice-mux"), c.sock)

	m := &webrtc.MediaEngine{}
	for _, cp := range browserCodecs() {
		if err := m.RegisterCodec(cp, webrtc.RTPCodecTypeAudio); err != nil {
			return err
		}
	}
	if video {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			PayloadType:        96,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	var s webrtc.SettingEngine
	s.LoggerFactory = logs
	mediapeer.LoopbackOnly(&s)
	s.SetICEUDPMux(c.mux)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	if c.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return err
	}
	c.track = &webTrack{}
	sender, err := c.pc.AddTrack(c.track)
	if err != nil {
		return err
	}
	go drainRTCP(sender.Read)
	if video {
		c.vtrack = &webTrack{kind: webrtc.RTPCodecTypeVideo}
		vs, err := c.pc.AddTrack(c.vtrack)
		if err != nil {
			return err
		}
		go drainRTCP(vs.Read)
		c.vphPkt, c.vwebPl = make([]byte, 12+videoPayload), make([]byte, videoPayload)
	}
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		go drainRTCP(recv.Read)
		isVideo := tr.Kind() == webrtc.RTPCodecTypeVideo
		to := &c.toWeb
		if isVideo {
			to = &c.toWebV
		}
		buf := make([]byte, 1500)
		var h rtp.Header
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			now := lbNow()
			hl, err := h.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			sock, ok := c.sock.readAt(h.SequenceNumber, isVideo)
			if !ok {
				sock = -1
			}
			to.note(buf[hl:n], sock, now, true)
		}
	})
	var once sync.Once
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(c.connected) })
		}
	})
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		return err
	}
	<-gathered
	c.offer = c.pc.LocalDescription().SDP
	return nil
}

func drainRTCP(read func([]byte) (int, interceptor.Attributes, error)) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := read(buf); err != nil {
			return
		}
	}
}

// connect applies the gateway's answer and waits until media flows both
// ways (ICE and DTLS up on both sides, RTP latched).
func (c *lbClient) connect(answer, gw, gwv string) error {
	var err error
	if c.gw, err = netip.ParseAddrPort(gw); err != nil {
		return err
	}
	if c.vphone != nil {
		if c.gwV, err = netip.ParseAddrPort(gwv); err != nil {
			return fmt.Errorf("the gateway's video address: %w", err)
		}
	}
	if c.lean != nil {
		if err := c.lean.SetAnswer(answer); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.lean.Connect(ctx); err != nil {
			return err
		}
	} else {
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			return err
		}
		select {
		case <-c.connected:
		case <-time.After(20 * time.Second):
			return errors.New("browser not connected")
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !c.toWeb.primed.Load() || !c.toPh.primed.Load() ||
		c.vphone != nil && (!c.toWebV.primed.Load() || !c.toPhV.primed.Load()) {
		if time.Now().After(deadline) {
			return errors.New("no media through the call")
		}
		c.sendPhone(false)
		c.sendWeb(false)
		if c.vphone != nil {
			c.sendVideo(false)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// sendVideo sends one 1200-byte VP8 packet each way (the phone's, then
// the browser's).
func (c *lbClient) sendVideo(measured bool) {
	c.seqPhV++
	p := c.vphPkt
	p[0], p[1] = 0x80, 96
	binary.BigEndian.PutUint16(p[2:], uint16(c.seqPhV))
	binary.BigEndian.PutUint32(p[4:], c.seqPhV/3*3000) // about 3 packets a frame
	binary.BigEndian.PutUint32(p[8:], 0xdef)
	stamp(p[12:], c.seqPhV, measured)
	_, _ = c.vphone.WriteToUDPAddrPort(p, c.gwV)

	c.seqWebV++
	c.vwebHdr = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(c.seqWebV), Timestamp: c.seqWebV / 3 * 3000}
	stamp(c.vwebPl, c.seqWebV, measured)
	_, _ = c.vtrack.writeRTP(&c.vwebHdr, c.vwebPl)
}

// sendPhone and sendWeb send one packet each, allocating nothing; the send
// time is stamped last.
func (c *lbClient) sendPhone(measured bool) {
	c.seqPh++
	p := c.phPkt
	p[0], p[1] = 0x80, 0 // V=2, PCMU
	binary.BigEndian.PutUint16(p[2:], uint16(c.seqPh))
	binary.BigEndian.PutUint32(p[4:], c.seqPh*160)
	binary.BigEndian.PutUint32(p[8:], 0xabc)
	stamp(p[12:], c.seqPh, measured)
	_, _ = c.phone.WriteToUDPAddrPort(p, c.gw)
}

func (c *lbClient) sendWeb(measured bool) {
	c.seqWeb++
	c.webHdr = rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(c.seqWeb), Timestamp: c.seqWeb * 160}
	stamp(c.webPl, c.seqWeb, measured)
	if c.lean != nil {
		_ = c.lean.WriteRTP(&c.webHdr, c.webPl)
		return
	}
	_, _ = c.track.writeRTP(&c.webHdr, c.webPl)
}

func (c *lbClient) close() {
	if c.lean != nil {
		_ = c.lean.Close()
	}
	if c.pc != nil {
		_ = c.pc.Close()
	}
	if c.mux != nil {
		_ = c.mux.Close()
	}
	if c.phone != nil {
		_ = c.phone.Close()
	}
	if c.vphone != nil {
		_ = c.vphone.Close()
	}
}

// Video calls send, each way, a 1200-byte VP8 packet every 10 ms and, every
// lbBurstEvery ticks, lbBurst more at once (a key frame): about 1 Mbit/s.
const (
	lbBurstEvery = 200
	lbBurst      = 9
)

// lbClientsRun sends 20 ms packets both ways on every call, staggered over
// the period, and the video of the calls that have it: 1 s of warm-up,
// the measured window (between the "start" and "end" events), then 500 ms
// for the last packets to arrive.
// lbWindow is the measured window of a clients' run: the CPU the process
// used and the time it took between the "start" and "end" events, with
// measure on in between.
func lbWindow(window time.Duration, event func(lbReply), measure func(bool)) (cpu, elapsed time.Duration) {
	cpu0, t0 := cpuTime(), time.Now()
	event(lbReply{Ev: "start"})
	measure(true)
	time.Sleep(window)
	measure(false)
	cpu1, t1 := cpuTime(), time.Now()
	event(lbReply{Ev: "end"})
	return cpu1 - cpu0, t1.Sub(t0)
}

func lbClientsRun(calls []*lbClient, window time.Duration, event func(lbReply)) lbReply {
	var measuring atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sentWeb, sentPh, sentV atomic.Int64
	ports := map[uint16]bool{}
	period := 20 * time.Millisecond
	for _, c := range calls {
		ports[c.browserPort()] = true
		ports[uint16(c.phone.LocalAddr().(*net.UDPAddr).Port)] = true
		if c.vphone != nil {
			ports[uint16(c.vphone.LocalAddr().(*net.UDPAddr).Port)] = true
			period = 10 * time.Millisecond
		}
	}
	lbPace(len(calls), period, stop, &wg, func(i, tick int) {
		c := calls[i]
		m := measuring.Load()
		if c.vphone != nil {
			k := 1
			if tick%lbBurstEvery == lbBurstEvery-1 {
				k += lbBurst
			}
			for range k {
				c.sendVideo(m)
			}
			if m {
				sentV.Add(int64(k))
			}
		}
		if period < 20*time.Millisecond && tick%2 == 1 {
			return // audio every other 10 ms tick
		}
		c.sendPhone(m)
		c.sendWeb(m)
		if m {
			sentWeb.Add(1)
			sentPh.Add(1)
		}
	})
	time.Sleep(time.Second)
	per := int(window/(20*time.Millisecond)) + 50
	for _, c := range calls {
		c.toWeb.reset(per)
		c.toPh.reset(per)
		c.toWebV.reset(3 * per)
		c.toPhV.reset(3 * per)
	}
	rcvbuf0, drops0 := udpRcvbufErrors(), udpSocketDrops(ports)
	cpu, elapsed := lbWindow(window, event, measuring.Store)
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)

	r := lbReply{
		Rcvbuf: udpRcvbufErrors() - rcvbuf0, Drops: udpSocketDrops(ports) - drops0,
		CPU: cpu, Elapsed: elapsed,
		SentWeb: int(sentWeb.Load()), SentPh: int(sentPh.Load()),
		VSentWeb: int(sentV.Load()), VSentPh: int(sentV.Load()),
		Due: len(calls) * int(window/(20*time.Millisecond)),
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.Mem, r.Goroutines = ms.HeapInuse+ms.StackInuse, runtime.NumGoroutine()
	var web, track, ph, vweb, vph []time.Duration
	for _, c := range calls {
		if c.lean != nil {
			st := c.lean.Stats()
			r.LeanRTCP += st.RTCP
			r.LeanDropped += st.Dropped
			r.LeanUndecryptable += st.Undecryptable
		}
		c.toWebV.collect(&r.VGotWeb, &vweb, nil)
		c.toPhV.collect(&r.VGotPh, &vph, nil)
		c.toWeb.collect(&r.GotWeb, &web, &track)
		c.toPh.collect(&r.GotPh, &ph, nil)
	}
	r.WebP50, r.WebP99 = mediapeer.Percentiles(web)
	r.TrackP50, r.TrackP99 = mediapeer.Percentiles(track)
	r.PhP50, r.PhP99 = mediapeer.Percentiles(ph)
	r.VWebP50, r.VWebP99 = mediapeer.Percentiles(vweb)
	r.VPhP50, r.VPhP99 = mediapeer.Percentiles(vph)
	return r
}

// lbPace calls send(i, tick) for each of n calls once per period, call i
// at offset i·period/n in it (the calls are staggered), from one pacing
// loop per CPU rather than a timer per call: loop k serves the calls
// i ≡ k (mod loops) in the order of their offsets, and at each wake-up
// sends every call that is due (or due within lbPaceSlack, which is below
// a timer's precision). A loop that has fallen a period behind skips the
// ticks it missed, as a time.Ticker does, so that an overloaded generator
// shows as sends made short of those due rather than as bursts. The loops
// end when stop is closed; wg counts them.
func lbPace(n int, period time.Duration, stop <-chan struct{}, wg *sync.WaitGroup, send func(i, tick int)) {
	loops := min(runtime.NumCPU(), n)
	t0 := time.Now()
	offset := func(i int) time.Duration { return time.Duration(i) * period / time.Duration(n) }
	for k := range loops {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for tick := 0; ; tick++ {
				// At the start of a round, skip the rounds already past.
				if late := time.Since(t0.Add(offset(k) + time.Duration(tick)*period)); late > period {
					tick += int(late / period)
				}
				for i := k; i < n; i += loops {
					due := t0.Add(offset(i) + time.Duration(tick)*period)
					if d := time.Until(due); d > lbPaceSlack {
						timer.Reset(d)
						select {
						case <-stop:
							return
						case <-timer.C:
						}
					}
					send(i, tick)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
}

// lbPaceSlack: a call due this soon is sent at once.
const lbPaceSlack = 50 * time.Microsecond

// lbBaseline measures the one-way path without the gateway: n phone
// sockets sending 20 ms PCMU packets to n plain UDP readers, latency taken
// at the reader's socket.
func lbBaseline(n int, d time.Duration) (p50, p99 time.Duration, err error) {
	var mu sync.Mutex
	var lat []time.Duration
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	listen := func() (*net.UDPConn, error) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var measuring atomic.Bool
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	type pair struct {
		src *net.UDPConn
		to  netip.AddrPort
		p   []byte
		seq uint32
	}
	pairs := make([]pair, n)
	for i := range n {
		src, err := listen()
		if err != nil {
			return 0, 0, err
		}
		dst, err := listen()
		if err != nil {
			return 0, 0, err
		}
		pairs[i] = pair{src: src, to: dst.LocalAddr().(*net.UDPAddr).AddrPort(), p: make([]byte, 12+160)}
		enableRxTimestamps(dst)
		go func() {
			buf, oob := make([]byte, 1500), make([]byte, lbOOBSize)
			for {
				k, _, at, err := readStamped(dst, buf, oob)
				if err != nil {
					return
				}
				if k >= 12+13 && buf[12+12] == 1 {
					dl := at - time.Duration(binary.BigEndian.Uint64(buf[12:]))
					mu.Lock()
					lat = append(lat, dl)
					mu.Unlock()
				}
			}
		}()
	}
	// The same pacing as the calls' (lbPace), from the same loops.
	lbPace(n, 20*time.Millisecond, stop, &wg, func(i, _ int) {
		pr := &pairs[i]
		pr.seq++
		p := pr.p
		p[0], p[1] = 0x80, 0
		binary.BigEndian.PutUint16(p[2:], uint16(pr.seq))
		binary.BigEndian.PutUint32(p[4:], pr.seq*160)
		stamp(p[12:], pr.seq, measuring.Load())
		_, _ = pr.src.WriteToUDPAddrPort(p, pr.to)
	})
	time.Sleep(500 * time.Millisecond)
	measuring.Store(true)
	time.Sleep(d)
	measuring.Store(false)
	close(stop)
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	p50, p99 = mediapeer.Percentiles(lat)
	return p50, p99, nil
}

// udpRcvbufErrors reads the host's UDP receive-buffer drops from
// /proc/net/snmp (Linux; -1 elsewhere).
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}

// udpSocketDrops sums the drop counters (receive buffer full) of the
// UDP sockets bound to ports (Linux; -1 elsewhere).
func udpSocketDrops(ports map[uint16]bool) int64 {
	all, err := udpstat.Sockets(false)
	if err != nil {
		return -1
	}
	var sum int64
	for _, s := range all {
		if ports[s.Local.Port()] {
			sum += int64(s.Drops)
		}
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
