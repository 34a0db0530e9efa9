package b2bua

import (
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/sip"
)

// videoCodecs are a browser's video formats: VP8 and H.264 (mode 1).
func videoCodecs() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
	}
}

// videoSocket is a phone's video port on loopback.
func videoSocket(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// phoneVideo is the phone's m=video: VP8 as 100, with RTCP feedback or
// without (then the gateway asks it for keyframes with INFO).
func phoneVideo(c *net.UDPConn, fb bool) string {
	s := "m=video " + strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n"
	if fb {
		s += "a=rtcp-fb:100 nack pli\r\n"
	}
	return s
}

var mVideo = regexp.MustCompile(`(?m)^m=video (\d+) `)

// TestVideoCallKeyframeByInfo: a browser's video call to a phone that
// takes no RTCP feedback; the browser's PLI reaches the phone as INFO
// picture_fast_update (RFC 5168).
func TestVideoCallKeyframeByInfo(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Codecs: newTestBrowserCodecs(), Video: videoCodecs()})
	t.Cleanup(h.autoAnswer)
	ph, vc := newTestPhone(t), videoSocket(t)
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	mustContain(t, in.req.Body, "m=video ", "VP8/90000")
	ph.learn(in.req.Body)
	m := mVideo.FindSubmatch(in.req.Body)
	gwPort, _ := strconv.Atoi(string(m[1]))
	in.respond(200, append(ph.sdp(1, "0 101"), phoneVideo(vc, false)...))
	res := oc.await(200)
	mustContain(t, res.Body, "m=video 9 ", "VP8/90000")
	br.SetAnswer(res.Body)
	oc.ack(res, nil)
	h.phone.expect(sip.MethodAck)
	br.WaitConnected()

	// Video from the phone, so that the browser has a stream to ask a
	// keyframe of.
	var got *rtp.Packet
	for seq := uint16(1); got == nil; seq++ {
		if seq > 500 {
			t.Fatal("no video at the browser")
		}
		raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9}, Payload: mediapeer.VP8Keyframe()}).Marshal()
		_, _ = vc.WriteToUDP(raw, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: gwPort})
		select {
		case got = <-br.VideoPackets():
		case <-time.After(20 * time.Millisecond): // resend until ICE and DTLS let it through
		}
	}
	br.RequestKeyframe(got.SSRC)
	info := h.phone.expect(sip.MethodInfo)
	if ct := info.req.ContentType(); ct != contentMediaControl {
		t.Errorf("INFO content type %q", ct)
	}
	mustContain(t, info.req.Body, "picture_fast_update")
	info.respond(200, nil)
}

// audioCallVideoLater is a browser's answered audio call to a phone, the
// browser ready to add video later.
func audioCallVideoLater(t *testing.T) (*harness, *mediapeer.Browser, *testPhone, *outCall, *inbound) {
	t.Helper()
	h := newHarness(t, harnessOptions{})
	br := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Codecs: newTestBrowserCodecs(), Video: videoCodecs(), VideoLater: true})
	t.Cleanup(h.autoAnswer)
	ph := newTestPhone(t)
	oc := h.browser.invite("phone", br.Offer())
	in := h.phone.expect(sip.MethodInvite)
	ph.learn(in.req.Body)
	in.respond(200, ph.sdp(1, "0 101"))
	res := oc.await(200)
	br.SetAnswer(res.Body)
	oc.ack(res, nil)
	h.phone.expect(sip.MethodAck)
	br.WaitConnected()
	return h, br, ph, oc, in
}

// TestVideoAddedByPhoneReinvite: the phone's re-INVITE adding video
// renegotiates the browser (a re-INVITE to it) and the phone is answered
// with video; the audio goes on.
func TestVideoAddedByPhoneReinvite(t *testing.T) {
	h, br, ph, _, in := audioCallVideoLater(t)

	vc := videoSocket(t)
	done := make(chan *sip.Response, 1)
	go func() {
		done <- h.phone.request(in.dlg, sip.MethodInvite, append(ph.sdp(2, "0 101"), phoneVideo(vc, true)...), contentSDP)
	}()
	reinv := h.browser.expect(sip.MethodInvite)
	mustContain(t, reinv.req.Body, "m=video 9 ", "VP8/90000")
	br.AddVideo()
	reinv.respond(200, br.Answer(reinv.req.Body))
	var ok *sip.Response
	select {
	case ok = <-done:
	case <-timeAfter():
		t.Fatal("no answer to the phone's re-INVITE")
	}
	if ok.StatusCode != 200 {
		t.Fatalf("phone's re-INVITE: %d", ok.StatusCode)
	}
	mustContain(t, ok.Body, "m=audio ", "RTP/AVP 100", "a=rtpmap:100 VP8/90000")
	if m := mVideo.FindSubmatch(ok.Body); m == nil || string(m[1]) == "0" {
		t.Fatalf("video refused:\n%s", ok.Body)
	}
	audioToPhone(t, br, ph)
}

