package media

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// The load bench runs in two processes: TestLoadBench is the gateway (one
// Engine, N bridges) and re-executes the test binary as
// TestLoadBenchClients, which plays the N browsers (pion PeerConnections)
// and the N phones (UDP sockets). So the gateway's CPU and heap are
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
// gateway process only.
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

	e := newTestEngine(t, Options{InactivityTimeout: time.Hour, DrainTime: -1})
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
			b, err := lbSetup(e, cl, len(bridges), false)
			if err != nil {
				t.Logf("call %d: %v", len(bridges), err)
				break
			}
			bridges = append(bridges, b)
			gwPorts[uint16(b.pair.port)], gwPorts[uint16(b.pair.port+1)] = true, true
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
		// CPU with the calls up and no media: ICE keepalives, timers.
		idle0, it0 := cpuTime(), time.Now()
		time.Sleep(time.Second)
		idleCPU := float64((cpuTime() - idle0).Microseconds()) / float64(n) / time.Since(it0).Seconds()

		r, err := lbRun(cl, window, gwPorts)
		if err != nil {
			t.Fatal(err)
		}
		c := &r.clients
		row := fmt.Sprintf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d/%d | %d/%d | %d / %d | %.0f %% | %.0f | %.0f %% | %.0f |",
			n, us(base.P50), us(base.P99),
			us(c.WebP50-base.P50), us(c.WebP99-base.P99), us(c.PhP50-base.P50), us(c.PhP99-base.P99),
			c.SentWeb-c.GotWeb, c.SentWeb, c.SentPh-c.GotPh, c.SentPh,
			r.gwDrops, c.Drops,
			100*r.cpu.Seconds()/r.elapsed.Seconds(),
			float64(r.cpu.Microseconds())/float64(n)/r.elapsed.Seconds(),
			100*c.CPU.Seconds()/c.Elapsed.Seconds(),
			(heapPerCall+stackPerCall)/1024)
		t.Logf("N=%d set up in %v (added %d calls); gateway per call: %.1f goroutines, heap %.0f KiB, stacks %.0f KiB, idle CPU %.0f µs per second",
			n, setup.Round(time.Millisecond), added, goroutinesPerCall, heapPerCall/1024, stackPerCall/1024, idleCPU)
		t.Logf("N=%d host during the window: %.0f %% of its %d CPUs busy (all processes), %.1f %% stolen by the hypervisor",
			n, r.host.pct(r.host.busy), runtime.NumCPU(), r.host.pct(r.host.steal))
		t.Logf("N=%d →browser after the client's pion (as the old table): p50 %.0f µs, p99 %.0f µs; sends due %d per direction, made %d/%d; host UDP RcvbufErrors %d; gateway in the window: %d GC cycles, %.0f heap allocations per call-second (ICE and RTCP timers: none on the packet path)",
			n, us(c.TrackP50), us(c.TrackP99), c.Due, c.SentPh, c.SentWeb, c.Rcvbuf, r.gcs, float64(r.allocs)/float64(n)/r.elapsed.Seconds())
		rows = append(rows, row)
		t.Log(row)
	}
	if err := cl.call(lbCmd{Op: "close"}, nil); err != nil {
		t.Log(err)
	}
	lbPrintTable(t, "| calls | baseline p50 µs | baseline p99 µs | added p50 µs →browser | added p99 µs →browser | added p50 µs →phone | added p99 µs →phone | lost →browser | lost →phone | socket drops gateway / clients | gateway CPU (1 core = 100 %) | gateway CPU µs per call-second | clients CPU | gateway KiB per call (heap + stacks) |",
		"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", rows)
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
				b, err := lbSetup(e, cl, len(bridges), video)
				if err != nil {
					t.Fatalf("call %d (video %v): %v", len(bridges), video, err)
				}
				bridges = append(bridges, b)
				gwPorts[uint16(b.pair.port)], gwPorts[uint16(b.pair.port+1)] = true, true
				if video {
					gwPorts[uint16(b.vid.pair.port)], gwPorts[uint16(b.vid.pair.port+1)] = true, true
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
}

