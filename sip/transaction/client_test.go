package transaction

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// Transitions of the INVITE client transaction (RFC 3261 Figure 5 as
// changed by RFC 6026 Figure 3). Every one is exercised below and
// TestClientInviteTransitions fails if one is not.
//
//	id      from        event                        to          action
//	ICT-1   -           Request()                    Calling     send INVITE, start A (unreliable), B
//	ICT-2   Calling     Timer A                      Calling     retransmit, A = 2A
//	ICT-3   Calling     Timer B                      Terminated  408 to TU, ErrTimeout
//	ICT-4   Calling     transport error              Terminated  503 to TU, ErrTransport
//	ICT-5   Calling     1xx                          Proceeding  to TU, stop A and B
//	ICT-6   Calling     2xx                          Accepted    to TU, start M
//	ICT-7   Calling     300-699                      Completed   send ACK, to TU, start D
//	ICT-8   Proceeding  1xx                          Proceeding  to TU
//	ICT-9   Proceeding  2xx                          Accepted    to TU, start M
//	ICT-10  Proceeding  300-699                      Completed   send ACK, to TU, start D
//	ICT-11  Completed   300-699 (retransmission)     Completed   resend ACK, not to TU
//	ICT-12  Completed   transport error (ACK)        Terminated  ErrTransport
//	ICT-13  Completed   Timer D                      Terminated  -
//	ICT-14  Completed   reliable transport (D = 0)   Terminated  right after the ACK
//	ICT-15  Accepted    2xx (retransmission, fork)   Accepted    to TU
//	ICT-16  Accepted    1xx, 300-699                 Accepted    ignored
//	ICT-17  Accepted    Timer M                      Terminated  Responses closed
var ictTransitions = transitionIDs("ICT", 17)

// Transitions of the non-INVITE client transaction (RFC 3261 Figure 6).
//
//	id      from        event                        to          action
//	NICT-1  -           Request()                    Trying      send, start E (unreliable), F
//	NICT-2  Trying      Timer E                      Trying      retransmit, E = min(2E, T2)
//	NICT-3  Trying      Timer F                      Terminated  408 to TU, ErrTimeout
//	NICT-4  Trying      transport error              Terminated  503 to TU, ErrTransport
//	NICT-5  Trying      1xx                          Proceeding  to TU
//	NICT-6  Trying      200-699                      Completed   to TU, start K
//	NICT-7  Proceeding  Timer E                      Proceeding  retransmit, E = T2
//	NICT-8  Proceeding  1xx                          Proceeding  to TU
//	NICT-9  Proceeding  200-699                      Completed   to TU, start K
//	NICT-10 Proceeding  Timer F                      Terminated  408 to TU, ErrTimeout
//	NICT-11 Proceeding  transport error              Terminated  503 to TU, ErrTransport
//	NICT-12 Completed   any response                 Completed   absorbed
//	NICT-13 Completed   Timer K                      Terminated  -
//	NICT-14 Completed   reliable transport (K = 0)   Terminated  right after the final
var nictTransitions = transitionIDs("NICT", 14)

func transitionIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + "-" + itoa(i+1)
	}
	return ids
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// cstep is one step of a client scenario and what must follow it.
type cstep struct {
	ids   string // transitions exercised, space separated
	do    func(c *cscn)
	state State
	sent  string // labels of the messages sent during the step
	tu    string // status codes delivered to the TU, "EOF" once closed
}

type cscn struct {
	t   *testing.T
	h   *harness
	tx  *ClientTx
	req *sip.Request
	dst sip.Addr
}

func (c *cscn) recv(code int, toTag string) {
	c.h.l.HandleMessage(wire(c.t, response(c.req, code, toTag), c.dst))
}

func start(c *cscn) {
	tx, err := c.h.l.Request(context.Background(), c.req, c.dst)
	if err != nil {
		c.t.Fatalf("Request: %v", err)
	}
	c.tx = tx
}

func recv(code int, toTag string) func(*cscn) {
	return func(c *cscn) { c.recv(code, toTag) }
}

func advance(d time.Duration) func(*cscn) {
	return func(c *cscn) { c.h.clk.Advance(d) }
}

