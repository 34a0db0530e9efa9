package inorder

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// waitLimit bounds every wait of the tests: longer is a failure.
const waitLimit = 10 * time.Second

// wait is the Wait of the Orders under test.
const wait = 2 * time.Second

func fakeClock() *clock.Fake { return clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// request is an in-dialog request of method, numbered seq, sent by the
// side whose tag is from in the dialog callID.
func request(method, callID, from, to string, seq uint32) *sip.Request {
	req := sip.NewRequest(method, sip.URI{Scheme: "sip", User: "bob", Host: "127.0.0.1"})
	req.Add("From", "<sip:alice@example.test>;tag="+from)
	if to != "" {
		to = ";tag=" + to
	}
	req.Add("To", "<sip:bob@example.test>"+to)
	req.Add("Call-ID", callID)
	req.Add("CSeq", sip.CSeq{Seq: seq, Method: method}.String())
	return req
}

// info is the seq-th INFO of the side "a" in the dialog "d1".
func info(seq uint32) *sip.Request { return request(sip.MethodInfo, "d1", "a", "b", seq) }

// awaiting is a request waiting for its turn in its own goroutine.
type awaiting struct {
	req  *sip.Request
	done chan func() // the function Await returned, once it did
}

func await(ctx context.Context, o *Order, req *sip.Request) *awaiting {
	a := &awaiting{req: req, done: make(chan func(), 1)}
	go func() { a.done <- o.Await(ctx, req) }()
	return a
}

// turn waits for a's turn and returns the function that passes it on.
func (a *awaiting) turn(t *testing.T) func() {
	t.Helper()
	select {
	case done := <-a.done:
		return done
	case <-time.After(waitLimit):
		t.Fatalf("CSeq %d: no turn", a.req.CSeq().Seq)
		return nil
	}
}

// waiting fails if a has its turn.
func (a *awaiting) waiting(t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
		t.Fatalf("CSeq %d: its turn came while one ahead of it was not sent", a.req.CSeq().Seq)
	default:
	}
}

// entered waits until n requests of o are in a handler, as Stats says:
// Await has taken them in, and those that wait have their timer set.
func entered(t *testing.T, o *Order, clk *clock.Fake, n, timers int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st := o.Stats()
		if st.Entered == n && clk.Pending() == timers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entered %d, timers %d; want %d, %d", st.Entered, clk.Pending(), n, timers)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustArrive(t *testing.T, o *Order, reqs ...*sip.Request) {
	t.Helper()
	for _, req := range reqs {
		if !o.Arrive(req) {
			t.Fatalf("CSeq %d refused", req.CSeq().Seq)
		}
	}
}

// TestOrderReleasesInArrivalOrder: each request of a dialog's side gets
// its turn once those that arrived before it were sent, whatever order
// their handlers run in; the other side of the dialog and other dialogs
// do not wait for them.
func TestOrderReleasesInArrivalOrder(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	reqs := []*sip.Request{info(1), info(2), info(3)}
	back := request(sip.MethodInfo, "d1", "b", "a", 7)  // the other side
	other := request(sip.MethodInfo, "d2", "a", "b", 1) // another dialog
	mustArrive(t, o, reqs...)
	mustArrive(t, o, back, other)

	ctx := context.Background()
	third := await(ctx, o, reqs[2])
	second := await(ctx, o, reqs[1])
	entered(t, o, clk, 2, 2)
	// Neither the other side nor the other dialog waits.
	o.Await(ctx, back)()
	o.Await(ctx, other)()
	third.waiting(t)
	second.waiting(t)

	sent := o.Await(ctx, reqs[0])
	second.waiting(t)
	sent()
	sent() // more calls do nothing
	done2 := second.turn(t)
	third.waiting(t)
	done2()
	third.turn(t)()
	if st := o.Stats(); st != (Stats{}) {
		t.Fatalf("stats after all were sent: %+v", st)
	}
}

