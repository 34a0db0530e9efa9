package media

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// chromeOffer is written after what Chrome sends over SIP (JsSIP waits for
// every candidate): BUNDLE, mid, ICE and DTLS parameters, rtcp-mux, Opus,
// RED, G.722, G.711, CN, telephone-event at 48 and 8 kHz, a host candidate
// and an mDNS one.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS 5a9b8c\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 network-id 1\r\n" +
	"a=candidate:3322113 1 udp 2122194687 0f5c9a4e-8d7b-4c1a-9e3f-2b6d8a7c5e41.local 54321 typ host generation 0 network-id 2\r\n" +
	"a=end-of-candidates\r\n" +
	"a=ice-ufrag:Kx7f\r\n" +
	"a=ice-pwd:3hXb0nOq2JJm1p3q4r5s6t7u\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n" +
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendrecv\r\n" +
	"a=msid:5a9b8c 0c1d2e3f-aaaa-bbbb-cccc-123456789abc\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\n" +
	"a=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:3735928559 cname:abcdEFGH1234\r\n" +
	"a=ssrc:3735928559 msid:5a9b8c 0c1d2e3f-aaaa-bbbb-cccc-123456789abc\r\n"

// phoneOffer is a desk phone's plain offer.
const phoneOffer = "v=0\r\n" +
	"o=1000 8000 8000 IN IP4 127.0.0.1\r\n" +
	"s=SIP Call\r\n" +
	"c=IN IP4 127.0.0.1\r\n" +
	"t=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 8 101\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n" +
	"a=ptime:20\r\n" +
	"a=sendrecv\r\n"

// mLine returns the first m= line of body.
func mLine(t *testing.T, body []byte) string {
	t.Helper()
	for _, l := range strings.Split(string(body), "\r\n") {
		if strings.HasPrefix(l, "m=") {
			return l
		}
	}
	t.Fatalf("no m= line:\n%s", body)
	return ""
}

