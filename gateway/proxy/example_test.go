package proxy_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/proxy"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// printer is a Sender that reports the final responses it is given.
type printer chan string

func (p printer) Send(_ context.Context, msg sip.Message, _ sip.Addr) error {
	if res, ok := msg.(*sip.Response); ok && res.StatusCode >= 200 {
		p <- fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// The proxy and its transaction layer need each other: the layer hands
// requests and stray responses to the proxy, the proxy starts client
// transactions on the layer. Here it answers an OPTIONS addressed to the
// gateway, and refuses to relay an anonymous INVITE to another domain.
func Example() {
	out := make(printer, 4)
	var p *proxy.Proxy
	layer := transaction.New(context.Background(), out,
		transaction.HandlerFunc(func(ctx context.Context, tx *transaction.ServerTx, req *sip.Request) { p.ServeSIP(ctx, tx, req) }),
		transaction.Config{OnStrayResponse: func(ctx context.Context, res *sip.Response) { p.ForwardResponse(ctx, res) }})
	defer layer.Close()
	id, err := identity.New(identity.Config{
		Domains:   []string{"example.com"},
		Endpoints: []identity.Endpoint{{Transport: sip.UDP, Host: "192.0.2.10", Port: 5060}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err = proxy.New(proxy.Options{
		Transactions: layer,
		Sender:       out,
		Identity:     id,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range []struct{ method, uri string }{
		{sip.MethodOptions, "sip:example.com"},
		{sip.MethodInvite, "sip:bob@elsewhere.example"},
	} {
		msg, err := sip.ParseMessage([]byte(r.method + " " + r.uri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 198.51.100.7;branch=" + sip.NewBranch() + "\r\n" +
			"To: <sip:bob@elsewhere.example>\r\nFrom: <sip:eve@elsewhere.example>;tag=1\r\n" +
			"Call-ID: " + sip.NewCallID() + "\r\nCSeq: 1 " + r.method + "\r\nMax-Forwards: 70\r\n" +
			"Content-Length: 0\r\n\r\n"))
		if err != nil {
			fmt.Println(err)
			return
		}
		msg.(*sip.Request).Source = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("198.51.100.7:5060")}
		layer.HandleMessage(msg)
		fmt.Println(<-out)
	}
	// Output:
	// 200 OK
	// 403 Relaying Denied
}