// TestOrderUnordered: requests outside a dialog, ACKs and CANCELs take
// no place and never wait.
func TestOrderUnordered(t *testing.T) {
	o := New(Options{MaxQueued: 1, Clock: fakeClock()})
	mustArrive(t, o, info(1))
	for _, req := range []*sip.Request{
		request(sip.MethodInvite, "d1", "a", "", 1),
		request(sip.MethodAck, "d1", "a", "b", 1),
		request(sip.MethodCancel, "d1", "a", "b", 1),
	} {
		if !o.Arrive(req) {
			t.Fatalf("%s refused", req.Method)
		}
		o.Await(context.Background(), req)()
	}
	if st := o.Stats(); st.Queued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderCap: beyond MaxQueued requests of one dialog's side held, the
// next is refused (and counted) until one of them was sent; the other
// side is not refused. Refusal is a 503 that asks for a retry.
func TestOrderCap(t *testing.T) {
	const max = 3
	o := New(Options{MaxQueued: max, Clock: fakeClock()})
	if o.MaxQueued() != max {
		t.Fatalf("MaxQueued %d", o.MaxQueued())
	}
	for i := range max {
		mustArrive(t, o, info(uint32(i+1)))
	}
	over := info(max + 1)
	if o.Arrive(over) {
		t.Fatal("accepted beyond the cap")
	}
	mustArrive(t, o, request(sip.MethodInfo, "d1", "b", "a", 1))
	if st := o.Stats(); st.Refused != 1 || st.Queued != max+1 {
		t.Fatalf("stats %+v", st)
	}
	res := Refusal(over)
	if res.StatusCode != 503 || res.Get("Retry-After") == "" || res.CSeq() != over.CSeq() {
		t.Fatalf("refusal:\n%s", res)
	}
	o.Await(context.Background(), info(1))() // no place: does not wait
	o.Forget(info(1))                        // no place: does nothing
	if st := o.Stats(); st.Queued != max+1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderCapFrees: once a held request was sent, its place is free.
func TestOrderCapFrees(t *testing.T) {
	o := New(Options{MaxQueued: 2, Clock: fakeClock()})
	first, second := info(1), info(2)
	mustArrive(t, o, first, second)
	if o.Arrive(info(3)) {
		t.Fatal("accepted beyond the cap")
	}
	o.Await(context.Background(), first)()
	mustArrive(t, o, info(3))
}

// TestOrderSkipsAfterWait: a request ahead that never reached a handler
// (refused by the transaction layer after it arrived) is waited for Wait,
// then given up on, and counted; one ahead that reached a handler is
// waited for however long it takes.
func TestOrderSkipsAfterWait(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	lost, slow, next := info(1), info(2), info(3)
	mustArrive(t, o, lost, slow, next)
	ctx := context.Background()
	s := await(ctx, o, slow)
	n := await(ctx, o, next)
	entered(t, o, clk, 2, 2)

	clk.Advance(wait - time.Millisecond)
	s.waiting(t)
	clk.Advance(time.Millisecond)
	doneSlow := s.turn(t)
	if st := o.Stats(); st.Skipped != 1 || st.Queued != 2 {
		t.Fatalf("stats %+v", st)
	}
	// next gave up on nothing: slow is in a handler.
	clk.Advance(10 * wait)
	n.waiting(t)
	doneSlow()
	n.turn(t)()
	if st := o.Stats(); st.Skipped != 1 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A late handler of the one given up on does not wait.
	o.Await(ctx, lost)()
}

// TestOrderAwaitContext: a request stops waiting when its context ends.
func TestOrderAwaitContext(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	first, second := info(1), info(2)
	mustArrive(t, o, first, second)
	ctx, cancel := context.WithCancel(context.Background())
	doneFirst := o.Await(ctx, first)
	a := await(ctx, o, second)
	entered(t, o, clk, 2, 1)
	a.waiting(t)
	cancel()
	a.turn(t)()
	doneFirst()
	if st := o.Stats(); st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderForget: forgetting the request whose turn it is passes the
// turn on; forgetting one further back takes it out of the order.
func TestOrderForget(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	first, second, third := info(1), info(2), info(3)
	mustArrive(t, o, first, second, third)
	a := await(context.Background(), o, third)
	entered(t, o, clk, 1, 1)
	o.Forget(second)
	a.waiting(t)
	o.Forget(first)
	a.turn(t)()
	o.Forget(first) // twice: nothing
	if st := o.Stats(); st != (Stats{}) {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderSweep: the places of requests that never reached a handler
// are dropped once they are Wait old, at the next arrival, so that a
// dialog none of whose requests come any more keeps nothing; places in
// a handler are kept.
func TestOrderSweep(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	held := request(sip.MethodInfo, "d2", "a", "b", 1)
	mustArrive(t, o, held, info(1), info(2), request(sip.MethodNotify, "d3", "b", "a", 5))
	doneHeld := o.Await(context.Background(), held)
	clk.Advance(wait - time.Millisecond)
	mustArrive(t, o, request(sip.MethodInfo, "d4", "a", "b", 1))
	if st := o.Stats(); st.Queued != 5 || st.Entered != 1 {
		t.Fatalf("before Wait: %+v", st)
	}
	clk.Advance(time.Millisecond)
	fresh := request(sip.MethodInfo, "d5", "a", "b", 1)
	mustArrive(t, o, fresh)
	// The three that never reached a handler are counted as given up.
	if st := o.Stats(); st.Queued != 3 || st.Entered != 1 || st.Skipped != 3 {
		t.Fatalf("after the sweep: %+v", st)
	}
	doneHeld()
	o.Forget(fresh)
	clk.Advance(wait)
	mustArrive(t, o, request(sip.MethodInfo, "d6", "a", "b", 1))
	if st := o.Stats(); st.Queued != 1 {
		t.Fatalf("after the second sweep: %+v", st)
	}
}

// TestOrderConcurrent: many dialogs, both sides of each, each request
// arriving in order from its source but served by its own goroutine:
// every side's requests are sent in the order they arrived, and nothing
// is left.
func TestOrderConcurrent(t *testing.T) {
	const dialogs, perSide = 8, 20
	o := New(Options{MaxQueued: perSide, Clock: clock.Real{}, Wait: time.Hour})
	type side struct {
		mu   sync.Mutex
		sent []uint32
	}
	sides := make(map[string]*side)
	var wg sync.WaitGroup
	for d := range dialogs {
		for _, tags := range [][2]string{{"a", "b"}, {"b", "a"}} {
			callID := fmt.Sprintf("call-%d", d)
			s := &side{}
			sides[callID+tags[0]] = s
			wg.Go(func() {
				var handlers sync.WaitGroup
				for i := range perSide {
					req := request(sip.MethodNotify, callID, tags[0], tags[1], uint32(i+1))
					if !o.Arrive(req) {
						t.Errorf("%s: CSeq %d refused", callID, i+1)
						return
					}
					handlers.Go(func() {
						done := o.Await(context.Background(), req)
						s.mu.Lock()
						s.sent = append(s.sent, req.CSeq().Seq)
						s.mu.Unlock()
						done()
					})
				}
				handlers.Wait()
			})
		}
	}
	wg.Wait()
	for name, s := range sides {
		if len(s.sent) != perSide {
			t.Fatalf("%s: sent %v", name, s.sent)
		}
		for i, seq := range s.sent {
			if seq != uint32(i+1) {
				t.Fatalf("%s: sent in the order %v", name, s.sent)
			}
		}
	}
	if st := o.Stats(); st.Queued != 0 || st.Refused != 0 || st.Skipped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderDuplicate: a request given to Arrive twice keeps its one
// place, even at the cap.
func TestOrderDuplicate(t *testing.T) {
	o := New(Options{MaxQueued: 1, Clock: fakeClock()})
	req := info(1)
	mustArrive(t, o, req, req)
	if st := o.Stats(); st.Queued != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
	o.Await(context.Background(), req)()
	if st := o.Stats(); st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOrderCapStale: a dialog whose places are held by requests that
// never reached a handler for Wait is not refused: those are given up
// on, although the last sweep is more recent than Wait.
func TestOrderCapStale(t *testing.T) {
	clk := fakeClock()
	o := New(Options{MaxQueued: 2, Wait: wait, Clock: clk})
	mustArrive(t, o, request(sip.MethodInfo, "d2", "a", "b", 1)) // sweeps
	clk.Advance(wait / 2)
	mustArrive(t, o, info(1), info(2)) // refused by the transaction layer, say
	clk.Advance(wait / 2)
	mustArrive(t, o, request(sip.MethodInfo, "d3", "a", "b", 1)) // sweeps: they are young
	clk.Advance(wait / 2)
	next := info(3)
	if !o.Arrive(next) {
		t.Fatalf("refused behind places given up on: %+v", o.Stats())
	}
	if st := o.Stats(); st.Skipped != 3 { // d2, then info(1) and info(2)
		t.Fatalf("places dropped by the dialog's own sweep not counted: %+v", st)
	}
	o.Await(context.Background(), next)()
}

// TestOrderSkipsFromArrival: the Wait of a request ahead runs from when
// it arrived: a request whose handler starts late does not wait a whole
// Wait more for one ahead that never reached a handler.
func TestOrderSkipsFromArrival(t *testing.T) {
	clk := fakeClock()
	o := New(Options{Wait: wait, Clock: clk})
	lost, late := info(1), info(2)
	mustArrive(t, o, lost, late)
	clk.Advance(wait)
	a := await(context.Background(), o, late)
	a.turn(t)()
	if st := o.Stats(); st.Skipped != 1 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}
