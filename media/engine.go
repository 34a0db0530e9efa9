package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/clock"
)

// Engine owns what calls share: the RTP port pool, the ICE UDP mux and the
// pion settings. It makes one Bridge per call crossing. An Engine is safe
// for concurrent use.
type Engine struct {
	ctx      context.Context
	opts     Options
	log      *slog.Logger
	clock    clock.Clock
	announce netip.Addr // c= address of the RTP leg
	settings webrtc.SettingEngine
	mux      ice.UDPMux // nil with Options.ICEPortRange
	fast     *fastConn  // the mux's socket; nil without the fast path
	tcpMux   ice.TCPMux // nil without Options.ICETCP
	tcpLn    *tcpListener
	iceAddr  netip.AddrPort // the shared ICE port, UDP and TCP
	ports    *portPool
	// poller reads every bridge's RTP sockets (Linux); nil: each bridge
	// reads its own.
	poller *rtpPoller

	mu      sync.Mutex
	bridges map[*Bridge]struct{}
	ended   [2]Traffic // web, rtp: the bridges gone
	endedV  VideoCounts
	closed  bool
	wg      sync.WaitGroup // bridge teardowns started by the bridges themselves

	total       atomic.Uint64
	inactive    atomic.Uint64
	iceRestarts atomic.Uint64

	transportsMu sync.Mutex
	transports   map[TransportKey]uint64
}

// NewEngine checks opts, applies their defaults and binds the ICE UDP mux.
// ctx gives the engine's logs their context; its values reach pion's log
// lines too.
func NewEngine(ctx context.Context, opts Options) (*Engine, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		ctx:        ctx,
		opts:       o,
		log:        o.Logger,
		clock:      o.Clock,
		announce:   o.BindIP,
		bridges:    map[*Bridge]struct{}{},
		transports: map[TransportKey]uint64{},
	}
	if o.PublicIP.IsValid() {
		e.announce = o.PublicIP
	}
	if err := e.configurePion(); err != nil {
		if e.poller != nil {
			_ = e.poller.Close()
		}
		return nil, err
	}
	e.ports = newPortPool(o.BindIP, o.RTPPorts[0], o.RTPPorts[1], o.Clock, o.DrainTime)
	if e.mux == nil {
		// No shared ICE socket (Options.ICEPortRange): configurePion
		// did not start it.
		e.startPoller()
	}
	return e, nil
}

// startPoller starts the RTP poller (Linux, unless noBatch), with the fast
// path's ICE socket when there is one: before pion's mux reads that
// socket, since the poller then reads it for the mux.
func (e *Engine) startPoller() {
	if e.opts.noBatch {
		return
	}
	p, err := newRTPPoller(e.log, e.clock, e.fast, e.opts.Coalesce)
	if err != nil {
		e.log.Info("media: each bridge reads its rtp sockets itself", "err", err)
		return
	}
	e.poller = p
}

// configurePion fills the SettingEngine every PeerConnection of the engine
// shares: host candidates of BindIP only, no mDNS, UDP (and TCP with
// Options.ICETCP), one mux port.
// muxReadBuffer is the receive buffer asked for the shared ICE socket.
const muxReadBuffer = 4 << 20

// iceKeepalive is pion's default interval of the checks that keep a
// selected pair's NAT bindings open.
const iceKeepalive = 2 * time.Second

// iceMaxChecks is how many checks pion sends on a candidate pair before
// it gives the pair up: 10 s at its 200 ms pace (see configurePion).
const iceMaxChecks = 50

// ICE-TCP buffers per connection: packets waiting for the agent (audio is
// 50 a second), and bytes waiting for a slow TCP peer beyond which packets
// are dropped, as UDP would lose them.
const (
	tcpMuxReadPackets = 64
	tcpMuxWriteBuffer = 256 << 10
)

