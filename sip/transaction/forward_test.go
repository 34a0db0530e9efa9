package transaction

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// TestForwardingTimerF: a non-INVITE client transaction started with a
// Forwarding context times out at ForwardTimerF, in Trying and in
// Proceeding, on any transport; an INVITE keeps Timer B; others keep F.
func TestForwardingTimerF(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		cfg     Config
		method  string
		dst     sip.Addr
		fwd     bool
		provis  bool // a 100 arrives first
		timeout time.Duration
	}{
		{"forwarded", Config{}, "BYE", peerUDP, true, false, 24 * s},
		{"forwarded after 100", Config{}, "BYE", peerUDP, true, true, 24 * s},
		{"forwarded reliable", Config{}, "MESSAGE", peerTCP, true, false, 24 * s},
		{"forwarded, T1 1s", Config{T1: s}, "BYE", peerUDP, true, false, 48 * s},
		{"forwarded, configured", Config{ForwardTimerF: 10 * s}, "BYE", peerUDP, true, false, 10 * s},
		{"forwarded, never above F", Config{TimerF: 20 * s, ForwardTimerF: 30 * s}, "BYE", peerUDP, true, false, 20 * s},
		{"not forwarded", Config{}, "BYE", peerUDP, false, false, 32 * s},
		{"forwarded invite keeps B", Config{}, "INVITE", peerUDP, true, false, 32 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			ctx := context.Background()
			if tt.fwd {
				ctx = Forwarding(ctx)
			}
			tx, err := h.l.Request(ctx, clientReq(t, tt.method, tt.dst.Transport), tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if tt.provis {
				h.clk.Advance(s)
				h.l.HandleMessage(wire(t, response(tx.Request(), 100, ""), tt.dst))
				if got := tx.State(); got != StateProceeding {
					t.Fatalf("after 100: %v, want Proceeding", got)
				}
				h.clk.Advance(tt.timeout - s - 1)
			} else {
				h.clk.Advance(tt.timeout - 1)
			}
			if got := tx.State(); got == StateTerminated {
				t.Fatalf("terminated before %v", tt.timeout)
			}
			h.clk.Advance(1)
			if got := tx.State(); got != StateTerminated {
				t.Fatalf("at %v: %v, want Terminated", tt.timeout, got)
			}
			if got, _ := drain(tx); len(got) == 0 || got[len(got)-1] != "408" {
				t.Errorf("delivered %v, want a final 408", got)
			}
			if !errorsIs(tx.Err(), ErrTimeout) {
				t.Errorf("Err() = %v, want ErrTimeout", tx.Err())
			}
		})
	}
}

// memNet joins Layers on one fake clock: Send hands a message, through
// serialisation and parsing, to the Layer at the destination, in the
// sender's goroutine. Messages to an address without a Layer vanish, like
// those to a host that is down, and drop can lose others.
type memNet struct {
	t     testing.TB
	mu    sync.Mutex
	nodes map[netip.AddrPort]*Layer
	// drop, called with mu held, reports whether to lose a message.
	drop func(from, to sip.Addr, m sip.Message) bool
	// delivered counts the requests that reached each address.
	delivered map[netip.AddrPort]int
}

type memPort struct {
	n    *memNet
	self sip.Addr
}

func (p memPort) Send(_ context.Context, m sip.Message, dst sip.Addr) error {
	p.n.mu.Lock()
	l := p.n.nodes[dst.AddrPort]
	lost := l == nil || p.n.drop != nil && p.n.drop(p.self, dst, m)
	if _, ok := m.(*sip.Request); ok && !lost {
		p.n.delivered[dst.AddrPort]++
	}
	p.n.mu.Unlock()
	if !lost {
		l.HandleMessage(wire(p.n.t, m, p.self))
	}
	return nil
}

func (n *memNet) requestsAt(a sip.Addr) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delivered[a.AddrPort]
}

