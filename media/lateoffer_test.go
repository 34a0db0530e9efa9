package media

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// answer is the phone's m=video answer taking H.264 as pt (the gateway's
// number) in packetization mode 1, with PLI feedback and its RTCP port.
func (v *videoPhone) answer(pt int) string {
	n := strconv.Itoa(pt)
	return "m=video " + strconv.Itoa(port(v.rtp)) + " RTP/AVP " + n + "\r\n" +
		"a=rtpmap:" + n + " H264/90000\r\na=fmtp:" + n + " packetization-mode=1;profile-level-id=42e01f\r\n" +
		"a=rtcp-fb:* nack pli\r\na=rtcp:" + strconv.Itoa(port(v.rtcp)) + "\r\na=sendrecv\r\n"
}

// lateVideoCall runs a late offer with a video browser up to the
// gateway's offer to the phone, and returns it.
func lateVideoCall(t *testing.T, b *Bridge, br *mediapeer.Browser) []byte {
	t.Helper()
	webOffer, err := b.LateOffer()
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webOffer, "m=audio 9 UDP/TLS/RTP/SAVPF", "m=video 9 UDP/TLS/RTP/SAVPF", "VP8/90000", "H264/90000", "a=sendrecv")
	rtpOffer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	return rtpOffer
}

// TestLateOfferVideo: a phone's INVITE without SDP, a browser that takes
// video: the gateway's offer in the 200 has m=video with the formats the
// browser took, the phone's answer in the ACK sets up the video route,
// and keyframes go both ways, as do keyframe requests.
func TestLateOfferVideo(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := videoBrowser(t)
	rtpOffer := lateVideoCall(t, b, br)
	// The browser has H.264 42e01f in mode 1 (the policy's 97) and VP8
	// (96); the policy's other H.264 formats it does not take.
	mustContain(t, rtpOffer, "m=audio ", "m=video ", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 H264/90000",
		"a=fmtp:97 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "a=rtcp-fb:* nack pli")
	mustNotContain(t, rtpOffer, "a=rtpmap:100 ")
	gwVideo := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpOffer)))
	if gwVideo.Port() == 0 || gwVideo.Port() == b.RTPAddr().Port() {
		t.Fatalf("video port %d, audio %d:\n%s", gwVideo.Port(), b.RTPAddr().Port(), rtpOffer)
	}

	phone := mediapeer.NewPhone(t)
	vp := newVideoPhone(t)
	webAnswer, err := b.RTPAnswer(append(phone.SDP(1, "0"), vp.answer(97)...))
	if err != nil || webAnswer != nil {
		t.Fatalf("RTPAnswer after a late offer: %v, %q", err, webAnswer)
	}
	br.WaitConnected()

	if err := phone.Learn(rtpOffer); err != nil {
		t.Fatal(err)
	}
	if p := videoToBrowser(t, vp, gwVideo, br, 97); p.PayloadType != 97 {
		t.Errorf("browser got pt %d, want 97", p.PayloadType)
	}
	keyframeAtBrowser(t, br)
	atPhone := videoToPhone(t, br, vp, 97)
	if atPhone.PayloadType != 97 {
		t.Errorf("phone got pt %d, want 97", atPhone.PayloadType)
	}

	// Keyframe requests: the phone's PLI reaches the browser.
	pli, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 0xabc, MediaSSRC: atPhone.SSRC}})
	_, _ = vp.rtcp.WriteToUDPAddrPort(pli, netip.AddrPortFrom(loopback, gwVideo.Port()+1))
	waitFor(t, "a PLI at the browser", func() bool { return br.KeyframeRequests() >= 1 })

	// Audio goes on beside it.
	mediapeer.AudioToBrowser(t, phone, br)
	if st := b.Stats().Video; st.PacketsToWeb == 0 || st.PacketsToRTP == 0 {
		t.Errorf("video stats %+v", st)
	}
}

