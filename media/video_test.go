package media

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// videoPhone is the video half of a SIP video phone: its own RTP socket
// and an RTCP socket (named with a=rtcp).
type videoPhone struct {
	t         *testing.T
	rtp, rtcp *net.UDPConn
}

func newVideoPhone(t *testing.T) *videoPhone {
	open := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &videoPhone{t: t, rtp: open(), rtcp: open()}
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// media is the phone's m=video section: H.264 as pt 100 at level 3.0,
// with or without RTCP feedback, capped at kbps.
func (v *videoPhone) media(fb bool, kbps int) string {
	s := "m=video " + strconv.Itoa(port(v.rtp)) + " RTP/AVP 100\r\n"
	if kbps > 0 {
		s += "b=AS:" + strconv.Itoa(kbps) + "\r\n"
	}
	s += "a=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=1;profile-level-id=42e01e\r\n"
	if fb {
		s += "a=rtcp-fb:* nack pli\r\n"
	}
	return s + "a=rtcp:" + strconv.Itoa(port(v.rtcp)) + "\r\na=sendrecv\r\n"
}

var videoMLine = regexp.MustCompile(`(?m)^m=video (\d+) `)

func videoPort(t *testing.T, sdp []byte) int {
	m := videoMLine.FindSubmatch(sdp)
	if m == nil {
		t.Fatalf("no m=video in\n%s", sdp)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func videoBrowser(t *testing.T) *mediapeer.Browser {
	return mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Video: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	}})
}

// TestVideoBrowserCallsPhone bridges H.264 both ways between a pion
// browser and a SIP video phone, with keyframe requests each way.
func TestVideoBrowserCallsPhone(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	e := newTestEngine(t, Options{Clock: clk})
	b := newTestBridge(t, e)
	var infos atomic.Int64
	b.OnKeyframeRequest(func() { infos.Add(1) })
	br := videoBrowser(t)
	rtpOffer, err := b.WebOffer(br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpOffer, "m=video ", "a=rtpmap:102 H264/90000", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:* nack pli")
	gwVideo := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpOffer)))
	phone := mediapeer.NewPhone(t)
	vp := newVideoPhone(t)
	webAnswer, err := b.RTPAnswer(append(phone.SDP(1, "0"), vp.media(true, 500)...))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webAnswer, "a=rtpmap:102 H264/90000", "profile-level-id=42e01e", "b=AS:500")
	if strings.Contains(string(webAnswer), "VP8") {
		t.Errorf("web answer offers VP8, which the phone refused:\n%s", webAnswer)
	}
	br.SetAnswer(webAnswer)
	br.WaitConnected()

	// Phone → browser: an IDR, payload type 100 becomes 102, on one
	// stream with consecutive sequence numbers.
	got := videoToBrowser(t, vp, gwVideo, br, 100)
	if got.PayloadType != 102 {
		t.Fatalf("browser got video pt %d, want 102", got.PayloadType)
	}
	select {
	case next := <-br.VideoPackets():
		if next.SSRC != got.SSRC || next.SequenceNumber != got.SequenceNumber+1 || next.Timestamp != got.Timestamp {
			t.Errorf("video to the browser broke: ssrc %x seq %d ts %d after %x %d %d", next.SSRC, next.SequenceNumber, next.Timestamp, got.SSRC, got.SequenceNumber, got.Timestamp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the rest of the access unit did not reach the browser")
	}

	// Browser → phone: pt 102 becomes 100, keyframe intact; the browser
	// is told, by REMB, to keep to the phone's b=AS:500.
	atPhone := videoToPhone(t, br, vp, 102)
	if atPhone.PayloadType != 100 {
		t.Fatalf("phone got pt %d, want 100", atPhone.PayloadType)
	}
	waitFor(t, "a REMB at the browser", func() bool { return br.REMB() != 0 })
	if r := br.REMB(); r < 490000 || r > 510000 {
		t.Errorf("REMB %d bit/s, want the phone's 500 kbit/s", r)
	}
	buf := make([]byte, 1500)

	// Browser's PLI → the phone's RTCP port, as RTCP feedback.
	br.RequestKeyframe(got.SSRC)
	_ = vp.rtcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := vp.rtcp.Read(buf)
		if err != nil {
			t.Fatalf("no PLI at the phone: %v", err)
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err == nil {
			if _, ok := pkts[0].(*rtcp.PictureLossIndication); ok {
				break
			}
		}
	}
	if infos.Load() != 0 {
		t.Error("a phone with rtcp-fb got an INFO keyframe request")
	}

	// Phone's PLI → the browser; so does RequestKeyframe (INFO).
	pli, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 0xabc, MediaSSRC: atPhone.SSRC}})
	_, _ = vp.rtcp.WriteToUDPAddrPort(pli, netip.AddrPortFrom(loopback, gwVideo.Port()+1))
	waitFor(t, "a PLI at the browser", func() bool { return br.KeyframeRequests() >= 1 })
	clk.Advance(keyframeEvery) // else the second request is one too many
	if err := b.RequestKeyframe(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second PLI at the browser", func() bool { return br.KeyframeRequests() >= 2 })
	st := b.Stats().Video
	if st.PacketsToWeb == 0 || st.PacketsToRTP == 0 || st.KeyframesToPhone != 1 || st.KeyframesToBrowser != 2 {
		t.Errorf("video stats %+v", st)
	}
}

