package mediapeer

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/clock"
)

// LoadGen plays the media ends of many bridged calls for a load bench: a
// LeanBrowser and an RTP phone per call, each sending one 160-byte PCMU
// packet every 20 ms, and it counts and times what comes back. It is built
// to cost little per datagram, so that it can drive 1,000 calls beside the
// gateway on a small host:
//
//   - The phones of pacing loop k share one UDP socket: the gateway sends
//     each call's RTP to the address of its phone's SDP, and the reader
//     tells the calls apart by the gateway's address they come from.
//   - The browsers of loop k share one UDP socket too, bound to the
//     wildcard address on the loopback device: browser i sends from, and
//     gets its datagrams at, its own address 127.1.x.y (IP_PKTINFO), which
//     is what the gateway's shared ICE socket tells browsers apart by.
//   - One pacing loop per CPU sends its calls' packets spread over the
//     period, with one sendmmsg per socket per wake-up, and one reader per
//     socket takes them with recvmmsg and the kernel's receive time.
//
// Every payload carries its send time, a sequence number, whether it was
// sent in the measured window, and its call, so that a packet at the wrong
// call's end is seen. The generator counts what it meant to send (planned),
// what it sent, what it sent late or skipped, and what came back.
//
// Linux only (sendmmsg, recvmmsg, IP_PKTINFO, SO_BINDTODEVICE); the host
// must let it bind the wildcard address on lo (root, or CAP_NET_RAW on old
// kernels).
type LoadGen struct {
	opts  LoadGenOptions
	clk   clock.Clock
	loops []*genLoop
	calls []atomic.Pointer[genCall] // MaxCalls of them, filled in order
	made  int                       // calls made; under mu
	mu    sync.Mutex                // AddCall, Start, Stop, Close

	measuring atomic.Bool
	run       *genRun // between Start and Stop

	readers   sync.WaitGroup
	consent   clock.Timer
	closed    bool
	closeOnce sync.Once
}

// LoadGenOptions are a LoadGen's settings; the zero value is usable.
type LoadGenOptions struct {
	// Loops is the number of pacing loops, each with its two sockets and
	// their readers (default: the number of CPUs).
	Loops int
	// MaxCalls caps the calls (default 10,000; at most 65,000, the
	// browser addresses of 127.1.0.0/16).
	MaxCalls int
	// Period between two packets of a call, each way (default 20 ms).
	Period time.Duration
	// Slot: a wake-up of a pacing loop makes every send due within this
	// much (default 1 ms), so that a loop wakes at most about once a slot
	// and sends its batch, rather than once per call: Go's timers here
	// fire about a millisecond late anyway. The stamp is taken at the send,
	// so an early send does not change the latency measured.
	Slot time.Duration
	// LateAfter: a send made later than this after its time counts as late
	// (default 2 ms).
	LateAfter time.Duration
	// MaxSamples caps the latencies kept per direction between two
	// ResetStats (default 4 Mi); those past it are counted, not kept.
	MaxSamples int
	// Consent: how often each connected browser sends a consent check
	// (RFC 7675) (default 2 s).
	Consent time.Duration
	// Cert is the browsers' certificate, shared (default: one made
	// afresh).
	Cert *tls.Certificate
	// Clock paces the sends (default: the system clock).
	Clock clock.Clock
}

// LoadGenStats is what a LoadGen counted since its last ResetStats. Sends
// and receipts count only the packets of the measured window (SetMeasuring).
type LoadGenStats struct {
	// Planned: the sends due in the measured window, each way (one per
	// call per period).
	Planned int64
	// SentWeb: sent by the browsers; SentPhone: by the phones.
	SentWeb, SentPhone int64
	// Skipped: sends due that were not made, each way, because their loop
	// was more than a period behind.
	Skipped int64
	// Late: sends made more than LateAfter after their time, each way;
	// MaxLate the latest.
	Late    int64
	MaxLate time.Duration
	// SendErrors: datagrams the kernel refused.
	SendErrors int64
	// GotWeb: the phones' packets that reached their browser;
	// GotPhone: the browsers' that reached their phone.
	GotWeb, GotPhone int64
	// ToWeb and ToPhone: per packet received, the time from its send to
	// the kernel's receipt at the receiving socket.
	ToWeb, ToPhone []time.Duration
	// SamplesDropped: latencies not kept (MaxSamples).
	SamplesDropped int64
	// Stray: datagrams that belong to no call (an unknown source or
	// destination, not RTP, or too short to carry a stamp); Misrouted: a
	// call's packet at another call's end.
	Stray, Misrouted int64
	// SendCalls and RecvCalls: the system calls that sent and received
	// datagrams (sendmmsg, recvmmsg) in the measured window, for datagrams
	// per call.
	SendCalls, RecvCalls int64
	// Lean sums the browsers' own counters (since they were made).
	Lean LeanStats
}