// TestLateOfferVideoRefusedByPhone: the phone's answer in the ACK refuses
// video (port 0): the call is audio-only, nothing is relayed as video, and
// audio works both ways, before and after WebDropVideo renegotiated the
// browser without the video.
func TestLateOfferVideoRefusedByPhone(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := videoBrowser(t)
	rtpOffer := lateVideoCall(t, b, br)
	gwVideo := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpOffer)))
	phone := mediapeer.NewPhone(t)
	answer := append(phone.SDP(1, "0"), "m=video 0 RTP/AVP 97\r\n"...)
	if _, err := b.RTPAnswer(answer); err != nil {
		t.Fatal(err)
	}
	if r := b.vidA.Load().route.Load(); r == nil || r.fwdToWeb || r.fwdToRTP || r.toWeb.known[97] || r.toRTP.known[97] {
		t.Fatal("video routed after the phone refused it")
	}
	if err := phone.Learn(rtpOffer); err != nil {
		t.Fatal(err)
	}
	br.WaitConnected()

	// The phone's video, should it send some anyway, goes nowhere.
	vp := newVideoPhone(t)
	for _, p := range mediapeer.H264Packets(mediapeer.H264IDR(), 97, 0xabc, 1, 3000) {
		raw, _ := p.Marshal()
		_, _ = vp.rtp.WriteToUDPAddrPort(raw, gwVideo)
	}
	mediapeer.AudioToBrowser(t, phone, br)
	got := mediapeer.AudioToPhone(t, br, phone)
	if got.PayloadType != 0 {
		t.Errorf("phone got pt %d", got.PayloadType)
	}
	select {
	case p := <-br.VideoPackets():
		t.Errorf("browser got video pt %d after the phone refused it", p.PayloadType)
	case <-time.After(0):
	}
	if st := b.Stats().Video; st.PacketsToWeb != 0 || st.PacketsToRTP != 0 {
		t.Errorf("video relayed after a refusal: %+v", st)
	}

	// The browser is renegotiated without the video (WebDropVideo);
	// then the legs agree, and there is nothing more to drop.
	webOffer, err := b.WebDropVideo(answer)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webOffer, "m=audio 9 UDP/TLS/RTP/SAVPF", "m=video 0 ")
	if _, err := b.WebAnswer(br.Answer(webOffer)); err != nil {
		t.Fatal(err)
	}
	if again, err := b.WebDropVideo(answer); err != nil || again != nil {
		t.Fatalf("second WebDropVideo: %v\n%s", err, again)
	}
	mediapeer.AudioToBrowser(t, phone, br)
	mediapeer.AudioToPhone(t, br, phone)
}

// TestLateOfferBrowserRefusesVideo: a browser without video answers the
// late offer's video with port 0: the phone is offered audio only, and
// its later re-offer adding video is answered with video port 0.
func TestLateOfferBrowserRefusesVideo(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{})
	webOffer, err := b.LateOffer()
	if err != nil {
		t.Fatal(err)
	}
	rtpOffer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, rtpOffer, "m=video")
	phone := mediapeer.NewPhone(t)
	if _, err := b.RTPAnswer(phone.SDP(1, "0")); err != nil {
		t.Fatal(err)
	}
	if err := phone.Learn(rtpOffer); err != nil {
		t.Fatal(err)
	}
	br.WaitConnected()
	mediapeer.AudioToBrowser(t, phone, br)
	mediapeer.AudioToPhone(t, br, phone)

	// The phone adds video later: the browser, which refused it, is not
	// asked again (pion could not re-offer its rejected section); the
	// phone's re-offer is answered at once, video with port 0.
	out, err := b.RTPReoffer(append(phone.SDP(2, "0"), newVideoPhone(t).answer(97)...))
	if err != nil {
		t.Fatalf("phone adds video: %v", err)
	}
	mustContain(t, out, "m=audio ", "m=video 0 ")
	mediapeer.AudioToPhone(t, br, phone)
}

// TestLateOfferAudioPolicy: with no video in the policy the late offer is
// audio only, as before.
func TestLateOfferAudioPolicy(t *testing.T) {
	e := newTestEngine(t, Options{VideoCodecs: []Codec{}})
	b := newTestBridge(t, e)
	webOffer, err := b.LateOffer()
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, webOffer, "m=video")
	if b.vidA.Load() != nil {
		t.Error("a video port pair for an audio-only late offer")
	}
}

// keyframeAtBrowser waits for an H.264 IDR among the video packets the
// browser receives (videoToBrowser sends whole access units until then).
func keyframeAtBrowser(t *testing.T, br *mediapeer.Browser) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-br.VideoPackets():
			if mediapeer.IsH264IDR(p.Payload) {
				return
			}
		case <-deadline:
			t.Fatal("no keyframe reached the browser")
		}
	}
}
