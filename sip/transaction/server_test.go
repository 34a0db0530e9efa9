package transaction

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// Transitions of the INVITE server transaction (RFC 3261 Figure 7 as
// changed by RFC 6026 Figure 5). Every one is exercised below.
//
//	id      from        event                        to          action
//	IST-1   -           INVITE                       Proceeding  to TU (Handler), start the 100 Trying timer
//	IST-2   Proceeding  200 ms without TU response   Proceeding  send 100 Trying
//	IST-3   Proceeding  INVITE (retransmission)      Proceeding  resend last provisional (100 if none yet)
//	IST-4   Proceeding  1xx from TU                  Proceeding  send (no automatic 100 afterwards)
//	IST-5   Proceeding  2xx from TU                  Accepted    send, start L
//	IST-6   Proceeding  300-699 from TU              Completed   send, start G (unreliable), H
//	IST-7   Proceeding  transport error              Terminated  ErrTransport
//	IST-8   Completed   INVITE (retransmission)      Completed   resend final
//	IST-9   Completed   Timer G                      Completed   resend final, G = min(2G, T2)
//	IST-10  Completed   ACK                          Confirmed   start I
//	IST-11  Completed   Timer H                      Terminated  ErrTimeout
//	IST-12  Completed   transport error              Terminated  ErrTransport
//	IST-13  Confirmed   ACK, INVITE                  Confirmed   absorbed
//	IST-14  Confirmed   Timer I                      Terminated  -
//	IST-15  Accepted    INVITE (retransmission)      Accepted    absorbed
//	IST-16  Accepted    2xx from TU                  Accepted    send (TU retransmits the 2xx)
//	IST-17  Accepted    ACK                          Accepted    to TU (Handler with nil tx)
//	IST-18  Accepted    Timer L                      Terminated  -
//	IST-19  Accepted    transport error              Accepted    Respond returns ErrTransport
//	IST-20  Confirmed   reliable transport (I = 0)   Terminated  right after the ACK
//	IST-21  Accepted    non-2xx from TU              Accepted    refused: ErrFinalSent
var istTransitions = transitionIDs("IST", 21)

// Transitions of the non-INVITE server transaction (RFC 3261 Figure 8).
//
//	id      from        event                        to          action
//	NIST-1  -           request                      Trying      to TU (Handler)
//	NIST-2  Trying      request (retransmission)     Trying      absorbed
//	NIST-3  Trying      1xx from TU                  Proceeding  send
//	NIST-4  Trying      200-699 from TU              Completed   send, start J
//	NIST-5  Trying      transport error              Terminated  ErrTransport
//	NIST-6  Proceeding  1xx from TU                  Proceeding  send
//	NIST-7  Proceeding  request (retransmission)     Proceeding  resend last provisional
//	NIST-8  Proceeding  200-699 from TU              Completed   send, start J
//	NIST-9  Proceeding  transport error              Terminated  ErrTransport
//	NIST-10 Completed   request (retransmission)     Completed   resend final
//	NIST-11 Completed   response from TU             Completed   refused: ErrFinalSent
//	NIST-12 Completed   Timer J                      Terminated  -
//	NIST-13 Completed   transport error              Terminated  ErrTransport
//	NIST-14 Completed   reliable transport (J = 0)   Terminated  right after the final
//	NIST-15 Terminated  response from TU             Terminated  refused: ErrTerminated
var nistTransitions = transitionIDs("NIST", 15)

type sstep struct {
	ids   string
	do    func(s *sscn)
	state State
	sent  string
	err   error // of Respond in this step
}

type sscn struct {
	t       *testing.T
	h       *harness
	spec    msgSpec
	tx      *ServerTx
	respErr error
}

func sstart(s *sscn) {
	s.h.l.HandleMessage(s.spec.req(s.t))
	s.tx = s.h.serverTx()
}

// again delivers a retransmission of the request.
func again(s *sscn) { s.h.l.HandleMessage(s.spec.req(s.t)) }

// ackWith delivers the ACK of a non-2xx response (same branch, §17.1.1.3).
func ackWith(toTag string) func(*sscn) {
	return func(s *sscn) {
		a := s.spec
		a.method, a.toTag = sip.MethodAck, toTag
		s.h.l.HandleMessage(a.req(s.t))
	}
}

// ackToTU delivers an ACK that must reach the Handler with a nil tx.
func ackToTU(s *sscn) {
	ackWith("uas")(s)
	if got := s.h.ack(); got.Method != sip.MethodAck {
		s.t.Fatalf("handler got %s", got.Method)
	}
}

func reply(code int) func(*sscn) {
	return func(s *sscn) { s.respErr = s.tx.Respond(response(s.tx.Request(), code, "uas")) }
}

func sadvance(d time.Duration) func(*sscn) { return func(s *sscn) { s.h.clk.Advance(d) } }

func sfail(f func(*sscn)) func(*sscn) {
	return func(s *sscn) { s.h.net.failNext(1); f(s) }
}

