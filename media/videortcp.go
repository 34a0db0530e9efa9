package media

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/switchboard/switchboard/clock"
)

// rtcpEvery paces the gateway's RTCP reports to the phone for video: every
// 5 s, as pion does on the web leg (RFC 3550's minimum for a two-party
// session, without its randomisation: one sender per port pair).
const rtcpEvery = 5 * time.Second

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime is t as a 64-bit NTP timestamp (RFC 3550 §4).
func ntpTime(t time.Time) uint64 {
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// videoReports is what the gateway needs to report on the video it
// receives from the phone: the counts at the last report (fraction lost is
// per interval) and the phone's last SR (LSR, DLSR).
type videoReports struct {
	mu            sync.Mutex
	expectedPrior int64
	receivedPrior uint64
	lastSR        uint32    // middle 32 bits of the phone's last SR's NTP time
	lastSRAt      time.Time // when it arrived
	timer         clock.Timer
	stopped       bool
	cname         string
}

// startVideoReports runs the video RTCP reports of v on the bridge's
// clock until the bridge ends. Called once, from ensureVideo.
func (b *Bridge) startVideoReports(v *videoLeg) {
	v.reports.cname = "sb-" + strconv.FormatUint(rand.Uint64(), 36)
	v.reports.mu.Lock()
	defer v.reports.mu.Unlock()
	v.reports.timer = b.clock.AfterFunc(rtcpEvery, func() { b.videoReport(v) })
}

// stopVideoReports stops the reporter; called by teardown.
func (v *videoLeg) stopVideoReports() {
	v.reports.mu.Lock()
	defer v.reports.mu.Unlock()
	v.reports.stopped = true
	if v.reports.timer != nil {
		v.reports.timer.Stop()
	}
}

// videoReport sends one report and schedules the next.
func (b *Bridge) videoReport(v *videoLeg) {
	// A worker of the bridge, so that teardown waits for a report in
	// flight before the ports go.
	if !b.addWorker() {
		return
	}
	defer b.wg.Done()
	b.sendVideoReport(v, b.clock.Now())
	v.reports.mu.Lock()
	defer v.reports.mu.Unlock()
	if !v.reports.stopped {
		v.reports.timer = b.clock.AfterFunc(rtcpEvery, func() { b.videoReport(v) })
	}
}

// sendVideoReport sends the phone, on the video RTCP port (or the RTP port
// with rtcp-mux), an SR for the video the gateway sends it, once it sent
// some, else an RR, with a report block on the phone's video once it
// sent some; with the SDES CNAME a compound packet must carry (RFC 3550
// §6.1). Nothing goes while video is not negotiated with the phone.
func (b *Bridge) sendVideoReport(v *videoLeg, now time.Time) {
	r := v.route.Load()
	if r == nil || (!r.fwdToRTP && !r.fwdToWeb) {
		return
	}
	conn, dst := b.videoRTCPDest(v, r)
	if !dst.IsValid() {
		return
	}
	ours := v.toRTP.ssrc
	var blocks []rtcp.ReceptionReport
	if rr, ok := v.receptionReport(now); ok {
		blocks = append(blocks, rr)
	}
	var first rtcp.Packet = &rtcp.ReceiverReport{SSRC: ours, Reports: blocks}
	if n := v.out.packets.Load(); n > 0 {
		s := v.toRTP
		s.mu.Lock()
		ts := s.lastTS
		if !s.lastAt.IsZero() {
			ts += uint32(now.Sub(s.lastAt).Seconds() * 90000)
		}
		s.mu.Unlock()
		first = &rtcp.SenderReport{SSRC: ours, NTPTime: ntpTime(now), RTPTime: ts,
			PacketCount: uint32(n), OctetCount: uint32(v.out.bytes.Load()), Reports: blocks}
	}
	raw, err := rtcp.Marshal([]rtcp.Packet{first, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: ours, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: v.reports.cname}},
	}}}})
	if err != nil {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(raw, dst); err == nil {
		v.counts.ReportsToPhone.Add(1)
	}
	b.sendAudioSR(v.reports.cname, now)
}

// sendAudioSR sends the phone an SR for the audio the gateway sends it,
// with the same NTP time and CNAME as the video's, so that the phone can
// put the two in sync (RFC 3550 §6.4.1). Only calls with video send it:
// an audio-only call's RTP leg sends no RTCP, as before.
func (b *Bridge) sendAudioSR(cname string, now time.Time) {
	r := b.route.Load()
	n := b.rtpOut.packets.Load()
	if r == nil || n == 0 {
		return
	}
	conn, dst := b.pair.rtcpWriter(), r.rtcp
	if t := b.latch.target(); r.rtcpMux && t.IsValid() {
		conn, dst = b.pair.rtpWriter(), t
	}
	if !dst.IsValid() || b.e.opts.LoopbackOnly && !isLoopback(dst.Addr()) {
		return
	}
	s := b.toRTP
	s.mu.Lock()
	ts := s.lastTS
	if !s.lastAt.IsZero() && s.rate > 0 {
		ts += uint32(now.Sub(s.lastAt).Seconds() * float64(s.rate))
	}
	s.mu.Unlock()
	raw, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntpTime(now), RTPTime: ts,
			PacketCount: uint32(n), OctetCount: uint32(b.rtpOut.bytes.Load())},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
			Source: s.ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: cname}},
		}}},
	})
	if err != nil {
		return
	}
	_, _ = conn.WriteToUDPAddrPort(raw, dst)
}

// receptionReport is the report block on the phone's video stream (RFC
// 3550 §6.4.1), false before any packet of it.
func (v *videoLeg) receptionReport(now time.Time) (rtcp.ReceptionReport, bool) {
	s := &v.in
	s.mu.Lock()
	if !s.haveSeq {
		s.mu.Unlock()
		return rtcp.ReceptionReport{}, false
	}
	ext := s.cycles + uint32(s.maxSeq)
	expected := int64(ext) - int64(s.baseSeq) + 1
	received := s.received
	lost := s.lostLocked()
	jitter := uint32(s.jitter)
	ssrc := s.ssrc
	s.mu.Unlock()

	rp := &v.reports
	rp.mu.Lock()
	defer rp.mu.Unlock()
	var fraction uint8
	expInt := expected - rp.expectedPrior
	recvInt := int64(received) - int64(rp.receivedPrior)
	if expInt < 0 || recvInt < 0 {
		// A new source: the interval starts afresh.
		expInt, recvInt = expected, int64(received)
	}
	if lostInt := expInt - recvInt; expInt > 0 && lostInt > 0 {
		fraction = uint8(lostInt << 8 / expInt)
	}
	rp.expectedPrior, rp.receivedPrior = expected, received
	rr := rtcp.ReceptionReport{SSRC: ssrc, FractionLost: fraction, TotalLost: uint32(min(lost, 0x7fffff)),
		LastSequenceNumber: ext, Jitter: jitter}
	if !rp.lastSRAt.IsZero() {
		rr.LastSenderReport = rp.lastSR
		rr.Delay = uint32(now.Sub(rp.lastSRAt).Seconds() * 65536)
	}
	return rr, true
}

// phoneSR records when the phone's video SR among pkts arrived, for LSR
// and DLSR.
func (v *videoLeg) phoneSR(pkts []rtcp.Packet, now time.Time) {
	for _, p := range pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			v.reports.mu.Lock()
			v.reports.lastSR, v.reports.lastSRAt = uint32(sr.NTPTime>>16), now
			v.reports.mu.Unlock()
		}
	}
}

// videoRTCPDest is where RTCP for the phone's video goes, and from which
// socket: the RTCP port of its SDP (a=rtcp, else the latched RTP source's
// port + 1), or its RTP source with rtcp-mux; invalid when nowhere (or not
// loopback with LoopbackOnly).
func (b *Bridge) videoRTCPDest(v *videoLeg, r *videoRoute) (udpWriter, netip.AddrPort) {
	conn, dst := udpWriter(v.pair.rtcp), r.rtcp
	if t := v.latch.target(); r.rtcpMux && t.IsValid() {
		conn, dst = v.pair.rtp, t
	} else if t.IsValid() && !dst.Addr().IsValid() {
		dst = netip.AddrPortFrom(t.Addr(), t.Port()+1)
	}
	if !dst.IsValid() || b.e.opts.LoopbackOnly && !isLoopback(dst.Addr()) {
		return conn, netip.AddrPort{}
	}
	return conn, dst
}

// udpWriter is the sending half of a UDP socket.
type udpWriter interface {
	WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
}
