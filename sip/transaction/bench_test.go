package transaction

import (
	"context"
	"math"
	"strconv"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// BenchmarkServerNonInvite measures a non-INVITE server transaction round
// trip: HandleMessage → handler goroutine → Respond → Sender. Over TCP, so
// the transaction ends with the response (J = 0) and the real clock.
func BenchmarkServerNonInvite(b *testing.B) {
	sent := make(chan struct{}, 1)
	sender := senderFunc(func(context.Context, sip.Message, sip.Addr) error {
		sent <- struct{}{}
		return nil
	})
	l := New(context.Background(), sender, HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		res := sip.NewResponse(req, 200, "")
		res.SetToTag("bench")
		_ = tx.Respond(res)
	}), Config{})
	defer l.Close()
	reqs := benchRequests(b, phoneTCP)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.HandleMessage(reqs[i])
		<-sent
	}
}

// BenchmarkClientNonInvite measures a non-INVITE client transaction:
// Request → Sender, then the 200 through HandleMessage to Responses. Over
// TCP (no Timer E, K = 0); Timer F is armed and stopped on the real clock.
func BenchmarkClientNonInvite(b *testing.B) {
	benchClient(b, peerTCP)
}

// BenchmarkClientNonInviteUDP is the same over UDP: Timers E and F are
// armed and stopped, Timer K stays armed for T4.
func BenchmarkClientNonInviteUDP(b *testing.B) {
	benchClient(b, peerUDP)
}

func benchClient(b *testing.B, dst sip.Addr) {
	// Over UDP each transaction stays for Timer K (T4, 5 s): no bound of
	// client transactions for a benchmark's b.N.
	l := New(context.Background(), senderFunc(func(context.Context, sip.Message, sip.Addr) error { return nil }), nil,
		Config{MaxClientTransactions: math.MaxInt32})
	defer l.Close()
	reqs := benchRequests(b, dst)
	ress := make([]*sip.Response, b.N)
	for i, r := range reqs {
		ress[i] = response(r, 200, "x")
		ress[i].Source = dst
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx, err := l.Request(ctx, reqs[i], dst)
		if err != nil {
			b.Fatal(err)
		}
		l.HandleMessage(ress[i])
		if res := <-tx.Responses(); res.StatusCode != 200 {
			b.Fatal(res.StatusCode)
		}
	}
}

// benchRequests returns b.N OPTIONS requests with distinct branches, cloned
// from one parsed message so that the setup stays cheap.
func benchRequests(b *testing.B, src sip.Addr) []*sip.Request {
	tmpl := msgSpec{method: "OPTIONS", branch: "z9hG4bK", src: src}.req(b)
	via, _ := tmpl.TopVia()
	reqs := make([]*sip.Request, b.N)
	for i := range reqs {
		r := tmpl.Clone()
		v := via
		v.Params = sip.Params(";branch=z9hG4bKbench" + strconv.Itoa(i))
		r.SetTopVia(v)
		reqs[i] = r
	}
	return reqs
}
