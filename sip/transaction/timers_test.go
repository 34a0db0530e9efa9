package transaction

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

func TestConfigTimers(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	def := timers{
		t1: 500 * ms, t2: 4 * s, t4: 5 * s,
		a: 500 * ms, b: 32 * s, d: 32 * s, e: 500 * ms, f: 32 * s, g: 500 * ms,
		h: 32 * s, i: 5 * s, j: 32 * s, k: 5 * s, l: 32 * s, m: 32 * s,
		fwdF: 24 * s, trying: 200 * ms,
	}
	with := func(f func(*timers)) timers { t := def; f(&t); return t }
	tests := []struct {
		name string
		cfg  Config
		want timers
	}{
		{"zero value is RFC 3261", Config{}, def},
		{"derived from T1", Config{T1: s}, with(func(t *timers) {
			t.t1, t.a, t.e, t.g = s, s, s, s
			t.b, t.f, t.h, t.j, t.l, t.m = 64*s, 64*s, 64*s, 64*s, 64*s, 64*s
			t.fwdF = 48 * s
		})},
		{"I and K from T4", Config{T4: 2 * s}, with(func(t *timers) { t.t4, t.i, t.k = 2*s, 2*s, 2*s })},
		{"each timer", Config{
			T2: 3 * s, TimerA: 1 * ms, TimerB: 2 * ms, TimerD: 3 * ms, TimerE: 4 * ms, TimerF: 5 * ms,
			TimerG: 6 * ms, TimerH: 7 * ms, TimerI: 8 * ms, TimerJ: 9 * ms, TimerK: 10 * ms,
			TimerL: 11 * ms, TimerM: 12 * ms, TryingDelay: 13 * ms,
		}, with(func(t *timers) {
			t.t2 = 3 * s
			t.a, t.b, t.d, t.e, t.f, t.g, t.h = 1*ms, 2*ms, 3*ms, 4*ms, 5*ms, 6*ms, 7*ms
			t.i, t.j, t.k, t.l, t.m, t.trying = 8*ms, 9*ms, 10*ms, 11*ms, 12*ms, 13*ms
			t.fwdF = 5 * ms // never above F
		})},
		{"forward F", Config{ForwardTimerF: 20 * s}, with(func(t *timers) { t.fwdF = 20 * s })},
		{"negative linger timers are zero", Config{TimerD: -1, TimerI: -1, TimerJ: -1, TimerK: -1},
			with(func(t *timers) { t.d, t.i, t.j, t.k = 0, 0, 0, 0 })},
		{"negative intervals are the default", Config{T1: -1, T2: -1, TimerA: -1, TimerB: -1, TimerL: -1}, def},
		{"negative trying delay is immediate", Config{TryingDelay: -1}, with(func(t *timers) { t.trying = -1 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.timers(); got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// stateErr is what client and server transactions have in common.
type stateErr interface {
	State() State
	Err() error
	Done() <-chan struct{}
}

// TestTimeouts checks that each timer that ends a transaction fires exactly
// when it should, with default and configured values, and that D, I, J and K
// are zero on reliable transports.
func TestTimeouts(t *testing.T) {
	s := time.Second
	clientInvite := func(dst sip.Addr, code int) func(t *testing.T, h *harness) stateErr {
		return func(t *testing.T, h *harness) stateErr {
			tx := mustRequest(t, h, "INVITE", dst)
			if code != 0 {
				h.l.HandleMessage(wire(t, response(tx.Request(), code, "a"), dst))
			}
			return tx
		}
	}
	clientNonInvite := func(dst sip.Addr, code int) func(t *testing.T, h *harness) stateErr {
		return func(t *testing.T, h *harness) stateErr {
			tx := mustRequest(t, h, "OPTIONS", dst)
			if code != 0 {
				h.l.HandleMessage(wire(t, response(tx.Request(), code, "a"), dst))
			}
			return tx
		}
	}
	server := func(method string, src sip.Addr, code int, ack bool) func(t *testing.T, h *harness) stateErr {
		return func(t *testing.T, h *harness) stateErr {
			spec := msgSpec{method: method, branch: sip.NewBranch(), src: src}
			h.l.HandleMessage(spec.req(t))
			tx := h.serverTx()
			if err := tx.Respond(response(tx.Request(), code, "uas")); err != nil {
				t.Fatal(err)
			}
			if ack {
				spec.method, spec.toTag = sip.MethodAck, "uas"
				h.l.HandleMessage(spec.req(t))
			}
			return tx
		}
	}
	tests := []struct {
		timer   string
		cfg     Config
		setup   func(t *testing.T, h *harness) stateErr
		from    State
		after   time.Duration
		wantErr error
	}{
		{"B", Config{}, clientInvite(peerUDP, 0), StateCalling, 32 * s, ErrTimeout},
		{"B", Config{TimerB: 3 * s}, clientInvite(peerUDP, 0), StateCalling, 3 * s, ErrTimeout},
		{"B reliable", Config{}, clientInvite(peerTCP, 0), StateCalling, 32 * s, ErrTimeout},
		{"D", Config{}, clientInvite(peerUDP, 486), StateCompleted, 32 * s, nil},
		{"D", Config{TimerD: 40 * s}, clientInvite(peerUDP, 486), StateCompleted, 40 * s, nil},
		{"D reliable", Config{TimerD: 40 * s}, clientInvite(peerTCP, 486), StateTerminated, 0, nil},
		{"M", Config{}, clientInvite(peerUDP, 200), StateAccepted, 32 * s, nil},
		{"M", Config{TimerM: 7 * s}, clientInvite(peerTCP, 200), StateAccepted, 7 * s, nil},
		{"F", Config{}, clientNonInvite(peerUDP, 0), StateTrying, 32 * s, ErrTimeout},
		{"F", Config{TimerF: 9 * s}, clientNonInvite(peerTCP, 0), StateTrying, 9 * s, ErrTimeout},
		{"K", Config{}, clientNonInvite(peerUDP, 200), StateCompleted, 5 * s, nil},
		{"K", Config{TimerK: 2 * s}, clientNonInvite(peerUDP, 200), StateCompleted, 2 * s, nil},
		{"K", Config{T4: 3 * s}, clientNonInvite(peerUDP, 200), StateCompleted, 3 * s, nil},
		{"K reliable", Config{TimerK: 2 * s}, clientNonInvite(peerTCP, 200), StateTerminated, 0, nil},
		{"H", Config{}, server("INVITE", phoneUDP, 486, false), StateCompleted, 32 * s, ErrTimeout},
		{"H", Config{TimerH: 4 * s}, server("INVITE", phoneTCP, 486, false), StateCompleted, 4 * s, ErrTimeout},
		{"I", Config{}, server("INVITE", phoneUDP, 486, true), StateConfirmed, 5 * s, nil},
		{"I", Config{TimerI: 1 * s}, server("INVITE", phoneUDP, 486, true), StateConfirmed, 1 * s, nil},
		{"I reliable", Config{TimerI: 1 * s}, server("INVITE", phoneTCP, 486, true), StateTerminated, 0, nil},
		{"J", Config{}, server("OPTIONS", phoneUDP, 200, false), StateCompleted, 32 * s, nil},
		{"J", Config{TimerJ: 6 * s}, server("OPTIONS", phoneUDP, 200, false), StateCompleted, 6 * s, nil},
		{"J reliable", Config{TimerJ: 6 * s}, server("OPTIONS", phoneTCP, 200, false), StateTerminated, 0, nil},
		{"J none", Config{TimerJ: -1}, server("OPTIONS", phoneUDP, 200, false), StateTerminated, 0, nil},
		{"L", Config{}, server("INVITE", phoneUDP, 200, false), StateAccepted, 32 * s, nil},
		{"L", Config{TimerL: 8 * s}, server("INVITE", phoneTCP, 200, false), StateAccepted, 8 * s, nil},
	}
	for _, tt := range tests {
		t.Run(tt.timer, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			tx := tt.setup(t, h)
			if got := tx.State(); got != tt.from {
				t.Fatalf("after setup: %v, want %v", got, tt.from)
			}
			if tt.after > 0 {
				h.clk.Advance(tt.after - 1)
				if got := tx.State(); got != tt.from {
					t.Fatalf("1ns before: %v, want %v", got, tt.from)
				}
				h.clk.Advance(1)
			}
			if got := tx.State(); got != StateTerminated {
				t.Fatalf("at %v: %v, want Terminated", tt.after, got)
			}
			if !isClosed(tx.Done()) {
				t.Fatal("Done not closed")
			}
			if err := tx.Err(); tt.wantErr == nil && err != nil || tt.wantErr != nil && !errorsIs(err, tt.wantErr) {
				t.Fatalf("Err() = %v, want %v", err, tt.wantErr)
			}
			if st := h.l.Stats(); st.ClientTransactions != 0 || st.ServerTransactions != 0 {
				t.Fatalf("terminated transactions still in the layer: %+v", st)
			}
			if h.clk.Pending() != 0 {
				t.Fatalf("%d timers left", h.clk.Pending())
			}
		})
	}
}

// TestRequestContext checks that the ctx of Request reaches the first Send
// only.
func TestRequestContext(t *testing.T) {
	h := newHarness(t, Config{})
	var ctxs []context.Context
	h.l.sender = senderFunc(func(ctx context.Context, m sip.Message, dst sip.Addr) error {
		ctxs = append(ctxs, ctx)
		return nil
	})
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "first")
	if _, err := h.l.Request(ctx, clientReq(t, "OPTIONS", sip.UDP), peerUDP); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Second)
	if len(ctxs) != 2 || ctxs[0].Value(key{}) != "first" || ctxs[1].Value(key{}) != nil {
		t.Fatalf("contexts %v", ctxs)
	}
}

type senderFunc func(ctx context.Context, m sip.Message, dst sip.Addr) error

func (f senderFunc) Send(ctx context.Context, m sip.Message, dst sip.Addr) error {
	return f(ctx, m, dst)
}

// fireRec is an owner of timers that records when each fires.
type fireRec struct {
	core
	clk   *clock.Fake
	fired []*timerSlot
	at    map[*timerSlot]time.Time
}

func (r *fireRec) fire(s *timerSlot, gen uint64) {
	r.fired = append(r.fired, s)
	if r.at != nil {
		r.at[s] = r.clk.Now()
	}
}

// newTimers returns timers on a fake clock, and an owner for their slots.
func newTimers() (*timerHeap, *fireRec) {
	clk := clock.NewFake(epoch)
	th := &timerHeap{}
	th.init(clk)
	rec := &fireRec{clk: clk, at: map[*timerSlot]time.Time{}}
	rec.owner = rec
	return th, rec
}

// TestTimerLanes: timers of many durations, more than maxLanes of them
// (the rest share the last lane), armed out of order and some stopped,
// each fire at their time, in the order of their times and, at one time,
// of their arming; the stopped ones never.
func TestTimerLanes(t *testing.T) {
	th, rec := newTimers()
	clk := rec.clk
	type armed struct {
		s   *timerSlot
		due time.Time
	}
	var want []armed
	stopped := map[*timerSlot]bool{}
	for i := range 400 {
		s := &timerSlot{c: &rec.core}
		d := time.Duration((i*37)%(maxLanes+20)+1) * time.Millisecond
		th.add(s, d)
		want = append(want, armed{s, clk.Now().Add(d)})
		if i%7 == 3 {
			th.remove(s)
			stopped[s] = true
		}
		if i%5 == 0 {
			clk.Advance(time.Millisecond) // some fire on the way
		}
	}
	if n := len(th.lanes); n != maxLanes {
		t.Fatalf("%d lanes, want the cap %d", n, maxLanes)
	}
	clk.Advance(time.Second)
	slices.SortStableFunc(want, func(a, b armed) int { return a.due.Compare(b.due) })
	var order []*timerSlot
	for _, a := range want {
		if stopped[a.s] {
			if _, ok := rec.at[a.s]; ok {
				t.Errorf("a stopped timer fired")
			}
			continue
		}
		order = append(order, a.s)
		if got, ok := rec.at[a.s]; !ok || !got.Equal(a.due) {
			t.Errorf("timer due at %v fired at %v (fired: %v)", a.due.Sub(epoch), got.Sub(epoch), ok)
		}
	}
	if !slices.Equal(rec.fired, order) {
		t.Errorf("%d timers fired out of order", len(order))
	}
	if len(th.h) != 0 {
		t.Errorf("%d lanes left in the heap", len(th.h))
	}
}

// BenchmarkTimers measures a timer's arming and firing among many armed
// ones, as under a REGISTER load: 100,000 armed for Timer J (32 s) and
// then, per op, one more armed and the earliest fired.
func BenchmarkTimers(b *testing.B) {
	th, rec := newTimers()
	rec.at = nil
	slots := make([]timerSlot, 100000+b.N)
	for i := range slots {
		slots[i].c = &rec.core
	}
	for i := range 100000 {
		th.add(&slots[i], 32*time.Second)
		rec.clk.Advance(320 * time.Microsecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		th.add(&slots[100000+i], 32*time.Second)
		th.remove(&slots[i])
	}
}
