package transport_test

import (
	"context"
	"log"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/siptcp"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
)

// A gateway listens on UDP and TCP, reads through the transaction layer,
// and answers every request with 200.
func ExampleLayer() {
	ctx := context.Background()
	udp, err := sipudp.Listen(ctx, "127.0.0.1:5060", sipudp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	tcp, err := siptcp.Listen(ctx, "127.0.0.1:5060", siptcp.Options{})
	if err != nil {
		log.Fatal(err)
	}
	layer := transport.NewLayer(transport.Config{})
	layer.Add(udp)
	layer.Add(tcp)

	tx := transaction.New(context.Background(), layer, transaction.HandlerFunc(func(_ context.Context, st *transaction.ServerTx, req *sip.Request) {
		if st != nil {
			_ = st.Respond(sip.NewResponse(req, 200, ""))
		}
	}), transaction.Config{})

	err = layer.Serve(ctx, transport.HandlerFuncs{
		Message: tx.HandleMessage,
		FlowClosed: func(flow sip.Addr) {
			log.Printf("flow %v closed: drop its registrations", flow)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
}