func failThen(k int, f func(*cscn)) func(*cscn) {
	return func(c *cscn) { c.h.net.failNext(k); f(c) }
}

type cscenario struct {
	name   string
	method string
	dst    sip.Addr
	steps  []cstep
	err    error // Err() at the end
}

func runClientScenarios(t *testing.T, all []string, scenarios []cscenario) {
	covered := map[string]bool{}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			c := &cscn{t: t, h: h, dst: sc.dst, req: clientReq(t, sc.method, sc.dst.Transport)}
			for i, st := range sc.steps {
				st.do(c)
				if got := c.tx.State(); got != st.state {
					t.Fatalf("step %d (%s): state %v, want %v", i, st.ids, got, st.state)
				}
				sent := h.net.take()
				if got := labels(sent); got != st.sent {
					t.Fatalf("step %d (%s): sent %q, want %q", i, st.ids, got, st.sent)
				}
				for _, m := range sent {
					if m.dst != sc.dst {
						t.Fatalf("step %d: sent to %v, want %v", i, m.dst, sc.dst)
					}
				}
				codes, closed := drain(c.tx)
				if closed {
					codes = append(codes, "EOF")
				}
				if got := strings.Join(codes, ","); got != st.tu {
					t.Fatalf("step %d (%s): TU got %q, want %q", i, st.ids, got, st.tu)
				}
				for _, id := range strings.Fields(st.ids) {
					covered[id] = true
				}
			}
			if err := c.tx.Err(); !errors.Is(err, sc.err) || (sc.err == nil) != (err == nil) {
				t.Fatalf("Err() = %v, want %v", err, sc.err)
			}
			if c.tx.State() == StateTerminated && !isClosed(c.tx.Done()) {
				t.Fatal("terminated but Done not closed")
			}
		})
	}
	for _, id := range all {
		if !covered[id] {
			t.Errorf("transition %s not exercised", id)
		}
	}
}

func TestClientInviteTransitions(t *testing.T) {
	const T1 = DefaultT1
	runClientScenarios(t, ictTransitions, []cscenario{
		{name: "provisional then reject", method: "INVITE", dst: peerUDP, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-2", advance(T1), StateCalling, "INVITE", ""},
			{"ICT-2", advance(2 * T1), StateCalling, "INVITE", ""},
			{"ICT-5", recv(180, "a"), StateProceeding, "", "180"},
			{"ICT-5", advance(60 * T1), StateProceeding, "", ""}, // A and B stopped
			{"ICT-8", recv(183, "a"), StateProceeding, "", "183"},
			{"ICT-10", recv(486, "a"), StateCompleted, "ACK", "486,EOF"},
			{"ICT-11", recv(486, "a"), StateCompleted, "ACK", "EOF"},
			{"", advance(32*time.Second - 1), StateCompleted, "", "EOF"},
			{"ICT-13", advance(1), StateTerminated, "", "EOF"},
		}},
		{name: "reject in calling", method: "INVITE", dst: peerUDP, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-7", recv(503, "a"), StateCompleted, "ACK", "503,EOF"},
			{"ICT-13", advance(32 * time.Second), StateTerminated, "", "EOF"},
		}},
		{name: "accepted in calling", method: "INVITE", dst: peerUDP, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-6", recv(200, "a"), StateAccepted, "", "200"},
			{"ICT-15", recv(200, "a"), StateAccepted, "", "200"},
			{"ICT-15", recv(200, "fork2"), StateAccepted, "", "200"},
			{"ICT-16", recv(180, "fork3"), StateAccepted, "", ""},
			{"ICT-16", recv(486, "fork3"), StateAccepted, "", ""},
			{"", advance(64*T1 - 1), StateAccepted, "", ""},
			{"ICT-17", advance(1), StateTerminated, "", "EOF"},
		}},
		{name: "accepted in proceeding", method: "INVITE", dst: peerUDP, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-5", recv(100, ""), StateProceeding, "", "100"},
			{"ICT-9", recv(200, "a"), StateAccepted, "", "200"},
		}},
		{name: "timer B", method: "INVITE", dst: peerUDP, err: ErrTimeout, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-2", advance(64*T1 - 1), StateCalling, "INVITE,INVITE,INVITE,INVITE,INVITE,INVITE", ""},
			{"ICT-3", advance(1), StateTerminated, "", "408,EOF"},
		}},
		{name: "transport error on first send", method: "INVITE", dst: peerUDP, err: ErrTransport, steps: []cstep{
			{"ICT-1 ICT-4", failThen(1, start), StateTerminated, "", "503,EOF"},
		}},
		{name: "transport error on retransmission", method: "INVITE", dst: peerUDP, err: ErrTransport, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-4", failThen(1, advance(T1)), StateTerminated, "", "503,EOF"},
		}},
		{name: "transport error on ack", method: "INVITE", dst: peerUDP, err: ErrTransport, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-7", recv(404, "a"), StateCompleted, "ACK", "404,EOF"},
			{"ICT-12", failThen(1, recv(404, "a")), StateTerminated, "", "EOF"},
		}},
		{name: "reliable", method: "INVITE", dst: peerTCP, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"", advance(10 * T1), StateCalling, "", ""}, // no Timer A
			{"ICT-7 ICT-14", recv(486, "a"), StateTerminated, "ACK", "486,EOF"},
		}},
		{name: "reliable timer B", method: "INVITE", dst: peerTCP, err: ErrTimeout, steps: []cstep{
			{"ICT-1", start, StateCalling, "INVITE", ""},
			{"ICT-3", advance(64 * T1), StateTerminated, "", "408,EOF"},
		}},
	})
}