// TestForwardingAnswersInTime plays a caller's BYE through a proxy to a
// callee that never answers, on the fake clock: with Forwarding, the
// proxy's 408 reaches the caller before the caller's own Timer F, even
// when the caller's first three copies and the proxy's first 408 are
// lost; without it, the caller times out first and never hears why.
func TestForwardingAnswersInTime(t *testing.T) {
	proxyAddr := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("203.0.113.5:5060")}
	tests := []struct {
		name       string
		forwarding bool
		lostCopies int // of the caller's BYE
		lost408    int // of the proxy's 408
		wantProxy  bool
		atMost     time.Duration
	}{
		{"answered", true, 0, 0, true, 24*time.Second + time.Millisecond},
		{"answered despite losses", true, 3, 1, true, 31*time.Second + 600*time.Millisecond},
		{"without forwarding", false, 0, 0, false, 32 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(epoch)
			n := &memNet{t: t, nodes: map[netip.AddrPort]*Layer{}, delivered: map[netip.AddrPort]int{}}
			lostCopies, lost408 := tt.lostCopies, tt.lost408
			n.drop = func(from, to sip.Addr, m sip.Message) bool {
				switch m := m.(type) {
				case *sip.Request:
					if from == phoneUDP && lostCopies > 0 {
						lostCopies--
						return true
					}
				case *sip.Response:
					if m.StatusCode == 408 && lost408 > 0 {
						lost408--
						return true
					}
				}
				return false
			}
			caller := New(context.Background(), memPort{n, phoneUDP}, nil, Config{Clock: clk})
			txs := make(chan *ServerTx, 1)
			proxy := New(context.Background(), memPort{n, proxyAddr}, HandlerFunc(func(_ context.Context, tx *ServerTx, _ *sip.Request) {
				if tx != nil {
					txs <- tx
					<-tx.Done()
				}
			}), Config{Clock: clk})
			t.Cleanup(func() { caller.Close(); proxy.Close() })
			n.nodes[phoneUDP.AddrPort] = caller
			n.nodes[proxyAddr.AddrPort] = proxy

			bye := msgSpec{method: "BYE", branch: sip.NewBranch(), toTag: "callee", callID: sip.NewCallID()}.req(t)
			ct, err := caller.Request(context.Background(), bye, proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			var (
				st      *ServerTx
				fwd     *ClientTx
				final   *sip.Response
				elapsed time.Duration
			)
			for step := time.Duration(0); step <= 40*time.Second && final == nil; step += 100 * time.Millisecond {
				if step > 0 {
					clk.Advance(100 * time.Millisecond)
				}
				if st == nil && n.requestsAt(proxyAddr) > 0 {
					// The proxy's TU: forward the BYE to the dead callee.
					select {
					case st = <-txs:
					case <-time.After(waitLimit):
						t.Fatal("the proxy's handler got no transaction")
					}
					out := st.Request().Clone()
					out.PrependVia(sip.Via{Transport: sip.UDP, Host: "203.0.113.5", Port: 5060, Params: sip.Params(";branch=" + sip.NewBranch())})
					ctx := context.Background()
					if tt.forwarding {
						ctx = Forwarding(ctx)
					}
					if fwd, err = proxy.Request(ctx, out, peerUDP); err != nil {
						t.Fatal(err)
					}
				}
				if fwd != nil {
					select {
					case res, ok := <-fwd.Responses():
						if ok && res.StatusCode == 408 {
							// Sent upstream as the proxy's answer.
							if err := st.Respond(response(st.Request(), 408, "proxy")); err != nil {
								t.Fatal(err)
							}
						}
					default:
					}
				}
				select {
				case res, ok := <-ct.Responses():
					if ok && res.StatusCode >= 200 {
						final, elapsed = res, clk.Now().Sub(epoch)
					}
				default:
				}
			}
			if final == nil {
				t.Fatal("the caller got no final response")
			}
			fromProxy := final.Source == proxyAddr
			if final.StatusCode != 408 || fromProxy != tt.wantProxy || elapsed > tt.atMost {
				t.Fatalf("caller got %d from %v after %v; want 408 from the proxy %v, within %v",
					final.StatusCode, final.Source, elapsed, tt.wantProxy, tt.atMost)
			}
			if tt.wantProxy && elapsed >= 32*time.Second {
				t.Fatalf("the proxy's 408 came after the caller's Timer F")
			}
		})
	}
}
