package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
)

// Defaults of Config.
const (
	DefaultMaxPending      = 16384
	DefaultMaxPendingBytes = 64 << 20
	DefaultMaxFlows        = 50000
	DefaultMTU             = 1300
	DefaultMaxWait         = 4 * time.Second
)

// Config configures a Layer. The zero value is ready to use.
type Config struct {
	// Workers is the number of goroutines that call the upper Handler.
	// Default: GOMAXPROCS, at least 2.
	Workers int
	// MaxPending caps the messages waiting for a worker from all sources;
	// more are dropped. The sources share it fairly: the last eighth is
	// kept for sources with fewer than 8 messages waiting and for those
	// under their share of the rest (the rest over the sources with
	// messages waiting), so that flooding sources, one or many, cannot
	// shut the others out, while a source alone (a trunk, an SBC, a load
	// balancer, which send everything from one address) may use all the
	// rest. Default 16384.
	MaxPending int
	// MaxPendingBytes caps the same queue in bytes, counted as what a
	// parsed message holds (its text and about 2 KiB of structure), so
	// that large messages cannot make the count above cost gigabytes; it
	// is shared the same way. Default 64 MiB.
	MaxPendingBytes int
	// MaxPendingPerSource and MaxPendingBytesPerSource, when positive,
	// cap the messages of one source (an IP address; for IPv6 its /64)
	// whatever the others send, in number and in bytes. Zero: no cap of
	// their own; a source is held to its share only when others compete.
	MaxPendingPerSource, MaxPendingBytesPerSource int
	// MaxWait bounds how old a source's queue may grow: while the oldest
	// message of a source has waited longer, the source's new datagram
	// requests (but ACKs and CANCELs) are dropped on arrival (the new
	// work and the work begun are apart: each is measured against its
	// own oldest message), at no cost
	// but the count. Queued behind such a backlog they would be answered
	// after their client had sent them again, or given up; dropped, the
	// client sends them again after T1, when the backlog may have gone,
	// and what is queued is answered in time. The count caps alone let
	// the queue grow to seconds of work when the workers get little CPU.
	// A source sending now and then waits its round-robin turn and never
	// grows such a queue. Default 4s (8 T1: over UDP the client has sent
	// its request three more times by then, and a phone's user has given
	// up on an INVITE); at 1s, on a starved host, it dropped requests
	// that would have been answered before their client gave up, and
	// the twice-the-knee runs lost goodput and gained timeouts for it.
	// Negative: no bound.
	MaxWait time.Duration
	// MaxFlows caps the table of open flows (connections that sent a
	// message). It is meant never to bind: the transports cap their
	// connections well below it. A message on a new flow beyond it is
	// dropped. Default 50000.
	MaxFlows int
	// MTU is the size above which a request bound for UDP goes over TCP
	// instead when a TCP transport exists (RFC 3261 §18.1.1). Default
	// 1300; negative turns the rule off.
	MTU int
	// ViaHost is the host put in the sent-by of the Vias that StampVia
	// writes and of Vias rewritten for the MTU rule. Empty: the IP
	// address the transport listens on or, for a wildcard listener, the
	// local address the system would use towards the destination.
	ViaHost string
	// Locator resolves the sent-by name of a response's Via that has no
	// received parameter (RFC 3263 §5). Nil: the system resolver.
	Locator *locate.Locator
	// Logger receives the layer's logs; nil discards them.
	Logger *slog.Logger
	// Trace logs every message received and sent, whole, at debug level:
	// the SIP trace an operator turns on to see what a peer really sent.
	Trace bool
}

// limits are the caps of the Layer's queue.
func (c *Config) limits() limits {
	return limits{
		perSource: c.MaxPendingPerSource, total: c.MaxPending,
		perSourceBytes: c.MaxPendingBytesPerSource, totalBytes: c.MaxPendingBytes,
		maxWait: int64(c.MaxWait),
	}
}

// Stats counts what the Layer received.
type Stats struct {
	// Received counts the messages transports delivered to the Layer.
	Received uint64
	// Dropped counts messages dropped because their source was over its
	// cap, the Layer was over its total cap or its flow table was full, or
	// it was not serving, or their source's queue was older than
	// Config.MaxWait.
	Dropped uint64
	// Stale counts those of Dropped that came while their source's
	// queue was older than Config.MaxWait.
	Stale uint64
	// Duplicates counts retransmissions of a request dropped because the
	// request was still queued: the answer to it answers them.
	Duplicates uint64
	// Pending is the number of messages waiting for a worker now, and
	// PendingBytes their size as the caps count it.
	Pending, PendingBytes int
	// Flows is the number of open flows known.
	Flows int
}

