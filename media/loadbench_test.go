package media

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
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
)

// TestLoadBench runs N concurrent bridged calls through one Engine on
// loopback (pion clients as browsers, UDP sockets as phones, PCMU 160-byte
// payloads every 20 ms in both directions) and prints, per N: the one-way
// latency phone → browser (p50, p99) with and without the gateway, loss in
// both directions, process CPU and heap per call. It is skipped unless
// SWITCHBOARD_LOADBENCH=1:
//
//	SWITCHBOARD_LOADBENCH=1 go test -run TestLoadBench -v -timeout 30m ./media/
//
// SWITCHBOARD_LOADBENCH_N (default "50,100,200,300,500") and
// SWITCHBOARD_LOADBENCH_SECS (default 5) change the levels and the
// measured window. Calls are added level by level and kept, so each level
// measures all calls set up so far.
func TestLoadBench(t *testing.T) {
	if os.Getenv("SWITCHBOARD_LOADBENCH") != "1" {
		t.Skip("set SWITCHBOARD_LOADBENCH=1 to run the media load bench")
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
	heap0 := ms.HeapInuse

	var calls []*lbCall
	t.Cleanup(func() {
		for _, c := range calls {
			c.close()
		}
	})
	var rows []string
	for _, n := range levels {
		setupStart, added := time.Now(), n-len(calls)
		for len(calls) < n {
			c, err := newLBCall(e, len(calls))
			if err != nil {
				t.Logf("call %d: %v", len(calls), err)
				break
			}
			calls = append(calls, c)
		}
		if len(calls) < n {
			t.Logf("stopped at %d calls", len(calls))
			break
		}
		setup := time.Since(setupStart)

		base := lbBaseline(t, n, 3*time.Second)

		runtime.GC()
		runtime.ReadMemStats(&ms)
		heapPerCall := float64(int64(ms.HeapInuse)-int64(heap0)) / float64(n)

		r := lbRun(calls, window)
		row := fmt.Sprintf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d/%d | %d/%d | %d | %.0f %% | %.0f | %.0f |",
			n, us(base.p50), us(base.p99), us(r.p50), us(r.p99), us(r.p50-base.p50), us(r.p99-base.p99),
			r.lostToWeb, r.sentToWeb, r.lostToPhone, r.sentToPhone, r.rcvbufErrors,
			100*r.cpu.Seconds()/r.elapsed.Seconds(),
			float64(r.cpu.Microseconds())/float64(n)/r.elapsed.Seconds(),
			heapPerCall/1024)
		t.Logf("N=%d set up in %v (added %d calls); p50 added %.0f µs, p99 added %.0f µs",
			n, setup.Round(time.Millisecond), added, us(r.p50-base.p50), us(r.p99-base.p99))
		rows = append(rows, row)
		t.Log(row)
	}
	var b strings.Builder
	b.WriteString("\n| calls | baseline p50 µs | baseline p99 µs | gateway p50 µs | gateway p99 µs | added p50 µs | added p99 µs | lost →browser | lost →phone | UDP RcvbufErrors (host) | process CPU (1 core = 100 %) | CPU µs per call-second | heap KiB per call |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Payload layout: [0:8] send time (ns since lbEpoch), [8:12] sequence,
// [12] 1 when sent inside the measured window.
var lbEpoch = time.Now()

func stamp(p []byte, seq uint32, measured bool) {
	binary.BigEndian.PutUint32(p[8:], seq)
	if measured {
		p[12] = 1
	} else {
		p[12] = 0
	}
	binary.BigEndian.PutUint64(p[0:], uint64(time.Since(lbEpoch)))
}

// lbRecv collects what one receiver saw in the measured window.
type lbRecv struct {
	mu     sync.Mutex
	got    int
	lat    []time.Duration
	want   bool        // record latencies
	primed atomic.Bool // anything arrived, measured or not
}

func (r *lbRecv) note(p []byte) {
	r.primed.Store(true)
	if len(p) < 13 || p[12] != 1 {
		return
	}
	d := time.Since(lbEpoch) - time.Duration(binary.BigEndian.Uint64(p))
	r.mu.Lock()
	r.got++
	if r.want {
		r.lat = append(r.lat, d)
	}
	r.mu.Unlock()
}

func (r *lbRecv) reset() {
	r.mu.Lock()
	r.got, r.lat = 0, r.lat[:0]
	r.mu.Unlock()
}

type lbCall struct {
	b      *Bridge
	pc     *webrtc.PeerConnection
	track  *webTrack
	phone  *net.UDPConn
	toWeb  lbRecv // at the browser
	toPh   lbRecv // at the phone
	seqPh  uint32 // phone's RTP sequence
	seqWeb uint32 // browser's RTP sequence
	done   chan struct{}
}

func lbBrowser() (*webrtc.PeerConnection, *webTrack, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range browserCodecs() {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, nil, err
		}
	}
	var s webrtc.SettingEngine
	s.LoggerFactory = pionLoggers{testLogger()}
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
	s.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	s.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, nil, err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	tr := &webTrack{}
	sender, err := pc.AddTrack(tr)
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	return pc, tr, nil
}

func newLBCall(e *Engine, i int) (*lbCall, error) {
	b, err := e.NewBridge(context.Background(), "load-"+strconv.Itoa(i))
	if err != nil {
		return nil, err
	}
	c := &lbCall{b: b, done: make(chan struct{})}
	fail := func(err error) (*lbCall, error) { c.close(); return nil, err }
	c.pc, c.track, err = lbBrowser()
	if err != nil {
		return fail(err)
	}
	c.toWeb.want = true
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			c.toWeb.note(p.Payload)
		}
	})
	connected := make(chan struct{})
	var once sync.Once
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	c.phone, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fail(err)
	}
	_ = c.phone.SetReadBuffer(1 << 20)
	go func() {
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, _, err := c.phone.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) == nil {
				c.toPh.note(p.Payload)
			}
		}
	}()

	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		return fail(err)
	}
	<-gathered
	if _, err := b.WebOffer([]byte(c.pc.LocalDescription().SDP)); err != nil {
		return fail(err)
	}
	tp := &testPhone{conn: c.phone}
	ans, err := b.RTPAnswer(tp.sdp(1, "0 101", "a=ptime:20"))
	if err != nil {
		return fail(err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)}); err != nil {
		return fail(err)
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		return fail(fmt.Errorf("browser not connected"))
	}
	// Until media flows both ways (DTLS done on both sides, latch).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("no media through call %d", i))
		}
		c.sendPhone(false)
		c.sendWeb(false)
		time.Sleep(20 * time.Millisecond)
		if c.toWeb.seen() && c.toPh.seen() {
			break
		}
	}
	return c, nil
}

