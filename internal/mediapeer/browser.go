// Package mediapeer is the media end of the peers of a test: a Browser,
// a pion PeerConnection as a browser's WebRTC stack, and a Phone, plain
// RTP on a UDP socket as a desk phone. Both live on 127.0.0.1 only, speak
// SDP as bytes and know nothing of SIP: a test carries their SDP in its
// own signalling (an in-memory SIP network, a WebSocket, or a direct call
// into the media engine). Each belongs to one test, fails it when
// something it waits for does not come, and is closed, with its
// goroutines, when the test ends. A LeanBrowser, a browser's media end
// from pion's ICE, DTLS and SRTP parts without a PeerConnection, is for
// load generators that play many browsers: it returns errors rather than
// failing a test, and its owner closes it.
package mediapeer

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// DefaultWait bounds every wait of a Browser whose options set none, and
// of the helpers that move audio.
const DefaultWait = 10 * time.Second

// LoopbackOnly makes s gather host candidates on 127.0.0.1 over UDP only,
// and accept only loopback candidates from the far end: a test peer never
// sends a packet off the machine, whatever the SDP it is given says.
func LoopbackOnly(s *webrtc.SettingEngine) {
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(true)
	s.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	s.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
}

// BrowserOptions configure a Browser. The zero value offers PCMU and
// telephone-event and sends PCMU.
type BrowserOptions struct {
	// Codecs are the audio codecs the browser offers and accepts, in
	// order of preference; nil: PCMU (0) and telephone-event/8000 (126).
	Codecs []webrtc.RTPCodecParameters
	// Track is what the browser sends with, for a test that writes its
	// own packets on it; nil: a PCMU track, which SendPCMU and SendAudio
	// write on.
	Track webrtc.TrackLocal
	// Signal, when set, gets a token (when it has room) for every packet
	// the browser receives, and Packets gets nothing: nothing is parsed
	// or allocated per packet, for benchmarks.
	Signal chan struct{}
	// LoggerFactory receives pion's logs; nil: pion's default.
	LoggerFactory logging.LoggerFactory
	// Wait bounds ICE gathering and WaitConnected; zero: DefaultWait.
	Wait time.Duration
	// Network, when set, replaces LoopbackOnly's UDP4: TCP4 alone plays
	// a browser whose network blocks UDP, which reaches the far end over
	// ICE-TCP (pion dials the passive TCP candidates it is given).
	Network []webrtc.NetworkType
	// ICEServers are the STUN and TURN servers the browser gathers
	// with; RelayOnly keeps it to their relay candidates (ICE transport
	// policy "relay"), as a browser on a network that lets nothing
	// through but its TURN server.
	ICEServers []webrtc.ICEServer
	RelayOnly  bool
	// Video, when set, are the video codecs the browser offers and
	// accepts, with a video track that sends the first of them
	// (SendVideo); what it receives of video comes on VideoPackets, and
	// the keyframe requests (PLI, FIR) for what it sends are counted.
	Video []webrtc.RTPCodecParameters
	// VideoLater keeps the video track out of the first offer or answer:
	// AddVideo adds it, for a re-offer that adds video to a call.
	VideoLater bool
	// AnswerDTLSRole is the DTLS role the browser takes when it answers
	// an offer of setup:actpass; zero: pion's default, the client
	// (setup:active).
	AnswerDTLSRole webrtc.DTLSRole
	// ICEConn, when set, is the browser's one UDP socket for ICE (a UDP
	// mux on it gives its host candidate): a test wraps a loopback
	// socket to lose or delay what the browser receives. The browser
	// closes it when the test ends.
	ICEConn net.PacketConn
}

// Browser is a pion PeerConnection with one audio track each way, on
// loopback only.
type Browser struct {
	// PC is the PeerConnection, for what the helpers do not cover.
	PC *webrtc.PeerConnection

	t         testing.TB
	wait      time.Duration
	pcmu      *webrtc.TrackLocalStaticRTP // nil with BrowserOptions.Track
	seq       uint16                      // of SendPCMU
	got       chan *rtp.Packet
	received  atomic.Int64
	connected chan struct{}

	video     *webrtc.TrackLocalStaticRTP
	wg        *sync.WaitGroup // the goroutines that end with the browser
	videoGot  chan *rtp.Packet
	keyframes atomic.Int64
	remb      atomic.Uint64
}

// DefaultCodecs are what a Browser offers when its options name none.
func DefaultCodecs() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
	}
}