// lbReply is the clients' answer; Ev marks the events of a run ("start",
// "end") before its result.
type lbReply struct {
	Err   string `json:"err,omitempty"`
	Ev    string `json:"ev,omitempty"`
	Offer string `json:"offer,omitempty"`
	Phone int    `json:"phone,omitempty"`
	VPort int    `json:"vport,omitempty"` // the phone's video port
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

// lbSetup makes call i: the browser offers, the phone answers; with
// video, both offer and answer a VP8 stream beside the audio.
func lbSetup(e *Engine, cl *lbClients, i int, video bool) (*Bridge, error) {
	var r lbReply
	if err := cl.call(lbCmd{Op: "new", I: i, Video: video}, &r); err != nil {
		return nil, err
	}
	b, err := e.NewBridge(context.Background(), "load-"+strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Bridge, error) { _ = b.Close(); return nil, err }
	offer, err := b.WebOffer([]byte(r.Offer))
	if err != nil {
		return fail(err)
	}
	var gwv string
	if video {
		m := videoMLine.FindSubmatch(offer)
		if m == nil {
			return fail(fmt.Errorf("no m=video in the gateway's offer:\n%s", offer))
		}
		gwv = "127.0.0.1:" + string(m[1])
	}
	ans, err := b.RTPAnswer(lbPhoneSDP(r.Phone, r.VPort))
	if err != nil {
		return fail(err)
	}
	if err := cl.call(lbCmd{Op: "answer", I: i, SDP: string(ans), GW: b.RTPAddr().String(), GWV: gwv}, &r); err != nil {
		return fail(err)
	}
	return b, nil
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
	var calls []*lbClient
	defer func() {
		for _, c := range calls {
			c.close()
		}
	}()
	for {
		var m lbCmd
		if err := cmds.Decode(&m); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Error(err)
			}
			return
		}
		switch m.Op {
		case "new":
			c, err := newLBClient(m.Video)
			if err != nil {
				errReply(err)
				continue
			}
			calls = append(calls, c)
			r := lbReply{Offer: c.offer, Phone: c.phone.LocalAddr().(*net.UDPAddr).Port}
			if c.vphone != nil {
				r.VPort = c.vphone.LocalAddr().(*net.UDPAddr).Port
			}
			reply(r)
		case "reset": // end every call
			for _, c := range calls {
				c.close()
			}
			calls = nil
			reply(lbReply{})
		case "answer":
			if m.I >= len(calls) {
				errReply(fmt.Errorf("no call %d", m.I))
				continue
			}
			if err := calls[m.I].connect(m.SDP, m.GW, m.GWV); err != nil {
				errReply(err)
				continue
			}
			reply(lbReply{})
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
	pc        *webrtc.PeerConnection
	mux       ice.UDPMux
	sock      *stampConn
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

// newLBClient makes a browser, as light as pion allows (no interceptors:
// it sends no RTCP), on a socket of its own, and a phone socket.
func newLBClient(video bool) (*lbClient, error) {
	c := &lbClient{connected: make(chan struct{}), phPkt: make([]byte, 12+160), webPl: make([]byte, 160)}
	fail := func(err error) (*lbClient, error) { c.close(); return nil, err }
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	enableRxTimestamps(conn)
	c.sock = &stampConn{UDPConn: conn}
	logs := pionLoggers{context.Background(), testLogger()}
	c.mux = webrtc.NewICEUDPMux(logs.NewLogger("ice-mux"), c.sock)

	m := &webrtc.MediaEngine{}
	for _, cp := range browserCodecs() {
		if err := m.RegisterCodec(cp, webrtc.RTPCodecTypeAudio); err != nil {
			return fail(err)
		}
	}
	if video {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			PayloadType:        96,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return fail(err)
		}
	}
	var s webrtc.SettingEngine
	s.LoggerFactory = logs
	mediapeer.LoopbackOnly(&s)
	s.SetICEUDPMux(c.mux)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	if c.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fail(err)
	}
	c.track = &webTrack{}
	sender, err := c.pc.AddTrack(c.track)
	if err != nil {
		return fail(err)
	}
	go drainRTCP(sender.Read)
	if video {
		c.vtrack = &webTrack{kind: webrtc.RTPCodecTypeVideo}
		vs, err := c.pc.AddTrack(c.vtrack)
		if err != nil {
			return fail(err)
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
	if c.phone, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		return fail(err)
	}
	_ = c.phone.SetReadBuffer(1 << 20)
	enableRxTimestamps(c.phone)
	phoneReader := func(conn *net.UDPConn, to *lbRecv) {
		buf, oob := make([]byte, 1500), make([]byte, lbOOBSize)
		var h rtp.Header
		for {
			n, _, at, err := readStamped(conn, buf, oob)
			if err != nil {
				return
			}
			if hl, err := h.Unmarshal(buf[:n]); err == nil {
				to.note(buf[hl:n], at, at, false)
			}
		}
	}
	go phoneReader(c.phone, &c.toPh)
	if video {
		if c.vphone, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return fail(err)
		}
		_ = c.vphone.SetReadBuffer(1 << 20)
		enableRxTimestamps(c.vphone)
		go phoneReader(c.vphone, &c.toPhV)
	}

	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		return fail(err)
	}
	<-gathered
	c.offer = c.pc.LocalDescription().SDP
	return c, nil
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
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return err
	}
	select {
	case <-c.connected:
	case <-time.After(20 * time.Second):
		return errors.New("browser not connected")
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
	_, _ = c.track.writeRTP(&c.webHdr, c.webPl)
}

