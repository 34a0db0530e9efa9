package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
)

// state is where a bridge is in offer/answer.
type state uint8

const (
	stateIdle           state = iota // nothing negotiated yet
	stateWebOffered                  // WebOffer: waiting for the phone's answer (RTPAnswer)
	stateRTPOffered                  // RTPOffer: waiting for the browser's answer (WebAnswer)
	stateLateOffered                 // LateOffer: waiting for the browser's answer (WebAnswer)
	stateLateRTPOffered              // WebAnswer after LateOffer: waiting for the phone's answer (RTPAnswer)
	stateActive                      // both legs negotiated
	stateWebReoffered                // WebReoffer: waiting for the phone's answer (RTPAnswer)
	stateRTPRefreshed                // RTPRefresh: waiting for the phone's answer (RTPAnswer)
	stateRTPReoffered                // RTPReofferWeb: waiting for the browser's answer (WebAnswer)
	stateClosed
)

var stateNames = [...]string{"idle", "web-offered", "rtp-offered", "late-offered", "late-rtp-offered", "active", "web-reoffered", "rtp-refreshed", "rtp-reoffered", "closed"}

func (s state) String() string { return stateNames[s] }

// Bridge is the media of one call crossing: a WebRTC leg (one pion
// PeerConnection towards the browser) and an RTP leg (a UDP port pair
// towards the phone), with the relay between them.
//
// The offer/answer methods take and return SDP bodies; the package doc
// lists which to call in which order. They are safe for concurrent use but
// meant to be called in the order of the SIP dialogs; one out of order
// fails with ErrState and changes nothing. A method that fails leaves the
// negotiated state as it was.
type Bridge struct {
	e     *Engine
	id    string
	log   *slog.Logger
	clock clock.Clock
	start time.Time
	pair  *portPair
	latch latch
	// polled: the engine's RTP poller reads the RTP and RTCP sockets,
	// under the ids pollIDs; else goroutines of the bridge do.
	polled  bool
	pollIDs [2]int32
	track   *webTrack

	ctx       context.Context // done when the bridge ends: aborts ICE gathering
	cancel    context.CancelFunc
	stopAfter func() bool

	// Offer/answer state.
	mu        sync.Mutex
	state     state
	pc        *webrtc.PeerConnection
	pcDropped *atomic.Bool
	hasSender bool

	// Web leg.
	webOffered  []Codec  // the gateway's offer to the browser (RTPOffer, LateOffer)
	webPending  []byte   // the browser's offer waiting for the phone's answer
	webPendingS *session //
	webAnswer   []byte   // the last answer given to the browser
	webCodecs   []Codec  // negotiated, in the web leg's numbering
	webDir      direction
	webOurDir   direction
	webUfrag    string // the browser's ICE username fragment in force

	// RTP leg.
	rtpOrigin     origin
	rtpOffer      *rtpDesc // the gateway's pending offer to the phone
	rtpPendingS   *session // the phone's offer waiting for the browser's answer
	rtpLast       *rtpDesc // the gateway's last SDP on the leg, offer or answer
	rtpSend       []Codec  // negotiated, the phone's numbering
	rtpRecv       []Codec  // negotiated, the gateway's numbering then the phone's
	rtpDir        direction
	rtpPtime      int
	rtpRTCP       netip.AddrPort // the phone's audio RTCP address, from its SDP
	rtpOfferOurs  bool           // the last RTP negotiation answered an offer of the gateway
	relayStarted  bool
	lastRTPOffset atomic.Int64 // time of the last RTP packet from either leg, since start

	// Video (video.go): the policy of the bridge and what is in force.
	audioPolicy, videoPolicy []Codec
	ordered                  bool // the policy orders the RTP leg's offers
	vid                      *videoLeg
	vidA                     atomic.Pointer[videoLeg] // vid, for readers without b.mu
	hasVideoSender           bool
	webVideoOffered          []Codec // the gateway's video offer to the browser
	webVideo                 []Codec // in force, the web leg's numbering; nil: none
	webVideoRefused          bool    // the browser's last answer refused the video offered
	webVDir, webVOurDir      direction
	rtpVSend, rtpVRecv       []Codec
	rtpVDir                  direction
	rtpV                     *videoSession // the phone's video stream in force
	kfMu                     sync.Mutex
	onKeyframe               func()

	transport transportFacts
	// fast is the web leg's fast path, nil when off; fastMu orders its
	// starts and stops, fastTried tells that the PeerConnection's keys
	// were taken (started or failed: not tried again).
	fast      atomic.Pointer[fastLeg]
	fastMu    sync.Mutex
	fastTried bool
	// fastAtEnd is whether the leg was on the fast path when the bridge
	// closed, for the stats of an ended call.
	fastAtEnd atomic.Bool
	// webROC follows the rollover counter of the stream to the browser,
	// pion what pion's SRTP context saw of it (see sendWeb). Under
	// toWeb.mu.
	webROC rocCount
	pion   pionIndex
	// pcCloseMu keeps PeerConnection.GetStats and Close apart: pion's
	// close writes what GetStats reads without a lock of its own. Only
	// the bridge closes the PeerConnection (see DisableCloseByDTLS).
	pcCloseMu      sync.Mutex
	route          atomic.Pointer[route]
	toWeb, toRTP   *outStream
	webIn, rtpIn   recvStats
	webOut, rtpOut sendStats

	timerMu      sync.Mutex
	inactivity   clock.Timer
	timerStopped bool
	activeSince  time.Time

	dtmfMu sync.Mutex
	dtmf   dtmfSender

	done      chan struct{}
	endOnce   sync.Once
	err       error
	ended     time.Time
	closeOnce sync.Once

	workMu  sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

func newBridge(e *Engine, id string, pair *portPair) *Bridge {
	b := &Bridge{
		e:     e,
		id:    id,
		log:   e.log.With("bridge", id),
		clock: e.clock,
		start: e.clock.Now(),
		pair:  pair,
		latch: latch{relatchAfter: e.opts.RelatchAfter, loopbackOnly: e.opts.LoopbackOnly},
		track: &webTrack{},
		toWeb: newOutStream(),
		toRTP: newOutStream(),
		done:  make(chan struct{}),
	}
	b.rtpOrigin.id = uint64(rand.Uint32())
	b.rtpOrigin.version = 1
	return b
}

// run launches the RTP readers and ties the bridge to ctx.
func (b *Bridge) run(ctx context.Context) {
	// The readers stop when the bridge is torn down, which ctx's end
	// starts but does not finish: their context keeps ctx's values only.
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if p := b.e.poller; p != nil && p.add(b) {
		b.polled = true
	} else {
		b.wg.Add(2)
		go b.readRTP()
		go b.readRTCP()
	}
	b.stopAfter = context.AfterFunc(ctx, func() { b.fail(context.Cause(ctx)) })
}

// ID returns the id given to NewBridge.
func (b *Bridge) ID() string { return b.id }

// RTPAddr returns the local address of the RTP leg (BindIP and the RTP
// port; RTCP is on the next port).
func (b *Bridge) RTPAddr() netip.AddrPort {
	return netip.AddrPortFrom(b.e.opts.BindIP, uint16(b.pair.port))
}

// Done is closed when the bridge ends: Close, the context given to
// NewBridge, the inactivity timeout or a failed WebRTC leg. The gateway
// then ends both SIP legs (BYE) and calls Close.
func (b *Bridge) Done() <-chan struct{} { return b.done }

// Err returns nil while the bridge runs, then why it ended: an error
// wrapping ErrInactive or ErrWebFailed, the cause of the context, or
// ErrClosed after Close.
func (b *Bridge) Err() error {
	select {
	case <-b.done:
		return b.err
	default:
		return nil
	}
}

// end records why the bridge ends, once; it reports whether this call did.
func (b *Bridge) end(err error) bool {
	first := false
	b.endOnce.Do(func() {
		b.err, b.ended, first = err, b.clock.Now(), true
		close(b.done)
	})
	return first
}

// fail ends the bridge from inside (a timer, a pion callback, the context)
// and tears it down in a goroutine of the engine: pion must not be closed
// from its own callbacks.
func (b *Bridge) fail(err error) {
	if !b.end(err) {
		return
	}
	if errors.Is(err, ErrInactive) {
		b.e.inactive.Add(1)
	}
	b.log.Info("media bridge ended", "reason", err)
	b.e.goTeardown(func() { b.closeOnce.Do(b.teardown) })
}

// Close ends the bridge, closes the PeerConnection, stops every goroutine
// of the bridge and starts the drain of its RTP ports. It returns when all
// is stopped; it may be called more than once.
func (b *Bridge) Close() error {
	b.end(fmt.Errorf("media: bridge: %w", ErrClosed))
	b.closeOnce.Do(b.teardown)
	return nil
}

func (b *Bridge) teardown() {
	b.workMu.Lock()
	b.closing = true
	b.workMu.Unlock()
	b.cancel()
	b.stopAfter()
	b.timerMu.Lock()
	b.timerStopped = true
	if b.inactivity != nil {
		b.inactivity.Stop()
	}
	b.timerMu.Unlock()
	b.stopDTMF()
	b.fastAtEnd.Store(b.onFastPath())
	b.stopFast()

	b.mu.Lock()
	b.state = stateClosed
	pc := b.pc
	b.mu.Unlock()
	if pc != nil {
		b.pcCloseMu.Lock()
		err := pc.GracefulClose()
		b.pcCloseMu.Unlock()
		if err != nil {
			b.log.Debug("webrtc close", "err", err)
		}
	}
	now := time.Now()
	if b.polled {
		b.e.poller.remove(b)
	} else {
		_ = b.pair.rtp.SetReadDeadline(now)
		_ = b.pair.rtcp.SetReadDeadline(now)
	}
	v := b.vidA.Load()
	if v != nil {
		v.stopVideoReports()
		_ = v.pair.rtp.SetReadDeadline(now)
		_ = v.pair.rtcp.SetReadDeadline(now)
	}
	b.wg.Wait()
	b.e.ports.release(b.pair)
	if v != nil {
		b.e.ports.release(v.pair)
	}
	b.e.remove(b)
}

// addWorker counts a goroutine of the bridge, unless the bridge is closing.
func (b *Bridge) addWorker() bool {
	b.workMu.Lock()
	defer b.workMu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	return true
}

func (b *Bridge) goWorker(f func()) {
	if b.addWorker() {
		go func() {
			defer b.wg.Done()
			f()
		}()
	}
}

func (b *Bridge) isClosing() bool {
	b.workMu.Lock()
	defer b.workMu.Unlock()
	return b.closing
}

// lock takes the offer/answer lock and checks that the bridge is in one of
// the states allowed.
func (b *Bridge) lock(op string, allowed ...state) error {
	b.mu.Lock()
	if b.state == stateClosed {
		b.mu.Unlock()
		return fmt.Errorf("media: %s: %w", op, ErrClosed)
	}
	for _, s := range allowed {
		if b.state == s {
			return nil
		}
	}
	st := b.state
	b.mu.Unlock()
	return fmt.Errorf("media: %s in state %s: %w", op, st, ErrState)
}

// WebOffer takes the browser's offer (browser calls phone) and returns the
// RTP/AVP offer for the phone, from the gateway's RTP address: the codecs
// of the browser's offer that the policy allows, in the browser's order and
// numbering, telephone-event at the rates of the audio codecs kept. It
// fails with ErrNoCommonCodec (488) when none is left. The phone's answer
// goes to RTPAnswer.
func (b *Bridge) WebOffer(offer []byte) (rtpOffer []byte, err error) {
	if err := b.lock("web offer", stateIdle, stateWebOffered); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, true)
	if err != nil {
		return nil, err
	}
	codecs := b.allowAudio(s.codecs)
	if codecs == nil {
		return nil, mismatch("web offer", s.codecs, b.audioPolicy)
	}
	d := &rtpDesc{codecs: codecs, dir: s.dir, ptime: ptimeOr20(s.ptime), maxptime: s.maxptime, videoIdx: -1}
	if d.video, err = b.offerVideo(s.video); err != nil {
		return nil, err
	}
	out := b.writeRTPDesc(d)
	b.webPending, b.webPendingS = append([]byte(nil), offer...), s
	b.rtpOffer = d
	b.state = stateWebOffered
	return out, nil
}