// Layer is the common layer of the SIP transports. It holds the
// transports, runs them, reads from all of them through one fair queue,
// and sends through the right one:
//
//   - received requests get received and rport in their top Via (RFC 3261
//     §18.2.1, RFC 3581 §4) before they reach the upper Handler;
//   - received messages wait in one bounded queue per source IP address,
//     served round-robin by a fixed pool of workers, so that one source
//     cannot starve the others; within a source, the messages of one
//     Call-ID over UDP, and those of one connection (with its closing)
//     over a stream, are handled one at a time in the order they came,
//     and the rest by as many workers as are free (a trunk sends
//     everything from one address); datagrams that carry on work begun
//     (responses, requests within a dialog or with credentials) go before
//     new work, so that under overload what was admitted completes while
//     the new work waits to be shed; a retransmission of a request still
//     queued is dropped;
//   - Send picks the transport by destination transport and address
//     family, applies the MTU rule to requests, and routes responses by
//     connection, then by Via (RFC 3261 §18.2.2, RFC 3581 §4);
//   - it keeps the table of open flows (RFC 5626) and passes flow-closed
//     notifications up.
//
// A Layer serves once: after Serve returns, or Close, it is done.
type Layer struct {
	cfg Config
	log *slog.Logger
	loc *locate.Locator

	// transports is an immutable snapshot, replaced under mu by Add, so
	// that Send reads it without locking.
	transports atomic.Pointer[[]Transport]

	mu     sync.Mutex
	run    *run // set while serving
	closed bool

	active    atomic.Pointer[run] // run, for the receive path without mu
	closeOnce sync.Once
	closeErr  error

	flows    sync.Map // flow id → flowEntry
	nFlows   atomic.Int64
	received atomic.Uint64
	dropped  atomic.Uint64
	stale    atomic.Uint64
	// duplicates counts retransmissions dropped for their request was
	// still queued.
	duplicates atomic.Uint64
	warned     atomic.Int64 // Unix ns of the last warning about drops

	queueWait delay.Mean // of the messages, from their queueing to a worker
}

type flowEntry struct {
	t Transport // nil when the message came through Layer.HandleMessage
}

// run is one Serve call.
type run struct {
	ctx        context.Context
	cancel     context.CancelCauseFunc
	upper      Handler
	waited     WaitHandler // upper, when it is one
	sched      *scheduler
	transports sync.WaitGroup
	// workers are the state of each worker that Reply reaches.
	workers []*worker
	// polled is when (delay.Now) a worker last polled the transports
	// (Poller).
	polled atomic.Int64
}

var (
	errServing    = errors.New("transport: layer already serving")
	errLayerClose = errors.New("transport: layer closed")
)

// NewLayer returns a Layer with cfg, its zero fields set to the defaults.
func NewLayer(cfg Config) *Layer {
	if cfg.Workers <= 0 {
		cfg.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	l := &Layer{cfg: cfg, log: cfg.Logger, loc: cfg.Locator}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.loc == nil {
		l.loc = &locate.Locator{}
	}
	l.transports.Store(new([]Transport))
	return l
}

// Add hands t to the Layer, which from then on owns it: it serves t (at
// once when Serve is running) and closes it when Serve returns or Close is
// called. A transport added after Close is closed at once.
func (l *Layer) Add(t Transport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = t.Close()
		return
	}
	ts := append(slices.Clone(*l.transports.Load()), t)
	l.transports.Store(&ts)
	if l.run != nil {
		l.start(l.run, t)
	}
}

// Transports returns the transports added so far.
func (l *Layer) Transports() []Transport { return slices.Clone(*l.transports.Load()) }

// Serve runs every transport and the workers, delivering to h, until ctx
// is done, Close is called, or a transport's Serve fails. It returns that
// transport's error, or nil. When it returns, every transport is closed
// and every goroutine of the Layer has ended; messages still queued are
// dropped.
//
// h is called from the workers: while a call runs, that worker serves no
// one else, so h should hand long work off.
func (l *Layer) Serve(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("transport: serve with nil handler")
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.run != nil {
		l.mu.Unlock()
		return errServing
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := &run{ctx: rctx, cancel: cancel, upper: h, sched: newScheduler(l.cfg.limits())}
	r.workers = make([]*worker, l.cfg.Workers)
	for i := range r.workers {
		r.workers[i] = new(worker)
	}
	r.waited, _ = h.(WaitHandler)
	r.polled.Store(delay.Now() - int64(pollEvery)) // the first item polls
	l.run = r
	l.active.Store(r)
	for _, t := range *l.transports.Load() {
		l.start(r, t)
	}
	l.mu.Unlock()

	var workers sync.WaitGroup
	for _, w := range r.workers {
		workers.Go(func() { l.work(r, w) })
	}
	<-rctx.Done()

	l.mu.Lock()
	l.run, l.closed = nil, true
	l.mu.Unlock()
	l.active.Store(nil)
	// Closing the transports is what unblocks their read loops, whatever
	// each does with ctx.
	l.closeTransports()
	r.transports.Wait()
	r.sched.close()
	workers.Wait()

	cause := context.Cause(rctx)
	if ctx.Err() != nil || errors.Is(cause, errLayerClose) {
		return nil
	}
	return cause
}

// start serves t under r; called with l.mu held, while r is running.
func (l *Layer) start(r *run, t Transport) {
	r.transports.Add(1)
	go func() {
		defer r.transports.Done()
		err := t.Serve(r.ctx, &feed{l: l, t: t})
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.cancel(fmt.Errorf("transport: serve %s %s: %w", t.Network(), t.LocalAddr().AddrPort, err))
			return
		}
		l.log.Info("transport stopped", "transport", t.Network(), "addr", t.LocalAddr().AddrPort)
	}()
}