func (e *Engine) configurePion() error {
	o := e.opts
	s := &e.settings
	s.LoggerFactory = pionLoggers{e.ctx, e.log}
	netTypes := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if o.ICETCP {
		netTypes = append(netTypes, webrtc.NetworkTypeTCP4)
	}
	if o.BindIP.Is6() {
		netTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP6}
		if o.ICETCP {
			netTypes = append(netTypes, webrtc.NetworkTypeTCP6)
		}
	}
	s.SetNetworkTypes(netTypes)
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetIncludeLoopbackCandidate(o.BindIP.IsLoopback())
	bind := o.BindIP
	s.SetIPFilter(func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		return bind.IsUnspecified() || a.Unmap() == bind
	})
	if o.LoopbackOnly {
		s.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	s.SetLite(o.ICELite)
	// The bridge alone closes its PeerConnection, under pcCloseMu: pion
	// would close one itself when the browser's DTLS says close_notify,
	// in a goroutine of its own, and that close writes without a lock
	// what GetStats reads (learnTransport). A browser that closed its
	// PeerConnection without a BYE goes silent instead, and ICE fails
	// after ICEFailedAfter.
	s.DisableCloseByDTLS(true)
	disconnected := min(5*time.Second, o.ICEFailedAfter/3)
	s.SetICETimeouts(disconnected, o.ICEFailedAfter-disconnected, iceKeepalive)
	// pion gives up on a candidate pair after 7 unanswered checks, 1.4 s
	// at its 200 ms pace, and never checks it again, even when the
	// browser's own checks keep arriving on it (RFC 8445 §7.3.1.4 would
	// check it again). A gateway that offered (a phone calling a browser)
	// is the controlling agent: once the direct pair has failed so, it
	// nominates the browser's TURN relay at 2 s, and the call's media
	// goes through the relay for good although the direct path works (CI
	// saw it on a loaded machine). A STUN transaction lasts 39.5 s (RFC
	// 5389 §7.2.1); checks for 10 s cost a few hundred bytes per
	// unreachable pair, and only until a pair is chosen.
	s.SetICEMaxBindingRequests(iceMaxChecks)
	if o.PublicIP.IsValid() {
		// The rule rewrites the host candidates of both the UDP and the
		// TCP mux: the browser sees the announced address for each.
		err := s.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        []string{o.PublicIP.String()},
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			return fmt.Errorf("media: public address %s: %w", o.PublicIP, err)
		}
	}
	if r := o.ICEPortRange; r != [2]int{} {
		return s.SetEphemeralUDPPortRange(uint16(r[0]), uint16(r[1]))
	}
	conn, ln, err := listenICE(bind, o.ICEUDPPort, o.ICETCP)
	if err != nil {
		return err
	}
	e.iceAddr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	// Every call's SRTP arrives on this one socket: at hundreds of calls
	// the default receive buffer holds a few milliseconds and overflows
	// (the load bench saw its drops match the loss). The system caps the
	// size at net.core.rmem_max.
	_ = conn.SetReadBuffer(muxReadBuffer)
	var pconn net.PacketConn = conn
	if !o.NoFastPath {
		keys := newKeyTable(time.Now)
		e.fast = newFastConn(conn, e.log, keys, o.Clock, !o.noBatch, o.Coalesce)
		pconn = e.fast
		// The key log never leaves the process: keyTable keeps a
		// master secret until its leg takes the SRTP keys (or a
		// minute), then zeroes it.
		s.SetDTLSKeyLogWriter(keys)
	}
	e.startPoller()
	e.mux = webrtc.NewICEUDPMux(pionLoggers{e.ctx, e.log}.NewLogger("ice-mux"), pconn)
	s.SetICEUDPMux(e.mux)
	if ln != nil {
		e.tcpLn = newTCPListener(ln, o.ICETCPMaxConns, o.ICETCPMaxConnsPerIP, e.log)
		e.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener:                     e.tcpLn,
			Logger:                       pionLoggers{e.ctx, e.log}.NewLogger("ice-tcp-mux"),
			ReadBufferSize:               tcpMuxReadPackets,
			WriteBufferSize:              tcpMuxWriteBuffer,
			FirstStunBindTimeout:         o.ICETCPFirstMessage,
			AliveDurationForConnFromStun: o.ICETCPFirstMessage,
		})
		s.SetICETCPMux(e.tcpMux)
	}
	return nil
}

// ICEAddr returns the local address of the ICE port that every web leg
// shares, UDP and, with Options.ICETCP, TCP: BindIP and the port, which
// Options.ICEUDPPort names or the system picked. It is the zero AddrPort
// with Options.ICEPortRange.
func (e *Engine) ICEAddr() netip.AddrPort { return e.iceAddr }