// TestVideoKeyframeByInfo: a phone without rtcp-fb gets the browser's
// keyframe requests through OnKeyframeRequest (the gateway's INFO).
func TestVideoKeyframeByInfo(t *testing.T) {
	checkGoroutines(t)
	c := browserCallsVideoPhone(t, Options{}, false)
	b, br, vp, gwVideo := c.b, c.br, c.vp, c.gwVideo
	infos := make(chan struct{}, 4)
	b.OnKeyframeRequest(func() { infos <- struct{}{} })
	var got *rtp.Packet
	for seq := uint16(1); got == nil; seq++ {
		p := mediapeer.H264Packets(mediapeer.H264IDR()[2:], 100, 0xabc, seq, uint32(seq)*3000)[0]
		raw, _ := p.Marshal()
		_, _ = vp.rtp.WriteToUDPAddrPort(raw, gwVideo)
		select {
		case got = <-br.VideoPackets():
		case <-time.After(50 * time.Millisecond):
		}
		if seq > 200 {
			t.Fatal("no video reached the browser")
		}
	}
	br.RequestKeyframe(got.SSRC)
	select {
	case <-infos:
	case <-time.After(10 * time.Second):
		t.Fatal("no keyframe request for the INFO")
	}
}

// TestVideoRefusedByPhone: the phone answers m=video with port 0; the call
// is audio-only and the browser's video is rejected.
func TestVideoRefusedByPhone(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := videoBrowser(t)
	if _, err := b.WebOffer(br.Offer()); err != nil {
		t.Fatal(err)
	}
	phone := mediapeer.NewPhone(t)
	webAnswer, err := b.RTPAnswer(append(phone.SDP(1, "0"), "m=video 0 RTP/AVP 102\r\n"...))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webAnswer, "m=video 0 ", "m=audio 9 ")
	br.SetAnswer(webAnswer)
	br.WaitConnected()
	if err := b.RequestKeyframe(); !errors.Is(err, ErrNoVideo) {
		t.Errorf("RequestKeyframe without video: %v", err)
	}
}

// TestVideoPhoneCallsBrowser: the phone's video offer reaches the browser
// and the phone gets an answer with video at a level not above its own.
func TestVideoPhoneCallsBrowser(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	phone := mediapeer.NewPhone(t)
	vp := newVideoPhone(t)
	webOffer, err := b.RTPOffer(append(phone.SDP(1, "0"), vp.media(true, 0)...))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webOffer, "m=video 9 UDP/TLS/RTP/SAVPF", "H264/90000", "profile-level-id=42e01e")
	br := videoBrowser(t)
	rtpAnswer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpAnswer, "m=video ", "RTP/AVP 100", "a=rtpmap:100 H264/90000", "profile-level-id=42e01e")
	if videoPort(t, rtpAnswer) == 0 {
		t.Fatalf("video refused:\n%s", rtpAnswer)
	}

	// A phone offering RTP/AVPF for its video gets RTP/AVPF back.
	b2 := newTestBridge(t, e)
	avpf := strings.Replace(vp.media(true, 0), "RTP/AVP 100", "RTP/AVPF 100", 1)
	webOffer, err = b2.RTPOffer(append(phone.SDP(1, "0"), avpf...))
	if err != nil {
		t.Fatal(err)
	}
	br2 := videoBrowser(t)
	rtpAnswer, err = b2.WebAnswer(br2.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpAnswer, " RTP/AVPF 100\r\n")
}

