package media

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// ptMap maps the payload types that may arrive on one leg to the numbers
// the other leg expects. Arrays, not maps: it is read for every packet.
type ptMap struct {
	out  [128]uint8 // outgoing payload type + 1; 0 means not relayed
	rate [128]uint32
	dtmf [128]bool
	// known marks every payload type negotiated on the incoming leg, relayed
	// or not; latching only trusts those.
	known [128]bool
}

// route is the negotiated state the relay reads for every packet. It is
// immutable: each negotiation builds a new one and swaps it in atomically.
type route struct {
	toWeb ptMap // keyed by payload types arriving on the RTP leg
	toRTP ptMap // keyed by payload types arriving on the web leg

	fwdToWeb bool // the phone sends and the browser receives
	fwdToRTP bool // the browser sends and the phone receives

	// rtcpMux is set when RTCP shares the RTP socket on the RTP leg;
	// else rtcp is the phone's RTCP address from its SDP.
	rtcpMux bool
	rtcp    netip.AddrPort
	// dtmf is the telephone-event codec (phone's numbering) for SendDTMF,
	// at the clock rate of the first audio codec; dtmfOK is false without
	// one.
	dtmf   Codec
	dtmfOK bool
	// ptime is the packet duration on the RTP leg, used to pace generated
	// telephone-events and to bridge timestamps across source changes.
	ptime time.Duration
	// webSends and rtpSends tell whether each peer is expected to send
	// (for the one-way-audio flag and the inactivity timeout).
	webSends, rtpSends bool
}

// buildRoute maps payload types between the legs by format: web lists the
// codecs of the web leg (one numbering, JSEP), rtpRecv the numbers the phone
// may send (the gateway's SDP first, the phone's next), rtpSend the numbers
// the phone expects (its own SDP).
func buildRoute(web, rtpRecv, rtpSend []Codec) *route {
	r := &route{}
	for _, c := range web {
		r.toRTP.known[c.PayloadType] = true
		if o, ok := find(rtpSend, c); ok {
			r.toRTP.out[c.PayloadType] = o.PayloadType + 1
			r.toRTP.rate[c.PayloadType] = c.ClockRate
			r.toRTP.dtmf[c.PayloadType] = c.isDTMF()
		}
	}
	for _, c := range rtpRecv {
		if r.toWeb.known[c.PayloadType] {
			continue // the gateway's numbering wins over the phone's
		}
		r.toWeb.known[c.PayloadType] = true
		if o, ok := find(web, c); ok {
			r.toWeb.out[c.PayloadType] = o.PayloadType + 1
			r.toWeb.rate[c.PayloadType] = c.ClockRate
			r.toWeb.dtmf[c.PayloadType] = c.isDTMF()
		}
	}
	for _, c := range rtpSend {
		if c.isDTMF() {
			continue
		}
		if _, ok := find(web, c); !ok {
			continue
		}
		if d, ok := dtmfFor(rtpSend, c.ClockRate); ok {
			r.dtmf, r.dtmfOK = d, true
		}
		break
	}
	return r
}

// outStream keeps one outgoing RTP stream continuous: one SSRC, sequence
// numbers without jumps and timestamps that keep running, whatever the
// sources behind it do (early media from one address then the answer from
// another, a re-INVITE to a new media server, generated telephone-events).
// Its mutex also serialises the writes of the stream.
type outStream struct {
	mu   sync.Mutex
	ssrc uint32 // for the RTP leg; the web leg's comes from pion

	started bool
	inSSRC  uint32
	seqOff  uint16
	tsOff   uint32
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
	rate    uint32 // clock rate of the last packet relayed, for RTCP SR
	marker  bool   // next packet starts a new source: set M
	reset   bool   // treat the next packet as a new source even with the same SSRC

	buf [1500]byte // marshal buffer for the RTP leg
}

// maxFirstSeq bounds a stream's random first sequence number to the lower
// half of the space. An SRTP receiver takes the rollover counter as 0 at
// the first packet it gets (RFC 3711 §3.3.1): were the stream's first
// packets lost across a wrap (the gateway's DTLS done, the browser's still
// waiting for a lost flight), every later packet would fail to decrypt.
// From below 2^15 the first wrap is 32,768 packets (11 minutes of 20 ms
// audio) away.
const maxFirstSeq = 1 << 15

func newOutStream() *outStream {
	return &outStream{ssrc: rand.Uint32(), lastSeq: uint16(rand.N(maxFirstSeq)), lastTS: rand.Uint32()}
}

// rewrite maps h onto the stream. rate is the clock rate of the packet's
// payload format and frame the duration of one packet, used to leave a gap
// in the timestamps when the source changes. Called with s.mu held.
func (s *outStream) rewrite(h *rtp.Header, rate uint32, frame time.Duration, now time.Time) {
	if !s.started || h.SSRC != s.inSSRC || s.reset {
		gap := uint32(frame.Seconds() * float64(rate))
		if s.started && !s.lastAt.IsZero() {
			if el := uint32(now.Sub(s.lastAt).Seconds() * float64(rate)); el > gap {
				gap = el
			}
		}
		if !s.started {
			gap = 0
		}
		s.seqOff = s.lastSeq + 1 - h.SequenceNumber
		s.tsOff = s.lastTS + gap - h.Timestamp
		s.inSSRC = h.SSRC
		s.marker = s.started
		s.started = true
		s.reset = false
	}
	if rate > 0 {
		s.rate = rate
	}
	h.SequenceNumber += s.seqOff
	h.Timestamp += s.tsOff
	if s.marker {
		h.Marker = true
		s.marker = false
	}
	if int16(h.SequenceNumber-s.lastSeq) > 0 {
		s.lastSeq = h.SequenceNumber
		s.lastTS = h.Timestamp
		s.lastAt = now
	}
}

// next reserves one sequence number for a packet the gateway makes itself
// (telephone-event) and returns it with the timestamp "now" on the
// stream's clock. The relayed packets after it shift by one so that
// numbers never collide. Called with s.mu held.
func (s *outStream) next(rate uint32, now time.Time) (seq uint16, ts uint32) {
	ts = s.lastTS
	if s.started && !s.lastAt.IsZero() {
		ts += uint32(now.Sub(s.lastAt).Seconds() * float64(rate))
	}
	s.lastSeq++
	s.seqOff++
	if !s.started {
		s.started = true
		s.reset = true // the first relayed packet will align itself
	}
	s.lastTS, s.lastAt = ts, now
	return s.lastSeq, ts
}

// stripForRelay removes what belongs to the incoming leg only: header
// extensions (their ids were negotiated there) and padding.
func stripForRelay(p *rtp.Packet) {
	p.Header.Extension = false
	p.Header.Extensions = p.Header.Extensions[:0]
	p.Header.ExtensionProfile = 0
	p.Header.Padding = false
	p.Header.PaddingSize = 0
	p.PaddingSize = 0
}

// isRTCP reports whether a datagram on an rtcp-mux socket is RTCP
// (RFC 5761 §4: payload types 64–95 with the marker bit are RTCP).
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}
