package transaction

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// held is what a server transaction keeps of its messages.
type held struct{ req, trying, last, ok bool }

func heldBy(tx *ServerTx) held {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	h := held{req: tx.req != nil, last: tx.last != nil}
	if tx.invite() {
		h.trying, h.ok = tx.trying != nil, tx.ok != nil
	}
	return h
}

// TestLingeringSheds: once its handler has returned, a server transaction
// that only absorbs retransmissions (Timers J, L, H and I; under call
// overload, most of the heap) keeps neither the request nor the 100
// Trying, and in Accepted and Confirmed no response at all; it still
// absorbs and answers as RFC 3261 and RFC 6026 say. A client transaction
// lets go of its request at its final response.
func TestLingeringSheds(t *testing.T) {
	clk := clock.NewFake(epoch)
	net := newNetRec(clk)
	code := 200
	txs := make(chan *ServerTx, 8)
	acks := make(chan *sip.Request, 8)
	l := New(context.Background(), net, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			acks <- req
			return
		}
		if err := tx.Respond(response(req, code, "uas")); err != nil {
			t.Errorf("respond: %v", err)
		}
		txs <- tx
	}), Config{Clock: clk, TryingDelay: -1})
	t.Cleanup(func() { l.Close() })
	// answered sends s, answered with status, waits for its handler to
	// return, checks what was sent and what the transaction holds, and
	// returns it.
	answered := func(s msgSpec, status int, sent string, want held) *ServerTx {
		t.Helper()
		code = status
		l.HandleMessage(s.req(t))
		tx := <-txs
		eventually(t, "the handler returned", func() bool { return l.Stats().Handlers == 0 })
		if got := labels(net.take()); got != sent {
			t.Fatalf("sent %s, want %s", got, sent)
		}
		if h := heldBy(tx); h != want {
			t.Fatalf("%v holds %+v, want %+v", tx.State(), h, want)
		}
		return tx
	}
	noHandler := func() {
		t.Helper()
		select {
		case tx := <-txs:
			t.Fatalf("a retransmission reached the handler as %v", tx)
		case req := <-acks:
			t.Fatalf("an ack reached the handler: %s", req.Method)
		default:
		}
	}

	t.Run("non-INVITE in Completed", func(t *testing.T) {
		s := spec("BYE", 1, phoneUDP)
		tx := answered(s, 200, "200 BYE", held{last: true}) // its final response alone
		if tx.Request() != nil {
			t.Fatal("Request() still returns the request")
		}
		l.HandleMessage(s.req(t))
		if got := labels(net.wait(t, 1)); got != "200 BYE" {
			t.Fatalf("retransmitted BYE: sent %s, want the 200 again", got)
		}
		noHandler()
	})

	t.Run("INVITE in Accepted", func(t *testing.T) {
		s := spec("INVITE", 2, phoneUDP)
		tx := answered(s, 200, "100 INVITE,200 INVITE", held{}) // no message
		l.HandleMessage(s.req(t))                               // absorbed (RFC 6026 §8.7)
		if got := labels(net.take()); got != "" {
			t.Fatalf("retransmitted INVITE: sent %s, want it absorbed", got)
		}
		noHandler()
		ack := s
		ack.method, ack.toTag = sip.MethodAck, "uas"
		l.HandleMessage(ack.req(t))
		select {
		case req := <-acks:
			if req.Method != sip.MethodAck {
				t.Fatalf("handler got %s", req.Method)
			}
		case <-t.Context().Done():
		}
		if tx.State() != StateAccepted {
			t.Fatalf("state %v", tx.State())
		}
	})

	t.Run("INVITE in Completed, then Confirmed", func(t *testing.T) {
		s := spec("INVITE", 3, phoneUDP)
		tx := answered(s, 486, "100 INVITE,486 INVITE", held{last: true})
		l.HandleMessage(s.req(t))
		if got := labels(net.wait(t, 1)); got != "486 INVITE" {
			t.Fatalf("retransmitted INVITE: sent %s, want the 486 again", got)
		}
		clk.Advance(DefaultT1) // Timer G
		if got := labels(net.wait(t, 1)); got != "486 INVITE" {
			t.Fatalf("Timer G: sent %s, want the 486 again", got)
		}
		ack := s
		ack.method, ack.toTag = sip.MethodAck, "uas"
		l.HandleMessage(ack.req(t))
		if tx.State() != StateConfirmed {
			t.Fatalf("state %v after the ACK", tx.State())
		}
		if h := heldBy(tx); h != (held{}) {
			t.Fatalf("Confirmed holds %+v, want no message", h)
		}
		l.HandleMessage(ack.req(t))
		l.HandleMessage(s.req(t))
		if got := labels(net.take()); got != "" {
			t.Fatalf("in Confirmed: sent %s, want the ACK and INVITE absorbed", got)
		}
		noHandler()
	})

	t.Run("client", func(t *testing.T) {
		for _, tt := range []struct {
			method string
			code   int
			resent string // what a retransmitted final response makes it send
		}{
			{"BYE", 200, ""},
			{"INVITE", 486, "ACK"},
		} {
			tx, err := l.Request(context.Background(), clientReq(t, tt.method, "UDP"), peerUDP)
			if err != nil {
				t.Fatal(err)
			}
			req := tx.Request()
			res := response(req, tt.code, "b")
			l.HandleMessage(wire(t, res, peerUDP))
			if tx.Request() != nil {
				t.Fatalf("%s: the request is kept after the final response", tt.method)
			}
			net.take()
			l.HandleMessage(wire(t, res, peerUDP))
			if got := labels(net.take()); got != tt.resent {
				t.Fatalf("%s: a retransmitted %d made it send %q, want %q", tt.method, tt.code, got, tt.resent)
			}
		}
	})
}