// RTPOffer takes the phone's offer (phone calls browser) and returns the
// WebRTC offer for the browser: UDP/TLS/RTP/SAVPF with ICE credentials,
// DTLS fingerprint and every candidate (SIP has no trickle ICE), with the
// codecs of the phone's offer that the policy allows, in its order and
// numbering. It fails with ErrNoCommonCodec (488) when none is left. The
// browser's answer goes to WebAnswer.
func (b *Bridge) RTPOffer(offer []byte) (webOffer []byte, err error) {
	if err := b.lock("rtp offer", stateIdle); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, false)
	if err != nil {
		return nil, err
	}
	codecs := b.allowAudio(s.codecs)
	if codecs == nil {
		return nil, mismatch("rtp offer", s.codecs, b.audioPolicy)
	}
	dir := phoneDir(s)
	video, err := b.webVideoOffer(s.video)
	if err != nil {
		return nil, err
	}
	out, err := b.offerWeb(codecs, dir, s.ptime, video)
	if err != nil {
		return nil, err
	}
	b.rtpPendingS = s
	b.state = stateRTPOffered
	return out, nil
}

// LateOffer starts a call whose SIP side sent an INVITE without SDP: it
// returns a WebRTC offer for the browser made from the codec policy, with
// a sendrecv video stream when the policy has video. The browser's answer
// goes to WebAnswer, which returns the gateway's RTP offer for the phone
// (in the 200 OK), with video when the browser took it; the phone's
// answer (in the ACK) goes to RTPAnswer.
func (b *Bridge) LateOffer() (webOffer []byte, err error) {
	if err := b.lock("late offer", stateIdle); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	video, err := b.lateVideoOffer()
	if err != nil {
		return nil, err
	}
	out, err := b.offerWeb(b.audioPolicy, dirSendRecv, 0, video)
	if err != nil {
		return nil, err
	}
	b.state = stateLateOffered
	return out, nil
}