// rtcpReportInterval paces the web leg's RTCP sender and receiver reports:
// RFC 3550's recommended minimum (§6.2) and what browsers use for audio
// (libwebrtc's audio report interval), rather than pion's 1 s, which is
// meant for video. Each report wakes a timer, encrypts and sends a packet
// for every call: at hundreds of calls that is a tenth of a core with no
// media flowing.
const rtcpReportInterval = 5 * time.Second

// newPeerConnection makes the PeerConnection of one web leg. Each has an API
// of its own because the MediaEngine holds exactly the codecs the call
// negotiated on the other leg: no transcoding, so the browser must be
// offered or answered nothing else.
func (e *Engine) newPeerConnection(codecs, video []Codec) (*webrtc.PeerConnection, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
		var ch uint16
		if c.channels() > 1 {
			ch = c.channels()
		}
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:    "audio/" + c.Name,
				ClockRate:   c.ClockRate,
				Channels:    ch,
				SDPFmtpLine: c.Fmtp,
			},
			PayloadType: webrtc.PayloadType(c.PayloadType),
		}, webrtc.RTPCodecTypeAudio)
		if err != nil {
			return nil, fmt.Errorf("media: codec %s: %w", c.rtpmap(), err)
		}
	}
	// Sender and receiver reports only: audio needs no NACK, TWCC or
	// simulcast machinery.
	ir := &interceptor.Registry{}
	err := webrtc.ConfigureRTCPReportsWithOptions(ir,
		[]report.ReceiverOption{report.ReceiverInterval(rtcpReportInterval)},
		report.SenderInterval(rtcpReportInterval))
	if err != nil {
		return nil, err
	}
	if err := registerVideo(m, ir, webVideoCodecs(codecs, video)); err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(e.settings), webrtc.WithInterceptorRegistry(ir))
	return api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
}

// webVideoCodecs numbers the video policy for the web leg: the policy's
// payload types, but those the audio codecs of the call use are moved to
// free dynamic numbers (one BUNDLE transport demultiplexes both streams).
func webVideoCodecs(audio, video []Codec) []Codec {
	used := map[uint8]bool{}
	for _, c := range audio {
		used[c.PayloadType] = true
	}
	out := make([]Codec, 0, len(video))
	for _, c := range video {
		if used[c.PayloadType] {
			for pt := uint8(96); pt < 128; pt++ {
				if !used[pt] {
					c.PayloadType = pt
					break
				}
			}
		}
		used[c.PayloadType] = true
		out = append(out, c)
	}
	return out
}

// videoFeedback is what the web leg says it takes for video: keyframe
// requests, and the browser's congestion control terminated by the
// gateway (transport-wide feedback from pion's interceptor, REMB when the
// SIP side caps the bitrate). No NACK: the gateway keeps no history to
// resend from, and the phone's leg has none either.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack", Parameter: "pli"},
}

// registerVideo puts the video codecs, the transport-cc header extension
// and its interceptor in a web leg's API: for video only, so that audio
// streams go on without per-packet feedback.
func registerVideo(m *webrtc.MediaEngine, ir *interceptor.Registry, video []Codec) error {
	if len(video) == 0 {
		return nil
	}
	for _, c := range video {
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:     "video/" + c.Name,
				ClockRate:    c.ClockRate,
				SDPFmtpLine:  c.Fmtp,
				RTCPFeedback: videoFeedback,
			},
			PayloadType: webrtc.PayloadType(c.PayloadType),
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return fmt.Errorf("media: codec %s: %w", c.rtpmap(), err)
		}
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("media: transport-cc: %w", err)
	}
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("media: transport-cc: %w", err)
	}
	ir.Add(tw)
	return nil
}

// NewBridge makes the bridge of one call crossing and binds its RTP port
// pair. The bridge ends when ctx is done, on Close, or by itself
// (inactivity, WebRTC failure): Done tells which. id names it in logs and
// Stats.
func (e *Engine) NewBridge(ctx context.Context, id string) (*Bridge, error) {
	return e.NewBridgeWith(ctx, id, BridgeOptions{})
}

// BridgeOptions configure one bridge. The zero value takes the engine's
// policy.
type BridgeOptions struct {
	// Codecs, when not nil, is the codec policy of this bridge in place
	// of Options.Codecs and Options.VideoCodecs (a trunk's own list): it
	// filters what the RTP leg is offered, and orders it (the policy's
	// order, not the browser's). Audio and video formats may be mixed; a
	// list without video formats makes the call audio-only. It needs one
	// audio codec.
	Codecs []Codec
}

