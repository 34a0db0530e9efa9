package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// videoPayload is the size of a video packet's payload: what browsers
// send, packets filled up to about 1200 bytes.
const videoPayload = 1200

// negotiateVideoOnly puts a VP8 video route in place without pion, for
// the in-process relay benchmark.
func negotiateVideoOnly(b testing.TB, br *Bridge, remote netip.AddrPort) *videoLeg {
	br.mu.Lock()
	defer br.mu.Unlock()
	if err := br.ensureVideo(); err != nil {
		b.Fatal(err)
	}
	vp8 := []Codec{{Name: "VP8", ClockRate: 90000, PayloadType: 96}}
	br.webVideo, br.rtpVSend, br.rtpVRecv = vp8, vp8, vp8
	br.webVDir, br.webVOurDir, br.rtpVDir = dirSendRecv, dirSendRecv, dirSendRecv
	br.rtpV = &videoSession{addr: remote.Addr(), port: int(remote.Port()), dir: dirSendRecv}
	br.vid.latch.setRemote(remote)
	br.updateVideoRoute()
	br.vid.track.bound.Store(&trackBinding{ssrc: 8, w: discardWriter{}})
	return br.vid
}

// BenchmarkVideoRelay is BenchmarkRelay for a video packet (VP8, 1200
// bytes of payload): the relay's own per-packet work without SRTP.
func BenchmarkVideoRelay(b *testing.B) {
	e := newTestEngine(b, Options{})
	br := newTestBridge(b, e)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	src := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	v := negotiateVideoOnly(b, br, src)
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 3000, SSRC: 42}, Payload: payload(0, videoPayload)}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("rtp-to-web", func(b *testing.B) {
		var pkt rtp.Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(raw[2:], uint16(i))
			br.videoFromRTP(v, raw, src, &pkt)
		}
		if v.counts.PacketsToWeb.Load() == 0 {
			b.Fatal("nothing relayed")
		}
	})
	b.Run("web-to-rtp", func(b *testing.B) {
		var pkt rtp.Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(raw[2:], uint16(i))
			br.videoFromWeb(v, raw, &pkt)
		}
		if v.counts.PacketsToRTP.Load() == 0 {
			b.Fatal("nothing relayed")
		}
	})
}

// BenchmarkVideoLoopback is BenchmarkLoopback for video: one packet at a
// time (VP8, 1200 bytes of payload) through a bridged call over loopback,
// the pion browser with a video track at one end and a phone's video
// socket at the other. Run both in one command: the ratio of their
// cpu-ns/op (the whole process's CPU per packet, the gateway and both
// ends) is the figure to read on a busy machine.
func BenchmarkVideoLoopback(b *testing.B) {
	e := newTestEngine(b, Options{})
	br := newTestBridge(b, e)
	web := mediapeer.NewBrowser(b, mediapeer.BrowserOptions{Video: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	}})
	phone := newTestPhone(b)
	vc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer vc.Close()
	offer, err := br.WebOffer(web.Offer())
	if err != nil {
		b.Fatal(err)
	}
	vport := port(vc)
	ans, err := br.RTPAnswer(append(phone.SDP(1, "0 101"), ("m=video " + strconv.Itoa(vport) + " RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n")...))
	if err != nil {
		b.Fatal(err)
	}
	web.SetAnswer(ans)
	web.WaitConnected()
	gw := netip.AddrPortFrom(loopback, uint16(videoPortOf(b, offer)))
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 42}, Payload: payload(0, videoPayload)}).Marshal()
	// Prime: until SRTP is up, pion drops what is written.
	for seq := uint16(60000); ; seq++ {
		binary.BigEndian.PutUint16(raw[2:], seq)
		_, _ = vc.WriteToUDPAddrPort(raw, gw)
		select {
		case <-web.VideoPackets():
		case <-time.After(20 * time.Millisecond): // resend until DTLS is up
			continue
		}
		break
	}
	b.Run("rtp-to-srtp", func(b *testing.B) {
		c0 := cpuTime()
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(raw[2:], uint16(i))
			binary.BigEndian.PutUint32(raw[4:], uint32(i)*3000)
			if _, err := vc.WriteToUDPAddrPort(raw, gw); err != nil {
				b.Fatal(err)
			}
			select {
			case <-web.VideoPackets():
			case <-time.After(time.Minute):
				b.Fatal("lost")
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	pl := payload(0, videoPayload)
	buf := make([]byte, 1500)
	_ = vc.SetReadDeadline(time.Now().Add(time.Minute))
	seq := uint16(10000)
	b.Run("srtp-to-rtp", func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			seq++
			web.SendVideo(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: pl})
			if _, _, err := vc.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
}

func videoPortOf(b testing.TB, sdp []byte) int {
	m := videoMLine.FindSubmatch(sdp)
	if m == nil {
		b.Fatalf("no m=video in\n%s", sdp)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