// TestNoCommonCodecNamesBoth: the error says what each side has.
func TestNoCommonCodecNamesBoth(t *testing.T) {
	e := newTestEngine(t, Options{})
	b, err := e.NewBridgeWith(context.Background(), t.Name(), BridgeOptions{Codecs: []Codec{{Name: "PCMA", ClockRate: 8000, PayloadType: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	phone := mediapeer.NewPhone(t)
	_, err = b.RTPOffer(phone.SDP(1, "0 18"))
	var m *CodecMismatchError
	if !errors.As(err, &m) || !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("err %v, want a CodecMismatchError", err)
	}
	if strings.Join(m.Offered, " ") != "PCMU/8000 G729/8000" || strings.Join(m.Allowed, " ") != "PCMA/8000" {
		t.Errorf("offered %v allowed %v", m.Offered, m.Allowed)
	}
}

// TestHostileVideoSDP: too many m= lines, a bogus profile-level-id, a
// payload type out of range: a clear error, no panic.
func TestHostileVideoSDP(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
	many := head + strings.Repeat("m=video 5006 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", 300)
	for name, body := range map[string]string{
		"m-lines":          many,
		"profile-level-id": head + "m=video 5006 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=zzzzzzzzzz\r\n",
		"pt out of range":  head + "m=video 5006 RTP/AVP 300\r\n",
		"formats":          head + "m=video 5006 RTP/AVP" + strings.Repeat(" 96", maxFormats+1) + "\r\n",
	} {
		if _, err := parseSession([]byte(body), false); !errors.Is(err, ErrInvalidSDP) {
			t.Errorf("%s: err %v, want ErrInvalidSDP", name, err)
		}
	}
}

// videoToBrowser sends IDRs as pt from the phone until one reaches the
// browser, and returns it.
func videoToBrowser(t *testing.T, vp *videoPhone, gw netip.AddrPort, br *mediapeer.Browser, pt uint8) *rtp.Packet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(1); ; seq += 3 {
		if time.Now().After(deadline) {
			t.Fatal("no video reached the browser")
		}
		for _, p := range mediapeer.H264Packets(mediapeer.H264IDR(), pt, 0xabc, seq, uint32(seq)*3000) {
			raw, _ := p.Marshal()
			_, _ = vp.rtp.WriteToUDPAddrPort(raw, gw)
		}
		select {
		case p := <-br.VideoPackets():
			return p
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// videoToPhone sends IDRs as pt from the browser until one reaches the
// phone, and returns it.
func videoToPhone(t *testing.T, br *mediapeer.Browser, vp *videoPhone, pt uint8) *rtp.Packet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1500)
	for seq := uint16(1); ; seq += 3 {
		if time.Now().After(deadline) {
			t.Fatal("no video reached the phone")
		}
		for _, p := range mediapeer.H264Packets(mediapeer.H264IDR(), pt, 0, seq, uint32(seq)*3000) {
			br.SendVideo(p)
		}
		_ = vp.rtp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			n, err := vp.rtp.Read(buf)
			if err != nil {
				break
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) == nil && mediapeer.IsH264IDR(p.Payload) {
				return &p
			}
		}
	}
}

// TestVideoAddedByPhone: an audio call from the phone gets video in the
// phone's re-INVITE (the browser renegotiated through RTPReofferWeb), then
// loses it again, the audio going on throughout.
func TestVideoAddedByPhone(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	phone := mediapeer.NewPhone(t)
	webOffer, err := b.RTPOffer(phone.SDP(1, "0"))
	if err != nil {
		t.Fatal(err)
	}
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{VideoLater: true, Video: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
	}})
	rtpAnswer, err := b.WebAnswer(br.Answer(webOffer))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rtpAnswer), "m=video") {
		t.Fatalf("audio call with video:\n%s", rtpAnswer)
	}
	if err := phone.Learn(rtpAnswer); err != nil {
		t.Fatal(err)
	}
	br.WaitConnected()

	vp := newVideoPhone(t)
	reoffer := append(phone.SDP(2, "0"), vp.media(true, 0)...)
	if _, err := b.RTPReoffer(reoffer); !errors.Is(err, ErrChangesWeb) {
		t.Fatalf("RTPReoffer adding video: %v, want ErrChangesWeb", err)
	}
	webReoffer, err := b.RTPReofferWeb(reoffer)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webReoffer, "m=video 9 ", "H264/90000")
	br.AddVideo()
	rtpAnswer, err = b.WebAnswer(br.Answer(webReoffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpAnswer, "m=audio ", "RTP/AVP 100", "a=rtpmap:100 H264/90000")
	gw := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpAnswer)))
	if gw.Port() == 0 {
		t.Fatalf("video refused:\n%s", rtpAnswer)
	}
	if p := videoToBrowser(t, vp, gw, br, 100); p.PayloadType != 97 {
		t.Errorf("browser got video pt %d, want the gateway's 97", p.PayloadType)
	}
	if p := videoToPhone(t, br, vp, 97); p.PayloadType != 100 {
		t.Errorf("phone got video pt %d, want 100", p.PayloadType)
	}

	// The phone drops video: port 0.
	drop := append(phone.SDP(3, "0"), "m=video 0 RTP/AVP 100\r\n"...)
	if _, err := b.RTPReoffer(drop); !errors.Is(err, ErrChangesWeb) {
		t.Fatalf("RTPReoffer removing video: %v, want ErrChangesWeb", err)
	}
	webReoffer, err = b.RTPReofferWeb(drop)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webReoffer, "m=video 0 ")
	rtpAnswer, err = b.WebAnswer(br.Answer(webReoffer))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpAnswer, "m=video 0 ")
	phone.SendPCMU(make([]byte, 160))
	waitFor(t, "audio after video went", func() bool { return br.Received() > 0 })
}