// Errors of LoadGen.
var (
	// ErrLoadGenFull: AddCall past MaxCalls.
	ErrLoadGenFull = errors.New("load generator: calls at their cap")
	// ErrLoadGenRunning: a call added or connected while the generator
	// sends, or Start twice.
	ErrLoadGenRunning = errors.New("load generator: running")
	// ErrLoadGenClosed: the generator is closed.
	ErrLoadGenClosed = errors.New("load generator: closed")
)

const (
	genMaxCalls = 65000
	// genPayload is the PCMU payload of 20 ms; its head is the stamp:
	// [0:8] send time (Unix ns), [8:12] sequence, [12] 1 when sent in the
	// measured window, [13:17] the call.
	genPayload = 160
	genStamp   = 17
	genBuf     = 1500
)

// genCall is one call's browser and phone.
type genCall struct {
	i    int
	loop *genLoop
	lean *LeanBrowser
	addr netip.AddrPort // the browser's
	gw   netip.AddrPort // the gateway's RTP address, where the phone sends
	ssrc uint32         // the phone's

	// the senders' state: the pacing loop's, or Connect's before it
	seqPh, seqWeb uint32
	hdr           rtp.Header
	webPl         [genPayload]byte

	primedWeb, primedPh atomic.Bool
}

// genLoop is a pacing loop's sockets, readers and send state.
type genLoop struct {
	g          *LoadGen
	k          int
	phone, web *batchConn

	mu   sync.Mutex // byGW, against Connect
	byGW map[netip.AddrPort]*genCall

	rxWeb, rxPh genRx

	// the pacing goroutine's
	phMsgs, webMsgs       []batchMsg
	phBufs, webBufs       [batchMax][genBuf]byte
	phMeasured, webMeasur int
	tx                    genTx
}

// genTx are a loop's send counters; only its pacing goroutine writes them,
// and they are read after it ends.
type genTx struct {
	planned, sentWeb, sentPh, skipped, late, sendErrs, sendCalls int64
	maxLate                                                      time.Duration
}

// genRx are a reader's counters and latencies.
type genRx struct {
	mu                                 sync.Mutex
	got, stray, misrouted, calls, drop int64
	lat                                []time.Duration
	max                                int
}

// NewLoadGen opens the generator's sockets and starts their readers.
func NewLoadGen(ctx context.Context, opts LoadGenOptions) (*LoadGen, error) {
	if opts.Loops <= 0 {
		opts.Loops = runtime.NumCPU()
	}
	if opts.MaxCalls <= 0 {
		opts.MaxCalls = 10000
	}
	if opts.MaxCalls > genMaxCalls {
		return nil, fmt.Errorf("load generator: %d calls asked, at most %d", opts.MaxCalls, genMaxCalls)
	}
	if opts.Period <= 0 {
		opts.Period = 20 * time.Millisecond
	}
	if opts.Slot <= 0 {
		opts.Slot = time.Millisecond
	}
	if opts.LateAfter <= 0 {
		opts.LateAfter = 2 * time.Millisecond
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = 4 << 20
	}
	if opts.Consent <= 0 {
		opts.Consent = 2 * time.Second
	}
	g := &LoadGen{opts: opts, clk: clock.Or(opts.Clock), calls: make([]atomic.Pointer[genCall], opts.MaxCalls)}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for k := range opts.Loops {
		l := &genLoop{g: g, k: k, byGW: map[netip.AddrPort]*genCall{}}
		l.rxWeb.max, l.rxPh.max = opts.MaxSamples, opts.MaxSamples
		var err error
		if l.phone, err = listenBatch(ctx, netip.AddrPortFrom(lo, 0), false); err == nil {
			l.web, err = listenBatch(ctx, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), true)
			if err != nil {
				_ = l.phone.Close()
			}
		}
		if err != nil {
			g.closeSockets()
			g.readers.Wait()
			return nil, fmt.Errorf("load generator: %w", err)
		}
		g.loops = append(g.loops, l)
		g.readers.Go(l.readPhones)
		g.readers.Go(l.readBrowsers)
	}
	g.mu.Lock()
	g.armConsent()
	g.mu.Unlock()
	return g, nil
}