func (c *lbClient) close() {
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
func lbClientsRun(calls []*lbClient, window time.Duration, event func(lbReply)) lbReply {
	var measuring atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sentWeb, sentPh, sentV atomic.Int64
	ports := map[uint16]bool{}
	for i, c := range calls {
		ports[uint16(c.sock.LocalAddr().(*net.UDPAddr).Port)] = true
		ports[uint16(c.phone.LocalAddr().(*net.UDPAddr).Port)] = true
		period := 20 * time.Millisecond
		if c.vphone != nil {
			ports[uint16(c.vphone.LocalAddr().(*net.UDPAddr).Port)] = true
			period = 10 * time.Millisecond
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(len(calls)))
			tk := time.NewTicker(period)
			defer tk.Stop()
			for tick := 0; ; tick++ {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
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
					if tick%2 == 1 {
						continue
					}
				}
				c.sendPhone(m)
				c.sendWeb(m)
				if m {
					sentWeb.Add(1)
					sentPh.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	per := int(window/(20*time.Millisecond)) + 50
	for _, c := range calls {
		c.toWeb.reset(per)
		c.toPh.reset(per)
		c.toWebV.reset(3 * per)
		c.toPhV.reset(3 * per)
	}
	rcvbuf0, drops0 := udpRcvbufErrors(), udpSocketDrops(ports)
	cpu0, t0 := cpuTime(), time.Now()
	event(lbReply{Ev: "start"})
	measuring.Store(true)
	time.Sleep(window)
	measuring.Store(false)
	cpu1, t1 := cpuTime(), time.Now()
	event(lbReply{Ev: "end"})
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)

	r := lbReply{
		Rcvbuf: udpRcvbufErrors() - rcvbuf0, Drops: udpSocketDrops(ports) - drops0,
		CPU: cpu1 - cpu0, Elapsed: t1.Sub(t0),
		SentWeb: int(sentWeb.Load()), SentPh: int(sentPh.Load()),
		VSentWeb: int(sentV.Load()), VSentPh: int(sentV.Load()),
		Due: len(calls) * int(window/(20*time.Millisecond)),
	}
	var web, track, ph, vweb, vph []time.Duration
	for _, c := range calls {
		c.toWebV.collect(&r.VGotWeb, &vweb, nil)
		c.toPhV.collect(&r.VGotPh, &vph, nil)
		c.toWeb.collect(&r.GotWeb, &web, &track)
		c.toPh.collect(&r.GotPh, &ph, nil)
	}
	r.WebP50, r.WebP99 = percentiles(web)
	r.TrackP50, r.TrackP99 = percentiles(track)
	r.PhP50, r.PhP99 = percentiles(ph)
	r.VWebP50, r.VWebP99 = percentiles(vweb)
	r.VPhP50, r.VPhP99 = percentiles(vph)
	return r
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)]
}

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
	for i := range n {
		src, err := listen()
		if err != nil {
			return 0, 0, err
		}
		dst, err := listen()
		if err != nil {
			return 0, 0, err
		}
		to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(n))
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
			p := make([]byte, 12+160)
			var seq uint32
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				seq++
				p[0], p[1] = 0x80, 0
				binary.BigEndian.PutUint16(p[2:], uint16(seq))
				binary.BigEndian.PutUint32(p[4:], seq*160)
				stamp(p[12:], seq, measuring.Load())
				_, _ = src.WriteToUDPAddrPort(p, to)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	measuring.Store(true)
	time.Sleep(d)
	measuring.Store(false)
	close(stop)
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	p50, p99 = percentiles(lat)
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
// loopback UDP sockets bound to ports, from /proc/net/udp (Linux; -1
// elsewhere).
func udpSocketDrops(ports map[uint16]bool) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	var sum int64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 13 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		_, port, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil || !ports[uint16(p)] {
			continue
		}
		d, _ := strconv.ParseInt(f[12], 10, 64)
		sum += d
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
