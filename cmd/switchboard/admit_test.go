package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// TestThrottledSourceRefused: once a source has failed authentication 10
// times, its new out-of-dialog requests are refused by the transaction
// layer's admission, before any transaction: over UDP they are dropped,
// over TCP they get 403 with Retry-After. None leaves a transaction open,
// the refusals show in /metrics, and a request inside a dialog still
// reaches the gateway.
func TestThrottledSourceRefused(t *testing.T) {
	g := startGateway(t, udpConfig(t, map[string]string{"SWITCHBOARD_SIP_TCP": "127.0.0.1:0"}))
	phone := newSIPPhone(t, g.l.UDP)
	for i := range 10 {
		if res := phone.register("alice", "wrong"); res.StatusCode != 401 {
			t.Fatalf("wrong password %d: %d %s", i, res.StatusCode, res.Reason)
		}
	}
	refused := [][]string{
		{"REGISTER", "sip:localhost", "From: <sip:alice@localhost>;tag=b1", "To: <sip:alice@localhost>"},
		{"REGISTER", "sip:localhost", "From: <sip:alice@localhost>;tag=b2", "To: <sip:alice@localhost>;tag=x"},
		{"OPTIONS", "sip:bob@localhost", "From: <sip:alice@localhost>;tag=b3", "To: <sip:bob@localhost>"},
	}
	// UDP: dropped. The answer to the BYE that follows, in a dialog, is
	// the first to come back: nothing was sent for the three before it.
	for _, r := range refused {
		phone.sendOnly(r[0], r[1], r[2:]...)
	}
	res := phone.send("BYE", "sip:bob@localhost", "From: <sip:alice@localhost>;tag=b4", "To: <sip:bob@localhost>;tag=y")
	if res.CSeq().Method != "BYE" || res.StatusCode == 403 {
		t.Fatalf("first answer after the refused requests: %d %s to %s, want the BYE's, not 403", res.StatusCode, res.Reason, res.CSeq().Method)
	}

	// TCP, from the same address: 403 with Retry-After, statelessly.
	conn, err := net.DialTimeout("tcp", g.l.TCP.String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	rd := bufio.NewReader(conn)
	for i, r := range refused {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", r[0], r[1])
		fmt.Fprintf(&b, "Via: SIP/2.0/TCP %s;branch=z9hG4bKtcp%d\r\n", conn.LocalAddr(), i)
		fmt.Fprintf(&b, "Max-Forwards: 70\r\nCall-ID: tcp-%d@test\r\nCSeq: 1 %s\r\n", i, r[0])
		for _, h := range r[2:] {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		if _, err := conn.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		res := readTCPResponse(t, rd)
		if res.StatusCode != 403 || res.Get("Retry-After") == "" || res.To().Tag() == "" {
			t.Fatalf("%s over TCP from a blocked source: %d %s (Retry-After %q)", r[0], res.StatusCode, res.Reason, res.Get("Retry-After"))
		}
	}

	for series, want := range map[string]float64{
		`switchboard_sip_admission_refused_total{action="dropped"}`:  3,
		`switchboard_sip_admission_refused_total{action="answered"}`: 3,
		`switchboard_sip_transactions_open{side="server"}`:           0,
		`switchboard_auth_failures_total{origin="register"}`:         10,
	} {
		if got := g.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// sendOnly sends a request like send, without waiting for an answer.
func (p *sipPhone) sendOnly(method, uri string, hdrs ...string) {
	p.t.Helper()
	p.seq++
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bKops%d;rport\r\n", p.conn.LocalAddr(), p.seq)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nCall-ID: ops-%d@test\r\nCSeq: %d %s\r\n", p.seq, p.seq, method)
	for _, h := range hdrs {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := p.conn.WriteToUDP([]byte(b.String()), p.gw); err != nil {
		p.t.Fatal(err)
	}
}

// readTCPResponse reads one response, without body, from a SIP stream.
func readTCPResponse(t *testing.T, rd *bufio.Reader) *sip.Response {
	t.Helper()
	var b strings.Builder
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a response: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		t.Fatalf("unparsable answer: %v\n%s", err, b.String())
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("not a response:\n%s", b.String())
	}
	return res
}