// browserAddr is call i's browser address: 127.1.0.0 + i + 1.
func browserAddr(i int) netip.Addr {
	v := i + 1
	return netip.AddrFrom4([4]byte{127, 1, byte(v >> 8), byte(v)})
}

// browserIndex is the call whose browser has address a, or -1.
func browserIndex(a netip.Addr) int {
	if !a.Is4() {
		return -1
	}
	b := a.As4()
	if b[0] != 127 || b[1] != 1 {
		return -1
	}
	return int(b[2])<<8 | int(b[3]) - 1
}

// genWire is a browser's way out: its loop's browser socket, from the
// browser's address.
type genWire struct {
	c   *batchConn
	src netip.Addr
}

func (w genWire) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return w.c.writeOne(b, to, w.src)
}

// AddCall makes call number Calls(): its browser, on its own address, and
// its phone, on its loop's phone socket. It returns the browser's offer
// and the address for the phone's SDP.
func (g *LoadGen) AddCall() (offer string, phone netip.AddrPort, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return "", netip.AddrPort{}, ErrLoadGenClosed
	case g.run != nil:
		return "", netip.AddrPort{}, ErrLoadGenRunning
	case g.made >= len(g.calls):
		return "", netip.AddrPort{}, fmt.Errorf("%w (%d)", ErrLoadGenFull, len(g.calls))
	}
	i := g.made
	l := g.loops[i%len(g.loops)]
	c := &genCall{i: i, loop: l, addr: netip.AddrPortFrom(browserAddr(i), l.web.Port()), ssrc: 0x10000 + uint32(i)}
	if c.lean, err = newLeanBrowser(genWire{l.web, c.addr.Addr()}, c.addr, g.opts.Cert); err != nil {
		return "", netip.AddrPort{}, err
	}
	g.calls[i].Store(c)
	g.made++
	return c.lean.Offer(), netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), l.phone.Port()), nil
}

// Calls is how many calls were added.
func (g *LoadGen) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.made
}

// Connect takes call i's answer and the gateway's RTP address for its
// phone, brings its browser up (ICE, DTLS, SRTP) and sends unmeasured
// packets both ways until each end has heard the other. Calls may be
// connected in parallel, but not while the generator sends (Start).
func (g *LoadGen) Connect(ctx context.Context, i int, answer string, gw netip.AddrPort) error {
	c, err := g.call(i)
	if err != nil {
		return err
	}
	gw = netip.AddrPortFrom(gw.Addr().Unmap(), gw.Port())
	if !gw.Addr().Is4() || !gw.Addr().IsLoopback() || gw.Port() == 0 {
		return fmt.Errorf("load generator: call %d: the gateway's RTP address %v is not on IPv4 loopback", i, gw)
	}
	if err := c.lean.SetAnswer(answer); err != nil {
		return err
	}
	c.gw = gw
	c.loop.mu.Lock()
	if o := c.loop.byGW[gw]; o != nil && o != c {
		c.loop.mu.Unlock()
		return fmt.Errorf("load generator: calls %d and %d on the gateway's %v", o.i, i, gw)
	}
	c.loop.byGW[gw] = c
	c.loop.mu.Unlock()
	if err := c.lean.Connect(ctx); err != nil {
		return err
	}
	tk := time.NewTicker(g.opts.Period)
	defer tk.Stop()
	var pkt [12 + genPayload]byte
	for !c.primedWeb.Load() || !c.primedPh.Load() {
		if _, err := c.loop.phone.writeOne(c.phonePacket(pkt[:], false), c.gw, netip.Addr{}); err != nil {
			return fmt.Errorf("load generator: call %d: %w", i, err)
		}
		if err := c.lean.WriteRTP(c.webHeader(), c.webPayload(false)); err != nil {
			return fmt.Errorf("load generator: call %d: %w", i, err)
		}
		select {
		case <-tk.C:
		case <-ctx.Done():
			return fmt.Errorf("load generator: call %d: no media through the call: %w", i, context.Cause(ctx))
		}
	}
	return nil
}

