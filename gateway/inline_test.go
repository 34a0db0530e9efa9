package gateway

import (
	"testing"

	"github.com/switchboard/switchboard/gateway/identity"
	"github.com/switchboard/switchboard/sip"
)

// TestInline: the transaction layer runs on the transport's worker only
// the requests that ServeSIP answers from memory: a REGISTER of ours
// without credentials (the challenge) and an OPTIONS for the gateway
// itself; not a REGISTER with credentials, which may wait for the
// location store, nor what the proxy serves or a request in a dialog.
func TestInline(t *testing.T) {
	id, err := identity.New(identity.Config{Domains: []string{"example.com"},
		Endpoints: []identity.Endpoint{{Transport: sip.UDP, Host: "127.0.0.1", Port: 5060}}})
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{cfg: Config{Identity: id}}
	for _, tt := range []struct {
		method, uri, toTag, extra string
		want                      bool
	}{
		{"REGISTER", "sip:example.com", "", "", true},
		{"OPTIONS", "sip:example.com", "", "", true},
		{"OPTIONS", "sip:127.0.0.1:5060", "", "", true},
		{"REGISTER", "sip:example.com", "", "Authorization: Digest username=\"alice\"\r\n", false},
		{"REGISTER", "sip:example.org", "", "", false},
		{"REGISTER", "sip:example.com", "t1", "", false},
		{"OPTIONS", "sip:bob@example.com", "", "", false},
		{"OPTIONS", "sip:example.com", "t1", "", false},
		{"INVITE", "sip:bob@example.com", "", "", false},
		{"MESSAGE", "sip:bob@example.org", "", "", false},
	} {
		to := "<sip:alice@example.com>"
		if tt.toTag != "" {
			to += ";tag=" + tt.toTag
		}
		text := tt.method + " " + tt.uri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n" +
			"Max-Forwards: 70\r\n" +
			"To: " + to + "\r\n" +
			"From: <sip:alice@example.com>;tag=f1\r\n" +
			"Call-ID: c1\r\n" +
			"CSeq: 1 " + tt.method + "\r\n" + tt.extra +
			"Content-Length: 0\r\n\r\n"
		m, err := sip.ParseDatagram([]byte(text))
		if err != nil {
			t.Fatalf("parse %q: %v", text, err)
		}
		if got := g.inline(m.(*sip.Request)); got != tt.want {
			t.Errorf("%s %s (To tag %q, %q): inline %v, want %v", tt.method, tt.uri, tt.toTag, tt.extra, got, tt.want)
		}
	}
}
