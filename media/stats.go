package media

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a bridge's media counters, for logs, call records
// and metrics. It is a plain value: the gateway may keep it after the bridge
// is gone.
type Stats struct {
	// ID is the bridge's id as given to NewBridge.
	ID string `json:"id"`
	// Started is when the bridge was made (injected clock).
	Started time.Time `json:"started"`
	// Duration is the time since Started, or the bridge's lifetime once it
	// has ended.
	Duration time.Duration `json:"duration_ns"`
	// Web is the WebRTC (browser) leg.
	Web LegStats `json:"web"`
	// RTP is the plain RTP (phone, trunk) leg.
	RTP LegStats `json:"rtp"`
	// OneWayAudio is set while one leg has been silent for longer than
	// Options.OneWayAudioAfter although the other is sending and nothing
	// (hold) says that it should be silent.
	OneWayAudio bool `json:"one_way_audio"`
	// Video counts the call's video, zero when it has none.
	Video VideoCounts `json:"video"`
}

// LegStats counts one leg of a bridge. "In" is what the peer on that leg
// sent to the gateway; "Out" is what the gateway sent to it. Bytes count
// RTP headers and payload (after SRTP decryption on the web leg).
type LegStats struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	// RTCPIn counts RTCP packets from the peer (RTP leg only: pion
	// terminates RTCP on the web leg).
	RTCPIn uint64 `json:"rtcp_in,omitempty"`
	// Lost is the cumulative number of packets lost from the peer, from
	// sequence number gaps (RFC 3550 §6.4.1); duplicates may make it lag.
	Lost int64 `json:"lost"`
	// Jitter is the interarrival jitter of the peer's stream (RFC 3550
	// A.8), in milliseconds.
	Jitter float64 `json:"jitter_ms"`
	// FirstPacket is the time from the bridge's start to the first RTP
	// packet from the peer; zero until one arrives.
	FirstPacket time.Duration `json:"first_packet_ns"`
	// Dropped counts packets from the peer that were not relayed.
	Dropped Drops `json:"dropped"`
	// Remote is where the leg's RTP goes (RTP leg): the source address
	// it latched to, once the peer sent, else the address of the peer's
	// SDP; Latched tells which. Local is the gateway's RTP address.
	Remote  string `json:"remote,omitempty"`
	Latched bool   `json:"latched,omitempty"`
	Local   string `json:"local,omitempty"`
	// Transport is how the media travels (web leg), once ICE and DTLS
	// are up; nil before.
	Transport *Transport `json:"transport,omitempty"`
	// FastPath tells that the gateway relays the web leg's audio itself,
	// with the keys of its DTLS session, rather than through pion's
	// packet pipeline (Options.NoFastPath; the leg's selected pair must
	// be UDP on the shared ICE port): now, or, once the bridge has
	// closed, when it closed. An operator who sees it false on a UDP leg
	// is paying pion's CPU per packet for that call.
	FastPath bool `json:"fast_path,omitempty"`
}

// Drops counts packets not relayed, by cause.
type Drops struct {
	// Source: from an address other than the latched one (RTP leg).
	Source uint64 `json:"source"`
	// PayloadType: a payload type that was not negotiated on both legs.
	PayloadType uint64 `json:"payload_type"`
	// Direction: relaying is off in that direction (hold, sendonly,
	// inactive), or the other leg is not ready yet.
	Direction uint64 `json:"direction"`
	// Malformed: not an RTP packet.
	Malformed uint64 `json:"malformed"`
	// Failed: the write towards the other leg failed.
	Failed uint64 `json:"failed"`
}

// dropCause indexes recvStats.drops; the order is that of Drops.
type dropCause int

const (
	dropSource dropCause = iota
	dropPayloadType
	dropDirection
	dropMalformed
	dropFailed
	numDropCauses
)

// recvStats is the receive side of one leg: counters, RFC 3550 A.1 sequence
// accounting and A.8 jitter. It is written by the leg's reader goroutine and
// read by Stats: one uncontended lock per relayed packet, none for drops and
// RTCP, which are atomic counters.
type recvStats struct {
	drops [numDropCauses]atomic.Uint64
	rtcp  atomic.Uint64

	mu      sync.Mutex
	packets uint64
	bytes   uint64
	first   time.Time
	last    time.Time

	// Sequence accounting of the current source; lostBefore keeps what
	// earlier sources lost.
	haveSeq    bool
	ssrc       uint32
	baseSeq    uint32
	maxSeq     uint16
	cycles     uint32
	received   uint64
	lostBefore int64

	// Jitter, in timestamp units of rate.
	haveTransit bool
	transit     int64
	jitter      float64
	rate        uint32
}

// packet accounts an RTP packet of size bytes that arrived at now. rate is
// the clock rate of its payload type, 0 for packets (telephone-event) that
// must stay out of the jitter estimate.
func (s *recvStats) packet(ssrc uint32, seq uint16, ts uint32, size int, rate uint32, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packets++
	s.bytes += uint64(size)
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	if !s.haveSeq || ssrc != s.ssrc {
		s.lostBefore += s.lostLocked()
		s.haveSeq, s.ssrc = true, ssrc
		s.baseSeq, s.maxSeq, s.cycles, s.received = uint32(seq), seq, 0, 0
		s.haveTransit = false
	}
	s.received++
	if d := int16(seq - s.maxSeq); d > 0 {
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = seq
	}
	if rate == 0 {
		return
	}
	if rate != s.rate {
		s.rate, s.haveTransit, s.jitter = rate, false, 0
	}
	arrival := now.UnixNano() * int64(rate) / int64(time.Second)
	transit := arrival - int64(ts)
	if s.haveTransit {
		d := transit - s.transit
		if d < 0 {
			d = -d
		}
		s.jitter += (float64(d) - s.jitter) / 16
	}
	s.transit, s.haveTransit = transit, true
}