func TestClientNonInviteTransitions(t *testing.T) {
	const T1, T2 = DefaultT1, DefaultT2
	runClientScenarios(t, nictTransitions, []cscenario{
		{name: "provisional then final", method: "OPTIONS", dst: peerUDP, steps: []cstep{
			{"NICT-1", start, StateTrying, "OPTIONS", ""},
			{"NICT-2", advance(T1), StateTrying, "OPTIONS", ""},
			{"NICT-5", recv(100, ""), StateProceeding, "", "100"},
			{"NICT-7", advance(2 * T1), StateProceeding, "OPTIONS", ""},
			{"", advance(T2 - 1), StateProceeding, "", ""},
			{"NICT-7", advance(1), StateProceeding, "OPTIONS", ""},
			{"NICT-8", recv(180, ""), StateProceeding, "", "180"},
			{"NICT-9", recv(200, "a"), StateCompleted, "", "200,EOF"},
			{"NICT-12", recv(200, "a"), StateCompleted, "", "EOF"},
			{"NICT-12", advance(T2), StateCompleted, "", "EOF"}, // E stopped
			{"NICT-13", advance(DefaultT4 - T2), StateTerminated, "", "EOF"},
		}},
		{name: "final in trying", method: "REGISTER", dst: peerUDP, steps: []cstep{
			{"NICT-1", start, StateTrying, "REGISTER", ""},
			{"NICT-6", recv(401, "a"), StateCompleted, "", "401,EOF"},
			{"", advance(DefaultT4 - 1), StateCompleted, "", "EOF"},
			{"NICT-13", advance(1), StateTerminated, "", "EOF"},
		}},
		{name: "timer F in trying", method: "BYE", dst: peerUDP, err: ErrTimeout, steps: []cstep{
			{"NICT-1", start, StateTrying, "BYE", ""},
			{"NICT-2", advance(64*T1 - 1), StateTrying, strings.Repeat("BYE,", 9) + "BYE", ""},
			{"NICT-3", advance(1), StateTerminated, "", "408,EOF"},
		}},
		{name: "timer F in proceeding", method: "BYE", dst: peerUDP, err: ErrTimeout, steps: []cstep{
			{"NICT-1", start, StateTrying, "BYE", ""},
			{"NICT-5", recv(100, ""), StateProceeding, "", "100"},
			{"NICT-10", advance(64 * T1), StateTerminated, strings.Repeat("BYE,", 7) + "BYE", "408,EOF"}, // at .5, 4.5, ... 28.5
		}},
		{name: "transport error in trying", method: "MESSAGE", dst: peerUDP, err: ErrTransport, steps: []cstep{
			{"NICT-1 NICT-4", failThen(1, start), StateTerminated, "", "503,EOF"},
		}},
		{name: "transport error in proceeding", method: "MESSAGE", dst: peerUDP, err: ErrTransport, steps: []cstep{
			{"NICT-1", start, StateTrying, "MESSAGE", ""},
			{"NICT-5", recv(100, ""), StateProceeding, "", "100"},
			{"NICT-11", failThen(1, advance(T1)), StateTerminated, "", "503,EOF"},
		}},
		{name: "reliable", method: "OPTIONS", dst: peerTCP, steps: []cstep{
			{"NICT-1", start, StateTrying, "OPTIONS", ""},
			{"", advance(10 * T1), StateTrying, "", ""}, // no Timer E
			{"NICT-6 NICT-14", recv(200, "a"), StateTerminated, "", "200,EOF"},
		}},
	})
}

