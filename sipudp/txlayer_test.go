package sipudp_test

import (
	"context"
	"testing"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// TestWithTransactionLayer runs the real transaction layer over the Layer:
// a phone behind a NAT asks, and the answer finds its real port; its
// retransmission is absorbed and answered again by the server transaction,
// with the same bytes.
func TestWithTransactionLayer(t *testing.T) {
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	l := transporttest.NewLayer(transport.Config{}, tr)
	served := make(chan string, 4)
	tx := transaction.New(context.Background(), l, transaction.HandlerFunc(func(_ context.Context, st *transaction.ServerTx, req *sip.Request) {
		served <- req.CallID()
		if st != nil {
			res := sip.NewResponse(req, 200, "")
			res.SetToTag(sip.NewTag())
			_ = st.Respond(res)
		}
	}), transaction.Config{})
	t.Cleanup(func() { tx.Close() })
	transporttest.Serve(t, l, transport.HandlerFuncs{Message: tx.HandleMessage})

	c := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	c.Send(tr.LocalAddr(), options("tx1"))
	first, _ := c.Read()
	res, err := sip.ParseDatagram(first)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := res.(*sip.Response); !ok || r.StatusCode != 200 || r.CallID() != "tx1" {
		t.Fatalf("got %q", first)
	}
	// The transaction keeps the 200 as the bytes it went as
	// (transaction.Resender): the copy is those bytes.
	c.Send(tr.LocalAddr(), options("tx1"))
	if again, _ := c.Read(); string(again) != string(first) {
		t.Errorf("retransmission answered with %q, want %q", again, first)
	}
	if got := <-served; got != "tx1" {
		t.Errorf("served %s", got)
	}
	if len(served) != 0 {
		t.Error("retransmission reached the handler")
	}
}