// seen reports whether anything arrived, measured or not.
func (r *lbRecv) seen() bool { return r.primed.Load() }

func (c *lbCall) sendPhone(measured bool) {
	c.seqPh++
	pl := make([]byte, 160)
	stamp(pl, c.seqPh, measured)
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(c.seqPh), Timestamp: c.seqPh * 160, SSRC: 0xabc}, Payload: pl}).Marshal()
	stamp(raw[12:], c.seqPh, measured) // restamp just before the send
	_, _ = c.phone.WriteToUDPAddrPort(raw, c.b.RTPAddr())
}

func (c *lbCall) sendWeb(measured bool) {
	c.seqWeb++
	pl := make([]byte, 160)
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(c.seqWeb), Timestamp: c.seqWeb * 160}
	stamp(pl, c.seqWeb, measured)
	_, _ = c.track.writeRTP(&h, pl)
}

func (c *lbCall) close() {
	if c.pc != nil {
		_ = c.pc.Close()
	}
	if c.phone != nil {
		_ = c.phone.Close()
	}
	_ = c.b.Close()
}

type lbResult struct {
	p50, p99                 time.Duration
	sentToWeb, lostToWeb     int
	sentToPhone, lostToPhone int
	cpu, elapsed             time.Duration
	rcvbufErrors             int64 // host-wide UDP RcvbufErrors during the window
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

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lbRun sends 20 ms packets both ways on every call: 1 s of warm-up, the
// measured window, then 500 ms for the last packets to arrive.
func lbRun(calls []*lbCall, window time.Duration) lbResult {
	var measuring atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sentWeb, sentPh atomic.Int64
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the calls over the 20 ms period.
			time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(len(calls)))
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				m := measuring.Load()
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
	rcvbuf0 := udpRcvbufErrors()
	for _, c := range calls {
		c.toWeb.reset()
		c.toPh.reset()
	}
	cpu0, t0 := cpuTime(), time.Now()
	measuring.Store(true)
	time.Sleep(window)
	measuring.Store(false)
	cpu1, t1 := cpuTime(), time.Now()
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	rcvbuf1 := udpRcvbufErrors()

	r := lbResult{rcvbufErrors: rcvbuf1 - rcvbuf0, cpu: cpu1 - cpu0, elapsed: t1.Sub(t0), sentToWeb: int(sentWeb.Load()), sentToPhone: int(sentPh.Load())}
	var lat []time.Duration
	gotWeb, gotPh := 0, 0
	for _, c := range calls {
		c.toWeb.mu.Lock()
		gotWeb += c.toWeb.got
		lat = append(lat, c.toWeb.lat...)
		c.toWeb.mu.Unlock()
		c.toPh.mu.Lock()
		gotPh += c.toPh.got
		c.toPh.mu.Unlock()
	}
	r.lostToWeb, r.lostToPhone = r.sentToWeb-gotWeb, r.sentToPhone-gotPh
	r.p50, r.p99 = percentiles(lat)
	return r
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)]
}

// lbBaseline measures the same one-way path without the gateway: n phone
// sockets sending 20 ms PCMU packets to n plain UDP readers.
func lbBaseline(t *testing.T, n int, d time.Duration) struct{ p50, p99 time.Duration } {
	var mu sync.Mutex
	var lat []time.Duration
	var conns []*net.UDPConn
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var measuring atomic.Bool
	for i := range n {
		src, dst := listen(), listen()
		to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
		go func() {
			buf := make([]byte, 1500)
			var p rtp.Packet
			for {
				k, _, err := dst.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if p.Unmarshal(buf[:k]) == nil && len(p.Payload) >= 13 && p.Payload[12] == 1 {
					dl := time.Since(lbEpoch) - time.Duration(binary.BigEndian.Uint64(p.Payload))
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
			var seq uint32
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				seq++
				pl := make([]byte, 160)
				raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(seq), Timestamp: seq * 160, SSRC: 1}, Payload: pl}).Marshal()
				stamp(raw[12:], seq, measuring.Load())
				_, _ = src.WriteToUDPAddrPort(raw, to)
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
	for _, c := range conns {
		_ = c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	p50, p99 := percentiles(lat)
	return struct{ p50, p99 time.Duration }{p50, p99}
}