// NewBrowser makes a browser for t; it is closed when t ends.
func NewBrowser(t testing.TB, o BrowserOptions) *Browser {
	t.Helper()
	codecs := o.Codecs
	if codecs == nil {
		codecs = DefaultCodecs()
	}
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatalf("browser: codec %s: %v", c.MimeType, err)
		}
	}
	for _, c := range o.Video {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatalf("browser: codec %s: %v", c.MimeType, err)
		}
	}
	var s webrtc.SettingEngine
	if o.LoggerFactory != nil {
		s.LoggerFactory = o.LoggerFactory
	}
	LoopbackOnly(&s)
	if o.AnswerDTLSRole != 0 {
		if err := s.SetAnsweringDTLSRole(o.AnswerDTLSRole); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	if o.Network != nil {
		s.SetNetworkTypes(o.Network)
	}
	var mux ice.UDPMux
	if o.ICEConn != nil {
		lf := s.LoggerFactory
		if lf == nil {
			lf = logging.NewDefaultLoggerFactory()
		}
		mux = webrtc.NewICEUDPMux(lf.NewLogger("ice-mux"), o.ICEConn)
		s.SetICEUDPMux(mux)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s), webrtc.WithInterceptorRegistry(ir))
	cfg := webrtc.Configuration{ICEServers: o.ICEServers}
	if o.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{PC: pc, t: t, wait: o.Wait, got: make(chan *rtp.Packet, 512), connected: make(chan struct{})}
	if b.wait <= 0 {
		b.wait = DefaultWait
	}
	track := o.Track
	if track == nil {
		b.pcmu, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "browser")
		if err != nil {
			t.Fatal(err)
		}
		track = b.pcmu
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// RTCP from the far end: read so that pion's interceptors run.
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	})
	b.videoGot = make(chan *rtp.Packet, 512)
	if len(o.Video) > 0 {
		b.video, err = webrtc.NewTrackLocalStaticRTP(o.Video[0].RTPCodecCapability, "video", "browser")
		if err != nil {
			t.Fatal(err)
		}
		b.wg = &wg
		if !o.VideoLater {
			b.AddVideo()
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			b.receiveVideo(tr)
			return
		}
		b.receive(tr, o.Signal)
	})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(b.connected) })
		}
	})
	t.Cleanup(func() {
		_ = pc.GracefulClose()
		wg.Wait()
		if mux != nil {
			_ = mux.Close() // and ICEConn with it
		}
	})
	return b
}

// receive reads the far end's track until it ends.
func (b *Browser) receive(tr *webrtc.TrackRemote, signal chan struct{}) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil && (n == 0 || err == io.EOF) {
			return
		}
		b.received.Add(1)
		if signal != nil {
			select {
			case signal <- struct{}{}:
			default:
			}
			continue
		}
		p := &rtp.Packet{}
		if p.Unmarshal(append([]byte(nil), buf[:n]...)) == nil {
			select {
			case b.got <- p:
			default: // the test reads none, or too few: it counts
			}
		}
	}
}

// AddVideo adds the video track (BrowserOptions.Video): the next offer
// carries it.
func (b *Browser) AddVideo() {
	b.t.Helper()
	vs, err := b.PC.AddTrack(b.video)
	if err != nil {
		b.t.Fatal(err)
	}
	b.wg.Go(func() {
		for {
			pkts, _, err := vs.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p := p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					b.keyframes.Add(1)
				case *rtcp.ReceiverEstimatedMaximumBitrate:
					b.remb.Store(uint64(p.Bitrate))
				}
			}
		}
	})
}

// receiveVideo reads the far end's video track until it ends.
func (b *Browser) receiveVideo(tr *webrtc.TrackRemote) {
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			if err == io.EOF {
				return
			}
			continue
		}
		select {
		case b.videoGot <- p:
		default:
		}
	}
}

// SendVideo writes one packet on the video track (BrowserOptions.Video).
func (b *Browser) SendVideo(p *rtp.Packet) {
	b.t.Helper()
	if b.video == nil {
		b.t.Fatal("browser: SendVideo needs BrowserOptions.Video")
	}
	if err := b.video.WriteRTP(p); err != nil {
		b.t.Fatalf("browser: send video: %v", err)
	}
}

// VideoPackets returns the video packets the browser receives.
func (b *Browser) VideoPackets() <-chan *rtp.Packet { return b.videoGot }

// KeyframeRequests returns how many PLI and FIR the browser got for the
// video it sends.
func (b *Browser) KeyframeRequests() int64 { return b.keyframes.Load() }

// REMB returns the bitrate of the last REMB the browser got for the video
// it sends (bit/s), 0 before any.
func (b *Browser) REMB() uint64 { return b.remb.Load() }

// RequestKeyframe sends a PLI for the video stream ssrc it receives, as a
// browser's decoder does when it lost a frame.
func (b *Browser) RequestKeyframe(ssrc uint32) {
	b.t.Helper()
	if err := b.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		b.t.Fatalf("browser: pli: %v", err)
	}
}

