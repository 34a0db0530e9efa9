package media

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Options configures an Engine. The zero value is usable: every field has a
// default, applied by NewEngine. Options are read once; changing them after
// NewEngine has no effect.
type Options struct {
	// PublicIP, when set, is the address announced in SDP (c= of the RTP
	// leg) and in ICE candidates (1:1 NAT: it replaces the host address),
	// so that no private address leaks to peers.
	PublicIP netip.Addr
	// BindIP is the local address of every socket: RTP pairs and ICE.
	// Default 127.0.0.1. An unspecified address (0.0.0.0) needs PublicIP.
	BindIP netip.Addr
	// RTPPorts is the inclusive range of the RTP leg's ports: RTP on even
	// ports, RTCP on the odd one above. Default 20000–29999.
	RTPPorts [2]int
	// ICEUDPPort is the one UDP port that every WebRTC leg shares (pion's
	// UDP mux: the ICE username tells calls apart). 0 picks a free port.
	// Ignored when ICEPortRange is set.
	ICEUDPPort int
	// ICETCP also serves ICE-TCP (RFC 6544): every WebRTC leg gets a
	// passive TCP host candidate on the TCP port of the same number as
	// the ICE UDP port (pion's TCP mux), so that a browser whose network
	// blocks UDP still connects. It needs the shared port: not with
	// ICEPortRange.
	ICETCP bool
	// ICETCPMaxConns bounds the open ICE-TCP connections, and
	// ICETCPMaxConnsPerIP those from one IPv4 address or IPv6 /64; a
	// connection beyond either is closed at once. Defaults
	// DefaultICETCPMaxConns and DefaultICETCPMaxConnsPerIP.
	ICETCPMaxConns      int
	ICETCPMaxConnsPerIP int
	// ICETCPFirstMessage bounds the wait for the first STUN message on a
	// new ICE-TCP connection, which names its call; default
	// DefaultICETCPFirstMessage.
	ICETCPFirstMessage time.Duration
	// ICEPortRange, when set, gives each WebRTC leg its own port from this
	// inclusive range instead of the shared ICEUDPPort.
	ICEPortRange [2]int
	// ICELite makes the gateway an ICE lite agent (RFC 8445 §2.5), which
	// suits a server with a public address.
	ICELite bool
	// NoFastPath keeps every web leg's audio on pion's packet pipeline.
	// By default (false) the audio of a leg whose selected pair is UDP
	// on the shared ICE port is encrypted, decrypted and relayed by the
	// gateway itself, from the SRTP keys of its DTLS session, at a
	// fraction of pion's CPU per packet (fastpath.go). It has no effect
	// with ICEPortRange.
	NoFastPath bool
	// Coalesce is how long the engine's media poller (Linux) waits, after
	// a wake-up that found few datagrams, before it reads its sockets
	// again, so that one wake-up reads several: fewer wake-ups and system
	// calls per relayed packet at low load, for up to this much added
	// latency on the packets that arrive during the wait. Default
	// DefaultCoalesce; negative: no wait (each datagram wakes the
	// poller); at most MaxCoalesce.
	Coalesce time.Duration
	// noBatch reads each RTP socket with a goroutine of its own and the
	// shared ICE socket a datagram a call, as on other systems than
	// Linux: for tests of that path.
	noBatch bool
	// LoopbackOnly refuses to send anything to an address outside
	// 127.0.0.0/8 and ::1, on either leg: for tests. BindIP must then be a
	// loopback address.
	LoopbackOnly bool
	// InactivityTimeout ends a bridge on which no RTP arrived from either leg
	// for this long (ErrInactive), while media is expected in at least one
	// direction. Default 30s.
	InactivityTimeout time.Duration
	// ICEFailedAfter is how long a web leg may hear nothing from its
	// browser (no media, no ICE check) before it fails and the bridge ends
	// with ErrWebFailed: the browser closed its PeerConnection, or its
	// network went away and no ICE restart came. The first 5 s of it (a
	// third, when shorter) make the leg disconnected. Default
	// DefaultICEFailedAfter.
	ICEFailedAfter time.Duration
	// DrainTime keeps a released RTP port pair bound, unused, for this long
	// before it can serve another call. Default 5s; negative closes
	// released pairs at once.
	DrainTime time.Duration
	// OneWayAudioAfter is how long one leg must stay silent, while the
	// other sends, for Stats.OneWayAudio. Default 5s.
	OneWayAudioAfter time.Duration
	// RelatchAfter, when positive, lets symmetric RTP move to a new
	// source address once the latched source has been silent this long:
	// a phone whose NAT mapping changed is heard again, but any host that
	// learns the port may then take the call's media over. Zero (the
	// default) or negative: only the phone's signalling moves the latch
	// (a new address in its SDP, or packets from that very address).
	RelatchAfter time.Duration
	// Codecs is the codec policy: the formats allowed on both legs, in the
	// order the gateway prefers them for its own offers. Default
	// DefaultCodecs().
	Codecs []Codec
	// VideoCodecs is the video policy, in the order the gateway prefers
	// them: the formats a call may carry video with, beside the audio.
	// nil: DefaultVideoCodecs(); empty: no video (m=video is answered with
	// port 0). Video formats listed in Codecs count as video too.
	VideoCodecs []Codec
	// Clock drives the inactivity timeout, drains, DTMF pacing and packet
	// arrival times. Default the system clock.
	Clock clock.Clock
	// Logger receives the package's logs and pion's (scoped with "pion").
	// Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultInactivityTimeout = 30 * time.Second
	DefaultDrainTime         = 5 * time.Second
	DefaultOneWayAudioAfter  = 5 * time.Second
	// DefaultICEFailedAfter is pion's own (5 s to disconnected, 25 s more
	// to failed): time enough for a browser on a new network to restart
	// ICE.
	DefaultICEFailedAfter = 30 * time.Second
	// DefaultCoalesce keeps the added latency's p99 well under a
	// millisecond at 100 calls (docs/performance.md).
	DefaultCoalesce = 300 * time.Microsecond
	// MaxCoalesce bounds Options.Coalesce: a wait longer than this would
	// be heard as jitter (a 20 ms audio frame's twentieth).
	MaxCoalesce = time.Millisecond

	// A browser opens one ICE-TCP connection per call, and a few more
	// while ICE tries its pairs; an office behind one NAT address holds
	// many browsers.
	DefaultICETCPMaxConns      = 2000
	DefaultICETCPMaxConnsPerIP = 100
	// DefaultICETCPFirstMessage is far above a browser's first check,
	// which follows the connect at once, and far below pion's 30 s, so
	// that idle connections cannot pile up.
	DefaultICETCPFirstMessage = 5 * time.Second
)