// NewBridgeWith is NewBridge with options of the bridge's own.
func (e *Engine) NewBridgeWith(ctx context.Context, id string, o BridgeOptions) (*Bridge, error) {
	audio, video := e.opts.Codecs, e.opts.VideoCodecs
	if o.Codecs != nil {
		audio, video = splitMedia(o.Codecs)
		n := 0
		for _, c := range audio {
			if c.Name == "" || c.ClockRate == 0 || c.PayloadType > 127 {
				return nil, fmt.Errorf("media: bridge codec %q/%d payload type %d: %w", c.Name, c.ClockRate, c.PayloadType, ErrInvalidOptions)
			}
			if !c.isDTMF() {
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("media: bridge codecs without audio: %w", ErrInvalidOptions)
		}
	} else {
		a, v := splitMedia(audio)
		audio, video = a, append(v, video...)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("media: engine: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pair, err := e.ports.alloc()
	if err != nil {
		return nil, err
	}
	b := newBridge(e, id, pair)
	b.audioPolicy, b.videoPolicy, b.ordered = audio, video, o.Codecs != nil
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.ports.release(pair)
		return nil, fmt.Errorf("media: engine: %w", ErrClosed)
	}
	// Registered and started under e.mu, so that Close sees it whole.
	e.bridges[b] = struct{}{}
	b.run(ctx)
	e.total.Add(1)
	return b, nil
}

func (e *Engine) remove(b *Bridge) {
	st := b.Stats() // final: the bridge's goroutines have stopped
	e.mu.Lock()
	if _, ok := e.bridges[b]; ok {
		delete(e.bridges, b)
		e.ended[0].add(&st.Web)
		e.ended[1].add(&st.RTP)
		e.endedV.add(st.Video)
	}
	e.mu.Unlock()
}

// goTeardown runs f in a goroutine that Close waits for, unless the engine
// is closing, in which case Close tears every bridge down itself.
func (e *Engine) goTeardown(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	n := len(e.bridges)
	// Under e.mu, so that a bridge is counted either live or ended, and
	// the sums never go back.
	web, rtp, video := e.ended[0], e.ended[1], e.endedV
	for b := range e.bridges {
		st := b.Stats()
		web.add(&st.Web)
		rtp.add(&st.RTP)
		video.add(st.Video)
	}
	e.mu.Unlock()
	inUse, draining := e.ports.counts()
	st := EngineStats{
		Web:           web,
		RTP:           rtp,
		Bridges:       n,
		BridgesTotal:  e.total.Load(),
		Inactive:      e.inactive.Load(),
		ICERestarts:   e.iceRestarts.Load(),
		PortsInUse:    inUse,
		PortsDraining: draining,
		Video:         video,
	}
	e.transportsMu.Lock()
	st.Transports = make(map[TransportKey]uint64, len(e.transports))
	for k, v := range e.transports {
		st.Transports[k] = v
	}
	e.transportsMu.Unlock()
	if e.tcpLn != nil {
		st.ICETCPConns, st.ICETCPRefused = e.tcpLn.counts()
	}
	if e.fast != nil {
		st.FastPath = e.fast.stats()
	}
	st.Batch = e.batchStats()
	return st
}

// countTransport counts a web leg that connected over k.
func (e *Engine) countTransport(k TransportKey) {
	e.transportsMu.Lock()
	e.transports[k]++
	e.transportsMu.Unlock()
}

// Close closes every bridge, the ICE mux and every draining port, and
// returns when all of the engine's goroutines have stopped.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	bridges := make([]*Bridge, 0, len(e.bridges))
	for b := range e.bridges {
		bridges = append(bridges, b)
	}
	e.mu.Unlock()
	for _, b := range bridges {
		_ = b.Close()
	}
	e.wg.Wait()
	var err error
	if e.poller != nil {
		err = e.poller.Close()
	}
	if e.mux != nil {
		err = errors.Join(err, e.mux.Close())
	}
	if e.tcpMux != nil {
		// Waits for the mux's goroutines, the accept loop included.
		err = errors.Join(err, e.tcpMux.Close())
	}
	e.ports.close()
	return err
}