// TestRetransmissionSchedules checks the exact instants of Timer A, E (in
// Trying and in Proceeding) and G retransmissions, with default and custom
// T1/T2.
func TestRetransmissionSchedules(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x * float64(time.Second))
		}
		return out
	}
	tests := []struct {
		name string
		cfg  Config
		run  func(t *testing.T, h *harness) // drives the transaction to its end
		want []time.Duration
	}{
		{
			name: "timer A doubles until B",
			run: func(t *testing.T, h *harness) {
				tx := mustRequest(t, h, "INVITE", peerUDP)
				h.clk.Advance(time.Minute)
				assertErr(t, tx.Err(), ErrTimeout)
			},
			want: ms(0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5),
		},
		{
			name: "timer E doubles up to T2 until F",
			run: func(t *testing.T, h *harness) {
				tx := mustRequest(t, h, "OPTIONS", peerUDP)
				h.clk.Advance(time.Minute)
				assertErr(t, tx.Err(), ErrTimeout)
			},
			want: ms(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5),
		},
		{
			name: "timer E is T2 in Proceeding",
			run: func(t *testing.T, h *harness) {
				tx := mustRequest(t, h, "OPTIONS", peerUDP)
				h.clk.Advance(time.Second)
				h.l.HandleMessage(wire(t, response(tx.Request(), 100, ""), peerUDP))
				h.clk.Advance(time.Minute)
			},
			want: ms(0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5),
		},
		{
			name: "custom T1 and T2",
			cfg:  Config{T1: 100 * time.Millisecond, T2: 400 * time.Millisecond},
			run: func(t *testing.T, h *harness) {
				mustRequest(t, h, "OPTIONS", peerUDP)
				h.clk.Advance(time.Minute)
			},
			// E: .1 .2 .4 .4 ...; F = 64*T1 = 6.4s.
			want: ms(0, 0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3),
		},
		{
			name: "custom timer A",
			cfg:  Config{TimerA: time.Second, TimerB: 10 * time.Second},
			run: func(t *testing.T, h *harness) {
				mustRequest(t, h, "INVITE", peerUDP)
				h.clk.Advance(time.Minute)
			},
			want: ms(0, 1, 3, 7),
		},
		{
			name: "timer G doubles up to T2 until H",
			run: func(t *testing.T, h *harness) {
				h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKg1"}.req(t))
				tx := h.serverTx()
				if err := tx.Respond(response(tx.Request(), 486, "x")); err != nil {
					t.Fatal(err)
				}
				h.clk.Advance(time.Minute)
				assertErr(t, tx.Err(), ErrTimeout)
			},
			want: ms(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5),
		},
		{
			name: "Respond2xx retransmits until stopped",
			run: func(t *testing.T, h *harness) {
				h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKok"}.req(t))
				tx := h.serverTx()
				stop, err := tx.Respond2xx(response(tx.Request(), 200, "x"))
				if err != nil {
					t.Fatal(err)
				}
				h.clk.Advance(5 * time.Second)
				stop()
				h.clk.Advance(time.Minute)
			},
			want: ms(0, 0.5, 1.5, 3.5),
		},
		{
			name: "Respond2xx retransmits until Timer L",
			run: func(t *testing.T, h *harness) {
				h.l.HandleMessage(msgSpec{method: "INVITE", branch: "z9hG4bKok"}.req(t))
				tx := h.serverTx()
				if _, err := tx.Respond2xx(response(tx.Request(), 200, "x")); err != nil {
					t.Fatal(err)
				}
				h.clk.Advance(time.Minute)
				if tx.State() != StateTerminated {
					t.Fatal("not terminated")
				}
			},
			want: ms(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.TryingDelay = time.Hour // keep 100 Trying out of the way
			h := newHarness(t, tt.cfg)
			tt.run(t, h)
			var got []time.Duration
			for _, m := range h.net.take() {
				got = append(got, m.at)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("sent at %v\nwant    %v", got, tt.want)
			}
		})
	}
}