func (s *recvStats) lostLocked() int64 {
	if !s.haveSeq {
		return 0
	}
	expected := int64(s.cycles) + int64(s.maxSeq) - int64(s.baseSeq) + 1
	lost := expected - int64(s.received)
	if lost < 0 {
		lost = 0
	}
	return lost
}

func (s *recvStats) drop(c dropCause) { s.drops[c].Add(1) }

func (s *recvStats) addRTCP() { s.rtcp.Add(1) }

// lastPacket returns when the last RTP packet arrived (zero: never).
func (s *recvStats) lastPacket() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *recvStats) snapshot(start time.Time, l *LegStats) {
	l.RTCPIn = s.rtcp.Load()
	l.Dropped = Drops{
		Source:      s.drops[dropSource].Load(),
		PayloadType: s.drops[dropPayloadType].Load(),
		Direction:   s.drops[dropDirection].Load(),
		Malformed:   s.drops[dropMalformed].Load(),
		Failed:      s.drops[dropFailed].Load(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l.PacketsIn, l.BytesIn = s.packets, s.bytes
	l.Lost = s.lostBefore + s.lostLocked()
	if s.rate > 0 {
		l.Jitter = s.jitter * 1000 / float64(s.rate)
	}
	if !s.first.IsZero() {
		l.FirstPacket = s.first.Sub(start)
	}
}

// sendStats counts what the gateway sent on a leg, without a lock.
type sendStats struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

func (s *sendStats) add(size int) {
	s.packets.Add(1)
	s.bytes.Add(uint64(size))
}

func (s *sendStats) snapshot(l *LegStats) {
	l.PacketsOut, l.BytesOut = s.packets.Load(), s.bytes.Load()
}

// EngineStats counts an Engine's resources, for metrics.
type EngineStats struct {
	// Bridges is the number of open bridges.
	Bridges int `json:"bridges"`
	// BridgesTotal counts bridges made since the Engine started.
	BridgesTotal uint64 `json:"bridges_total"`
	// Inactive counts bridges ended by the inactivity timeout.
	Inactive uint64 `json:"inactive_total"`
	// ICERestarts counts the ICE restarts of browsers that WebRefresh
	// answered.
	ICERestarts uint64 `json:"ice_restarts_total"`
	// PortsInUse and PortsDraining count RTP port pairs.
	PortsInUse    int `json:"ports_in_use"`
	PortsDraining int `json:"ports_draining"`
	// Web and RTP sum the traffic of every bridge since the Engine
	// started, open ones included, per leg.
	Web Traffic `json:"web"`
	RTP Traffic `json:"rtp"`
	// Transports counts the web legs that connected since the Engine
	// started, by the candidate types and protocols of their selected
	// pair (at most 4×2×4×2 keys).
	Transports map[TransportKey]uint64 `json:"-"`
	// ICETCPConns is the number of open ICE-TCP connections;
	// ICETCPRefused counts those closed at once for a cap.
	ICETCPConns   int    `json:"ice_tcp_conns"`
	ICETCPRefused uint64 `json:"ice_tcp_refused_total"`
	// Video sums the video counters of every bridge since the Engine
	// started, open ones included.
	Video VideoCounts `json:"video"`
	// FastPath counts the audio relayed without pion's packet pipeline.
	FastPath FastPathStats `json:"fast_path"`
	// Batch counts the batched socket reads and writes (Linux): how
	// many datagrams a system call moves.
	Batch BatchStats `json:"batch"`
}

// Traffic sums the packet counters of one kind of leg over bridges. In and
// Out are as in LegStats.
type Traffic struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	// Lost sums LegStats.Lost, counting a negative Lost (duplicates) as 0.
	Lost uint64 `json:"lost"`
}

func (t *Traffic) add(l *LegStats) {
	t.PacketsIn += l.PacketsIn
	t.BytesIn += l.BytesIn
	t.PacketsOut += l.PacketsOut
	t.BytesOut += l.BytesOut
	t.Lost += uint64(max(l.Lost, 0))
}

// BatchStats counts the media relay's batched system calls, engine-wide;
// zero where they are not used (not Linux).
type BatchStats struct {
	// Wakeups counts the rounds of the RTP poller, which reads every
	// bridge's RTP and RTCP sockets; RTPReads counts its recvmmsg calls
	// and RTPDatagrams the datagrams they brought.
	Wakeups      uint64 `json:"wakeups"`
	RTPReads     uint64 `json:"rtp_reads"`
	RTPDatagrams uint64 `json:"rtp_datagrams"`
	// Pauses counts the poller's Options.Coalesce waits.
	Pauses uint64 `json:"pauses"`
	// ICEReads and ICEDatagrams count the same for the shared ICE
	// socket, pion's datagrams included.
	ICEReads     uint64 `json:"ice_reads"`
	ICEDatagrams uint64 `json:"ice_datagrams"`
	// ICEPauses counts the Options.Coalesce waits of its reader when
	// that is pion's mux read loop (the poller could not take the
	// socket); zero when the poller reads it (see Pauses).
	ICEPauses uint64 `json:"ice_pauses"`
	// PionQueued counts the ICE socket's datagrams the poller handed to
	// pion's mux read loop (not the fast path's); PionHolds the times it
	// left the socket unread because that queue was full.
	PionQueued uint64 `json:"pion_queued"`
	PionHolds  uint64 `json:"pion_holds"`
	// ICESends counts the sendmmsg calls that carry the phones' audio to
	// browsers on the fast path, ICESent the datagrams they sent.
	ICESends uint64 `json:"ice_sends"`
	ICESent  uint64 `json:"ice_sent"`
}