// Offer returns the browser's offer, with every candidate.
func (b *Browser) Offer() []byte {
	b.t.Helper()
	o, err := b.PC.CreateOffer(nil)
	if err != nil {
		b.t.Fatalf("browser: offer: %v", err)
	}
	return b.gather(o)
}

// RestartOffer returns an offer that restarts ICE (new ICE credentials,
// the same DTLS session), with every candidate: what a browser sends after
// a network change, or after RTCPeerConnection.restartIce().
func (b *Browser) RestartOffer() []byte {
	b.t.Helper()
	o, err := b.PC.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		b.t.Fatalf("browser: ice restart offer: %v", err)
	}
	return b.gather(o)
}

// Answer takes the far end's offer and returns the browser's answer,
// with every candidate.
func (b *Browser) Answer(offer []byte) []byte {
	b.t.Helper()
	b.SetRemote(webrtc.SDPTypeOffer, offer)
	a, err := b.PC.CreateAnswer(nil)
	if err != nil {
		b.t.Fatalf("browser: answer: %v", err)
	}
	return b.gather(a)
}

// SetAnswer takes the far end's answer to the browser's offer.
func (b *Browser) SetAnswer(answer []byte) {
	b.t.Helper()
	b.SetRemote(webrtc.SDPTypeAnswer, answer)
}

// SetRemote sets the far end's description.
func (b *Browser) SetRemote(typ webrtc.SDPType, sdp []byte) {
	b.t.Helper()
	if err := b.PC.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: string(sdp)}); err != nil {
		b.t.Fatalf("browser: remote %s: %v\n%s", typ, err, sdp)
	}
}

// gather sets desc as the local description and returns it with every
// candidate once ICE has gathered: SIP has no trickle ICE.
func (b *Browser) gather(desc webrtc.SessionDescription) []byte {
	b.t.Helper()
	done := webrtc.GatheringCompletePromise(b.PC)
	if err := b.PC.SetLocalDescription(desc); err != nil {
		b.t.Fatalf("browser: local %s: %v", desc.Type, err)
	}
	select {
	case <-done:
	case <-time.After(b.wait):
		b.t.Fatalf("browser: ICE gathering did not complete within %v", b.wait)
	}
	return []byte(b.PC.LocalDescription().SDP)
}

// WaitConnected waits until ICE and DTLS are up.
func (b *Browser) WaitConnected() {
	b.t.Helper()
	select {
	case <-b.connected:
	case <-time.After(b.wait):
		b.t.Fatalf("browser: not connected within %v (state %s)", b.wait, b.PC.ConnectionState())
	}
}

// SelectedPair returns the candidate pair ICE selected, the browser's
// candidate first; it fails the test before the browser is connected.
func (b *Browser) SelectedPair() (local, remote webrtc.ICECandidate) {
	b.t.Helper()
	p, err := b.PC.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil {
		b.t.Fatalf("browser: no selected candidate pair (%v)", err)
	}
	return *p.Local, *p.Remote
}

// SendPCMU writes one PCMU packet, numbered after the last one it wrote.
// Not with BrowserOptions.Track.
func (b *Browser) SendPCMU(payload []byte) {
	b.t.Helper()
	if b.pcmu == nil {
		b.t.Fatal("browser: SendPCMU needs the browser's own track")
	}
	b.seq++
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: b.seq, Timestamp: uint32(b.seq) * 160}, Payload: payload}
	if err := b.pcmu.WriteRTP(p); err != nil {
		b.t.Fatalf("browser: send: %v", err)
	}
}

// SendAudio sends PCMU every 20 ms until stop is closed (500 packets at
// the most). It may run on a goroutine of its own: it fails nothing.
// Not with BrowserOptions.Track.
func (b *Browser) SendAudio(stop <-chan struct{}) {
	if b.pcmu == nil {
		return
	}
	payload := bytes.Repeat([]byte{0x7f}, 160)
	every20ms(stop, func(seq uint16) {
		_ = b.pcmu.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160}, Payload: payload})
	})
}

// Packets returns the packets the browser receives, parsed. A packet
// that finds the channel full is dropped (but counted by Received).
func (b *Browser) Packets() <-chan *rtp.Packet { return b.got }

// Received returns how many packets the browser has received.
func (b *Browser) Received() int64 { return b.received.Load() }

// every20ms calls send with 1, 2, … every 20 ms, 500 times at the most,
// until stop is closed.
func every20ms(stop <-chan struct{}, send func(seq uint16)) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(1); seq <= 500; seq++ {
		send(seq)
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