func mustRequest(t testing.TB, h *harness, method string, dst sip.Addr) *ClientTx {
	t.Helper()
	tx, err := h.l.Request(context.Background(), clientReq(t, method, dst.Transport), dst)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	return tx
}

func assertErr(t testing.TB, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("err = %v, want %v", got, want)
	}
}

// TestClientRelease: a released INVITE transaction in Accepted ends at
// once, and a 2xx retransmitted later goes to OnStrayResponse; one
// released before its final response ends with its 2xx, which goes there
// too, and is not delivered. A non-2xx after Release is still
// acknowledged by the transaction.
func TestClientRelease(t *testing.T) {
	clk := clock.NewFake(epoch)
	net := newNetRec(clk)
	strays := make(chan *sip.Response, 4)
	l := New(context.Background(), net, nil, Config{Clock: clk, OnStrayResponse: func(_ context.Context, res *sip.Response) { strays <- res }})
	t.Cleanup(func() { l.Close() })
	stray := func(what string) *sip.Response {
		t.Helper()
		select {
		case res := <-strays:
			return res
		case <-time.After(waitLimit):
			t.Fatalf("no stray response: %s", what)
		}
		return nil
	}

	req := clientReq(t, sip.MethodInvite, sip.UDP)
	tx, err := l.Request(context.Background(), req, peerUDP)
	if err != nil {
		t.Fatal(err)
	}
	ok := wire(t, response(req, 200, "uas"), peerUDP)
	l.HandleMessage(ok)
	if got, _ := drain(tx); len(got) != 1 || got[0] != "200" || tx.State() != StateAccepted {
		t.Fatalf("delivered %v, state %v", got, tx.State())
	}
	tx.Release()
	if !isClosed(tx.Done()) || l.Stats().ClientTransactions != 0 {
		t.Fatalf("released in Accepted: state %v, %+v", tx.State(), l.Stats())
	}
	l.HandleMessage(wire(t, ok, peerUDP))
	if res := stray("the retransmitted 2xx"); res.StatusCode != 200 {
		t.Fatalf("stray %d", res.StatusCode)
	}

	// Released while it rings.
	req = clientReq(t, sip.MethodInvite, sip.UDP)
	if tx, err = l.Request(context.Background(), req, peerUDP); err != nil {
		t.Fatal(err)
	}
	l.HandleMessage(wire(t, response(req, 180, "uas"), peerUDP))
	tx.Release()
	l.HandleMessage(wire(t, response(req, 200, "uas"), peerUDP))
	if res := stray("the 2xx of a released transaction"); res.StatusCode != 200 {
		t.Fatalf("stray %d", res.StatusCode)
	}
	if got, _ := drain(tx); len(got) != 1 || got[0] != "180" || !isClosed(tx.Done()) {
		t.Fatalf("delivered %v (want only the 180), state %v", got, tx.State())
	}

	// Released, then refused: the ACK goes out all the same.
	req = clientReq(t, sip.MethodInvite, sip.UDP)
	if tx, err = l.Request(context.Background(), req, peerUDP); err != nil {
		t.Fatal(err)
	}
	net.wait(t, 1)
	tx.Release()
	l.HandleMessage(wire(t, response(req, 486, "uas"), peerUDP))
	if got := labels(net.wait(t, 1)); got != "ACK" {
		t.Fatalf("sent %s, want the ACK of the 486", got)
	}
	if got, _ := drain(tx); len(got) != 0 || tx.State() != StateCompleted {
		t.Fatalf("delivered %v, state %v", got, tx.State())
	}
}
