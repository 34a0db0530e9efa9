package registrar_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// A phone registers: the registrar challenges it, the phone answers, and
// the 200 lists its binding. No sockets: the gateway hands ServeRegister
// what a transport parsed and sends back what it returns.
func ExampleRegistrar_ServeRegister() {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

	users, _ := accounts.FromUserList("alice:secret,1000:pass", "example.com")
	store, _ := accounts.NewStore(users)
	loc, _ := location.Open(location.Options{Clock: clk}) // no Dir: in memory only
	defer loc.Close()
	// Who the gateway is: its domain, and where it listens.
	id, _ := identity.New(identity.Config{
		Domains:   []string{"example.com"},
		Endpoints: []identity.Endpoint{{Transport: sip.UDP, Host: "192.0.2.1", Port: 5060}},
	})
	reg, err := registrar.New(registrar.Options{Identity: id, Accounts: store, Location: loc, Clock: clk})
	if err != nil {
		panic(err)
	}

	register := func(cseq int, authorization string) *sip.Response {
		msg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK%d\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:alice@example.com>;tag=a73kszlfl\r\n"+
			"To: <sip:alice@example.com>\r\n"+
			"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n"+
			"CSeq: %d REGISTER\r\n"+
			"Contact: <sip:alice@192.0.2.10:5060>;expires=600\r\n"+
			"%s"+
			"Content-Length: 0\r\n\r\n", cseq, cseq, authorization)
		m, err := sip.ParseDatagram([]byte(msg))
		if err != nil {
			panic(err)
		}
		req := m.(*sip.Request)
		req.Source = sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5060")}
		return reg.ServeRegister(ctx, req)
	}

	res := register(1, "")
	fmt.Println(res.StatusCode, res.Reason)

	var chs []digest.Challenge
	for _, v := range res.Values("WWW-Authenticate") {
		ch, _ := digest.ParseChallenge(v)
		chs = append(chs, ch)
	}
	ch, _ := digest.Select(chs)
	phone := &digest.Client{Username: "alice", Password: "secret"}
	cred, _ := phone.Authorize(ch, "REGISTER", "sip:example.com")

	res = register(2, "Authorization: "+cred.String()+"\r\n")
	fmt.Println(res.StatusCode, res.Reason)
	fmt.Println("Contact:", res.Get("Contact"))
	// Output:
	// 401 Unauthorized
	// 200 OK
	// Contact: <sip:alice@192.0.2.10:5060>;expires=600
}
