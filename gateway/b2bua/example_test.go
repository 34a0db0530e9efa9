package b2bua_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard/switchboard/gateway/b2bua"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/media"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/transport"
)

// Example shows the wiring in the binary: the B2BUA shares the transport
// and transaction layers with the proxy, sees every request with a To tag
// first, and gets the INVITEs that the proxy finds crossing between a
// browser and a phone.
func Example() {
	var (
		engine *media.Engine       // media.NewEngine(ctx, ...)
		tl     *transport.Layer    // transport.NewLayer(...) with its transports
		proxy  transaction.Handler // the proxy core
	)
	var b *b2bua.B2BUA
	layer := transaction.New(context.Background(), tl, transaction.HandlerFunc(func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) {
		if req.To().Tag() != "" && b.HandleInDialog(ctx, tx, req) {
			return // BYE, re-INVITE, UPDATE, INFO, ACK... of a B2BUA call
		}
		// The proxy routes; when the caller is a browser and the target a
		// phone (or the reverse), it calls:
		//
		//	b.Call(ctx, tx, req, b2bua.Target{URI: contact, Dst: binding.Source, WebRTC: false})
		proxy.ServeSIP(ctx, tx, req)
	}), transaction.Config{})
	id, err := identity.New(identity.Config{
		Domains: []string{"example.com"},
		Endpoints: []identity.Endpoint{
			{Transport: sip.UDP, Host: "gw.example.com", Port: 5060},
			{Transport: sip.WS, Host: "gw.example.com", Port: 443},
		},
	})
	if err != nil {
		panic(err)
	}
	b, err = b2bua.New(b2bua.Options{
		Engine:       engine,
		Transactions: layer,
		Sender:       tl,
		// Who the gateway is: its Via and Contact on each leg.
		Identity: id,
		Logger:   slog.Default(),
	})
	if err != nil {
		panic(err)
	}

	// SIGTERM: end the calls with BYE, then close the layers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.Close(ctx)
	_ = layer.Close()
}
