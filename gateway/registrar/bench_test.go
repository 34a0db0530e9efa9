package registrar_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/registrar"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// BenchmarkServeRegisterRefresh measures an authenticated REGISTER refresh
// from a JsSIP browser: digest verification (SHA-256), the ordering check,
// the location update and the 200. Parsing is the transport's and is done
// outside the timer, a batch of requests at a time.
func BenchmarkServeRegisterRefresh(b *testing.B) {
	ctx := context.Background()
	store, _ := accounts.NewStore([]accounts.Account{accounts.FromPassword("alice", "example.com", "secret")})
	loc, err := location.Open(location.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer loc.Close()
	srv := &digest.Server{Realm: "example.com", Secret: []byte("0123456789abcdef0123456789abcdef")}
	reg, err := registrar.New(registrar.Options{Identity: registrar.DomainIdentity("example.com"), Accounts: store, Location: loc, Digest: srv})
	if err != nil {
		b.Fatal(err)
	}
	ch, _ := srv.Challenge("SHA-256", false)
	client := &digest.Client{Username: "alice", Password: "secret"}
	src := sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:51000"), Flow: 1}

	cseq := 0
	next := func() *sip.Request {
		cseq++
		cred, err := client.Authorize(ch, "REGISTER", "sip:example.com")
		if err != nil {
			b.Fatal(err)
		}
		data := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK%07d\r\n"+
			"Max-Forwards: 69\r\n"+
			"To: <sip:alice@example.com>\r\n"+
			"From: <sip:alice@example.com>;tag=sl5f1ir6mo\r\n"+
			"Call-ID: 4rq3ft9oi0p2b9fsk7ib3n\r\n"+
			"CSeq: %d REGISTER\r\n"+
			"Authorization: %s\r\n"+
			"Contact: <sip:a1b2c3d4@df7jal23ls0d.invalid;transport=ws>;+sip.ice;reg-id=1;"+
			"+sip.instance=\"<urn:uuid:5c3f1d4e-7f1a-4e1b-9b9a-1f2e3d4c5b6a>\";expires=600\r\n"+
			"Expires: 600\r\n"+
			"Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n"+
			"Supported: path,gruu,outbound\r\n"+
			"User-Agent: JsSIP 3.10.1\r\n"+
			"Content-Length: 0\r\n\r\n", cseq, cseq, cred.String())
		m, err := sip.ParseMessage([]byte(data))
		if err != nil {
			b.Fatal(err)
		}
		req := m.(*sip.Request)
		req.Source = src
		return req
	}
	if res := reg.ServeRegister(ctx, next()); res.StatusCode != 200 {
		b.Fatalf("first REGISTER: %d %s", res.StatusCode, res.Reason)
	}

	// Requests are built (client hashing, parsing) a batch at a time with
	// the timer stopped, so the numbers are the registrar's alone.
	const batch = 512
	var reqs []*sip.Request
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(reqs) == 0 {
			b.StopTimer()
			for range min(batch, b.N-i) {
				reqs = append(reqs, next())
			}
			b.StartTimer()
		}
		req := reqs[0]
		reqs = reqs[1:]
		if res := reg.ServeRegister(ctx, req); res.StatusCode != 200 {
			b.Fatalf("refresh: %d %s", res.StatusCode, res.Reason)
		}
	}
}