func (g *LoadGen) call(i int) (*genCall, error) {
	if i < 0 || i >= len(g.calls) {
		return nil, fmt.Errorf("load generator: no call %d", i)
	}
	g.mu.Lock()
	running, closed := g.run != nil, g.closed
	g.mu.Unlock()
	switch {
	case closed:
		return nil, ErrLoadGenClosed
	case running:
		return nil, ErrLoadGenRunning
	}
	c := g.calls[i].Load()
	if c == nil {
		return nil, fmt.Errorf("load generator: no call %d", i)
	}
	return c, nil
}

// stamp writes the head of a payload: the send time last.
func stampPayload(p []byte, seq uint32, call int, measured bool) {
	binary.BigEndian.PutUint32(p[8:], seq)
	p[12] = 0
	if measured {
		p[12] = 1
	}
	binary.BigEndian.PutUint32(p[13:], uint32(call))
	binary.BigEndian.PutUint64(p[0:], uint64(time.Now().UnixNano()))
}

// phonePacket fills b (12+genPayload bytes) with the phone's next packet.
func (c *genCall) phonePacket(b []byte, measured bool) []byte {
	c.seqPh++
	b = b[:12+genPayload]
	b[0], b[1] = 0x80, 0 // V=2, PCMU
	binary.BigEndian.PutUint16(b[2:], uint16(c.seqPh))
	binary.BigEndian.PutUint32(b[4:], c.seqPh*160)
	binary.BigEndian.PutUint32(b[8:], c.ssrc)
	stampPayload(b[12:], c.seqPh, c.i, measured)
	return b
}

func (c *genCall) webHeader() *rtp.Header {
	c.seqWeb++
	c.hdr = rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(c.seqWeb), Timestamp: c.seqWeb * 160}
	return &c.hdr
}

func (c *genCall) webPayload(measured bool) []byte {
	stampPayload(c.webPl[:], c.seqWeb, c.i, measured)
	return c.webPl[:]
}

// SetMeasuring marks the packets sent from now on as those of the
// measured window (on), or not.
func (g *LoadGen) SetMeasuring(on bool) { g.measuring.Store(on) }

// genRun is one Start..Stop: the pacing loops.
type genRun struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start starts the pacing loops: every call added sends one packet each
// way per period until Stop. It may start again after Stop.
func (g *LoadGen) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return ErrLoadGenClosed
	case g.run != nil:
		return ErrLoadGenRunning
	}
	n := g.made
	for i := range n {
		if c := g.calls[i].Load(); c.lean.out == nil || !c.gw.IsValid() {
			return fmt.Errorf("load generator: call %d is not connected", i)
		}
	}
	g.run = g.startPacing(n, func(l *genLoop, i int, measured bool) { l.queueCall(g.calls[i].Load(), measured) })
	return nil
}

// startPacing runs a pacing loop per generator loop over n streams; queue
// adds stream i's datagrams to its loop's batches.
func (g *LoadGen) startPacing(n int, queue func(l *genLoop, i int, measured bool)) *genRun {
	r := &genRun{stop: make(chan struct{})}
	t0 := g.clk.Now()
	for _, l := range g.loops {
		cur := newPaceCursor(n, len(g.loops), l.k, g.opts.Period, t0)
		r.wg.Go(func() { l.pace(cur, r.stop, queue) })
	}
	return r
}

// Stop stops the pacing loops and waits for them.
func (g *LoadGen) Stop() {
	g.mu.Lock()
	r := g.run
	g.mu.Unlock()
	if r == nil {
		return
	}
	close(r.stop)
	r.wg.Wait()
	g.mu.Lock()
	g.run = nil
	g.mu.Unlock()
}