func TestWebOfferToRTPOffer(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	out, err := b.WebOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	port := b.RTPAddr().Port()
	if got, want := mLine(t, out), "m=audio "+itoa(int(port))+" RTP/AVP 111 9 0 8 110 126"; got != want {
		t.Errorf("m= line %q, want %q", got, want)
	}
	if port%2 != 0 {
		t.Errorf("rtp port %d is odd", port)
	}
	mustContain(t, out,
		"c=IN IP4 127.0.0.1\r\n",
		"a=rtpmap:111 opus/48000/2\r\n",
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n",
		"a=rtpmap:9 G722/8000\r\n",
		"a=rtpmap:0 PCMU/8000\r\n",
		"a=rtpmap:8 PCMA/8000\r\n",
		"a=rtpmap:110 telephone-event/48000\r\n",
		"a=rtpmap:126 telephone-event/8000\r\n",
		"a=ptime:20\r\n",
		"a=sendrecv\r\n",
	)
	mustNotContain(t, out, "ice-", "fingerprint", "candidate", "setup", "mid", "rtcp-mux",
		"extmap", "ssrc", "BUNDLE", "SAVPF", "red/", "CN/", ".local")
	// The RTP/AVP offer parses back as such.
	s, err := parseSession(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.addr != loopback || s.port != int(port) || len(s.codecs) != 6 {
		t.Errorf("parsed back: %v:%d %v", s.addr, s.port, s.codecs)
	}
}

func TestPhoneOfferToWebOffer(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	out, err := b.RTPOffer([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	if got := mLine(t, out); !strings.HasPrefix(got, "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101") {
		t.Errorf("m= line %q", got)
	}
	mustContain(t, out,
		"a=fingerprint:sha-256 ",
		"a=ice-ufrag:",
		"a=ice-pwd:",
		"a=setup:actpass",
		"a=rtcp-mux",
		"a=group:BUNDLE",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=ptime:20",
		"a=sendrecv",
		" 127.0.0.1 ",
		"typ host",
		"a=end-of-candidates",
	)
	mustNotContain(t, out, "opus", "G722", "a=sendonly", "a=recvonly")
}

func TestPublicIPHidesPrivateAddress(t *testing.T) {
	checkGoroutines(t)
	pub := netip.MustParseAddr("203.0.113.10")
	e := newTestEngine(t, Options{PublicIP: pub})
	b := newTestBridge(t, e)
	rtpOffer, err := b.WebOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpOffer, "c=IN IP4 203.0.113.10\r\n", "o=- ")
	mustNotContain(t, rtpOffer, "127.0.0.1")

	b2 := newTestBridge(t, e)
	// The phone's own address is 127.0.0.1 here; the gateway's SDP must
	// not carry it, nor its own bind address.
	webOffer, err := b2.RTPOffer([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webOffer, " 203.0.113.10 ", "typ host")
	mustNotContain(t, webOffer, "127.0.0.1")
}

func TestNoCommonCodec(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{Codecs: []Codec{{Name: "PCMA", ClockRate: 8000, PayloadType: 8}}})
	g729 := "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	savp := strings.Replace(phoneOffer, "RTP/AVP", "RTP/SAVP", 1)
	rejected := strings.Replace(phoneOffer, "m=audio 40000", "m=audio 0", 1)
	for _, tc := range []struct {
		name string
		run  func(b *Bridge) error
	}{
		{"browser offers opus only", func(b *Bridge) error {
			offer := strings.Replace(chromeOffer, "111 63 9 0 8 13 110 126", "111 110", 1)
			_, err := b.WebOffer([]byte(offer))
			return err
		}},
		{"phone offers G.729", func(b *Bridge) error { _, err := b.RTPOffer([]byte(g729)); return err }},
		{"phone offers SDES-SRTP only", func(b *Bridge) error { _, err := b.RTPOffer([]byte(savp)); return err }},
		{"phone rejects the audio stream", func(b *Bridge) error { _, err := b.RTPOffer([]byte(rejected)); return err }},
		{"phone answers a codec not offered", func(b *Bridge) error {
			if _, err := b.WebOffer([]byte(chromeOffer)); err != nil {
				return err
			}
			_, err := b.RTPAnswer([]byte(g729))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBridge(t, e)
			err := tc.run(b)
			if !errors.Is(err, ErrNoCommonCodec) {
				t.Fatalf("err = %v, want ErrNoCommonCodec", err)
			}
		})
	}
}

func TestInvalidSDP(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	for _, tc := range []struct{ name, body string }{
		{"empty", ""},
		{"garbage", "hello"},
		{"web offer without fingerprint", strings.Replace(chromeOffer, "a=fingerprint:", "a=x-fingerprint:", 1)},
		{"web offer without ice", strings.Replace(chromeOffer, "a=ice-ufrag:", "a=x-ice-ufrag:", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBridge(t, e)
			if _, err := b.WebOffer([]byte(tc.body)); !errors.Is(err, ErrInvalidSDP) {
				t.Fatalf("err = %v, want ErrInvalidSDP", err)
			}
		})
	}
	b := newTestBridge(t, e)
	noC := strings.Replace(phoneOffer, "c=IN IP4 127.0.0.1\r\n", "", 1)
	if _, err := b.RTPOffer([]byte(noC)); !errors.Is(err, ErrInvalidSDP) {
		t.Fatalf("phone offer without c=: err = %v, want ErrInvalidSDP", err)
	}
}

func TestParseSession(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want func(*session) string
	}{
		{"media c= overrides session c=", strings.Replace(phoneOffer, "a=ptime:20\r\n", "c=IN IP4 127.0.0.9\r\na=ptime:20\r\n", 1), func(s *session) string {
			if s.addr != netip.MustParseAddr("127.0.0.9") {
				return "addr " + s.addr.String()
			}
			return ""
		}},
		{"hold with 0.0.0.0", strings.Replace(phoneOffer, "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0", 1), func(s *session) string {
			if s.addr.IsValid() || phoneDir(s) != dirSendOnly {
				return "addr " + s.addr.String() + " dir " + phoneDir(s).String()
			}
			return ""
		}},
		{"session-level direction", strings.Replace(strings.Replace(phoneOffer, "a=sendrecv\r\n", "", 1), "t=0 0\r\n", "t=0 0\r\na=recvonly\r\n", 1), func(s *session) string {
			if s.dir != dirRecvOnly {
				return "dir " + s.dir.String()
			}
			return ""
		}},
		{"a=rtcp with address", strings.Replace(phoneOffer, "a=ptime:20\r\n", "a=ptime:30\r\na=rtcp:40011 IN IP4 127.0.0.5\r\n", 1), func(s *session) string {
			if s.rtcp != netip.MustParseAddrPort("127.0.0.5:40011") || s.ptime != 30 {
				return "rtcp " + s.rtcp.String()
			}
			return ""
		}},
		{"default rtcp port", phoneOffer, func(s *session) string {
			if s.rtcp != netip.MustParseAddrPort("127.0.0.1:40001") {
				return "rtcp " + s.rtcp.String()
			}
			return ""
		}},
		{"static types without rtpmap, bare LF", strings.ReplaceAll("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8 0\r\n", "\r\n", "\n"), func(s *session) string {
			if len(s.codecs) != 2 || s.codecs[0].Name != "PCMA" || s.codecs[1].Name != "PCMU" {
				return "codecs"
			}
			return ""
		}},
		{"IPv6", strings.ReplaceAll(phoneOffer, "IN IP4 127.0.0.1", "IN IP6 ::1"), func(s *session) string {
			if s.addr != netip.MustParseAddr("::1") {
				return "addr " + s.addr.String()
			}
			return ""
		}},
		{"video line before audio", strings.Replace(phoneOffer, "m=audio", "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio", 1), func(s *session) string {
			if s.audio != 1 || len(s.lines) != 2 || s.port != 40000 {
				return "audio index"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSession([]byte(tc.body), false)
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.want(s); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestRTPDescAnswerKeepsMediaLines(t *testing.T) {
	offer := strings.Replace(phoneOffer, "m=audio", "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio", 1)
	s, err := parseSession([]byte(offer), false)
	if err != nil {
		t.Fatal(err)
	}
	d := &rtpDesc{addr: loopback, port: 20000, codecs: s.codecs[:1], dir: dirRecvOnly, lines: s.lines, audio: s.audio}
	out := d.write(7, 3)
	want := "v=0\r\no=- 7 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=video 0 RTP/AVP 96\r\n" +
		"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestOriginVersion(t *testing.T) {
	var o origin
	o.id, o.version = 9, 1
	d := &rtpDesc{addr: loopback, port: 20000, codecs: DefaultCodecs()[2:3], dir: dirSendRecv}
	gen := func() []byte { return o.next(func(v uint64) []byte { return d.write(o.id, v) }) }
	a := gen()
	if b := gen(); !bytes.Equal(a, b) || !bytes.Contains(a, []byte("o=- 9 1 ")) {
		t.Fatalf("unchanged sdp changed:\n%s\n%s", a, b)
	}
	d.dir = dirSendOnly
	if c := gen(); !bytes.Contains(c, []byte("o=- 9 2 ")) {
		t.Fatalf("changed sdp kept its version:\n%s", c)
	}
}

func TestIntersect(t *testing.T) {
	s, err := parseSession([]byte(chromeOffer), true)
	if err != nil {
		t.Fatal(err)
	}
	g711 := []Codec{{Name: "pcmu", ClockRate: 8000}, {Name: "TELEPHONE-EVENT", ClockRate: 8000}, {Name: "telephone-event", ClockRate: 48000}}
	got := intersect(s.codecs, g711)
	if len(got) != 2 || got[0].PayloadType != 0 || got[1].PayloadType != 126 {
		t.Errorf("got %+v: telephone-event/48000 must go with opus", got)
	}
	if intersect(s.codecs, []Codec{{Name: "telephone-event", ClockRate: 8000}}) != nil {
		t.Error("telephone-event alone is no common codec")
	}
}
