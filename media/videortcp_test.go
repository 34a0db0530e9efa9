package media

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// videoCall is a connected call of a video browser to a video phone.
type videoCall struct {
	b       *Bridge
	br      *mediapeer.Browser
	phone   *mediapeer.Phone
	vp      *videoPhone
	gwVideo netip.AddrPort // the gateway's video RTP address
}

// browserCallsVideoPhone runs WebOffer and RTPAnswer between a video
// browser and a phone that answers H.264, with RTCP feedback when fb (and
// the audio attributes extra), and waits until the browser is connected.
func browserCallsVideoPhone(t *testing.T, o Options, fb bool, extra ...string) *videoCall {
	t.Helper()
	e := newTestEngine(t, o)
	c := &videoCall{b: newTestBridge(t, e), br: videoBrowser(t), phone: mediapeer.NewPhone(t), vp: newVideoPhone(t)}
	rtpOffer, err := c.b.WebOffer(c.br.Offer())
	if err != nil {
		t.Fatal(err)
	}
	c.gwVideo = netip.AddrPortFrom(loopback, uint16(videoPort(t, rtpOffer)))
	webAnswer, err := c.b.RTPAnswer(append(c.phone.SDP(1, "0", extra...), c.vp.media(fb, 0)...))
	if err != nil {
		t.Fatal(err)
	}
	c.br.SetAnswer(webAnswer)
	c.br.WaitConnected()
	return c
}

// readReport reads the phone's video RTCP socket until a sender or
// receiver report arrives (keyframe requests are skipped) and returns the
// compound packet.
func readReport(t *testing.T, vp *videoPhone) []rtcp.Packet {
	t.Helper()
	buf := make([]byte, 1500)
	_ = vp.rtcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := vp.rtcp.Read(buf)
		if err != nil {
			t.Fatalf("no RTCP report at the phone: %v", err)
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatalf("unparseable RTCP at the phone: %v", err)
		}
		switch pkts[0].(type) {
		case *rtcp.SenderReport, *rtcp.ReceiverReport:
			return pkts
		}
	}
}

// TestVideoRTCPReportsToPhone: every 5 s of the bridge's clock the
// phone's video RTCP port gets a receiver report while the gateway has
// sent it no video, then a sender report naming the gateway's video SSRC,
// with the NTP time of the clock and the RTP time of the stream it sends,
// a report block on the phone's video SSRC, and a CNAME.
func TestVideoRTCPReportsToPhone(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	audioRTCP := newVideoPhone(t).rtcp // the phone's audio RTCP socket
	c := browserCallsVideoPhone(t, Options{Clock: clk}, true, "a=rtcp:"+strconv.Itoa(port(audioRTCP)))
	b, br, vp, phone, gwVideo := c.b, c.br, c.vp, c.phone, c.gwVideo

	// The phone's video reaches the browser; the gateway has sent none
	// yet: a receiver report on the phone's stream.
	videoToBrowser(t, vp, gwVideo, br, 100)
	clk.Advance(rtcpEvery)
	pkts := readReport(t, vp)
	rr, ok := pkts[0].(*rtcp.ReceiverReport)
	if !ok {
		t.Fatalf("first report %T, want a receiver report", pkts[0])
	}
	if rr.SSRC != b.vidA.Load().toRTP.ssrc || len(rr.Reports) != 1 || rr.Reports[0].SSRC != 0xabc {
		t.Fatalf("receiver report %+v, want the gateway's SSRC %x reporting on the phone's 0xabc", rr, b.vidA.Load().toRTP.ssrc)
	}
	if len(pkts) < 2 {
		t.Fatal("report without SDES")
	}
	if sdes, ok := pkts[1].(*rtcp.SourceDescription); !ok || len(sdes.Chunks) != 1 || sdes.Chunks[0].Source != rr.SSRC {
		t.Fatalf("second packet %+v, want the SDES CNAME of the sender", pkts[1])
	}

	// The browser's video reaches the phone: the next report is an SR on
	// the SSRC the phone receives, at the clock's NTP time.
	atPhone := videoToPhone(t, br, vp, 102)
	audio := mediapeer.AudioToPhone(t, br, phone)
	// The relay counts a packet once it has sent it: the phone may have
	// it first, and a report made before the count has nothing to report
	// (no SR). 1 in 4 runs under load saw no audio SR.
	waitFor(t, "the relay to count what it sent the phone", func() bool {
		st := b.Stats()
		return st.RTP.PacketsOut > 0 && st.Video.PacketsToRTP > 0
	})
	sentAt := clk.Now()
	clk.Advance(rtcpEvery)
	pkts = readReport(t, vp)
	sr, ok := pkts[0].(*rtcp.SenderReport)
	if !ok {
		t.Fatalf("report %T after video went to the phone, want a sender report", pkts[0])
	}
	if sr.SSRC != atPhone.SSRC {
		t.Errorf("SR names SSRC %x, the phone's video comes from %x", sr.SSRC, atPhone.SSRC)
	}
	if want := ntpTime(clk.Now()); sr.NTPTime != want {
		t.Errorf("SR NTP time %x, want the clock's %x", sr.NTPTime, want)
	}
	// The RTP time is the last timestamp sent plus the 5 s since, at
	// 90 kHz; videoToPhone sent access units 9000 apart, atPhone among
	// them, all at sentAt.
	if d := sr.RTPTime - atPhone.Timestamp - uint32(clk.Now().Sub(sentAt).Seconds()*90000); d%9000 != 0 || d > 9000*1000 {
		t.Errorf("SR RTP time %d, last sent %d + 450000 + a multiple of 9000 expected", sr.RTPTime, atPhone.Timestamp)
	}
	// Packets still on their way from the browser may be counted after
	// the report was made: at most the stats' count.
	if st := b.Stats().Video; sr.PacketCount == 0 || uint64(sr.PacketCount) > st.PacketsToRTP || sr.OctetCount == 0 {
		t.Errorf("SR counts %d packets %d octets, stats say %d packets", sr.PacketCount, sr.OctetCount, st.PacketsToRTP)
	}
	if len(sr.Reports) != 1 || sr.Reports[0].SSRC != 0xabc {
		t.Errorf("SR report blocks %+v, want one on the phone's 0xabc", sr.Reports)
	}
	if n := b.Stats().Video.ReportsToPhone; n != 2 {
		t.Errorf("%d reports counted, want 2", n)
	}

	// The audio the phone gets has its SR too, at the same NTP time and
	// with the same CNAME, so that the phone can sync the two.
	buf := make([]byte, 1500)
	_ = audioRTCP.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := audioRTCP.Read(buf)
	if err != nil {
		t.Fatalf("no audio SR at the phone: %v", err)
	}
	apkts, err := rtcp.Unmarshal(buf[:n])
	if err != nil || len(apkts) < 2 {
		t.Fatalf("audio RTCP %v: %v", apkts, err)
	}
	asr, ok := apkts[0].(*rtcp.SenderReport)
	if !ok || asr.SSRC != audio.SSRC || asr.NTPTime != sr.NTPTime {
		t.Fatalf("audio report %+v, want an SR on %x at NTP %x", apkts[0], audio.SSRC, sr.NTPTime)
	}
	if d := asr.RTPTime - audio.Timestamp - 40000; d%160 != 0 || d > 160*1000 {
		t.Errorf("audio SR RTP time %d, last sent %d + 40000 + a multiple of 160 expected", asr.RTPTime, audio.Timestamp)
	}
	vc, ok1 := pkts[1].(*rtcp.SourceDescription)
	ac, ok2 := apkts[1].(*rtcp.SourceDescription)
	if !ok1 || !ok2 || len(vc.Chunks) == 0 || len(ac.Chunks) == 0 || len(vc.Chunks[0].Items) == 0 || len(ac.Chunks[0].Items) == 0 {
		t.Fatalf("SDES %+v and %+v", pkts[1], apkts[1])
	}
	if vc.Chunks[0].Items[0].Text != ac.Chunks[0].Items[0].Text {
		t.Errorf("CNAME %q for video, %q for audio", vc.Chunks[0].Items[0].Text, ac.Chunks[0].Items[0].Text)
	}
}

