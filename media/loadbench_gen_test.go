package media

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/mediapeer"
)

// lbGenClients is TestLoadBenchClients with the lean browsers: every call's
// browser and phone played by one mediapeer.LoadGen (shared sockets,
// batched system calls, one pacing loop per CPU), which counts its own
// sends planned, made, late and skipped.
func lbGenClients(t *testing.T, cmds *json.Decoder, reply func(lbReply), errReply func(error), cert *tls.Certificate) {
	g, err := mediapeer.NewLoadGen(context.Background(), mediapeer.LoadGenOptions{Cert: cert, MaxCalls: 20000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Close() }()
	for {
		var m lbCmd
		if !lbNextCmd(t, cmds, &m) {
			return
		}
		switch m.Op {
		case "new":
			if m.I != g.Calls() || m.N <= 0 || m.Video {
				errReply(fmt.Errorf("new: calls %d+%d (video %v) with %d made", m.I, m.N, m.Video, g.Calls()))
				continue
			}
			r := lbReply{Offers: make([]string, m.N), Phones: make([]int, m.N), VPorts: make([]int, m.N)}
			var err error
			for j := range m.N {
				var ph netip.AddrPort
				if r.Offers[j], ph, err = g.AddCall(); err != nil {
					break
				}
				r.Phones[j] = int(ph.Port())
			}
			if err != nil {
				errReply(err)
				continue
			}
			reply(r)
		case "answer":
			if m.I < 0 || m.N <= 0 || m.I+m.N > g.Calls() || len(m.SDPs) != m.N || len(m.GWs) != m.N {
				errReply(fmt.Errorf("answer: calls %d+%d of %d", m.I, m.N, g.Calls()))
				continue
			}
			errs := make([]error, m.N)
			lbParallel(m.N, 32, func(j int) {
				gw, err := netip.ParseAddrPort(m.GWs[j])
				if err != nil {
					errs[j] = err
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := g.Connect(ctx, m.I+j, m.SDPs[j], gw); err != nil {
					errs[j] = fmt.Errorf("call %d: %w", m.I+j, err)
				}
			})
			if err := errors.Join(errs...); err != nil {
				errReply(err)
				continue
			}
			reply(lbReply{Client: lbLean})
		case "baseline":
			lat, err := g.Baseline(context.Background(), m.N, 500*time.Millisecond, m.Window)
			if err != nil {
				errReply(err)
				continue
			}
			p50, p99 := mediapeer.Percentiles(lat)
			reply(lbReply{P50: p50, P99: p99})
		case "run":
			r, err := lbGenRun(g, m.Window, reply)
			if err != nil {
				errReply(err)
				continue
			}
			reply(r)
		case "close":
			reply(lbReply{})
			return
		default:
			errReply(fmt.Errorf("unknown op %q", m.Op))
		}
	}
}

// lbGenRun is lbClientsRun on the generator: 1 s of warm-up, the window
// (between the "start" and "end" events), then up to 500 ms for the last
// packets to land.
func lbGenRun(g *mediapeer.LoadGen, window time.Duration, event func(lbReply)) (lbReply, error) {
	ports := map[uint16]bool{}
	for _, p := range g.Ports() {
		ports[p] = true
	}
	g.ResetStats()
	if err := g.Start(); err != nil {
		return lbReply{}, err
	}
	time.Sleep(time.Second)
	rcvbuf0, drops0 := udpRcvbufErrors(), udpSocketDrops(ports)
	cpu, elapsed := lbWindow(window, event, g.SetMeasuring)
	g.Stop()
	s := g.Stats()
	for end := time.Now().Add(500 * time.Millisecond); (s.GotWeb < s.SentWeb || s.GotPhone < s.SentPhone) && time.Now().Before(end); s = g.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	r := lbReply{
		Gen:    true,
		Rcvbuf: udpRcvbufErrors() - rcvbuf0, Drops: udpSocketDrops(ports) - drops0,
		CPU: cpu, Elapsed: elapsed,
		SentWeb: int(s.SentWeb), SentPh: int(s.SentPhone), GotWeb: int(s.GotWeb), GotPh: int(s.GotPhone),
		Due:     g.Calls() * int(window/(20*time.Millisecond)),
		Planned: s.Planned, Skipped: s.Skipped, Late: s.Late, SendErrors: s.SendErrors, MaxLate: s.MaxLate,
		Stray: s.Stray, Misrouted: s.Misrouted, SendCalls: s.SendCalls, RecvCalls: s.RecvCalls,
		LeanRTCP: s.Lean.RTCP, LeanDropped: s.Lean.Dropped, LeanUndecryptable: s.Lean.Undecryptable,
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.Mem, r.Goroutines = ms.HeapInuse+ms.StackInuse, runtime.NumGoroutine()
	r.WebP50, r.WebP99 = mediapeer.Percentiles(s.ToWeb)
	r.PhP50, r.PhP99 = mediapeer.Percentiles(s.ToPhone)
	return r, nil
}

// The table of TestLoadBench with the generator. A call-second is 100
// packets relayed, 200 datagrams through the gateway (in and out); the
// generator's datagrams are those it sent and received.
const (
	lbGenHeader = "| calls | baseline p50 / p99 µs | added p50 / p99 µs →browser | added p50 / p99 µs →phone | sends planned each way: made →phone, →browser | skipped / late (each way) | lost →browser, →phone | socket drops gateway / generator | gateway CPU (1 core = 100 %) | gateway CPU µs per call-second | gateway CPU µs per datagram | generator CPU | generator CPU µs per datagram | generator datagrams per system call |"
	lbGenAlign  = "|---:|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
)

func lbGenRow(n int, base lbReply, r lbResult) string {
	c := &r.clients
	gwDgrams := float64(c.SentWeb + c.SentPh + c.GotWeb + c.GotPh)
	genDgrams := gwDgrams
	perSyscall := genDgrams / float64(max(c.SendCalls+c.RecvCalls, 1))
	return fmt.Sprintf("| %d | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %d: %d, %d | %d / %d | %d/%d, %d/%d | %d / %d | %.0f %% | %.0f | %.1f | %.0f %% | %.2f | %.1f |",
		n, us(base.P50), us(base.P99),
		us(c.WebP50-base.P50), us(c.WebP99-base.P99), us(c.PhP50-base.P50), us(c.PhP99-base.P99),
		c.Planned, c.SentWeb, c.SentPh, c.Skipped, c.Late,
		c.SentPh-c.GotWeb, c.SentPh, c.SentWeb-c.GotPh, c.SentWeb,
		r.gwDrops, c.Drops,
		100*r.cpu.Seconds()/r.elapsed.Seconds(),
		float64(r.cpu.Microseconds())/float64(n)/r.elapsed.Seconds(),
		float64(r.cpu.Microseconds())/max(gwDgrams, 1),
		100*c.CPU.Seconds()/c.Elapsed.Seconds(),
		float64(c.CPU.Microseconds())/max(genDgrams, 1), perSyscall)
}

// lbNextCmd reads the gateway's next command into m; false at the end of
// the commands (an error other than EOF fails t).
func lbNextCmd(t *testing.T, cmds *json.Decoder, m *lbCmd) bool {
	if err := cmds.Decode(m); err != nil {
		if !errors.Is(err, io.EOF) {
			t.Error(err)
		}
		return false
	}
	return true
}
