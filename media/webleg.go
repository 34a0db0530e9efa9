package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds the wait for ICE gathering. SIP has no trickle ICE,
// so every SDP for the browser waits for all candidates; host candidates
// on a bound address take milliseconds.
const gatherTimeout = 10 * time.Second

var errNotBound = errors.New("media: web track not bound yet")

// webTrack is the browser-bound audio track. It implements
// webrtc.TrackLocal itself rather than using TrackLocalStaticRTP, which
// stamps every packet with the payload type of its one codec: the relay
// sends audio and telephone-event on one SSRC, each with its own number.
type webTrack struct {
	// bound is pion's binding, nil until Bind and after Unbind; the
	// packet path reads it without a lock.
	bound atomic.Pointer[trackBinding]
	kind  webrtc.RTPCodecType // zero: audio
}

type trackBinding struct {
	id   string
	ssrc uint32
	w    webrtc.TrackLocalWriter
}

// Bind is called by pion when negotiation is complete.
func (t *webTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, "audio/telephone-event") || strings.EqualFold(c.MimeType, "video/rtx") {
			continue
		}
		t.bound.Store(&trackBinding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), w: ctx.WriteStream()})
		return c, nil
	}
	if t.kind == webrtc.RTPCodecTypeVideo && len(ctx.CodecParameters()) == 0 {
		// The browser refused the video stream of the gateway's offer
		// (port 0, a late offer to a browser without a camera): pion
		// starts the sender anyway, and an error would fail the whole
		// answer. The track stays unbound and sends nothing.
		return webrtc.RTPCodecParameters{}, nil
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind is called by pion when the track stops.
func (t *webTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	if b := t.bound.Load(); b != nil && b.id == ctx.ID() {
		t.bound.CompareAndSwap(b, nil)
	}
	return nil
}

// ID, RID, StreamID and Kind describe the track in SDP (a=msid).
func (t *webTrack) ID() string {
	if t.kind == webrtc.RTPCodecTypeVideo {
		return "video"
	}
	return "audio"
}
func (t *webTrack) RID() string      { return "" }
func (t *webTrack) StreamID() string { return "switchboard" }
func (t *webTrack) Kind() webrtc.RTPCodecType {
	if t.kind == webrtc.RTPCodecTypeVideo {
		return t.kind
	}
	return webrtc.RTPCodecTypeAudio
}

// unbind forgets the binding of a PeerConnection that is dropped.
func (t *webTrack) unbind() { t.bound.Store(nil) }

// writeRTP sends one packet on the track's SSRC; the caller has set the
// payload type, sequence number and timestamp.
func (t *webTrack) writeRTP(h *rtp.Header, payload []byte) (int, error) {
	b := t.bound.Load()
	if b == nil {
		return 0, errNotBound
	}
	h.SSRC = b.ssrc
	return b.w.WriteRTP(h, payload)
}

// newWebLeg makes the PeerConnection of the bridge with the codecs of the
// call, with its callbacks.
func (b *Bridge) newWebLeg(codecs []Codec) error {
	pc, err := b.e.newPeerConnection(codecs, b.videoPolicy)
	if err != nil {
		return err
	}
	// dropped marks a PeerConnection that the bridge closes after a failed
	// first negotiation: its end is not the call's.
	dropped := &atomic.Bool{}
	pc.OnTrack(b.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		b.log.Debug("webrtc leg", "state", s.String())
		if dropped.Load() {
			return
		}
		switch s {
		case webrtc.PeerConnectionStateConnected:
			// Not in pion's callback: GetStats takes the locks that
			// the callback's caller may hold.
			b.goWorker(func() { b.learnTransport(pc) })
		case webrtc.PeerConnectionStateFailed:
			b.fail(fmt.Errorf("media: ice or dtls: %w", ErrWebFailed))
		case webrtc.PeerConnectionStateClosed:
			if !b.isClosing() {
				b.fail(fmt.Errorf("media: closed by the browser: %w", ErrWebFailed))
			}
		}
	})
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		b.transport.pairChanged(p)
		if p != nil {
			b.goWorker(func() { b.moveFast(pc) })
		}
	})
	b.pc, b.pcDropped = pc, dropped
	if b.vid != nil {
		b.vid.pc.Store(pc)
	}
	return nil
}

// learnTransport records how the connected web leg's media travels, and
// counts it in the engine's Stats the first time.
func (b *Bridge) learnTransport(pc *webrtc.PeerConnection) {
	b.pcCloseMu.Lock()
	if b.isClosing() {
		// Closed or about to be: the call is over, nothing to learn.
		b.pcCloseMu.Unlock()
		return
	}
	t, first := b.transport.learn(pc)
	b.pcCloseMu.Unlock()
	b.startFast(t)
	b.log.Debug("webrtc leg connected", "local", t.Local.Type+"/"+t.Local.Protocol, "remote", t.Remote.Type+"/"+t.Remote.Protocol,
		"remote_address", t.Remote.Address, "dtls_role", t.DTLSRole, "srtp_profile", t.SRTPProfile)
	if first {
		b.e.countTransport(t.Key())
	}
}

