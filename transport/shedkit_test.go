package transport_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
)

// shedStack is the overload tests' stack as the gateway wires it: a UDP
// transport on loopback, the Layer over it with workers, and a
// transaction layer over that which sheds new work (a request that does
// not continue work begun) with 503 and Retry-After when Overloaded says
// so, and answers the rest with answer.
type shedStack struct {
	udp    *sipudp.Transport
	tl     *transport.Layer
	tx     *transaction.Layer
	server *net.UDPAddr // where the stack listens
}

func newShedStack(t *testing.T, ctx context.Context, workers int, t1 time.Duration, answer func(*sip.Request) int) *shedStack {
	t.Helper()
	udp, err := sipudp.Listen(ctx, "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := &shedStack{udp: udp, tl: transport.NewLayer(transport.Config{Workers: workers})}
	s.tl.Add(udp)
	s.server = net.UDPAddrFromAddrPort(udp.LocalAddr().AddrPort)
	s.tx = transaction.New(ctx, s.tl, transaction.HandlerFunc(func(_ context.Context, st *transaction.ServerTx, req *sip.Request) {
		if st != nil {
			_ = st.Respond(sip.NewResponse(req, answer(req), ""))
		}
	}), transaction.Config{
		T1:            t1,
		OverloadDelay: time.Millisecond,
		QueueDelay:    s.tl.QueueDelay,
		QueueLen:      s.tl.QueueLen,
		Admit: func(req *sip.Request, waited time.Duration) (*sip.Response, bool) {
			if !req.ContinuesWork() && s.tx.Overloaded(req, waited) {
				res := sip.NewResponse(req, 503, "Overloaded")
				res.Set("Retry-After", "5")
				return res, false
			}
			return nil, false
		},
	})
	return s
}