// offerWeb makes the web leg and its offer.
func (b *Bridge) offerWeb(codecs []Codec, dir direction, ptime int, video webVideo) ([]byte, error) {
	if err := b.newWebLeg(codecs); err != nil {
		return nil, err
	}
	out, err := b.webOffer(dir, ptime, video)
	if err != nil {
		b.dropWebLeg()
		return nil, err
	}
	b.webOffered, b.webOurDir = codecs, dir
	b.webVideoOffered, b.webVOurDir = nil, video.dir
	if video.on {
		b.webVideoOffered = video.codecs
	}
	return out, nil
}

// dropWebLeg closes a PeerConnection whose first negotiation failed, so
// that a later attempt starts afresh.
func (b *Bridge) dropWebLeg() {
	if b.pc != nil {
		b.pcDropped.Store(true)
		b.pcCloseMu.Lock()
		_ = b.pc.Close()
		b.pcCloseMu.Unlock()
	}
	b.pc, b.pcDropped, b.hasSender, b.hasVideoSender = nil, nil, false, false
	b.stopFast()
	b.fastMu.Lock()
	b.fastTried = false
	b.fastMu.Unlock()
	b.track.unbind()
	if b.vid != nil {
		b.vid.track.unbind()
		b.vid.pc.Store(nil)
	}
}

