package proxy

import (
	"encoding/hex"
	"hash/fnv"
	"io"
	"strconv"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// fnvLoopHash is loopHash as it was written with hash/fnv: the branches
// of instances of one cluster that run different versions must agree.
func fnvLoopHash(r *sip.Request) string {
	h := fnv.New64a()
	w := func(s string) {
		io.WriteString(h, s)
		h.Write([]byte{0})
	}
	w(r.URI.String())
	w(r.To().Tag())
	w(r.From().Tag())
	w(r.CallID())
	w(strconv.FormatUint(uint64(r.CSeq().Seq), 10))
	for _, name := range [...]string{"Route", "Proxy-Require", "Proxy-Authorization"} {
		for _, v := range r.Values(name) {
			w(v)
		}
		w("")
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestLoopHashIsFNV1a(t *testing.T) {
	msgs := []string{
		"INVITE sip:bob@example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n" +
			"From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>\r\n" +
			"Call-ID: c1@192.0.2.1\r\nCSeq: 4294967295 INVITE\r\nMax-Forwards: 70\r\n" +
			"Content-Length: 0\r\n\r\n",
		"BYE sip:bob@198.51.100.7:5070;transport=tcp;ob SIP/2.0\r\n" +
			"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-2\r\n" +
			"From: \"A\" <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b2\r\n" +
			"Call-ID: c2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n" +
			"Route: <sip:proxy.example.com;lr;sbdlg=xyz>, <sip:other.example.net;lr>\r\n" +
			"Route: <sip:third.example.net;lr>\r\n" +
			"Proxy-Require: foo\r\n" +
			"Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"00\"\r\n" +
			"Content-Length: 0\r\n\r\n",
	}
	for i, m := range msgs {
		msg, err := sip.ParseDatagram([]byte(m))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		r := msg.(*sip.Request)
		if got, want := loopHash(r), fnvLoopHash(r); got != want {
			t.Errorf("message %d: loopHash = %s, hash/fnv gives %s", i, got, want)
		}
	}
	h := fnv.New64a()
	io.WriteString(h, "z9hG4bK-received")
	if got, want := statelessBranch("0123", "z9hG4bK-received"), branchPrefix+"0123."+hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("statelessBranch = %s, want %s", got, want)
	}
}