// addSender attaches the browser-bound track: on the transceiver that the
// browser's offer made (answer), or on a new sendrecv one (offer).
func (b *Bridge) addSender(offering bool) error {
	var sender *webrtc.RTPSender
	if offering {
		tr, err := b.pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			return fmt.Errorf("media: webrtc transceiver: %w", err)
		}
		sender = tr.Sender()
	} else {
		s, err := b.pc.AddTrack(b.track)
		if err != nil {
			return fmt.Errorf("media: webrtc track: %w", err)
		}
		sender = s
	}
	b.hasSender = true
	b.readSenderRTCP(sender, nil)
	return nil
}

// addVideoSender attaches the browser-bound video track, likewise.
func (b *Bridge) addVideoSender(offering bool) error {
	v := b.vid
	var sender *webrtc.RTPSender
	if offering {
		tr, err := b.pc.AddTransceiverFromTrack(v.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			return fmt.Errorf("media: webrtc video transceiver: %w", err)
		}
		sender = tr.Sender()
	} else {
		s, err := b.pc.AddTrack(v.track)
		if err != nil {
			return fmt.Errorf("media: webrtc video track: %w", err)
		}
		sender = s
	}
	b.hasVideoSender = true
	b.readSenderRTCP(sender, v)
	return nil
}

// readSenderRTCP reads the browser's RTCP about what the gateway sends it
// (it goes through pion's interceptors only when read); for video, PLI
// and FIR are passed on to the phone.
func (b *Bridge) readSenderRTCP(sender *webrtc.RTPSender, v *videoLeg) {
	b.goWorker(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := sender.Read(buf)
			if err != nil {
				return
			}
			if v != nil {
				b.videoRTCPFromWeb(v, buf[:n])
			}
		}
	})
}

// onTrack runs the browser → phone relay of one remote track, in the
// goroutine pion starts for it.
func (b *Bridge) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	if !b.addWorker() {
		return
	}
	defer b.wg.Done()
	b.goWorker(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := recv.Read(buf); err != nil {
				return
			}
		}
	})
	var v *videoLeg
	if tr.Kind() == webrtc.RTPCodecTypeVideo {
		v = b.vidA.Load()
		if v == nil {
			return
		}
		v.webSSRC.Store(uint32(tr.SSRC()))
	}
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || n == 0 || b.isClosing() {
				return
			}
			// A payload type pion does not know: the packet is there, the
			// relay counts and drops it.
		}
		if v != nil {
			b.videoFromWeb(v, buf[:n], &pkt)
			continue
		}
		if l := b.fast.Load(); l != nil && n >= rtpHeaderLen && l.isCopy(binary.BigEndian.Uint32(buf[8:]), binary.BigEndian.Uint16(buf[2:])) {
			continue // relayed by the fast path already
		}
		b.fromWeb(buf[:n], &pkt)
	}
}

// waitGather waits until ICE gathering is complete and returns the local
// description.
func (b *Bridge) waitGather(done <-chan struct{}) (string, error) {
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-b.ctx.Done():
		return "", fmt.Errorf("media: ice gathering: %w", ErrClosed)
	case <-t.C:
		return "", fmt.Errorf("media: ice gathering for %v: %w", gatherTimeout, context.DeadlineExceeded)
	}
	d := b.pc.LocalDescription()
	if d == nil {
		return "", fmt.Errorf("media: no local description: %w", ErrState)
	}
	return d.SDP, nil
}

// webAnswerSDP answers the browser's offer with pion and returns the SDP
// for the browser, its direction set to dir.
func (b *Bridge) webAnswerSDP(offer []byte, dir direction, ptime int, video webVideo) ([]byte, error) {
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return nil, fmt.Errorf("media: webrtc offer: %w: %w", err, ErrInvalidSDP)
	}
	// Not before: an offer with new ICE credentials restarts ICE and its
	// gathering inside SetRemoteDescription, and the answer must wait for
	// the new candidates, not take the old gathering's end for theirs.
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if !b.hasSender {
		if err := b.addSender(false); err != nil {
			return nil, err
		}
	}
	if video.on && !b.hasVideoSender && b.vid != nil {
		if err := b.addVideoSender(false); err != nil {
			return nil, err
		}
	}
	answer, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("media: webrtc answer: %w", err)
	}
	if err := b.pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("media: webrtc answer: %w", err)
	}
	sdp, err := b.waitGather(gathered)
	if err != nil {
		return nil, err
	}
	return rewriteWebSDP(sdp, dir, ptime, video)
}

// webOffer makes an offer for the browser with pion, its direction set to
// dir.
func (b *Bridge) webOffer(dir direction, ptime int, video webVideo) ([]byte, error) {
	if !b.hasSender {
		if err := b.addSender(true); err != nil {
			return nil, err
		}
	}
	if video.on && !b.hasVideoSender {
		if err := b.addVideoSender(true); err != nil {
			return nil, err
		}
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("media: webrtc offer: %w", err)
	}
	if err := b.pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("media: webrtc offer: %w", err)
	}
	sdp, err := b.waitGather(gathered)
	if err != nil {
		return nil, err
	}
	return rewriteWebSDP(sdp, dir, ptime, video)
}

// applyWebAnswer gives the browser's answer to pion, its candidates first
// (primeCandidates).
func (b *Bridge) applyWebAnswer(answer []byte) error {
	b.primeCandidates(answer)
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("media: webrtc answer: %w: %w", err, ErrInvalidSDP)
	}
	return nil
}