// WebAnswer takes the browser's answer to the gateway's WebRTC offer and
// returns the SDP owed to the SIP side:
//   - after RTPOffer, the RTP/AVP answer for the phone (the codecs the
//     browser accepted, in the phone's numbering);
//   - after LateOffer, the gateway's RTP/AVP offer for the phone, whose
//     answer goes to RTPAnswer.
//
// It fails with ErrNoCommonCodec when the browser accepted no codec.
func (b *Bridge) WebAnswer(answer []byte) (rtpSDP []byte, err error) {
	if err := b.lock("web answer", stateRTPOffered, stateLateOffered, stateRTPReoffered); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(answer, true)
	if err != nil {
		return nil, err
	}
	accepted := answered(s.codecs, b.webOffered)
	if accepted == nil {
		return nil, mismatch("web answer", b.webOffered, s.codecs)
	}
	if err := b.applyWebAnswer(answer); err != nil {
		return nil, err
	}
	b.webCodecs, b.webDir, b.webUfrag = accepted, s.dir, s.iceUfrag
	var acceptedV []Codec
	if s.video != nil && b.webVideoOffered != nil {
		acceptedV = answeredVideo(s.video.codecs, b.webVideoOffered)
	}
	b.webVideo, b.webVDir = acceptedV, dirInactive
	if acceptedV != nil {
		b.webVDir = s.video.dir
	}
	b.webVideoRefused = b.webVideoOffered != nil && acceptedV == nil

	if b.state == stateLateOffered {
		d := &rtpDesc{codecs: accepted, dir: b.effWeb(), ptime: 20, videoIdx: -1}
		d.video = b.lateRTPVideo(s.video)
		out := b.writeRTPDesc(d)
		b.rtpOffer = d
		b.state = stateLateRTPOffered
		return out, nil
	}

	p := b.rtpPendingS
	codecs := intersect(p.codecs, accepted)
	if codecs == nil {
		return nil, fmt.Errorf("media: web answer: %w", ErrNoCommonCodec)
	}
	d := &rtpDesc{
		codecs:   codecs,
		dir:      phoneDir(p).reverse() & b.effWeb(),
		ptime:    p.ptime,
		maxptime: p.maxptime,
		rtcpMux:  p.rtcpMux,
		lines:    p.lines,
		audio:    p.audio,
		videoIdx: -1,
	}
	d.video = b.answerPhoneVideo(p.video, acceptedV, s.video)
	if p.video != nil {
		d.videoIdx = p.video.index
	}
	out := b.writeRTPDesc(d)
	b.rtpLast = d
	b.rtpSend, b.rtpRecv = codecs, codecs
	b.applyRTPRemote(p)
	if d.video != nil && d.video.on {
		b.applyRTPVideo(p.video, d.video.codecs, d.video.codecs)
	} else {
		b.applyRTPVideo(nil, nil, nil)
	}
	b.rtpPendingS = nil
	b.rtpOfferOurs = false
	b.activate()
	return out, nil
}