// TestVideoAddedByBrowser: the browser's re-offer with a new video stream
// reaches the phone as a re-offer with video, and video flows.
func TestVideoAddedByBrowser(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{VideoLater: true, Video: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	}})
	rtpOffer, err := b.WebOffer(br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rtpOffer), "m=video") {
		t.Fatalf("audio offer with video:\n%s", rtpOffer)
	}
	phone := mediapeer.NewPhone(t)
	webAnswer, err := b.RTPAnswer(phone.SDP(1, "0"))
	if err != nil {
		t.Fatal(err)
	}
	br.SetAnswer(webAnswer)
	br.WaitConnected()

	br.AddVideo()
	rtpReoffer, err := b.WebReoffer(br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, rtpReoffer, "m=audio ", "a=rtpmap:96 VP8/90000")
	gw := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpReoffer)))
	vp := newVideoPhone(t)
	phoneVideo := "m=video " + strconv.Itoa(port(vp.rtp)) + " RTP/AVP 120\r\na=rtpmap:120 VP8/90000\r\na=rtcp-fb:120 ccm fir\r\na=rtcp:" + strconv.Itoa(port(vp.rtcp)) + "\r\n"
	webAnswer, err = b.RTPAnswer(append(phone.SDP(2, "0"), phoneVideo...))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, webAnswer, "a=rtpmap:96 VP8/90000")
	br.SetAnswer(webAnswer)

	// VP8 keyframes both ways, 120 on the phone's side, 96 on the browser's.
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no VP8 at the browser")
		}
		raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 120, SequenceNumber: 1, Timestamp: 1, SSRC: 7, Marker: true}, Payload: mediapeer.VP8Keyframe()}).Marshal()
		_, _ = vp.rtp.WriteToUDPAddrPort(raw, gw)
		select {
		case p := <-br.VideoPackets():
			got = p.PayloadType == 96 && mediapeer.IsVP8Keyframe(p.Payload)
			if got {
				// FIR, not PLI: the phone offered ccm fir only.
				br.RequestKeyframe(p.SSRC)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no VP8 at the phone")
		}
		br.SendVideo(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Marker: true}, Payload: mediapeer.VP8Keyframe()})
		_ = vp.rtp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := vp.rtp.Read(buf); err == nil {
			var p rtp.Packet
			got = p.Unmarshal(buf[:n]) == nil && p.PayloadType == 120 && mediapeer.IsVP8Keyframe(p.Payload)
		}
	}
	_ = vp.rtcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := vp.rtcp.Read(buf)
		if err != nil {
			t.Fatalf("no FIR at the phone: %v", err)
		}
		if pkts, err := rtcp.Unmarshal(buf[:n]); err == nil {
			if _, ok := pkts[0].(*rtcp.FullIntraRequest); ok {
				break
			}
		}
	}
}

