package sipws

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// FuzzReadFrame feeds arbitrary WebSocket payloads to the frame → message
// path. Nothing may panic; a frame gives a message with its Source set, or
// an answer that is a well-formed response, or nothing, never two of them.
func FuzzReadFrame(f *testing.F) {
	good := request("fuzz", 1)
	for _, seed := range []string{
		good,
		messageWithBody("fuzz", "héllo"),
		good + good,
		strings.Replace(good, "Content-Length: 0", "Content-Length: 7", 1),
		strings.Replace(good, "Content-Length: 0\r\n", "", 1),
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"\r\n\r\n", "\r\n", "\n\n", "", "\x00",
	} {
		f.Add([]byte(seed))
	}
	tr, err := New(Options{Limits: sip.Limits{MaxMessageSize: 16 << 10}})
	if err != nil {
		f.Fatal(err)
	}
	src := sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("192.0.2.1:50000"), Flow: 7}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		res := tr.readFrame(src, data)
		if !bytes.Equal(in, data) {
			t.Fatal("readFrame changed its input")
		}
		switch {
		case res.msg != nil:
			if res.reply != nil || res.err != nil {
				t.Fatalf("message with reply %q, err %v", res.reply, res.err)
			}
			if res.msg.Src() != src {
				t.Fatalf("Source = %v, want %v", res.msg.Src(), src)
			}
		case res.reply != nil && res.err == nil:
			if string(res.reply) != "\r\n" {
				t.Fatalf("reply %q to a keep-alive", res.reply)
			}
		case res.reply != nil:
			m, err := sip.ParseMessage(res.reply)
			if err != nil && !errors.Is(err, sip.ErrMissingHeader) {
				t.Fatalf("stateless answer does not parse: %v\n%q", err, res.reply)
			}
			if err == nil {
				if r, ok := m.(*sip.Response); !ok || r.StatusCode < 400 {
					t.Fatalf("stateless answer is not an error response:\n%s", res.reply)
				}
			}
		}
	})
}