// RTPAnswer takes the phone's answer to the gateway's last RTP offer (from
// WebOffer, WebAnswer after LateOffer, WebReoffer or RTPRefresh) and
// returns the WebRTC answer owed to the browser, or nil when none is owed
// (late offer, refresh).
//
// After WebOffer the web answer is made here, by pion, with only the codecs
// the phone accepted. RTPAnswer may be called again after that with
// another answer to the same offer (early media in a 183 from one address,
// then the 200 from another; a forked call): the RTP leg moves to the new
// address and the same web answer is returned.
//
// It fails with ErrNoCommonCodec when the phone accepted no codec the
// browser has.
func (b *Bridge) RTPAnswer(answer []byte) (webAnswer []byte, err error) {
	if err := b.lock("rtp answer", stateWebOffered, stateLateRTPOffered, stateWebReoffered, stateRTPRefreshed, stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	offer := b.rtpOffer
	if b.state == stateActive {
		if !b.rtpOfferOurs || b.rtpLast == nil {
			return nil, fmt.Errorf("media: rtp answer without an rtp offer: %w", ErrState)
		}
		offer = b.rtpLast
	}
	s, err := parseSession(answer, false)
	if err != nil {
		return nil, err
	}
	accepted := answered(s.codecs, offer.codecs)
	if accepted == nil {
		return nil, mismatch("rtp answer", offer.codecs, s.codecs)
	}
	var acceptedV []Codec
	if offer.video != nil && offer.video.on && s.video != nil {
		acceptedV = answeredVideo(s.video.codecs, offer.video.codecs)
	}

	switch b.state {
	case stateWebOffered:
		p := b.webPendingS
		webCodecs := intersect(p.codecs, accepted)
		if webCodecs == nil {
			return nil, mismatch("rtp answer", p.codecs, accepted)
		}
		if err := b.newWebLeg(webCodecs); err != nil {
			return nil, err
		}
		dir := phoneDir(s) & p.dir.reverse()
		video := webVideoAnswer(p.video, acceptedV, s.video)
		out, err := b.webAnswerTo(b.webPending, dir, s.ptime, video)
		if err != nil {
			b.dropWebLeg()
			return nil, err
		}
		b.commitWebOffer(p, dir, out, video)
	case stateWebReoffered:
		p := b.webPendingS
		dir := phoneDir(s) & p.dir.reverse()
		video := webVideoAnswer(p.video, acceptedV, s.video)
		out, err := b.webAnswerTo(b.webPending, dir, s.ptime, video)
		if err != nil {
			return nil, err
		}
		b.commitWebOffer(p, dir, out, video)
	case stateActive:
		if intersect(accepted, b.webCodecs) == nil {
			return nil, fmt.Errorf("media: rtp answer: %w", ErrNoCommonCodec)
		}
	}
	b.rtpLast = offer
	b.rtpOffer = nil
	b.rtpSend = accepted
	b.rtpRecv = append(intersect(offer.codecs, accepted), accepted...)
	b.applyRTPRemote(s)
	if acceptedV != nil {
		b.applyRTPVideo(s.video, acceptedV, append(intersectVideo(offer.video.codecs, acceptedV, false), acceptedV...))
	} else if offer.video != nil {
		b.applyRTPVideo(nil, nil, nil)
	}
	b.rtpOfferOurs = true
	out := b.webAnswer
	if b.state == stateLateRTPOffered || b.state == stateRTPRefreshed {
		out = nil
	}
	b.activate()
	return out, nil
}

// webAnswerTo answers the browser's (re-)offer with pion; the codecs of
// the answer become the web leg's.
func (b *Bridge) webAnswerTo(offer []byte, dir direction, ptime int, video webVideo) ([]byte, error) {
	out, err := b.webAnswerSDP(offer, dir, ptime, video)
	if err != nil {
		return nil, err
	}
	ours, err := parseSession(out, true)
	if err != nil {
		return nil, fmt.Errorf("media: own web answer: %w", err)
	}
	b.webCodecs = ours.codecs
	return out, nil
}

func (b *Bridge) commitWebOffer(p *session, dir direction, answer []byte, video webVideo) {
	b.webVideo, b.webVDir, b.webVOurDir = nil, dirInactive, video.dir
	if video.on && p.video != nil {
		b.webVideo, b.webVDir = video.codecs, p.video.dir
	}
	b.webDir, b.webOurDir, b.webUfrag = p.dir, dir, p.iceUfrag
	b.webAnswer = answer
	b.webPending, b.webPendingS = nil, nil
}

// WebReoffer takes a re-offer from the browser (a re-INVITE: hold with
// sendonly or inactive, resume, an ICE restart) and returns the gateway's
// RTP re-offer for the phone, same port and m= lines, the direction of the
// browser's offer. The phone's answer goes to RTPAnswer, which returns the
// web answer. The codecs stay those negotiated at the start: the web
// leg's codecs are fixed by the first negotiation.
func (b *Bridge) WebReoffer(offer []byte) (rtpOffer []byte, err error) {
	if err := b.lock("web reoffer", stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, true)
	if err != nil {
		return nil, err
	}
	if intersect(s.codecs, b.webCodecs) == nil {
		return nil, fmt.Errorf("media: web reoffer: %w", ErrNoCommonCodec)
	}
	d := *b.rtpLast
	d.codecs = intersect(b.rtpLast.codecs, s.codecs)
	if d.codecs == nil {
		return nil, mismatch("web reoffer", s.codecs, b.rtpLast.codecs)
	}
	d.dir = s.dir
	// Video added, kept or removed by the browser: the phone is offered
	// the same, in the slot the stream had (RFC 3264 §8.4: a removed
	// stream stays, with port 0).
	nv, err := b.offerVideo(s.video)
	if err != nil {
		return nil, err
	}
	switch {
	case nv != nil:
		d.video = nv
	case d.video != nil:
		d.video = &videoDesc{codecs: d.video.codecs}
	}
	if d.video != nil && d.lines == nil {
		d.videoIdx = -1
	}
	out := b.writeRTPDesc(&d)
	b.webPending, b.webPendingS = append([]byte(nil), offer...), s
	b.rtpOffer = &d
	b.state = stateWebReoffered
	return out, nil
}

// WebRefresh answers, on the web leg alone, a re-offer of the browser
// that changes nothing the phone sees: the direction in force and every
// codec in use, with their numbers. That is what a browser sends after a
// network change — new ICE credentials, an ICE restart, over the same
// DTLS-SRTP session — and what a session refresh with SDP looks like.
// pion restarts ICE when the credentials changed; the RTP leg and the
// relay go on untouched, and the returned answer has the gateway's new
// credentials and every candidate. A re-offer that changes the direction
// or leaves out a codec in use fails with ErrChangesRTP, changing
// nothing: carry it to the phone with WebReoffer.
func (b *Bridge) WebRefresh(offer []byte) (webAnswer []byte, err error) {
	if err := b.lock("web refresh", stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, true)
	if err != nil {
		return nil, err
	}
	if s.dir != b.webDir || !keepsCodecs(s.codecs, b.webCodecs) || !b.keepsVideo(s.video) {
		return nil, fmt.Errorf("media: web refresh: %w", ErrChangesRTP)
	}
	restart := s.iceUfrag != b.webUfrag
	out, err := b.webAnswerTo(offer, b.webOurDir, b.rtpPtime, b.videoInForce())
	if err != nil {
		return nil, err
	}
	b.webAnswer, b.webUfrag = out, s.iceUfrag
	if restart {
		b.e.iceRestarts.Add(1)
		b.log.Info("webrtc leg: ice restart answered", "ice_ufrag", s.iceUfrag)
	}
	return out, nil
}

// keepsCodecs reports whether offer still has every codec of inUse, with
// the same payload type.
func keepsCodecs(offer, inUse []Codec) bool {
	for _, c := range inUse {
		o, ok := find(offer, c)
		if !ok || o.PayloadType != c.PayloadType {
			return false
		}
	}
	return true
}

// RTPRefresh returns the gateway's current RTP SDP as an offer, for a
// re-INVITE from the phone without SDP (a session refresh); its version is
// unchanged when nothing changed. The answer in the ACK goes to RTPAnswer.
func (b *Bridge) RTPRefresh() (rtpOffer []byte, err error) {
	if err := b.lock("rtp refresh", stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	d := *b.rtpLast
	d.dir = b.effWeb()
	out := b.writeRTPDesc(&d)
	b.rtpOffer = &d
	b.state = stateRTPRefreshed
	return out, nil
}

// RTPReoffer answers a re-offer from the phone (a re-INVITE: hold with
// sendonly, recvonly or inactive or c=0.0.0.0, resume, a session refresh,
// a new address) on the RTP leg alone. The web leg keeps its session (no
// renegotiation, no new DTLS handshake): the direction is enforced by the
// relay, e.g. nothing goes to a phone that holds with sendonly. A new
// address lets RTP latch again. It fails with ErrNoCommonCodec (488, the
// old session stays) when the re-offer drops every codec in use.
func (b *Bridge) RTPReoffer(offer []byte) (rtpAnswer []byte, err error) {
	if err := b.lock("rtp reoffer", stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, false)
	if err != nil {
		return nil, err
	}
	codecs := intersect(s.codecs, b.rtpSend)
	if codecs == nil {
		return nil, mismatch("rtp reoffer", s.codecs, b.rtpSend)
	}
	// Video that comes or goes needs the browser renegotiated: the
	// gateway does that with RTPReofferWeb. Video kept is answered here.
	var keptV []Codec
	if s.video != nil && b.rtpVSend != nil {
		keptV = intersectVideo(s.video.codecs, b.rtpVSend, false)
	}
	wantsVideo := s.video != nil && intersectVideo(s.video.codecs, b.videoPolicy, false) != nil
	if wantsVideo && b.rtpVSend == nil && (b.webVideoRefused || b.rtpLast != nil && b.rtpLast.video != nil && !b.rtpLast.video.on) {
		// Refused before (by the browser or the policy): refused again,
		// not a change. The browser that refused the video of a late
		// offer left no m=video in the phone's SDP, hence the flag.
		wantsVideo = false
	}
	if wantsVideo != (b.rtpVSend != nil) || wantsVideo && keptV == nil {
		return nil, fmt.Errorf("media: rtp reoffer: video added or removed: %w", ErrChangesWeb)
	}
	d := &rtpDesc{
		codecs:   codecs,
		dir:      phoneDir(s).reverse() & b.effWeb(),
		ptime:    s.ptime,
		maxptime: s.maxptime,
		rtcpMux:  s.rtcpMux,
		lines:    s.lines,
		audio:    s.audio,
		videoIdx: -1,
	}
	if s.video != nil {
		d.videoIdx = s.video.index
		d.video = &videoDesc{codecs: s.video.codecs}
		if keptV != nil {
			web := b.webVDir & b.webVOurDir.reverse()
			d.video = &videoDesc{on: true, codecs: keptV, rtcpMux: s.video.rtcpMux, dir: phoneVideoDir(s.video).reverse() & web}
		}
	}
	out := b.writeRTPDesc(d)
	b.rtpLast = d
	b.rtpSend, b.rtpRecv = codecs, codecs
	b.applyRTPRemote(s)
	if keptV != nil {
		b.applyRTPVideo(s.video, keptV, keptV)
	}
	b.rtpOfferOurs = false
	b.updateRoute()
	return out, nil
}

// RTPReofferWeb takes a re-offer of the phone that RTPReoffer refused
// with ErrChangesWeb (it adds or removes video) and returns the re-offer
// for the browser (a re-INVITE to it; same ICE and DTLS session). The
// browser's answer goes to WebAnswer, which returns the answer owed to
// the phone; a refusal of the browser goes to Rollback, and the phone
// gets the refusal. The audio stays as negotiated.
func (b *Bridge) RTPReofferWeb(offer []byte) (webOffer []byte, err error) {
	if err := b.lock("rtp reoffer to the web", stateActive); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	s, err := parseSession(offer, false)
	if err != nil {
		return nil, err
	}
	if intersect(s.codecs, b.rtpSend) == nil {
		return nil, mismatch("rtp reoffer", s.codecs, b.rtpSend)
	}
	video, err := b.webVideoOffer(s.video)
	if err != nil {
		return nil, err
	}
	if video.on && !b.hasVideoSender {
		if err := b.addVideoSender(true); err != nil {
			return nil, err
		}
	}
	dir := phoneDir(s)
	gathered := webrtc.GatheringCompletePromise(b.pc)
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("media: webrtc reoffer: %w", err)
	}
	if err := b.pc.SetLocalDescription(o); err != nil {
		return nil, fmt.Errorf("media: webrtc reoffer: %w", err)
	}
	sdp, err := b.waitGather(gathered)
	if err != nil {
		return nil, err
	}
	out, err := rewriteWebSDP(sdp, dir, s.ptime, video)
	if err != nil {
		return nil, err
	}
	b.webOffered, b.webOurDir = b.webCodecs, dir
	b.webVideoOffered, b.webVOurDir = nil, video.dir
	if video.on {
		b.webVideoOffered = video.codecs
	}
	b.rtpPendingS = s
	b.state = stateRTPReoffered
	return out, nil
}

// Rollback abandons the gateway's pending offer to the phone when the
// phone rejected it (a 488 or 491 to the re-INVITE, or a failed call
// attempt that will be retried elsewhere): after WebReoffer or RTPRefresh
// the bridge goes back to the session in force, after WebOffer to the
// start (WebOffer may be called again).
func (b *Bridge) Rollback() error {
	if err := b.lock("rollback", stateWebOffered, stateWebReoffered, stateRTPRefreshed, stateRTPReoffered); err != nil {
		return err
	}
	defer b.mu.Unlock()
	switch b.state {
	case stateWebOffered:
		b.state = stateIdle
	case stateRTPReoffered:
		// The browser refused the re-offer: pion forgets its offer, the
		// web leg keeps what it had.
		if err := b.settleRefusedOffer(); err != nil {
			b.log.Warn("webrtc leg: refused re-offer", "err", err)
		}
		b.webOffered, b.rtpPendingS = b.webCodecs, nil
		b.state = stateActive
	default:
		b.state = stateActive
	}
	b.rtpOffer = nil
	b.webPending, b.webPendingS = nil, nil
	return nil
}

// SetRTPPeer tells the bridge where the RTP side's signalling comes from
// (the phone's or trunk's SIP address, as the gateway sees it): from then
// on a new RTP source latches only from that address or from the one in
// the peer's SDP, never from a stranger that sends first. A phone behind
// NAT sends its media from the address its signalling comes from. Without
// it any first source may latch (RFC 4961 "comedia").
func (b *Bridge) SetRTPPeer(ip netip.Addr) { b.latch.setPeer(ip) }

// writeRTPDesc renders d with the gateway's address and port and the leg's
// o= line.
func (b *Bridge) writeRTPDesc(d *rtpDesc) []byte {
	d.addr, d.port = b.e.announce, b.pair.port
	if d.video != nil && b.vid != nil {
		d.video.port = b.vid.pair.port
	}
	return b.rtpOrigin.next(func(v uint64) []byte { return d.write(b.rtpOrigin.id, v) })
}

// phoneDir is the direction of the phone's SDP; c=0.0.0.0 (RFC 2543 hold)
// means that it receives nothing.
func phoneDir(s *session) direction {
	d := s.dir
	if !s.addr.IsValid() {
		d &^= dirRecvOnly
	}
	return d
}

// effWeb is what the browser does: its SDP's direction within what the
// gateway's SDP allowed it.
func (b *Bridge) effWeb() direction { return b.webDir & b.webOurDir.reverse() }

// effRTP is what the phone does, likewise.
func (b *Bridge) effRTP() direction {
	ours := dirSendRecv
	if b.rtpLast != nil {
		ours = b.rtpLast.dir
	}
	return b.rtpDir & ours.reverse()
}

func (b *Bridge) applyRTPRemote(s *session) {
	b.latch.setRemote(netip.AddrPortFrom(s.addr, uint16(s.port)))
	b.rtpDir = phoneDir(s)
	b.rtpRTCP = s.rtcp
	if s.ptime > 0 {
		b.rtpPtime = s.ptime
	}
	b.log.Debug("rtp leg", "remote", netip.AddrPortFrom(s.addr, uint16(s.port)), "direction", b.rtpDir.String())
}

// activate makes the negotiated state the relay's and starts the
// inactivity timeout, once.
func (b *Bridge) activate() {
	b.state = stateActive
	b.updateRoute()
	if b.relayStarted {
		return
	}
	b.relayStarted = true
	now := b.clock.Now()
	b.lastRTPOffset.Store(int64(now.Sub(b.start)))
	b.timerMu.Lock()
	defer b.timerMu.Unlock()
	b.activeSince = now
	if !b.timerStopped {
		b.inactivity = b.clock.AfterFunc(b.e.opts.InactivityTimeout, b.checkInactivity)
	}
}

func (b *Bridge) updateRoute() {
	r := buildRoute(b.webCodecs, b.rtpRecv, b.rtpSend)
	web, phone := b.effWeb(), b.effRTP()
	r.fwdToRTP = web.sends() && phone.recvs()
	r.fwdToWeb = phone.sends() && web.recvs()
	r.webSends, r.rtpSends = web.sends(), phone.sends()
	r.rtcpMux = b.rtpLast != nil && b.rtpLast.rtcpMux
	r.rtcp = b.rtpRTCP
	r.ptime = time.Duration(ptimeOr20(b.rtpPtime)) * time.Millisecond
	b.route.Store(r)
	b.updateVideoRoute()
	b.log.Debug("relay", "to_web", r.fwdToWeb, "to_rtp", r.fwdToRTP)
}

// touch records RTP from either leg at now, for the inactivity timeout.
func (b *Bridge) touch(now time.Time) { b.lastRTPOffset.Store(int64(now.Sub(b.start))) }

func ptimeOr20(p int) int {
	if p <= 0 {
		return 20
	}
	return p
}

// checkInactivity runs on the injected clock, InactivityTimeout after the
// last RTP packet from either leg.
func (b *Bridge) checkInactivity() {
	timeout := b.e.opts.InactivityTimeout
	now := b.clock.Now().Sub(b.start)
	if r := b.route.Load(); r != nil && !r.webSends && !r.rtpSends {
		// Both legs hold: no media is expected, silence is no fault.
		b.lastRTPOffset.Store(int64(now))
	}
	idle := now - time.Duration(b.lastRTPOffset.Load())
	if idle >= timeout {
		b.fail(fmt.Errorf("media: no rtp for %v: %w", idle, ErrInactive))
		return
	}
	b.timerMu.Lock()
	defer b.timerMu.Unlock()
	if !b.timerStopped {
		b.inactivity = b.clock.AfterFunc(timeout-idle, b.checkInactivity)
	}
}

// Stats returns a snapshot of the bridge's counters.
func (b *Bridge) Stats() Stats {
	now := b.clock.Now()
	s := Stats{ID: b.id, Started: b.start, Duration: now.Sub(b.start)}
	s.Web.FastPath = b.onFastPath()
	select {
	case <-b.done:
		s.Duration = b.ended.Sub(b.start)
		s.Web.FastPath = b.fastAtEnd.Load()
	default:
	}
	b.webIn.snapshot(b.start, &s.Web)
	b.webOut.snapshot(&s.Web)
	b.rtpIn.snapshot(b.start, &s.RTP)
	b.rtpOut.snapshot(&s.RTP)
	if src := b.latch.source(); src.IsValid() {
		s.RTP.Remote, s.RTP.Latched = src.String(), true
	} else if dst := b.latch.target(); dst.IsValid() {
		s.RTP.Remote = dst.String()
	}
	s.RTP.Local = b.RTPAddr().String()
	s.Web.Transport = b.transport.get()
	s.OneWayAudio = b.oneWayAudio(now)
	if v := b.vidA.Load(); v != nil {
		s.Video = v.snapshot()
	}
	return s
}

// oneWayAudio reports whether one leg has been silent for OneWayAudioAfter
// while the other sends, both being expected to send.
func (b *Bridge) oneWayAudio(now time.Time) bool {
	r := b.route.Load()
	if r == nil || !r.webSends || !r.rtpSends {
		return false
	}
	after := b.e.opts.OneWayAudioAfter
	b.timerMu.Lock()
	since := b.activeSince
	b.timerMu.Unlock()
	if since.IsZero() || now.Sub(since) < after {
		return false
	}
	flowing := func(last time.Time) bool { return !last.IsZero() && now.Sub(last) <= after }
	web, phone := flowing(b.webIn.lastPacket()), flowing(b.rtpIn.lastPacket())
	return web != phone
}