// pace is a pacing loop: at each wake-up it queues every send due, flushes
// the batches and sleeps until the next is due.
func (l *genLoop) pace(cur *paceCursor, stop <-chan struct{}, queue func(l *genLoop, i int, measured bool)) {
	clk := l.g.clk
	wake := make(chan struct{}, 1)
	var timer *time.Timer // on the system clock; else clk.AfterFunc
	if _, real := clk.(clock.Real); real {
		timer = time.NewTimer(time.Hour)
		defer timer.Stop()
	}
	for {
		now := clk.Now()
		measured := l.g.measuring.Load()
		next, skipped := cur.take(now, l.g.opts.Slot, batchMax, func(i, _ int, late time.Duration) {
			if measured {
				l.tx.planned++
				if late > l.g.opts.LateAfter {
					l.tx.late++
				}
				l.tx.maxLate = max(l.tx.maxLate, late)
			}
			queue(l, i, measured)
		})
		if measured {
			l.tx.planned += int64(skipped)
			l.tx.skipped += int64(skipped)
		}
		l.flush(measured)
		d := next.Sub(clk.Now())
		if d <= 0 {
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		var fake clock.Timer
		var fire <-chan time.Time
		if timer != nil {
			timer.Reset(d)
			fire = timer.C
		} else {
			fake = clk.AfterFunc(d, func() {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
		}
		select {
		case <-stop:
			if fake != nil {
				fake.Stop()
			}
			return
		case <-fire:
		case <-wake:
		}
	}
}

// queueCall adds one packet each way of call c to the batches.
func (l *genLoop) queueCall(c *genCall, measured bool) {
	j := len(l.phMsgs)
	l.phMsgs = append(l.phMsgs, batchMsg{Buf: c.phonePacket(l.phBufs[j][:], measured), Addr: c.gw})
	enc, to, err := c.lean.sealRTP(l.webBufs[len(l.webMsgs)][:0], c.webHeader(), c.webPayload(measured))
	if err != nil {
		l.tx.sendErrs++
	} else {
		l.webMsgs = append(l.webMsgs, batchMsg{Buf: enc, Addr: to, Local: c.addr.Addr()})
	}
	if measured {
		l.phMeasured++
		if err == nil {
			l.webMeasur++
		}
	}
}

// flush sends the batches; the system calls are counted in the measured
// window.
func (l *genLoop) flush(measured bool) {
	calls := int64(0)
	if measured {
		calls = 1
	}
	if len(l.phMsgs) > 0 {
		failed, _ := l.phone.writeBatch(l.phMsgs)
		l.tx.sendCalls += calls
		l.tx.sendErrs += int64(failed)
		l.tx.sentPh += int64(max(0, l.phMeasured-failed))
	}
	if len(l.webMsgs) > 0 {
		failed, _ := l.web.writeBatch(l.webMsgs)
		l.tx.sendCalls += calls
		l.tx.sendErrs += int64(failed)
		l.tx.sentWeb += int64(max(0, l.webMeasur-failed))
	}
	clear(l.phMsgs)
	clear(l.webMsgs)
	l.phMsgs, l.webMsgs = l.phMsgs[:0], l.webMsgs[:0]
	l.phMeasured, l.webMeasur = 0, 0
}

// newReadMsgs makes a reader's batch of messages.
func newReadMsgs() []batchMsg { return make([]batchMsg, batchMax) }

// readPhones is the phone socket's reader: the browsers' packets, relayed
// by the gateway, told apart by the gateway's address they come from.
func (l *genLoop) readPhones() {
	ms := newReadMsgs()
	calls := make([]*genCall, batchMax)
	for {
		n, err := l.phone.readBatch(ms)
		if err != nil {
			return
		}
		l.mu.Lock()
		for j := range n {
			calls[j] = l.byGW[ms[j].Addr]
		}
		l.mu.Unlock()
		l.rxPh.mu.Lock()
		if l.g.measuring.Load() {
			l.rxPh.calls++
		}
		for j := range n {
			m := &ms[j]
			c := calls[j]
			p, ok := rtpPayload(m.Buf)
			if c == nil || !ok {
				l.rxPh.stray++
				continue
			}
			l.rxPh.note(c, p, m.At, &c.primedPh)
		}
		l.rxPh.mu.Unlock()
		clear(calls)
	}
}

// readBrowsers is the browser socket's reader: the gateway's SRTP, STUN
// and DTLS, told apart by the browser address they were sent to, and
// handed to that browser.
func (l *genLoop) readBrowsers() {
	ms := newReadMsgs()
	var h rtp.Header
	for {
		n, err := l.web.readBatch(ms)
		if err != nil {
			return
		}
		l.rxWeb.mu.Lock()
		if l.g.measuring.Load() {
			l.rxWeb.calls++
		}
		for j := range n {
			m := &ms[j]
			i := browserIndex(m.Local)
			var c *genCall
			if i >= 0 && i < len(l.g.calls) {
				c = l.g.calls[i].Load()
			}
			if c == nil || c.loop != l {
				l.rxWeb.stray++
				continue
			}
			p, ok, _ := c.lean.Handle(m.Buf, m.Addr, &h)
			if ok {
				l.rxWeb.note(c, p, m.At, &c.primedWeb)
			}
		}
		l.rxWeb.mu.Unlock()
	}
}

// rtpPayload is the payload of an RTP packet (CSRCs and extension
// skipped), or false when b is not one.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	hl := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < hl+4 {
			return nil, false
		}
		hl += 4 + 4*int(binary.BigEndian.Uint16(b[hl+2:]))
	}
	if len(b) < hl {
		return nil, false
	}
	return b[hl:], true
}