// withDefaults returns o with every default applied, or an error wrapping
// ErrInvalidOptions.
func (o Options) withDefaults() (Options, error) {
	if !o.BindIP.IsValid() {
		o.BindIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	o.BindIP = o.BindIP.Unmap()
	if o.PublicIP.IsValid() {
		o.PublicIP = o.PublicIP.Unmap()
	}
	if o.RTPPorts == [2]int{} {
		o.RTPPorts = [2]int{20000, 29999}
	}
	if o.InactivityTimeout <= 0 {
		o.InactivityTimeout = DefaultInactivityTimeout
	}
	if o.ICEFailedAfter <= 0 {
		o.ICEFailedAfter = DefaultICEFailedAfter
	}
	if o.DrainTime == 0 {
		o.DrainTime = DefaultDrainTime
	}
	if o.OneWayAudioAfter <= 0 {
		o.OneWayAudioAfter = DefaultOneWayAudioAfter
	}
	if o.VideoCodecs == nil {
		o.VideoCodecs = DefaultVideoCodecs()
	}
	if o.Codecs == nil {
		o.Codecs = DefaultCodecs()
	}
	if o.ICETCPMaxConns <= 0 {
		o.ICETCPMaxConns = DefaultICETCPMaxConns
	}
	if o.ICETCPMaxConnsPerIP <= 0 {
		o.ICETCPMaxConnsPerIP = DefaultICETCPMaxConnsPerIP
	}
	if o.ICETCPFirstMessage <= 0 {
		o.ICETCPFirstMessage = DefaultICETCPFirstMessage
	}
	if o.Coalesce == 0 {
		o.Coalesce = DefaultCoalesce
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	bad := func(format string, args ...any) (Options, error) {
		return o, fmt.Errorf("media: "+format+": %w", append(args, ErrInvalidOptions)...)
	}
	lo, hi := o.RTPPorts[0], o.RTPPorts[1]
	if lo < 1 || hi > 65535 || lo > hi {
		return bad("rtp port range %d-%d", lo, hi)
	}
	if lo%2 != 0 {
		lo++
	}
	if hi-lo < 1 {
		return bad("rtp port range %d-%d holds no even/odd pair", o.RTPPorts[0], hi)
	}
	if o.ICEUDPPort < 0 || o.ICEUDPPort > 65535 {
		return bad("ice udp port %d", o.ICEUDPPort)
	}
	if r := o.ICEPortRange; r != [2]int{} && (r[0] < 1 || r[1] > 65535 || r[0] > r[1]) {
		return bad("ice port range %d-%d", r[0], r[1])
	}
	if o.ICETCP && o.ICEPortRange != [2]int{} {
		return bad("ice-tcp needs the shared ice port, not a port range")
	}
	if o.BindIP.IsUnspecified() && !o.PublicIP.IsValid() {
		return bad("bind address %s needs a public address to announce", o.BindIP)
	}
	if o.PublicIP.IsValid() && o.PublicIP.IsUnspecified() {
		return bad("public address %s", o.PublicIP)
	}
	if o.PublicIP.IsValid() && o.PublicIP.Is4() != o.BindIP.Is4() {
		return bad("public address %s and bind address %s differ in family", o.PublicIP, o.BindIP)
	}
	if o.Coalesce > MaxCoalesce {
		return bad("coalesce %v above %v", o.Coalesce, MaxCoalesce)
	}
	if o.LoopbackOnly && !o.BindIP.IsLoopback() {
		return bad("loopback only with bind address %s", o.BindIP)
	}
	audio := 0
	pts := map[uint8]bool{}
	for _, c := range append(append([]Codec(nil), o.Codecs...), o.VideoCodecs...) {
		if c.Name == "" || c.ClockRate == 0 || c.PayloadType > 127 {
			return bad("codec %q/%d payload type %d", c.Name, c.ClockRate, c.PayloadType)
		}
		if pts[c.PayloadType] {
			return bad("payload type %d used twice", c.PayloadType)
		}
		pts[c.PayloadType] = true
		if !c.isDTMF() && !c.isVideo() {
			audio++
		}
	}
	if audio == 0 {
		return bad("no audio codec in the policy")
	}
	return o, nil
}

// isLoopback reports whether a may be sent to under Options.LoopbackOnly.
func isLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }
