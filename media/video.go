package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrNoVideo means RequestKeyframe was called on a bridge that carries no
// video.
var ErrNoVideo = errors.New("no video in the call")

// videoFrame is the timestamp gap left when the video source changes: one
// frame at 30 frames a second.
const videoFrame = 33 * time.Millisecond

// keyframeEvery is the least time between two keyframe requests in one
// direction: a keyframe takes longer than that to come, so a request
// sooner asks for the one on its way, and a peer that floods requests
// (a lossy browser, a hostile phone) must not make the other side send
// keyframes back to back. The requests dropped are counted.
const keyframeEvery = 500 * time.Millisecond

// rembEvery paces the REMB that caps the browser's video at the bitrate the
// SIP side asked for (b=TIAS, b=AS).
const rembEvery = time.Second

// videoLeg is the video of a bridge: a port pair of its own on the RTP leg
// (a SIP video endpoint sends video to another port than audio), the
// browser-bound video track, and the relay state. It exists from the first
// negotiation that carries video and lives as long as the bridge.
type videoLeg struct {
	pair  *portPair
	latch latch
	track *webTrack

	toWeb, toRTP *outStream
	route        atomic.Pointer[videoRoute]
	pc           atomic.Pointer[webrtc.PeerConnection]

	webSSRC   atomic.Uint32 // the browser's video SSRC, for PLI to it
	phoneSSRC atomic.Uint32 // the phone's video SSRC, for PLI to it
	firSeq    atomic.Uint32
	lastREMB  atomic.Int64 // since the bridge's start

	// kfToPhone and kfToBrowser hold when the last keyframe request went
	// each way, as time since the bridge's start plus one (0: never).
	kfToPhone, kfToBrowser atomic.Int64

	// in and out count the video from and to the phone, for the RTCP
	// reports the gateway sends it (videortcp.go).
	in      recvStats
	out     sendStats
	reports videoReports

	counts videoCounters
}

// videoRoute is the negotiated video state the relay reads per packet;
// immutable, swapped whole like route.
type videoRoute struct {
	toWeb, toRTP       ptMap
	fwdToWeb, fwdToRTP bool
	rtcpMux            bool
	rtcp               netip.AddrPort // the phone's RTCP address from its SDP
	// pli and fir: the phone takes keyframe requests as RTCP feedback.
	pli, fir bool
	// bitrate caps what the browser sends (the phone's b=TIAS or b=AS).
	bitrate uint64
}

// videoCounters counts the video of a bridge: relayed packets, and the
// keyframe requests translated, from the browser to the phone as RTCP
// (PLI or FIR) or through OnKeyframeRequest (SIP INFO), from the phone
// (RTCP or RequestKeyframe) to the browser.
type videoCounters struct {
	PacketsToWeb, PacketsToRTP          atomic.Uint64
	ToPhoneRTCP, ToPhoneInfo, ToBrowser atomic.Uint64
	ReportsToPhone                      atomic.Uint64
	DroppedToPhone, DroppedToBrowser    atomic.Uint64
}

// VideoCounts is the video part of Stats: relayed packets each way and
// the keyframe requests translated.
type VideoCounts struct {
	PacketsToWeb        uint64 `json:"packets_to_web"`
	PacketsToRTP        uint64 `json:"packets_to_rtp"`
	KeyframesToPhone    uint64 `json:"keyframe_requests_to_phone_rtcp"`
	KeyframesToPhoneSIP uint64 `json:"keyframe_requests_to_phone_info"`
	KeyframesToBrowser  uint64 `json:"keyframe_requests_to_browser"`
	// ReportsToPhone counts the RTCP sender and receiver reports the
	// gateway sent the phone for video.
	ReportsToPhone uint64 `json:"rtcp_reports_to_phone"`
	// KeyframesToPhoneDropped and KeyframesToBrowserDropped count the
	// keyframe requests not passed on: less than 500 ms after the last one
	// that went the same way.
	KeyframesToPhoneDropped   uint64 `json:"keyframe_requests_to_phone_dropped"`
	KeyframesToBrowserDropped uint64 `json:"keyframe_requests_to_browser_dropped"`
}

func (c *VideoCounts) add(o VideoCounts) {
	c.PacketsToWeb += o.PacketsToWeb
	c.PacketsToRTP += o.PacketsToRTP
	c.KeyframesToPhone += o.KeyframesToPhone
	c.KeyframesToPhoneSIP += o.KeyframesToPhoneSIP
	c.KeyframesToBrowser += o.KeyframesToBrowser
	c.ReportsToPhone += o.ReportsToPhone
	c.KeyframesToPhoneDropped += o.KeyframesToPhoneDropped
	c.KeyframesToBrowserDropped += o.KeyframesToBrowserDropped
}

func (v *videoLeg) snapshot() VideoCounts {
	return VideoCounts{
		PacketsToWeb:        v.counts.PacketsToWeb.Load(),
		PacketsToRTP:        v.counts.PacketsToRTP.Load(),
		KeyframesToPhone:    v.counts.ToPhoneRTCP.Load(),
		KeyframesToPhoneSIP: v.counts.ToPhoneInfo.Load(),
		KeyframesToBrowser:  v.counts.ToBrowser.Load(),
		ReportsToPhone:      v.counts.ReportsToPhone.Load(),

		KeyframesToPhoneDropped:   v.counts.DroppedToPhone.Load(),
		KeyframesToBrowserDropped: v.counts.DroppedToBrowser.Load(),
	}
}

// ensureVideo allocates the video leg's port pair and starts its readers,
// once. Called with b.mu held.
func (b *Bridge) ensureVideo() error {
	if b.vid != nil {
		return nil
	}
	pair, err := b.e.ports.alloc()
	if err != nil {
		return err
	}
	v := &videoLeg{
		pair:  pair,
		latch: latch{relatchAfter: b.e.opts.RelatchAfter, loopbackOnly: b.e.opts.LoopbackOnly},
		track: &webTrack{kind: webrtc.RTPCodecTypeVideo},
		toWeb: newOutStream(),
		toRTP: newOutStream(),
	}
	if p := b.latchPeer(); p.IsValid() {
		v.latch.setPeer(p)
	}
	if !b.addWorker() {
		b.e.ports.release(pair)
		return fmt.Errorf("media: video leg: %w", ErrClosed)
	}
	b.wg.Done()
	if b.pc != nil {
		v.pc.Store(b.pc)
	}
	b.vid = v
	b.vidA.Store(v)
	b.goWorker(func() { b.readVideo(v, pair.rtp, false) })
	b.goWorker(func() { b.readVideo(v, pair.rtcp, true) })
	b.startVideoReports(v)
	return nil
}

func (b *Bridge) latchPeer() netip.Addr {
	b.latch.mu.Lock()
	defer b.latch.mu.Unlock()
	return b.latch.peer
}

// readVideo reads one socket of the video leg: RTP (with RTCP when muxed)
// or RTCP.
func (b *Bridge) readVideo(v *videoLeg, c interface {
	ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
}, rtcpOnly bool) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if b.isClosing() {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if rtcpOnly || isRTCP(buf[:n]) {
			b.videoRTCPFromPhone(v, buf[:n])
			continue
		}
		b.videoFromRTP(v, buf[:n], src, &pkt)
	}
}

// videoFromRTP relays one video packet from the phone to the browser.
func (b *Bridge) videoFromRTP(v *videoLeg, buf []byte, src netip.AddrPort, pkt *rtp.Packet) {
	if err := pkt.Unmarshal(buf); err != nil || pkt.Version != 2 {
		return
	}
	r := v.route.Load()
	pt := pkt.PayloadType
	if r == nil || !r.toWeb.known[pt] {
		return
	}
	now := b.clock.Now()
	ok, relatched := v.latch.accept(src, now)
	if !ok {
		return
	}
	b.touch(now)
	v.phoneSSRC.Store(pkt.SSRC)
	v.in.packet(pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, len(buf), 90000, now)
	out := r.toWeb.out[pt]
	if out == 0 || !r.fwdToWeb {
		return
	}
	stripForRelay(pkt)
	pkt.PayloadType = out - 1
	s := v.toWeb
	s.mu.Lock()
	if relatched {
		s.reset = true
	}
	s.rewrite(&pkt.Header, 90000, videoFrame, now)
	n, err := v.track.writeRTP(&pkt.Header, pkt.Payload)
	s.mu.Unlock()
	if err == nil && n > 0 {
		v.counts.PacketsToWeb.Add(1)
	}
}

// videoFromWeb relays one video packet from the browser to the phone, and
// caps the browser's rate with REMB when the phone asked for a bitrate.
func (b *Bridge) videoFromWeb(v *videoLeg, buf []byte, pkt *rtp.Packet) {
	if err := pkt.Unmarshal(buf); err != nil {
		return
	}
	now := b.clock.Now()
	b.touch(now)
	v.webSSRC.Store(pkt.SSRC)
	r := v.route.Load()
	if r == nil {
		return
	}
	if r.bitrate > 0 {
		at := int64(now.Sub(b.start))
		if last := v.lastREMB.Load(); last == 0 || time.Duration(at-last) >= rembEvery {
			if v.lastREMB.CompareAndSwap(last, at) {
				b.sendREMB(v, r.bitrate, pkt.SSRC)
			}
		}
	}
	out := r.toRTP.out[pkt.PayloadType]
	if out == 0 || !r.fwdToRTP {
		return
	}
	dst := v.latch.target()
	if !dst.IsValid() || b.e.opts.LoopbackOnly && !isLoopback(dst.Addr()) {
		return
	}
	stripForRelay(pkt)
	pkt.PayloadType = out - 1
	s := v.toRTP
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrite(&pkt.Header, 90000, videoFrame, now)
	pkt.SSRC = s.ssrc
	n, err := pkt.MarshalTo(s.buf[:])
	if err != nil {
		return
	}
	if _, err := v.pair.rtp.WriteToUDPAddrPort(s.buf[:n], dst); err == nil {
		v.counts.PacketsToRTP.Add(1)
		v.out.add(n)
	}
}

// sendREMB tells the browser the most it may send (RFC draft REMB, what
// browsers obey besides transport-cc).
func (b *Bridge) sendREMB(v *videoLeg, bitrate uint64, ssrc uint32) {
	pc := v.pc.Load()
	if pc == nil {
		return
	}
	_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{
		SenderSSRC: v.toRTP.ssrc,
		Bitrate:    float32(bitrate),
		SSRCs:      []uint32{ssrc},
	}})
}

// videoRTCPFromPhone terminates the phone's video RTCP: a PLI or FIR in it
// becomes a PLI to the browser; its SR is kept for the gateway's reports.
func (b *Bridge) videoRTCPFromPhone(v *videoLeg, buf []byte) {
	pkts, err := rtcp.Unmarshal(buf)
	if err != nil {
		return
	}
	v.phoneSR(pkts, b.clock.Now())
	if hasKeyframeRequest(pkts) {
		b.keyframeToBrowser(v)
	}
}

// asksKeyframe reports whether an RTCP compound packet holds a PLI or a
// FIR.
func asksKeyframe(buf []byte) bool {
	pkts, err := rtcp.Unmarshal(buf)
	return err == nil && hasKeyframeRequest(pkts)
}

func hasKeyframeRequest(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}

// keyframeToBrowser asks the browser for a keyframe with a PLI.
func (b *Bridge) keyframeToBrowser(v *videoLeg) bool {
	pc, ssrc := v.pc.Load(), v.webSSRC.Load()
	if pc == nil || ssrc == 0 {
		return false
	}
	if !b.keyframeAllowed(&v.kfToBrowser) {
		// The keyframe asked for less than keyframeEvery ago answers
		// this request too.
		v.counts.DroppedToBrowser.Add(1)
		return true
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: v.toRTP.ssrc, MediaSSRC: ssrc}}); err != nil {
		return false
	}
	v.counts.ToBrowser.Add(1)
	return true
}

// videoRTCPFromWeb reads what the browser says about the video it gets: a
// PLI or FIR becomes RTCP feedback to the phone when it offered it, else a
// call of OnKeyframeRequest (the gateway sends SIP INFO).
func (b *Bridge) videoRTCPFromWeb(v *videoLeg, buf []byte) {
	if asksKeyframe(buf) {
		b.keyframeToPhone(v)
	}
}

func (b *Bridge) keyframeToPhone(v *videoLeg) {
	r := v.route.Load()
	if r == nil {
		return
	}
	if !b.keyframeAllowed(&v.kfToPhone) {
		v.counts.DroppedToPhone.Add(1)
		return
	}
	if !r.pli && !r.fir {
		b.kfMu.Lock()
		f := b.onKeyframe
		b.kfMu.Unlock()
		if f != nil {
			v.counts.ToPhoneInfo.Add(1)
			f()
		}
		return
	}
	media := v.phoneSSRC.Load()
	var p rtcp.Packet
	if r.pli {
		p = &rtcp.PictureLossIndication{SenderSSRC: v.toRTP.ssrc, MediaSSRC: media}
	} else {
		p = &rtcp.FullIntraRequest{SenderSSRC: v.toRTP.ssrc, MediaSSRC: media,
			FIR: []rtcp.FIREntry{{SSRC: media, SequenceNumber: uint8(v.firSeq.Add(1))}}}
	}
	raw, err := rtcp.Marshal([]rtcp.Packet{p})
	if err != nil {
		return
	}
	conn, dst := b.videoRTCPDest(v, r)
	if !dst.IsValid() {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(raw, dst); err == nil {
		v.counts.ToPhoneRTCP.Add(1)
	}
}

// keyframeAllowed reports whether a keyframe request may go the way whose
// last request last holds, and records it as the last when so.
func (b *Bridge) keyframeAllowed(last *atomic.Int64) bool {
	at := int64(b.clock.Now().Sub(b.start)) + 1
	for {
		prev := last.Load()
		if prev != 0 && time.Duration(at-prev) < keyframeEvery {
			return false
		}
		if last.CompareAndSwap(prev, at) {
			return true
		}
	}
}

// WebDropVideo is for a late offer whose answer from the SIP side (the
// ACK's, given to RTPAnswer) refused the video that the browser took:
// the browser would go on sending video that goes nowhere and waiting for
// video that never comes. It returns a re-offer for the browser (same ICE
// and DTLS session) with the video removed (port 0), made from answer, the
// SIP side's SDP in force; nil when the legs agree on video. As after
// RTPReofferWeb, the browser's answer goes to WebAnswer (the RTP SDP it
// returns is what the SIP side has already) and a refusal to Rollback.
func (b *Bridge) WebDropVideo(answer []byte) (webOffer []byte, err error) {
	b.mu.Lock()
	half := b.state == stateActive && b.webVideo != nil && b.rtpVSend == nil
	b.mu.Unlock()
	if !half {
		return nil, nil
	}
	return b.RTPReofferWeb(answer)
}

// OnKeyframeRequest sets f, called (on a goroutine of the bridge; it must
// not block long) when the browser asks for a keyframe and the SIP peer
// takes no keyframe request as RTCP feedback: the gateway then sends it a
// SIP INFO with picture_fast_update (RFC 5168).
func (b *Bridge) OnKeyframeRequest(f func()) {
	b.kfMu.Lock()
	b.onKeyframe = f
	b.kfMu.Unlock()
}

// RequestKeyframe asks the browser for a keyframe (a PLI), for the SIP
// peer's INFO picture_fast_update. It fails with ErrNoVideo when the call
// carries no video from the browser yet. A request less than 500 ms after
// the last one to the browser is dropped and counted
// (Stats.Video.KeyframesToBrowserDropped), not an error.
func (b *Bridge) RequestKeyframe() error {
	v := b.vidA.Load()
	if v == nil || !b.keyframeToBrowser(v) {
		return fmt.Errorf("media: keyframe request: %w", ErrNoVideo)
	}
	return nil
}

// allowAudio is the audio codecs of offer the bridge's policy allows: in
// the offer's order, or the policy's when it orders (BridgeOptions).
func (b *Bridge) allowAudio(offer []Codec) []Codec {
	out := intersect(offer, b.audioPolicy)
	if out == nil || !b.ordered {
		return out
	}
	sorted := make([]Codec, 0, len(out))
	for _, a := range b.audioPolicy {
		for _, c := range out {
			if c.key() == a.key() {
				sorted = append(sorted, c)
			}
		}
	}
	return sorted
}

// offerVideo is the video of the RTP offer made from the browser's video
// stream v: its codecs that the policy allows, or a rejected stream when
// none is left. nil when the browser offered no video. Called with b.mu
// held.
func (b *Bridge) offerVideo(v *videoSession) (*videoDesc, error) {
	if v == nil {
		return nil, nil
	}
	vc := intersectVideo(v.codecs, b.videoPolicy, b.ordered)
	if vc == nil {
		return nil, nil
	}
	if err := b.ensureVideo(); err != nil {
		return nil, err
	}
	return &videoDesc{on: true, codecs: vc, dir: v.dir}, nil
}

// webVideoOffer is the video of the web offer made from the phone's video
// stream v: the codecs of v that the policy allows, numbered as the web
// leg's PeerConnection knows them, with the phone's fmtp. Called with b.mu
// held.
func (b *Bridge) webVideoOffer(v *videoSession) (webVideo, error) {
	if v == nil {
		return webVideo{}, nil
	}
	vc := intersectVideo(v.codecs, b.videoPolicy, b.ordered)
	if vc == nil {
		return webVideo{}, nil
	}
	if err := b.ensureVideo(); err != nil {
		return webVideo{}, err
	}
	numbered := webVideoCodecs(b.audioPolicy, b.videoPolicy)
	var out []Codec
	for _, c := range vc {
		if w, ok := find(numbered, c); ok {
			c.PayloadType = w.PayloadType
			if c.isH264() {
				// The profile as the policy writes it, which is how
				// browsers write it (42c01e and 42e01f are one profile,
				// but pion matches the digits), at the phone's level.
				c.Fmtp = answerFmtp(w, c.Fmtp)
			}
			out = append(out, c)
		}
	}
	return webVideo{on: out != nil, codecs: out, dir: phoneVideoDir(v), bitrate: v.bitrate}, nil
}

// lateVideoOffer is the video of the web offer for a late offer: every
// video codec of the policy, numbered as the web leg's PeerConnection
// knows them, sendrecv (the phone's abilities are not known yet). None
// when the policy has no video. Called with b.mu held.
func (b *Bridge) lateVideoOffer() (webVideo, error) {
	var vc []Codec
	for _, c := range webVideoCodecs(b.audioPolicy, b.videoPolicy) {
		if c.isVideo() {
			vc = append(vc, c)
		}
	}
	if vc == nil {
		return webVideo{}, nil
	}
	if err := b.ensureVideo(); err != nil {
		return webVideo{}, err
	}
	return webVideo{on: true, codecs: vc, dir: dirSendRecv}, nil
}

// lateRTPVideo is the video of the gateway's RTP offer after a late
// offer, from the browser's answer (theirs): the codecs it accepted, in
// the web leg's numbering and the policy's spelling at the browser's
// level, in the direction the browser allows; nil when it took no video.
// Called with b.mu held, after WebAnswer recorded the answer.
func (b *Bridge) lateRTPVideo(theirs *videoSession) *videoDesc {
	if b.webVideo == nil || theirs == nil || b.vid == nil {
		return nil
	}
	var out []Codec
	for _, c := range intersectVideo(b.webVideoOffered, b.webVideo, false) {
		if a, ok := find(b.webVideo, c); ok {
			c.Fmtp = answerFmtp(c, a.Fmtp)
		}
		out = append(out, c)
	}
	if out == nil {
		return nil
	}
	return &videoDesc{on: true, codecs: out, dir: b.webVDir & b.webVOurDir.reverse()}
}

// webVideoAnswer is the video of the answer to the browser's video
// stream offered: the codecs the phone accepted (accepted, in its
// answer's numbering; theirs its video stream), in the browser's numbering
// with the level the phone takes.
func webVideoAnswer(offered *videoSession, accepted []Codec, theirs *videoSession) webVideo {
	if offered == nil || accepted == nil || theirs == nil {
		return webVideo{}
	}
	var out []Codec
	for _, c := range intersectVideo(offered.codecs, accepted, false) {
		if a, ok := find(accepted, c); ok {
			c.Fmtp = answerFmtp(c, a.Fmtp)
		}
		out = append(out, c)
	}
	return webVideo{on: out != nil, codecs: out, dir: phoneVideoDir(theirs) & offered.dir.reverse(), bitrate: theirs.bitrate}
}

// answerPhoneVideo is the video of the RTP answer to the phone's video
// stream offered, from the browser's answer (accepted, theirs).
func (b *Bridge) answerPhoneVideo(offered *videoSession, accepted []Codec, theirs *videoSession) *videoDesc {
	if offered == nil {
		return nil
	}
	d := &videoDesc{codecs: offered.codecs, rtcpMux: offered.rtcpMux}
	if accepted == nil || theirs == nil {
		return d
	}
	var out []Codec
	for _, c := range intersectVideo(offered.codecs, accepted, false) {
		if a, ok := find(accepted, c); ok {
			c.Fmtp = answerFmtp(c, a.Fmtp)
		}
		out = append(out, c)
	}
	if out == nil {
		return d
	}
	d.on, d.codecs = true, out
	d.dir = phoneVideoDir(offered).reverse() & theirs.dir & b.webVOurDir.reverse()
	return d
}

// answeredVideo is answered for video: the codecs of an answer that were
// offered, in the answer's numbering.
func answeredVideo(answer, offered []Codec) []Codec {
	return intersectVideo(named(answer, offered), offered, false)
}

// phoneVideoDir is phoneDir for a video stream.
func phoneVideoDir(v *videoSession) direction {
	d := v.dir
	if !v.addr.IsValid() && v.port != 9 {
		d &^= dirRecvOnly
	}
	return d
}

// applyRTPVideo records the phone's video stream in force (v, nil when
// none) and the codecs it sends with (send) and may send (recv). Called
// with b.mu held.
func (b *Bridge) applyRTPVideo(v *videoSession, send, recv []Codec) {
	if v == nil || send == nil || b.vid == nil {
		b.rtpV, b.rtpVSend, b.rtpVRecv, b.rtpVDir = nil, nil, nil, dirInactive
		return
	}
	b.rtpV, b.rtpVSend, b.rtpVRecv, b.rtpVDir = v, send, recv, phoneVideoDir(v)
	b.vid.latch.setRemote(netip.AddrPortFrom(v.addr, uint16(v.port)))
}

// updateVideoRoute makes the negotiated video state the relay's. Called
// with b.mu held, from updateRoute.
func (b *Bridge) updateVideoRoute() {
	v := b.vid
	if v == nil {
		return
	}
	r := &videoRoute{}
	if b.webVideo != nil && b.rtpVSend != nil && b.rtpV != nil {
		rt := buildRoute(b.webVideo, b.rtpVRecv, b.rtpVSend)
		r.toWeb, r.toRTP = rt.toWeb, rt.toRTP
		ours := dirSendRecv
		if b.rtpLast != nil && b.rtpLast.video != nil {
			ours = b.rtpLast.video.dir
		}
		web := b.webVDir & b.webVOurDir.reverse()
		phone := b.rtpVDir & ours.reverse()
		r.fwdToRTP = web.sends() && phone.recvs()
		r.fwdToWeb = phone.sends() && web.recvs()
		r.rtcpMux = b.rtpLast != nil && b.rtpLast.video != nil && b.rtpLast.video.rtcpMux
		r.rtcp, r.pli, r.fir, r.bitrate = b.rtpV.rtcp, b.rtpV.pli, b.rtpV.fir, b.rtpV.bitrate
	}
	v.route.Store(r)
}

// keepsVideo reports whether a re-offer of the browser keeps the video in
// force as it is: same presence, direction and codec numbers.
func (b *Bridge) keepsVideo(v *videoSession) bool {
	if v == nil || b.webVideo == nil {
		return v == nil && b.webVideo == nil || v != nil && b.webVideo == nil && intersectVideo(v.codecs, b.videoPolicy, false) == nil
	}
	return v.dir == b.webVDir && keepsCodecs(v.codecs, b.webVideo)
}

// videoInForce is the video of the web leg's SDP as negotiated.
func (b *Bridge) videoInForce() webVideo {
	w := webVideo{on: b.webVideo != nil, codecs: b.webVideo, dir: b.webVOurDir}
	if b.rtpV != nil {
		w.bitrate = b.rtpV.bitrate
	}
	return w
}

// settleRefusedOffer ends pion's pending offer that the browser refused.
// pion cannot roll a local offer back, so the offer is answered, for the
// browser, with what is in force: each m= line of the browser's current
// answer, by mid, and the lines the offer added rejected (port 0). The
// browser never sees it; it keeps its own session as it was.
func (b *Bridge) settleRefusedOffer() error {
	pending, current := b.pc.PendingLocalDescription(), b.pc.CurrentRemoteDescription()
	if pending == nil || current == nil {
		return nil
	}
	offer, answer := &sdp.SessionDescription{}, &sdp.SessionDescription{}
	if err := offer.UnmarshalString(pending.SDP); err != nil {
		return err
	}
	if err := answer.UnmarshalString(current.SDP); err != nil {
		return err
	}
	byMid := map[string]*sdp.MediaDescription{}
	for _, m := range answer.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		byMid[mid] = m
	}
	answer.MediaDescriptions = answer.MediaDescriptions[:0]
	mids := []string{"BUNDLE"}
	for _, m := range offer.MediaDescriptions {
		mid, _ := m.Attribute("mid")
		if r, ok := byMid[mid]; ok {
			answer.MediaDescriptions = append(answer.MediaDescriptions, r)
			mids = append(mids, mid)
			continue
		}
		rej := &sdp.MediaDescription{
			MediaName:             sdp.MediaName{Media: m.MediaName.Media, Port: sdp.RangedPort{Value: 0}, Protos: m.MediaName.Protos, Formats: m.MediaName.Formats},
			ConnectionInformation: m.ConnectionInformation,
			Attributes:            m.Attributes,
		}
		rejectWebMedia(rej)
		answer.MediaDescriptions = append(answer.MediaDescriptions, rej)
	}
	for i, a := range answer.Attributes {
		if a.Key == "group" && strings.HasPrefix(a.Value, "BUNDLE") {
			answer.Attributes[i].Value = strings.Join(mids, " ")
		}
	}
	raw, err := answer.Marshal()
	if err != nil {
		return err
	}
	return b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(raw)})
}