// note takes a payload that came to call c at at (Unix ns, 0: unknown);
// under r.mu.
func (r *genRx) note(c *genCall, p []byte, at int64, primed *atomic.Bool) {
	if len(p) < genStamp {
		r.stray++
		return
	}
	if int(binary.BigEndian.Uint32(p[13:])) != c.i {
		r.misrouted++
		return
	}
	primed.Store(true)
	if p[12] != 1 {
		return
	}
	r.got++
	if at == 0 {
		at = time.Now().UnixNano()
	}
	if len(r.lat) >= r.max {
		r.drop++
		return
	}
	r.lat = append(r.lat, time.Duration(at-int64(binary.BigEndian.Uint64(p))))
}

// ResetStats zeroes the counters and latencies; not while the generator
// sends.
func (g *LoadGen) ResetStats() {
	for _, l := range g.loops {
		l.tx = genTx{}
		for _, r := range []*genRx{&l.rxWeb, &l.rxPh} {
			r.mu.Lock()
			r.got, r.stray, r.misrouted, r.calls, r.drop = 0, 0, 0, 0, 0
			r.lat = r.lat[:0]
			r.mu.Unlock()
		}
	}
}

// Stats returns what the generator counted since ResetStats. The send
// counters are read as of the last Stop.
func (g *LoadGen) Stats() LoadGenStats {
	var s LoadGenStats
	g.mu.Lock()
	running, made := g.run != nil, g.made
	g.mu.Unlock()
	for _, l := range g.loops {
		if !running {
			t := l.tx
			s.Planned += t.planned
			s.SentWeb += t.sentWeb
			s.SentPhone += t.sentPh
			s.Skipped += t.skipped
			s.Late += t.late
			s.MaxLate = max(s.MaxLate, t.maxLate)
			s.SendErrors += t.sendErrs
			s.SendCalls += t.sendCalls
		}
		for _, d := range []struct {
			r   *genRx
			got *int64
			lat *[]time.Duration
		}{{&l.rxWeb, &s.GotWeb, &s.ToWeb}, {&l.rxPh, &s.GotPhone, &s.ToPhone}} {
			d.r.mu.Lock()
			*d.got += d.r.got
			*d.lat = append(*d.lat, d.r.lat...)
			s.Stray += d.r.stray
			s.Misrouted += d.r.misrouted
			s.RecvCalls += d.r.calls
			s.SamplesDropped += d.r.drop
			d.r.mu.Unlock()
		}
	}
	for i := range made {
		ls := g.calls[i].Load().lean.Stats()
		s.Lean.STUN += ls.STUN
		s.Lean.Consent += ls.Consent
		s.Lean.RTCP += ls.RTCP
		s.Lean.Dropped += ls.Dropped
		s.Lean.Undecryptable += ls.Undecryptable
	}
	return s
}

// Ports are the generator's sockets' ports (phones' and browsers'), for
// the host's per-socket drop counters.
func (g *LoadGen) Ports() []uint16 {
	var ps []uint16
	for _, l := range g.loops {
		ps = append(ps, l.phone.Port(), l.web.Port())
	}
	return ps
}

// armConsent sends a consent check from every connected browser, as a
// browser does with or without media, and arms itself again; under g.mu.
func (g *LoadGen) armConsent() {
	if g.closed {
		return
	}
	g.consent = g.clk.AfterFunc(g.opts.Consent, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.closed {
			return
		}
		for i := range g.made {
			if c := g.calls[i].Load(); c.lean.in.Load() != nil {
				_ = c.lean.Keepalive()
			}
		}
		g.armConsent()
	})
}

