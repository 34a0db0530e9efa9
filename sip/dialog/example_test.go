package dialog_test

import (
	"fmt"
	"strings"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

func parse(s string) sip.Message {
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
	if err != nil {
		panic(err)
	}
	return m
}

// The gateway calls a desk phone through a record-routing proxy, gets 200 OK,
// acknowledges it and later hangs up.
func Example() {
	invite := parse(`INVITE sip:1000@pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1f9a
Max-Forwards: 70
To: <sip:1000@pbx.example.com>
From: <sip:alice@switchboard.example.com>;tag=gw1
Call-ID: c0ffee@192.0.2.1
CSeq: 1 INVITE
Contact: <sip:gw@192.0.2.1:5060>
Content-Length: 0

`).(*sip.Request)
	ok := parse(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1f9a
Record-Route: <sip:proxy.example.com;lr>
To: <sip:1000@pbx.example.com>;tag=ph1
From: <sip:alice@switchboard.example.com>;tag=gw1
Call-ID: c0ffee@192.0.2.1
CSeq: 1 INVITE
Contact: <sip:1000@198.51.100.20:5060>
Content-Length: 0

`).(*sip.Response)

	d, err := dialog.NewUAC(invite, ok)
	if err != nil {
		panic(err)
	}
	fmt.Println(d.ID(), d.State())

	ack, _ := d.NewAck(invite.CSeq().Seq)
	fmt.Print(strings.ReplaceAll(ack.String(), "\r\n", "\n"))

	bye, _ := d.NewRequest(sip.MethodBye)
	fmt.Println(bye.URI.String(), bye.CSeq(), d.State())
	// Output:
	// c0ffee@192.0.2.1;local=gw1;remote=ph1 confirmed
	// ACK sip:1000@198.51.100.20:5060 SIP/2.0
	// Route: <sip:proxy.example.com;lr>
	// Max-Forwards: 70
	// To: <sip:1000@pbx.example.com>;tag=ph1
	// From: <sip:alice@switchboard.example.com>;tag=gw1
	// Call-ID: c0ffee@192.0.2.1
	// CSeq: 1 ACK
	// Content-Length: 0
	//
	// sip:1000@198.51.100.20:5060 2 BYE terminated
}