// TestVideoAddedByBrowserReinvite: the browser's re-INVITE adding video
// reaches the phone as a re-INVITE with m=video; a phone that refuses it
// (port 0) leaves the call audio-only, and the browser is told so.
func TestVideoAddedByBrowserReinvite(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run("refuse="+strconv.FormatBool(refuse), func(t *testing.T) {
			h, br, ph, oc, _ := audioCallVideoLater(t)

			br.AddVideo()
			done := make(chan *sip.Response, 1)
			go func() { done <- h.browser.request(oc.dlg, sip.MethodInvite, br.Offer(), contentSDP) }()
			reinv := h.phone.expect(sip.MethodInvite)
			mustContain(t, reinv.req.Body, "m=audio ", "m=video ", "VP8/90000")
			video := phoneVideo(videoSocket(t), true)
			if refuse {
				video = "m=video 0 RTP/AVP 96\r\n"
			}
			reinv.respond(200, append(ph.sdp(2, "0 101"), video...))
			h.phone.expect(sip.MethodAck)
			var ok *sip.Response
			select {
			case ok = <-done:
			case <-timeAfter():
				t.Fatal("no answer to the browser's re-INVITE")
			}
			if ok.StatusCode != 200 {
				t.Fatalf("browser's re-INVITE: %d", ok.StatusCode)
			}
			m := mVideo.FindSubmatch(ok.Body)
			if m == nil || (string(m[1]) == "0") != refuse {
				t.Fatalf("refused %v, browser's answer:\n%s", refuse, ok.Body)
			}
			br.SetAnswer(ok.Body)
			audioToPhone(t, br, ph)
		})
	}
}

// lateVideoCall is a phone's call without SDP to a browser with video
// (up to the 200 to the phone, the gateway's offer in it); the browser
// takes the video unless its options have none.
func lateVideoCall(t *testing.T, h *harness, opts mediapeer.BrowserOptions) (*mediapeer.Browser, *testPhone, *outCall, *sip.Response) {
	t.Helper()
	br := mediapeer.NewBrowser(t, opts)
	t.Cleanup(h.autoAnswer)
	ph := newTestPhone(t)
	oc := h.phone.invite("browser", nil)
	in := h.browser.expect(sip.MethodInvite)
	mustContain(t, in.req.Body, "m=audio 9 ", "m=video 9 ")
	in.respond(200, br.Answer(in.req.Body))
	h.browser.expect(sip.MethodAck)
	res := oc.await(200)
	ph.learn(res.Body)
	return br, ph, oc, res
}

// TestLateOfferVideoAddedAfterBrowserRefused: after a late offer whose
// video a browser without video refused, the phone's re-INVITE adding
// video is refused cleanly: the browser is asked and refuses again, the
// phone's answer has video with port 0, and the call keeps its audio.
func TestLateOfferVideoAddedAfterBrowserRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, res := lateVideoCall(t, h, mediapeer.BrowserOptions{Codecs: newTestBrowserCodecs()})
	if m := mVideo.FindSubmatch(res.Body); m != nil && string(m[1]) != "0" {
		t.Fatalf("video offered to the phone that the browser refused:\n%s", res.Body)
	}
	oc.ack(res, ph.sdp(1, "0 101"))
	br.WaitConnected()

	done := make(chan *sip.Response, 1)
	go func() {
		done <- h.phone.request(oc.dlg, sip.MethodInvite, append(ph.sdp(2, "0 101"), phoneVideo(videoSocket(t), true)...), contentSDP)
	}()
	var ok *sip.Response
	select {
	case reinv := <-h.browser.in[sip.MethodInvite]:
		reinv.respond(200, br.Answer(reinv.req.Body))
		h.browser.expect(sip.MethodAck)
		ok = <-done
	case ok = <-done:
	case <-timeAfter():
		t.Fatal("no answer to the phone's re-INVITE")
	}
	if ok.StatusCode != 200 {
		t.Fatalf("phone's re-INVITE adding video: %d %s", ok.StatusCode, ok.Reason)
	}
	if m := mVideo.FindSubmatch(ok.Body); m == nil || string(m[1]) != "0" {
		t.Fatalf("video not refused with port 0:\n%s", ok.Body)
	}
	audioToBrowser(t, ph, br)
	audioToPhone(t, br, ph)
}

// TestLateOfferVideoRefusedByPhone: after a late offer, the phone's
// answer in its ACK refuses the video the browser took (port 0): the
// browser is renegotiated without it (a re-INVITE whose m=video has port
// 0), rather than left sending video that goes nowhere and waiting for
// video that never comes; the audio goes on both ways, and so does the
// call's offer/answer.
func TestLateOfferVideoRefusedByPhone(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	br, ph, oc, res := lateVideoCall(t, h, mediapeer.BrowserOptions{Codecs: newTestBrowserCodecs(), Video: videoCodecs()})
	if m := mVideo.FindSubmatch(res.Body); m == nil || string(m[1]) == "0" {
		t.Fatalf("no video offered to the phone:\n%s", res.Body)
	}
	oc.ack(res, append(ph.sdp(1, "0 101"), "m=video 0 RTP/AVP 96\r\n"...))

	reinv := h.browser.expect(sip.MethodInvite)
	if m := mVideo.FindSubmatch(reinv.req.Body); m == nil || string(m[1]) != "0" {
		t.Fatalf("the browser's re-INVITE keeps the video:\n%s", reinv.req.Body)
	}
	mustContain(t, reinv.req.Body, "m=audio 9 ", "a=fingerprint:")
	reinv.respond(200, br.Answer(reinv.req.Body))
	h.browser.expect(sip.MethodAck)
	br.WaitConnected()
	audioToBrowser(t, ph, br)
	audioToPhone(t, br, ph)

	// The bridge is back to a settled state: the phone's next re-offer
	// is answered. Until the gateway took the browser's answer it gets
	// 491, and tries again, as RFC 3261 §14.1 has it.
	deadline := time.Now().Add(waitLimit)
	for {
		res := h.phone.request(oc.dlg, sip.MethodInvite, ph.sdp(2, "0 101"), contentSDP)
		if res.StatusCode == 200 {
			break
		}
		if res.StatusCode != 491 || time.Now().After(deadline) {
			t.Fatalf("phone's re-INVITE after the renegotiation: %d", res.StatusCode)
		}
	}
	h.browser.idle(sip.MethodInvite)
}
