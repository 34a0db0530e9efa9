package media

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/clock"
)

// DTMF durations (RFC 4733 §2.5.1): SendDTMF clamps to these.
const (
	DefaultDTMFDuration = 100 * time.Millisecond
	MinDTMFDuration     = 40 * time.Millisecond
	MaxDTMFDuration     = time.Second
	dtmfVolume          = 10 // dBm0 below full scale, a usual level
	dtmfEndRepeats      = 3  // the end packet is sent three times (§2.5.1.4)
	dtmfGapFrames       = 2  // silence between queued digits
)

// dtmfEvent maps a digit to its RFC 4733 event code: 0–9, * (10), # (11),
// A–D (12–15) and flash (R, 16).
func dtmfEvent(d rune) (uint8, bool) {
	switch {
	case d >= '0' && d <= '9':
		return uint8(d - '0'), true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return uint8(d-'A') + 12, true
	case d >= 'a' && d <= 'd':
		return uint8(d-'a') + 12, true
	case d == 'R' || d == 'r':
		return 16, true
	}
	return 0, false
}

type dtmfDigit struct {
	event uint8
	dur   time.Duration
}

// dtmfSender generates RFC 4733 events on the RTP leg, one digit after the
// other, paced by the injected clock: one packet per ptime with a growing
// duration, then the end packet three times. Its packets take sequence
// numbers and timestamps in the gateway's RTP stream.
type dtmfSender struct {
	queue   []dtmfDigit
	running bool
	timer   clock.Timer
	stopped bool

	// current event
	cur     dtmfDigit
	ts      uint32
	elapsed time.Duration
	first   bool
}

// SendDTMF queues digit (0–9, *, #, A–D, R for flash) as an RFC 4733
// telephone-event towards the RTP leg and returns at once; digits are sent
// in order. duration is clamped to [MinDTMFDuration, MaxDTMFDuration]; 0
// means DefaultDTMFDuration. It fails with ErrNoDTMF when telephone-event
// was not negotiated with the phone (the gateway then falls back to SIP
// INFO towards it, if at all).
func (b *Bridge) SendDTMF(digit rune, duration time.Duration) error {
	ev, ok := dtmfEvent(digit)
	if !ok {
		return fmt.Errorf("media: dtmf digit %q is not one of 0-9 * # A-D R", digit)
	}
	if duration == 0 {
		duration = DefaultDTMFDuration
	}
	duration = min(max(duration, MinDTMFDuration), MaxDTMFDuration)
	r := b.route.Load()
	if r == nil || !r.dtmfOK {
		return fmt.Errorf("media: send dtmf: %w", ErrNoDTMF)
	}
	b.dtmfMu.Lock()
	defer b.dtmfMu.Unlock()
	if b.dtmf.stopped {
		return fmt.Errorf("media: send dtmf: %w", ErrClosed)
	}
	b.dtmf.queue = append(b.dtmf.queue, dtmfDigit{event: ev, dur: duration})
	if !b.dtmf.running {
		b.dtmf.running = true
		b.dtmf.timer = b.clock.AfterFunc(0, b.dtmfTick)
	}
	return nil
}

// dtmfTick sends the packet due now and schedules the next tick.
func (b *Bridge) dtmfTick() {
	b.dtmfMu.Lock()
	defer b.dtmfMu.Unlock()
	d := &b.dtmf
	if d.stopped {
		return
	}
	r := b.route.Load()
	if r == nil || !r.dtmfOK {
		d.queue, d.running = nil, false
		return
	}
	frame := r.ptime
	if frame <= 0 {
		frame = 20 * time.Millisecond
	}
	rate := r.dtmf.ClockRate
	now := b.clock.Now()
	if !d.first && d.elapsed == 0 {
		if len(d.queue) == 0 {
			d.running = false
			return
		}
		d.cur, d.queue = d.queue[0], d.queue[1:]
		d.first = true
	}
	units := func(t time.Duration) uint16 {
		u := t.Seconds() * float64(rate)
		if u > 0xffff {
			u = 0xffff
		}
		return uint16(u)
	}
	next := frame
	switch {
	case d.first:
		// The event's timestamp is its start, on the stream's clock.
		b.toRTP.mu.Lock()
		seq, ts := b.toRTP.next(rate, now)
		b.toRTP.mu.Unlock()
		d.ts, d.elapsed, d.first = ts, frame, false
		b.sendEvent(r, seq, d.ts, d.cur.event, false, units(frame), true, now)
	case d.elapsed+frame >= d.cur.dur:
		for range dtmfEndRepeats {
			b.toRTP.mu.Lock()
			seq, _ := b.toRTP.next(rate, now)
			b.toRTP.mu.Unlock()
			b.sendEvent(r, seq, d.ts, d.cur.event, true, units(d.cur.dur), false, now)
		}
		d.elapsed = 0
		next = dtmfGapFrames * frame
	default:
		d.elapsed += frame
		b.toRTP.mu.Lock()
		seq, _ := b.toRTP.next(rate, now)
		b.toRTP.mu.Unlock()
		b.sendEvent(r, seq, d.ts, d.cur.event, false, units(d.elapsed), false, now)
	}
	d.timer = b.clock.AfterFunc(next, b.dtmfTick)
}

// sendEvent writes one telephone-event packet (RFC 4733 §2.3).
func (b *Bridge) sendEvent(r *route, seq uint16, ts uint32, event uint8, end bool, duration uint16, marker bool, now time.Time) {
	if !r.fwdToRTP {
		return // the phone receives nothing now (hold)
	}
	var payload [4]byte
	payload[0] = event
	payload[1] = dtmfVolume
	if end {
		payload[1] |= 0x80
	}
	binary.BigEndian.PutUint16(payload[2:], duration)
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			Marker:         marker,
			PayloadType:    r.dtmf.PayloadType,
			SequenceNumber: seq,
			Timestamp:      ts,
		},
		Payload: payload[:],
	}
	b.sendRTP(&pkt, r.dtmf.ClockRate, r.ptime, now, false)
}

// stopDTMF stops the generator for good.
func (b *Bridge) stopDTMF() {
	b.dtmfMu.Lock()
	defer b.dtmfMu.Unlock()
	b.dtmf.stopped = true
	b.dtmf.queue = nil
	if b.dtmf.timer != nil {
		b.dtmf.timer.Stop()
	}
}
