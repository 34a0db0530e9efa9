package siptcp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

const fuzzMax = 2048

// frameAll feeds data to a framer in chunks of the sizes chunk gives (0:
// as much as fits) and returns what it found: "M<bytes>" per message, "P"
// per ping, and "E" for an error, after which it stops.
func frameAll(t testing.TB, data []byte, chunk func() int) []string {
	p := &sip.Parser{Limits: sip.Limits{MaxMessageSize: fuzzMax}}
	f := newFramer(p, fuzzMax)
	var out []string
	for len(data) > 0 {
		space := f.space()
		if len(space) == 0 {
			t.Fatalf("no space with %d bytes pending", len(f.pending()))
		}
		if cap(f.buf) > f.limit {
			t.Fatalf("buffer grew to %d, limit %d", cap(f.buf), f.limit)
		}
		n := len(space)
		if c := chunk(); c > 0 && c < n {
			n = c
		}
		n = copy(space, data[:min(n, len(data))])
		data = data[n:]
		f.wrote(n)
		for {
			ev, msg, err := f.next()
			if err != nil {
				return append(out, "E")
			}
			if ev == none {
				break
			}
			if ev == ping {
				out = append(out, "P")
				continue
			}
			out = append(out, "M"+string(msg))
		}
	}
	return out
}

const msgA = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKa\r\n" +
	"From: <sip:x@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n" +
	"Max-Forwards: 70\r\nContent-Length: 5\r\n\r\nhello"

func TestFramer(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"one", msgA, []string{"M" + msgA}},
		{"two and pings", "\r\n\r\n" + msgA + "\r\n" + msgA + "\r\n\r\n\r\n\r\n",
			[]string{"P", "M" + msgA, "M" + msgA, "P", "P"}},
		{"pong ignored", "\r\n" + msgA, []string{"M" + msgA}},
		{"compact length", strings.Replace(msgA, "Content-Length: 5", "l:5", 1),
			[]string{"M" + strings.Replace(msgA, "Content-Length: 5", "l:5", 1)}},
		{"bare lf", strings.ReplaceAll(msgA, "\r\n", "\n"), []string{"M" + strings.ReplaceAll(msgA, "\r\n", "\n")}},
		{"no content-length", strings.Replace(msgA, "Content-Length: 5\r\n", "", 1), []string{"E"}},
		{"too large", strings.Replace(msgA, "Content-Length: 5", "Content-Length: 5000", 1), []string{"E"}},
		{"endless header", "OPTIONS sip:a SIP/2.0\r\nX: " + strings.Repeat("y", 3000), []string{"E"}},
		{"incomplete", msgA[:len(msgA)-1], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{0, 1, 2, 3, 7, 64} {
				got := frameAll(t, []byte(tc.in), func() int { return size })
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
					t.Errorf("chunks of %d: got %q\nwant %q", size, got, tc.want)
				}
			}
		})
	}
}

func TestFramerShrinks(t *testing.T) {
	p := &sip.Parser{}
	f := newFramer(p, sip.DefaultMaxMessageSize)
	big := strings.Replace(msgA, "Content-Length: 5\r\n\r\nhello",
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", 40000, strings.Repeat("b", 40000)), 1)
	data := []byte(big)
	for len(data) > 0 {
		n := copy(f.space(), data)
		data = data[n:]
		f.wrote(n)
		for {
			ev, _, err := f.next()
			if err != nil {
				t.Fatal(err)
			}
			if ev == none {
				break
			}
		}
	}
	f.space()
	if cap(f.buf) > initialBuf {
		t.Errorf("buffer kept %d bytes after the large message", cap(f.buf))
	}
}

// FuzzFraming feeds random bytes in random chunks to the stream framing
// that each TCP and TLS connection runs: it must never panic, never hold
// more than the size limit, and find the same messages, pings and errors
// whatever the chunking.
func FuzzFraming(f *testing.F) {
	f.Add([]byte(msgA+msgA), uint64(1))
	f.Add([]byte("\r\n\r\n"+msgA+"\r\n"), uint64(7))
	f.Add([]byte(strings.Replace(msgA, "Content-Length: 5", "l: 5\r\nContent-Length: 5", 1)), uint64(3))
	f.Add([]byte(strings.Replace(msgA, "Content-Length: 5", "Content-Length: 5\r\nContent-Length: 6", 1)), uint64(5))
	f.Add([]byte("INVITE sip:x SIP/2.0\nl: 2\n\nab"), uint64(2))
	f.Add([]byte(strings.Repeat("\r", 5000)), uint64(11))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		whole := frameAll(t, data, func() int { return 0 })
		x := seed | 1
		chunked := frameAll(t, data, func() int {
			// xorshift: chunks of 1 to 64 bytes.
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			return int(x%64) + 1
		})
		if fmt.Sprintf("%q", whole) != fmt.Sprintf("%q", chunked) {
			t.Fatalf("chunking changed the result:\nwhole   %q\nchunked %q", whole, chunked)
		}
	})
}

func TestServerName(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"OPTIONS sip:bob@sips.example.com SIP/2.0\r\n", "sips.example.com"},
		{"OPTIONS sip:bob@192.0.2.1 SIP/2.0\r\nRoute: <sip:edge.example.net;lr>, <sip:core.example.net;lr>\r\n", "edge.example.net"},
		{"OPTIONS sip:bob@example.com SIP/2.0\r\nRoute: sip:plain.example.net\r\n", "plain.example.net"},
		{"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS phone.example.org;branch=z9hG4bKx\r\n", "phone.example.org"},
	} {
		m, err := sip.ParseMessage([]byte(tc.msg + "Via: SIP/2.0/TLS h;branch=z9hG4bKy\r\nFrom: <sip:a@b>;tag=1\r\n" +
			"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := serverName(m, netip.MustParseAddrPort("192.0.2.9:5061")); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.msg, got, tc.want)
		}
	}
}