type sscenario struct {
	name  string
	spec  msgSpec
	steps []sstep
	err   error
}

func runServerScenarios(t *testing.T, all []string, scenarios []sscenario) {
	runServerScenariosOn(t, all, scenarios, false)
}

// runServerScenariosOn is runServerScenarios on a network that is a
// Resender when kept.
func runServerScenariosOn(t *testing.T, all []string, scenarios []sscenario, kept bool) {
	covered := map[string]bool{}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := newHarnessOn(t, Config{}, kept)
			if sc.spec.branch == "" {
				sc.spec.branch = sip.NewBranch()
			}
			s := &sscn{t: t, h: h, spec: sc.spec}
			for i, st := range sc.steps {
				s.respErr = nil
				st.do(s)
				if !errors.Is(s.respErr, st.err) || (st.err == nil) != (s.respErr == nil) {
					t.Fatalf("step %d (%s): Respond = %v, want %v", i, st.ids, s.respErr, st.err)
				}
				if got := s.tx.State(); got != st.state {
					t.Fatalf("step %d (%s): state %v, want %v", i, st.ids, got, st.state)
				}
				sent := h.net.take()
				if got := labels(sent); got != st.sent {
					t.Fatalf("step %d (%s): sent %q, want %q", i, st.ids, got, st.sent)
				}
				for _, m := range sent {
					if want := s.spec.req(t).Source; m.dst != want {
						t.Fatalf("step %d: sent to %v, want %v", i, m.dst, want)
					}
				}
				for _, id := range strings.Fields(st.ids) {
					covered[id] = true
				}
			}
			if err := s.tx.Err(); !errors.Is(err, sc.err) || (sc.err == nil) != (err == nil) {
				t.Fatalf("Err() = %v, want %v", err, sc.err)
			}
			if s.tx.State() == StateTerminated && !isClosed(s.tx.Done()) {
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

func TestServerInviteTransitions(t *testing.T) {
	const T1, T4 = DefaultT1, DefaultT4
	inv := msgSpec{method: "INVITE"}
	invTCP := msgSpec{method: "INVITE", src: phoneTCP}
	runServerScenarios(t, istTransitions, []sscenario{
		{name: "reject and ack", spec: inv, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"", sadvance(200*time.Millisecond - 1), StateProceeding, "", nil},
			{"IST-2", sadvance(1), StateProceeding, "100 INVITE", nil},
			{"IST-3", again, StateProceeding, "100 INVITE", nil},
			{"IST-4", reply(180), StateProceeding, "180 INVITE", nil},
			{"IST-3", again, StateProceeding, "180 INVITE", nil},
			{"IST-6", reply(486), StateCompleted, "486 INVITE", nil},
			{"IST-8", again, StateCompleted, "486 INVITE", nil},
			{"IST-9", sadvance(T1), StateCompleted, "486 INVITE", nil},
			{"IST-10", ackWith("uas"), StateConfirmed, "", nil},
			{"IST-13", ackWith("uas"), StateConfirmed, "", nil},
			{"IST-13", again, StateConfirmed, "", nil},
			{"", sadvance(T4 - 1), StateConfirmed, "", nil},
			{"IST-14", sadvance(1), StateTerminated, "", nil},
		}},
		{name: "tu answers before 100", spec: inv, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"", sadvance(100 * time.Millisecond), StateProceeding, "", nil},
			{"IST-4", reply(180), StateProceeding, "180 INVITE", nil},
			{"", sadvance(time.Second), StateProceeding, "", nil},
		}},
		{name: "retransmission before 100", spec: inv, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-3", again, StateProceeding, "100 INVITE", nil},
			{"", sadvance(time.Second), StateProceeding, "", nil},
		}},
		{name: "accept", spec: inv, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-5", reply(200), StateAccepted, "200 INVITE", nil},
			{"IST-15", again, StateAccepted, "", nil},
			{"IST-16", reply(200), StateAccepted, "200 INVITE", nil},
			{"IST-21", reply(486), StateAccepted, "", ErrFinalSent},
			{"IST-17", ackToTU, StateAccepted, "", nil},
			{"", sadvance(64*T1 - 1), StateAccepted, "", nil},
			{"IST-18", sadvance(1), StateTerminated, "", nil},
			{"", reply(200), StateTerminated, "", ErrTerminated},
		}},
		{name: "timer H", spec: inv, err: ErrTimeout, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-6", reply(500), StateCompleted, "500 INVITE", nil},
			{"IST-9 IST-11", sadvance(64 * T1), StateTerminated, strings.Repeat("500 INVITE,", 9) + "500 INVITE", nil},
		}},
		{name: "transport error on provisional", spec: inv, err: ErrTransport, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-7", sfail(reply(180)), StateTerminated, "", ErrTransport},
		}},
		{name: "transport error on 100", spec: inv, err: ErrTransport, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-7", sfail(sadvance(time.Second)), StateTerminated, "", nil},
		}},
		{name: "transport error on final", spec: inv, err: ErrTransport, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-7", sfail(reply(404)), StateTerminated, "", ErrTransport},
		}},
		{name: "transport error on timer G", spec: inv, err: ErrTransport, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-6", reply(404), StateCompleted, "404 INVITE", nil},
			{"IST-12", sfail(sadvance(T1)), StateTerminated, "", nil},
		}},
		{name: "transport error in accepted", spec: inv, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-5", reply(200), StateAccepted, "200 INVITE", nil},
			{"IST-19", sfail(reply(200)), StateAccepted, "", ErrTransport},
			{"IST-16", reply(200), StateAccepted, "200 INVITE", nil},
		}},
		{name: "reliable", spec: invTCP, steps: []sstep{
			{"IST-1", sstart, StateProceeding, "", nil},
			{"IST-6", reply(486), StateCompleted, "486 INVITE", nil},
			{"", sadvance(10 * T1), StateCompleted, "", nil}, // no Timer G
			{"IST-10 IST-20", ackWith("uas"), StateTerminated, "", nil},
		}},
	})
}