// TestBridgeOptionsCodecs: a bridge's own policy filters and orders what
// the phone is offered, and one without video formats keeps the call
// audio-only.
func TestBridgeOptionsCodecs(t *testing.T) {
	e := newTestEngine(t, Options{})
	b, err := e.NewBridgeWith(context.Background(), t.Name(), BridgeOptions{Codecs: []Codec{
		{Name: "PCMA", ClockRate: 8000, PayloadType: 8},
		{Name: "PCMU", ClockRate: 8000, PayloadType: 0},
		{Name: "telephone-event", ClockRate: 8000, PayloadType: 101},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{
		Codecs: []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
		},
		Video: []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}},
	})
	offer, err := b.WebOffer(br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, offer, " RTP/AVP 8 0 126\r\n")
	if strings.Contains(string(offer), "m=video") {
		t.Errorf("video offered against the bridge's policy:\n%s", offer)
	}
	if _, err := e.NewBridgeWith(context.Background(), "x", BridgeOptions{Codecs: DefaultVideoCodecs()}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("a policy without audio: %v", err)
	}
}

// TestVideoAddRefusedByBrowser: the browser refuses the re-offer that
// adds video (the gateway gets a 488 for its re-INVITE): Rollback keeps
// the audio call as it was, and a later re-offer adding video works.
func TestVideoAddRefusedByBrowser(t *testing.T) {
	checkGoroutines(t)
	e := newTestEngine(t, Options{})
	b := newTestBridge(t, e)
	phone := mediapeer.NewPhone(t)
	webOffer, err := b.RTPOffer(phone.SDP(1, "0"))
	if err != nil {
		t.Fatal(err)
	}
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{VideoLater: true, Video: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	}})
	if _, err := b.WebAnswer(br.Answer(webOffer)); err != nil {
		t.Fatal(err)
	}
	br.WaitConnected()
	vp := newVideoPhone(t)
	vp8 := "m=video " + strconv.Itoa(port(vp.rtp)) + " RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n"
	if _, err := b.RTPReofferWeb(append(phone.SDP(2, "0"), vp8...)); err != nil {
		t.Fatal(err)
	}
	if err := b.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RTPReoffer(phone.SDP(3, "0", "a=sendonly")); err != nil {
		t.Fatalf("hold after the refused video: %v", err)
	}
	webReoffer, err := b.RTPReofferWeb(append(phone.SDP(4, "0"), vp8...))
	if err != nil {
		t.Fatal(err)
	}
	br.AddVideo()
	rtpAnswer, err := b.WebAnswer(br.Answer(webReoffer))
	if err != nil {
		t.Fatal(err)
	}
	if videoPort(t, rtpAnswer) == 0 {
		t.Fatalf("video refused after the rollback:\n%s", rtpAnswer)
	}
	if err := phone.Learn(rtpAnswer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "audio at the browser", func() bool {
		phone.SendPCMU(make([]byte, 160))
		return br.Received() > 0
	})
	gw := netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpAnswer)))
	deadline := time.Now().Add(10 * time.Second)
	for seq, got := uint16(1), false; !got; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("no video at the browser after the rollback")
		}
		raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, SSRC: 5}, Payload: mediapeer.VP8Keyframe()}).Marshal()
		_, _ = vp.rtp.WriteToUDPAddrPort(raw, gw)
		select {
		case p := <-br.VideoPackets():
			got = mediapeer.IsVP8Keyframe(p.Payload)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestAnswerFmtpLevel: an answer's H.264 level is never above the
// offer's, and drops to what the other leg takes (RFC 6184 §8.2.2).
func TestAnswerFmtpLevel(t *testing.T) {
	offer := Codec{Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	for other, want := range map[string]string{
		"packetization-mode=1;profile-level-id=42e01e": "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01e",
		"packetization-mode=1;profile-level-id=42e028": offer.Fmtp, // 4.0 > 3.1: not raised
		"packetization-mode=1":                         offer.Fmtp,
	} {
		if got := answerFmtp(offer, other); got != want {
			t.Errorf("answer to %q against %q: %q, want %q", offer.Fmtp, other, got, want)
		}
	}
	if vp8 := (Codec{Name: "VP8", ClockRate: 90000, Fmtp: "max-fr=30"}); answerFmtp(vp8, "max-fr=15") != "max-fr=30" {
		t.Error("a VP8 fmtp changed")
	}
	if (Codec{Name: "H264", ClockRate: 90000, Fmtp: "packetization-mode=0;profile-level-id=42e01f"}).key() == offer.key() {
		t.Error("packetization modes 0 and 1 are the same format")
	}
}

// TestH264Profiles: the ways phones and browsers write one H.264 profile
// are one format, and different profiles or modes are not.
func TestH264Profiles(t *testing.T) {
	h264 := func(plid string) Codec {
		return Codec{Name: "H264", ClockRate: 90000, Fmtp: "packetization-mode=1;profile-level-id=" + plid}
	}
	for _, same := range [][]string{
		{"42e01f", "42c01e", "4de01f", "4d801f", "42f00b", "58c01f"},
		{"42001f", "42801f", "588028"},
		{"4d001f", "4d401f"},
		{"64001f", "640028"},
		{"640c1f", "640c28"},
	} {
		for _, plid := range same[1:] {
			if h264(plid).key() != h264(same[0]).key() {
				t.Errorf("%s and %s are not the same profile", plid, same[0])
			}
		}
	}
	for _, pair := range [][2]string{
		{"42e01f", "42001f"}, // constrained baseline is not baseline
		{"42e01f", "4d001f"},
		{"4d001f", "64001f"},
		{"64001f", "640c1f"},
		{"64081f", "64001f"}, // progressive high is not high
		{"42e11f", "42e01f"}, // reserved bits set: named by the digits
		{"f4001f", "64001f"},
	} {
		if h264(pair[0]).key() == h264(pair[1]).key() {
			t.Errorf("%s and %s are the same profile", pair[0], pair[1])
		}
	}
}

// TestVideoPhoneProfileSpelling: a phone that writes constrained baseline
// as 42c01e, or offers H.264 in packetization mode 0 alone, still gets
// video from a browser, which is offered the profile as browsers write it.
func TestVideoPhoneProfileSpelling(t *testing.T) {
	for _, tc := range []struct {
		name, phoneFmtp, browserFmtp, webWants string
	}{
		{"42c01e", "packetization-mode=1;profile-level-id=42c01e",
			"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "packetization-mode=1;profile-level-id=42e01e"},
		{"mode 0", "profile-level-id=42e01e",
			"level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", "packetization-mode=0;profile-level-id=42e01e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, Options{})
			b := newTestBridge(t, e)
			phone := mediapeer.NewPhone(t)
			vp := newVideoPhone(t)
			m := strings.Replace(vp.media(false, 0), "packetization-mode=1;profile-level-id=42e01e", tc.phoneFmtp, 1)
			webOffer, err := b.RTPOffer(append(phone.SDP(1, "0"), m...))
			if err != nil {
				t.Fatal(err)
			}
			mustContain(t, webOffer, "m=video 9 UDP/TLS/RTP/SAVPF", tc.webWants)
			br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Video: []webrtc.RTPCodecParameters{
				{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: tc.browserFmtp}, PayloadType: 102},
			}})
			rtpAnswer, err := b.WebAnswer(br.Answer(webOffer))
			if err != nil {
				t.Fatal(err)
			}
			if videoPort(t, rtpAnswer) == 0 {
				t.Fatalf("video refused:\n%s", rtpAnswer)
			}
			mustContain(t, rtpAnswer, "a=rtpmap:100 H264/90000", "a=fmtp:100 "+tc.phoneFmtp)
		})
	}
}