// Baseline measures the one-way path without a gateway, the same way as
// the calls' (the same pacing loops, batches and stamps): n streams from
// the phone sockets to a socket of each loop's own, for warm-up and then
// window; it returns the latencies, from the send's stamp to the kernel's
// receipt. Not while the generator sends.
func (g *LoadGen) Baseline(ctx context.Context, n int, warmup, window time.Duration) ([]time.Duration, error) {
	if n <= 0 || n > len(g.calls) {
		return nil, fmt.Errorf("load generator: baseline of %d streams, at most %d", n, len(g.calls))
	}
	g.mu.Lock()
	if g.closed || g.run != nil {
		g.mu.Unlock()
		return nil, ErrLoadGenRunning
	}
	sinks := make([]*batchConn, len(g.loops))
	rx := make([]*genRx, len(g.loops))
	var wg sync.WaitGroup
	defer func() {
		for _, s := range sinks {
			if s != nil {
				_ = s.Close()
			}
		}
		wg.Wait()
	}()
	for k := range g.loops {
		s, err := listenBatch(ctx, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0), false)
		if err != nil {
			g.mu.Unlock()
			return nil, fmt.Errorf("load generator: baseline: %w", err)
		}
		sinks[k], rx[k] = s, &genRx{max: g.opts.MaxSamples}
		wg.Go(func() {
			ms := newReadMsgs()
			for {
				n, err := s.readBatch(ms)
				if err != nil {
					return
				}
				rx[k].mu.Lock()
				for j := range n {
					if p, ok := rtpPayload(ms[j].Buf); ok && len(p) >= genStamp && p[12] == 1 {
						rx[k].got++
						if len(rx[k].lat) < rx[k].max {
							rx[k].lat = append(rx[k].lat, time.Duration(ms[j].At-int64(binary.BigEndian.Uint64(p))))
						}
					}
				}
				rx[k].mu.Unlock()
			}
		})
	}
	streams := make([]genCall, n)
	for i := range streams {
		k := i % len(g.loops)
		streams[i] = genCall{i: i, ssrc: uint32(i), gw: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), sinks[k].Port())}
	}
	measured := &atomic.Bool{}
	saved := make([]genTx, len(g.loops)) // the calls' counters stay the calls'
	for k, l := range g.loops {
		saved[k] = l.tx
	}
	r := g.startPacing(n, func(l *genLoop, i int, _ bool) {
		c := &streams[i]
		l.phMsgs = append(l.phMsgs, batchMsg{Buf: c.phonePacket(l.phBufs[len(l.phMsgs)][:], measured.Load()), Addr: c.gw})
	})
	g.run = r
	g.mu.Unlock()
	stop := func() {
		close(r.stop)
		r.wg.Wait()
		g.mu.Lock()
		g.run = nil
		for k, l := range g.loops {
			l.tx = saved[k]
		}
		g.mu.Unlock()
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	if err := wait(warmup); err != nil {
		stop()
		return nil, err
	}
	measured.Store(true)
	err := wait(window)
	measured.Store(false)
	stop()
	if err != nil {
		return nil, err
	}
	// the last datagrams in flight: a loopback hop is microseconds
	_ = wait(50 * time.Millisecond)
	var lat []time.Duration
	for _, r := range rx {
		r.mu.Lock()
		lat = append(lat, r.lat...)
		r.mu.Unlock()
	}
	return lat, nil
}

// Close stops the generator, ends every browser's DTLS session, closes
// the sockets and waits for the readers.
func (g *LoadGen) Close() error {
	g.Stop()
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		if g.consent != nil {
			g.consent.Stop()
		}
		made := g.made
		g.mu.Unlock()
		for i := range made {
			_ = g.calls[i].Load().lean.Close()
		}
		g.closeSockets()
		g.readers.Wait()
	})
	return nil
}

func (g *LoadGen) closeSockets() {
	for _, l := range g.loops {
		if l.phone != nil {
			_ = l.phone.Close()
		}
		if l.web != nil {
			_ = l.web.Close()
		}
	}
}

// Percentiles returns the 50th and 99th percentiles of lat, sorting it.
func Percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)]
}