func TestServerNonInviteTransitions(t *testing.T) {
	t.Run("sender", func(t *testing.T) { testServerNonInviteTransitions(t, false) })
	t.Run("resender", func(t *testing.T) { testServerNonInviteTransitions(t, true) })
}

// testServerNonInviteTransitions runs the transitions over a Sender, or
// over a Resender, through which the final response is kept as bytes
// and its retransmissions are those bytes.
func testServerNonInviteTransitions(t *testing.T, kept bool) {
	const T1 = DefaultT1
	opt := msgSpec{method: "OPTIONS"}
	runServerScenariosOn(t, nistTransitions, []sscenario{
		{name: "provisional then final", spec: opt, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-2", again, StateTrying, "", nil},
			{"", sadvance(time.Second), StateTrying, "", nil}, // no automatic 100
			{"NIST-3", reply(100), StateProceeding, "100 OPTIONS", nil},
			{"NIST-6", reply(183), StateProceeding, "183 OPTIONS", nil},
			{"NIST-7", again, StateProceeding, "183 OPTIONS", nil},
			{"NIST-8", reply(200), StateCompleted, "200 OPTIONS", nil},
			{"NIST-10", again, StateCompleted, "200 OPTIONS", nil},
			{"NIST-11", reply(404), StateCompleted, "", ErrFinalSent},
			{"", sadvance(64*T1 - 1), StateCompleted, "", nil},
			{"NIST-12", sadvance(1), StateTerminated, "", nil},
			{"NIST-15", reply(200), StateTerminated, "", ErrTerminated},
		}},
		{name: "final in trying", spec: msgSpec{method: "BYE"}, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-4", reply(200), StateCompleted, "200 BYE", nil},
			{"NIST-12", sadvance(64 * T1), StateTerminated, "", nil},
		}},
		{name: "transport error in trying", spec: opt, err: ErrTransport, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-5", sfail(reply(200)), StateTerminated, "", ErrTransport},
		}},
		{name: "transport error in proceeding", spec: opt, err: ErrTransport, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-3", reply(100), StateProceeding, "100 OPTIONS", nil},
			{"NIST-9", sfail(reply(180)), StateTerminated, "", ErrTransport},
		}},
		{name: "transport error in completed", spec: opt, err: ErrTransport, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-4", reply(200), StateCompleted, "200 OPTIONS", nil},
			{"NIST-13", sfail(again), StateTerminated, "", nil},
		}},
		{name: "reliable", spec: msgSpec{method: "REGISTER", src: phoneTCP}, steps: []sstep{
			{"NIST-1", sstart, StateTrying, "", nil},
			{"NIST-4 NIST-14", reply(200), StateTerminated, "200 REGISTER", nil},
		}},
	}, kept)
}

// TestServerDoneAfterEnd: Done, made only when asked for, is closed
// whether it was asked for before the transaction ended or after.
func TestServerDoneAfterEnd(t *testing.T) {
	txs := make(chan *ServerTx, 2)
	l := New(context.Background(), senderFunc(func(context.Context, sip.Message, sip.Addr) error { return nil }),
		HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
			if req.CallID() == "asked" {
				_ = tx.Done() // asked before the end
			}
			res := sip.NewResponse(req, 200, "")
			res.SetToTag("done")
			_ = tx.Respond(res) // over TCP: terminated at once (Timer J is 0)
			txs <- tx
		}), Config{})
	defer l.Close()
	for _, callID := range []string{"asked", "not-asked"} {
		l.HandleMessage(msgSpec{method: "OPTIONS", branch: "z9hG4bK" + callID, callID: callID, src: phoneTCP}.req(t))
		tx := <-txs
		if !isClosed(tx.Done()) || tx.State() != StateTerminated {
			t.Errorf("%s: Done not closed after the end (state %v)", callID, tx.State())
		}
	}
}
