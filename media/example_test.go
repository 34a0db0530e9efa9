package media_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/switchboard/switchboard/media"
)

// The browser calls a phone: its WebRTC offer becomes an RTP/AVP offer for
// the phone, and the phone's answer becomes the WebRTC answer (made by
// pion, with the gateway's ICE candidates and DTLS fingerprint).
func ExampleBridge_WebOffer() {
	e, err := media.NewEngine(context.Background(), media.Options{
		LoopbackOnly: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	defer e.Close()
	b, err := e.NewBridge(context.Background(), "call-1")
	if err != nil {
		panic(err)
	}
	defer b.Close()

	browserOffer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0 126\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:Kx7f\r\na=ice-pwd:3hXb0nOq2JJm1p3q4r5s6t7u\r\n" +
		"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
		"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n"
	rtpOffer, err := b.WebOffer([]byte(browserOffer))
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(rtpOffer), "\r\n") {
		if strings.HasPrefix(line, "m=") {
			f := strings.Fields(line)
			fmt.Println(f[0], f[2], f[3:])
		}
	}

	phoneAnswer := fmt.Sprintf("v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n", 40000)
	webAnswer, err := b.RTPAnswer([]byte(phoneAnswer))
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(webAnswer), "\r\n") {
		if strings.HasPrefix(line, "m=") {
			fmt.Println(line)
		}
	}
	// Output:
	// m=audio RTP/AVP [111 0 126]
	// m=audio 9 UDP/TLS/RTP/SAVPF 0 126
}