// TestLingerWeighsItsResponse: a lingering transaction takes places for
// the final response it keeps, not for the request it let go of, so that
// the bound stays one on memory when a UAS answers with large responses:
// ten BYEs answered with 20 KiB each would otherwise linger in 10 places
// of 40, holding 200 KiB.
func TestLingerWeighsItsResponse(t *testing.T) {
	const max = 40
	clk := clock.NewFake(epoch)
	net := newNetRec(clk)
	body := ""
	l := New(context.Background(), net, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		if tx == nil {
			return
		}
		res := response(req, 200, "uas")
		res.Body = []byte(body)
		if err := tx.Respond(res); err != nil {
			t.Errorf("respond: %v", err)
		}
	}), Config{Clock: clk, MaxServerTransactions: max})
	t.Cleanup(func() { l.Close() })
	send := func(n int) Stats {
		t.Helper()
		l.HandleMessage(spec("BYE", n, from(fmt.Sprintf("192.0.2.%d", n))).req(t))
		if got := labels(net.wait(t, 1)); got != "200 BYE" {
			t.Fatalf("sent %s", got)
		}
		eventually(t, "the handler returned", func() bool { return l.Stats().Handlers == 0 })
		return l.Stats()
	}

	// Small answers: a place each, as the request took.
	for n := range 4 {
		if st := send(n); st.Pending != n+1 {
			t.Fatalf("after %d small answers: %d places, want %d", n+1, st.Pending, n+1)
		}
	}
	clk.Advance(64 * DefaultT1) // Timer J ends them
	eventually(t, "the places back", func() bool { return l.Stats().Pending == 0 })

	body = strings.Repeat("x", 20<<10)
	w := places(txOverhead+reqOverhead+len(body), max)
	if w < 5 || w > 7 {
		t.Fatalf("a lingering 20 KiB answer weighs %d places, want about 6", w)
	}
	for n := range 10 {
		st := send(10 + n)
		// The last one may be over the bound until the next request
		// makes room: by its weight less the place its request took.
		if st.Pending > max+w-1 {
			t.Fatalf("after %d large answers: %d places, over %d", n+1, st.Pending, max+w-1)
		}
		if st.Pending != st.ServerTransactions*w {
			t.Fatalf("after %d large answers: %d places for %d transactions, want %d each", n+1, st.Pending, st.ServerTransactions, w)
		}
	}
	if st := l.Stats(); st.Evicted == 0 || st.ServerTransactions > max/w+1 {
		t.Fatalf("stats %+v: want the oldest ended early, at most %d kept", st, max/w+1)
	}
}
