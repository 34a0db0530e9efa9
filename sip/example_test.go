package sip_test

import (
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/sip"
)

func ExampleParseDatagram() {
	data := []byte("OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:carol@chicago.example.com>\r\n" +
		"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710\r\n" +
		"CSeq: 63104 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
	msg, err := sip.ParseDatagram(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	req := msg.(*sip.Request)
	via, _ := req.TopVia()
	fmt.Println(req.Method, req.URI.User, req.URI.Host)
	fmt.Println(req.From().Display, req.From().Tag(), via.Branch())

	res := sip.NewResponse(req, 200, "")
	res.SetToTag("314159")
	fmt.Printf("%d %s, To tag %s\n", res.StatusCode, res.Reason, res.To().Tag())
	// Output:
	// OPTIONS carol chicago.example.com
	// Alice 1928301774 z9hG4bKhjhs8ass877
	// 200 OK, To tag 314159
}

func ExampleParseDatagram_rejected() {
	data := []byte("INVITE sip:bob@biloxi.example.com SIP/7.0\r\n\r\n")
	_, err := sip.ParseDatagram(data)
	var perr *sip.ParseError
	if errors.As(err, &perr) {
		fmt.Println(perr.Status, perr.Reason)
	}
	// Output:
	// 505 Version Not Supported
}

func ExampleURI_Equal() {
	a, _ := sip.ParseURI("sip:%61lice@atlanta.com;transport=TCP")
	b, _ := sip.ParseURI("sip:alice@AtLanTa.CoM;Transport=tcp")
	c, _ := sip.ParseURI("sip:alice@atlanta.com:5060;transport=tcp")
	fmt.Println(a.Equal(&b), a.Equal(&c))
	// Output:
	// true false
}