// TestNTPTime: the Unix epoch is 2208988800 s after NTP's, and half a
// second is half the fraction.
func TestNTPTime(t *testing.T) {
	got := ntpTime(time.Unix(1, 5e8))
	if got>>32 != 2208988801 || uint32(got) != 1<<31 {
		t.Errorf("ntpTime = %x", got)
	}
}

// TestKeyframeRequestsRateLimited: keyframe requests go at most once per
// keyframeEvery of the bridge's clock in each direction; the others are
// dropped and counted.
func TestKeyframeRequestsRateLimited(t *testing.T) {
	checkGoroutines(t)
	clk := newFake()
	c := browserCallsVideoPhone(t, Options{Clock: clk}, true)
	b, br, vp, gwVideo := c.b, c.br, c.vp, c.gwVideo
	got := videoToBrowser(t, vp, gwVideo, br, 100)
	videoToPhone(t, br, vp, 102)

	// To the browser: three requests at one instant, one PLI.
	for range 3 {
		if err := b.RequestKeyframe(); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats().Video; st.KeyframesToBrowser != 1 || st.KeyframesToBrowserDropped != 2 {
		t.Fatalf("to the browser: %d sent, %d dropped; want 1 and 2", st.KeyframesToBrowser, st.KeyframesToBrowserDropped)
	}
	clk.Advance(keyframeEvery - time.Millisecond)
	_ = b.RequestKeyframe()
	clk.Advance(time.Millisecond)
	_ = b.RequestKeyframe()
	if st := b.Stats().Video; st.KeyframesToBrowser != 2 || st.KeyframesToBrowserDropped != 3 {
		t.Fatalf("to the browser after %v: %d sent, %d dropped; want 2 and 3", keyframeEvery, st.KeyframesToBrowser, st.KeyframesToBrowserDropped)
	}
	waitFor(t, "two PLIs at the browser", func() bool { return br.KeyframeRequests() >= 2 })

	// To the phone: the browser's three PLIs at one instant, one PLI
	// at the phone.
	for range 3 {
		br.RequestKeyframe(got.SSRC)
	}
	waitFor(t, "three requests from the browser", func() bool {
		st := b.Stats().Video
		return st.KeyframesToPhone+st.KeyframesToPhoneDropped >= 3
	})
	if st := b.Stats().Video; st.KeyframesToPhone != 1 || st.KeyframesToPhoneDropped != 2 {
		t.Fatalf("to the phone: %d sent, %d dropped; want 1 and 2", st.KeyframesToPhone, st.KeyframesToPhoneDropped)
	}
}
