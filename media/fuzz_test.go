package media

import (
	"testing"
)

// FuzzParseSession feeds hostile SDP to the parser and the translation: no
// input may panic, and what the gateway writes from an accepted offer must
// parse back with the same codecs.
func FuzzParseSession(f *testing.F) {
	f.Add([]byte(chromeOffer), true)
	f.Add([]byte(phoneOffer), false)
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:5005 IN IP4 127.0.0.2\r\n"), false)
	f.Add([]byte("v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 5004 RTP/AVP 0\na=sendonly\n"), false)
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\nm=video 5006 RTP/AVP 100 96\r\nb=AS:500\r\na=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=1;profile-level-id=42e01e\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:* nack pli\r\na=rtcp:5009\r\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, web bool) {
		s, err := parseSession(body, web)
		if err != nil {
			return
		}
		if s.video != nil {
			// The video translation must hold too.
			vc := intersectVideo(s.video.codecs, DefaultVideoCodecs(), false)
			for _, c := range vc {
				_ = answerFmtp(c, "profile-level-id=42e00a")
			}
		}
		codecs := intersect(s.codecs, DefaultCodecs())
		if codecs == nil {
			return
		}
		d := &rtpDesc{addr: loopback, port: 20000, codecs: codecs, dir: s.dir, ptime: s.ptime, maxptime: s.maxptime, rtcpMux: s.rtcpMux}
		if !web {
			d.lines, d.audio = s.lines, s.audio
		}
		out := d.write(1, 1)
		back, err := parseSession(out, false)
		if err != nil {
			t.Fatalf("own sdp does not parse: %v\n%s", err, out)
		}
		if len(back.codecs) != len(codecs) {
			t.Fatalf("codecs %v became %v\n%s", codecs, back.codecs, out)
		}
		for i := range codecs {
			if back.codecs[i].key() != codecs[i].key() || back.codecs[i].PayloadType != codecs[i].PayloadType {
				t.Fatalf("codec %d: %+v became %+v\n%s", i, codecs[i], back.codecs[i], out)
			}
		}
	})
}
