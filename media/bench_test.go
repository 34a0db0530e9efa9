package media

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// discardWriter stands for pion's SRTP write path in the in-process relay
// benchmarks.
type discardWriter struct{}

func (discardWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	return h.MarshalSize() + len(payload), nil
}
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }

func rawPCMU(b *testing.B) []byte {
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 42}, Payload: payload(0, 160)}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkRelay measures the relay's own per-packet work, in process:
// parse, latch check, stats (loss, jitter), payload type mapping, SSRC /
// sequence / timestamp rewriting. rtp-to-web stops at pion's track writer
// (SRTP is pion's cost, see BenchmarkLoopback); web-to-rtp includes the UDP
// send to a loopback socket.
func BenchmarkRelay(b *testing.B) {
	e := newTestEngine(b, Options{})
	br := newTestBridge(b, e)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	negotiateRTPOnly(br, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	br.track.bound.Store(&trackBinding{ssrc: 7, w: discardWriter{}})
	src := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	raw := rawPCMU(b)

	b.Run("rtp-to-web", func(b *testing.B) {
		var pkt rtp.Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(raw[2:], uint16(i))
			binary.BigEndian.PutUint32(raw[4:], uint32(i)*160)
			br.fromRTP(raw, src, &pkt, br.clock.Now(), nil)
		}
		if br.webOut.packets.Load() == 0 {
			b.Fatal("nothing relayed")
		}
	})
	b.Run("web-to-rtp", func(b *testing.B) {
		var pkt rtp.Packet
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(raw[2:], uint16(i))
			binary.BigEndian.PutUint32(raw[4:], uint32(i)*160)
			br.fromWeb(raw, &pkt)
		}
		if br.rtpOut.packets.Load() == 0 {
			b.Fatal("nothing relayed")
		}
	})
}

// BenchmarkLoopback measures one packet through the whole path over
// loopback, one at a time (send, then wait for it): RTP → SRTP is a UDP
// socket → bridge → pion SRTP → pion client; SRTP → RTP the reverse. The
// time includes both ends' syscalls and the pion client's encryption or
// decryption. The test ends allocate nothing per packet, so allocs/op is
// the gateway's and pion's (both sides); cpu-ns/op is the whole process's
// CPU per packet (BenchmarkVideoLoopback is its video twin).
func BenchmarkLoopback(b *testing.B) {
	e := newTestEngine(b, Options{})
	br := newTestBridge(b, e)
	web := newSignallingBrowser(b, make(chan struct{}, 1))
	phone := newTestPhone(b)
	if _, err := br.WebOffer(web.Offer()); err != nil {
		b.Fatal(err)
	}
	ans, err := br.RTPAnswer(phone.SDP(1, "0 101"))
	if err != nil {
		b.Fatal(err)
	}
	web.SetAnswer(ans)
	web.WaitConnected()
	prime(b, br, web, phone, 0)
	gw := br.RTPAddr()
	pl := payload(0, 160)
	raw := rawPCMU(b)
	buf := make([]byte, 1500)

	// -count calls each sub-benchmark again on the same bridge, so what
	// one call leaves must suit the next: the numbering goes on (a
	// numbering that started again at 0 repeated packets the browser had
	// seen, which its SRTP replay check dropped: a stall, reported as
	// "lost" a minute later), and each call has its own minute (one
	// deadline for all the calls passed on a busy host, and a packet in
	// flight then counted as lost).
	var sent uint32
	b.Run("rtp-to-srtp", func(b *testing.B) {
		b.ReportAllocs()
		lost := time.NewTimer(time.Minute)
		defer lost.Stop()
		c0 := cpuTime()
		for b.Loop() {
			sent++
			binary.BigEndian.PutUint16(raw[2:], uint16(sent))
			binary.BigEndian.PutUint32(raw[4:], sent*160)
			if _, err := phone.Conn.WriteToUDPAddrPort(raw, gw); err != nil {
				b.Fatal(err)
			}
			select {
			case <-web.signal:
			case <-lost.C:
				st := br.Stats()
				b.Fatalf("lost: packet %d (sequence number %d) not at the browser a minute after this run began; "+
					"the bridge took %d from the phone (dropped %+v) and sent %d to the browser, which received %d",
					sent, uint16(sent), st.RTP.PacketsIn, st.RTP.Dropped, st.Web.PacketsOut, web.Received())
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	seq := uint16(10000)
	b.Run("srtp-to-rtp", func(b *testing.B) {
		b.ReportAllocs()
		_ = phone.Conn.SetReadDeadline(time.Now().Add(time.Minute))
		h := rtp.Header{Version: 2, PayloadType: 0}
		c0 := cpuTime()
		for b.Loop() {
			seq++
			h.SequenceNumber, h.Timestamp = seq, uint32(seq)*160
			if _, err := web.track.writeRTP(&h, pl); err != nil {
				b.Fatal(err)
			}
			if _, _, err := phone.Conn.ReadFromUDPAddrPort(buf); err != nil {
				st := br.Stats()
				b.Fatalf("packet %d at the phone: %v; the bridge took %d from the browser (dropped %+v) and sent %d to the phone",
					seq, err, st.Web.PacketsIn, st.Web.Dropped, st.RTP.PacketsOut)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
}

// BenchmarkSDP measures the SDP work of the browser-offers flow: parsing a
// Chrome offer, and translating it into the RTP/AVP offer for the phone.
func BenchmarkSDP(b *testing.B) {
	b.Run("parse-chrome-offer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseSession([]byte(chromeOffer), true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("web-offer-to-rtp-offer", func(b *testing.B) {
		e := newTestEngine(b, Options{})
		br := newTestBridge(b, e)
		offer := []byte(chromeOffer)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := br.WebOffer(offer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCallSetup measures the media side of one call setup: a bridge,
// the browser's offer translated, the phone's answer turned into the web
// answer by pion (PeerConnection, certificate, ICE gathering on the mux),
// and the teardown.
func BenchmarkCallSetup(b *testing.B) {
	e := newTestEngine(b, Options{DrainTime: -1})
	phone := newTestPhone(b)
	answer := phone.SDP(1, "0 101")
	offer := []byte(chromeOffer)
	b.ReportAllocs()
	for b.Loop() {
		br, err := e.NewBridge(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := br.WebOffer(offer); err != nil {
			b.Fatal(err)
		}
		if _, err := br.RTPAnswer(answer); err != nil {
			b.Fatal(err)
		}
		_ = br.Close()
	}
}