// Close stops serving and closes every transport. It does not wait for
// Serve to return.
func (l *Layer) Close() error {
	l.mu.Lock()
	l.closed = true
	r := l.run
	l.mu.Unlock()
	if r != nil {
		r.cancel(errLayerClose)
	}
	return l.closeTransports()
}

func (l *Layer) closeTransports() error {
	l.closeOnce.Do(func() {
		var errs []error
		for _, t := range *l.transports.Load() {
			if err := t.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// Stats returns the Layer's counters.
func (l *Layer) Stats() Stats {
	s := Stats{Received: l.received.Load(), Dropped: l.dropped.Load(), Stale: l.stale.Load(), Duplicates: l.duplicates.Load(), Flows: int(l.nFlows.Load())}
	if r := l.active.Load(); r != nil {
		s.Pending, s.PendingBytes = r.sched.len()
	}
	return s
}

// FlowOpen reports whether flow is a connection the Layer knows to be
// open: a message came over it and it has not closed since. A registrar
// checks it before routing to a binding's flow (RFC 5626 §5.3).
func (l *Layer) FlowOpen(flow sip.Addr) bool {
	if flow.Flow == 0 {
		return false
	}
	_, ok := l.flows.Load(flow.Flow)
	return ok
}

// HandleMessage makes the Layer a Handler for a transport that is served
// outside it (not added with Add): it queues msg for the upper Handler
// like a message read by an added transport. Flows learnt this way are
// routed by trying each transport of their network.
func (l *Layer) HandleMessage(msg sip.Message) { l.receive(msg, nil) }

// HandleFlowClosed makes the Layer a Handler: it forgets flow and passes
// the notification up after the messages already queued from its source.
func (l *Layer) HandleFlowClosed(flow sip.Addr) { l.flowClosed(flow) }

// feed is the Handler that the Layer gives to each transport it serves, so
// that it knows which transport a flow belongs to.
type feed struct {
	l *Layer
	t Transport
}

func (f *feed) HandleMessage(msg sip.Message)  { f.l.receive(msg, f.t) }
func (f *feed) HandleFlowClosed(flow sip.Addr) { f.l.flowClosed(flow) }

func (l *Layer) receive(msg sip.Message, t Transport) {
	src := msg.Src()
	r := l.active.Load()
	if r == nil {
		l.dropped.Add(1)
		return
	}
	if l.cfg.Trace {
		l.trace(r.ctx, "received", msg, src, nil)
	}
	l.received.Add(1)
	if src.Flow != 0 && !l.learnFlow(src.Flow, t) {
		l.drop("flow table full", src)
		return
	}
	it := item{msg: msg, size: msgSize(msg), at: delay.Now(), lane: laneOf(msg, src)}
	if k := dupKeyOf(msg, src); k != (dupKey{}) {
		it.dup = k.hash()
		it.resent = k.method != sip.MethodAck && k.method != sip.MethodCancel
	}
	switch r.sched.push(sourceKey(src), it, false) {
	case refused:
		l.drop("source or layer over its pending cap", src)
	case duplicate:
		l.duplicates.Add(1)
	case stale:
		l.stale.Add(1)
		l.drop("source's queue older than its max wait", src)
	}
}

// laneOf is the lane of its source that a message from src waits in: by
// its connection over a stream transport, whose messages are handled in
// the order they came, and over UDP by its Call-ID, which names the
// dialog or the transaction that the order matters in. FNV-1a, not a
// seeded hash, so that the order is the same from run to run; a sender
// that picks its Call-IDs to fill one lane only slows its own source.
func laneOf(msg sip.Message, src sip.Addr) uint8 {
	if src.Flow != 0 {
		return flowLane(src.Flow)
	}
	h := uint32(2166136261)
	for _, c := range []byte(msg.Header().CallID()) {
		h = (h ^ uint32(c)) * 16777619
	}
	return uint8(h ^ h>>8 ^ h>>16 ^ h>>24)
}

// flowLane is the lane of a connection's messages and of its closing.
func flowLane(flow uint64) uint8 { return uint8((flow * 0x9e3779b97f4a7c15) >> 56) }

// dupKeyOf is the key that finds a retransmission of msg while msg is
// queued: for a request over UDP with an RFC 3261 branch; zero for the
// rest (responses, stream transports, which do not retransmit, and the
// old branches, matched otherwise).
func dupKeyOf(msg sip.Message, src sip.Addr) dupKey {
	req, ok := msg.(*sip.Request)
	if !ok || src.Transport != sip.UDP {
		return dupKey{}
	}
	v, ok := req.TopVia()
	if !ok {
		return dupKey{}
	}
	b := v.Branch()
	if !strings.HasPrefix(b, sip.BranchCookie) || len(b) == len(sip.BranchCookie) {
		return dupKey{}
	}
	return dupKey{branch: b, method: req.Method, callID: req.CallID(), src: src.AddrPort}
}

// learnFlow records flow as open, unless the table is full.
func (l *Layer) learnFlow(flow uint64, t Transport) bool {
	if _, ok := l.flows.Load(flow); ok {
		return true
	}
	if l.nFlows.Load() >= int64(l.cfg.MaxFlows) {
		return false
	}
	// A flow's messages come from its connection's one read loop, so no
	// two calls race to store the same flow; LoadOrStore keeps the count
	// right if one ever did.
	if _, loaded := l.flows.LoadOrStore(flow, flowEntry{t: t}); !loaded {
		l.nFlows.Add(1)
	}
	return true
}

// drop counts a dropped message and logs it: at debug level each time,
// and at warning level at most once every 10 s, since under a flood drops
// come by the thousand a second.
func (l *Layer) drop(why string, src sip.Addr) {
	n := l.dropped.Add(1)
	l.log.Debug("dropped message", "why", why, "source", src)
	now := time.Now().UnixNano()
	if last := l.warned.Load(); now-last >= int64(10*time.Second) && l.warned.CompareAndSwap(last, now) {
		l.log.Warn("dropping messages", "why", why, "source", src, "dropped_total", n)
	}
}

// trace logs msg, received from or sent to peer, for Config.Trace.
func (l *Layer) trace(ctx context.Context, what string, msg sip.Message, peer sip.Addr, err error) {
	if !l.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("peer", peer.String()), slog.String("call_id", msg.Header().CallID())}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	attrs = append(attrs, slog.String("message", msg.String()))
	l.log.LogAttrs(ctx, slog.LevelDebug, "sip "+what, attrs...)
}

func (l *Layer) flowClosed(flow sip.Addr) {
	if flow.Flow != 0 {
		if _, ok := l.flows.LoadAndDelete(flow.Flow); ok {
			l.nFlows.Add(-1)
		}
	}
	if r := l.active.Load(); r != nil {
		r.sched.push(sourceKey(flow), item{closed: flow, at: delay.Now(), lane: flowLane(flow.Flow)}, true)
	}
}

// sourceKey is the fairness unit: the source IP address, and for IPv6 its
// /64, the block one subscriber usually gets, so that an attacker cannot
// rotate through it. Ports are left out, since one host can open any
// number of them.
func sourceKey(a sip.Addr) netip.Addr {
	ip := a.AddrPort.Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// pollEvery is how often the busy workers poll the transports that let
// them (Poller): a poll that finds nothing costs one system call, and at
// 50,000 datagrams a second a millisecond's worth fits in a socket's
// default buffer.
const pollEvery = time.Millisecond

// poll reads for the transports that let a worker do it (Poller).
func (l *Layer) poll() {
	for _, t := range *l.transports.Load() {
		if p, ok := t.(Poller); ok {
			p.Poll()
		}
	}
}

func (l *Layer) work(r *run, w *worker) {
	var h hold
	held := false // w holds answers (Reply): write them before waiting
	for {
		var it item
		var ok bool
		if h, it, ok = r.sched.next(h, !held); !ok {
			w.done(l)
			return
		}
		if h.src == nil {
			// Nothing more to do for now: the run is over.
			w.done(l)
			held = false
			continue
		}
		if it.msg == nil {
			r.upper.HandleFlowClosed(it.closed)
			held = w.handled(l)
			continue
		}
		now := delay.Now()
		if last := r.polled.Load(); now-last >= int64(pollEvery) && r.polled.CompareAndSwap(last, now) {
			l.poll()
		}
		l.queueWait.Sample(it.at, now)
		req, _ := it.msg.(*sip.Request)
		if req != nil {
			StampReceived(req)
		}
		w.handling(req)
		if r.waited != nil {
			r.waited.HandleWaited(it.msg, time.Duration(now-it.at))
		} else {
			r.upper.HandleMessage(it.msg)
		}
		held = w.handled(l)
	}
}
