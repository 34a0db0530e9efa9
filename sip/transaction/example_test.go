package transaction_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// pipe is a Sender that delivers to another Layer as a network would: the
// receiver parses its own copy of the bytes, and Source says where they came
// from.
type pipe struct {
	to   *transaction.Layer
	from sip.Addr
}

func (p *pipe) Send(_ context.Context, msg sip.Message, _ sip.Addr) error {
	m, err := sip.ParseMessage([]byte(msg.String()))
	if err != nil {
		return err
	}
	switch x := m.(type) {
	case *sip.Request:
		x.Source = p.from
	case *sip.Response:
		x.Source = p.from
	}
	p.to.HandleMessage(m)
	return nil
}

// newRequest builds a request the way a UAC core does (§8.1.1), with the
// unique branch the transaction layer requires.
func newRequest(method string, from sip.Addr) *sip.Request {
	uri, _ := sip.ParseURI("sip:bob@example.com")
	req := sip.NewRequest(method, uri)
	via := sip.Via{Transport: from.Transport, Host: from.AddrPort.Addr().String(), Port: int(from.AddrPort.Port()),
		Params: sip.Params(";branch=" + sip.NewBranch())}
	req.Add("Via", via.String())
	req.Add("Max-Forwards", "70")
	req.Add("To", "<sip:bob@example.com>")
	req.Add("From", "<sip:alice@example.com>;tag="+sip.NewTag())
	req.Add("Call-ID", sip.NewCallID())
	req.Add("CSeq", "1 "+method)
	req.Add("Content-Length", "0")
	return req
}

// Two layers, a UAC and a UAS, talk over an in-memory pipe: the UAS answers
// OPTIONS with 200 and rejects INVITE with 486, which the UAC's INVITE
// transaction acknowledges by itself.
func Example() {
	alice := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")}
	bob := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.2:5060")}
	toBob, toAlice := &pipe{from: alice}, &pipe{from: bob}

	uas := transaction.New(context.Background(), toAlice, transaction.HandlerFunc(func(_ context.Context, tx *transaction.ServerTx, req *sip.Request) {
		if tx == nil {
			return // the ACK of a 2xx: a dialog's business
		}
		code := 200
		if req.Method == sip.MethodInvite {
			code = 486
		}
		res := sip.NewResponse(req, code, "")
		res.SetToTag("bob-1")
		if err := tx.Respond(res); err != nil {
			fmt.Println("respond:", err)
		}
	}), transaction.Config{})
	defer uas.Close()
	uac := transaction.New(context.Background(), toBob, nil, transaction.Config{})
	defer uac.Close()
	toBob.to, toAlice.to = uas, uac

	for _, method := range []string{sip.MethodOptions, sip.MethodInvite} {
		tx, err := uac.Request(context.Background(), newRequest(method, alice), bob)
		if err != nil {
			fmt.Println(err)
			return
		}
		for res := range tx.Responses() { // closed after the final response
			if !res.IsProvisional() {
				fmt.Println(method, "->", res.StatusCode, res.Reason)
			}
		}
		fmt.Println("err:", tx.Err())
	}
	// Output:
	// OPTIONS -> 200 OK
	// err: <nil>
	// INVITE -> 486 Busy Here
	// err: <nil>
}
