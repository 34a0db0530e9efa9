//go:build linux

package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/mmsg"
	"golang.org/x/sys/unix"
)

// Batch sizes of the RTP poller: datagrams read from one socket per
// system call, ready sockets taken per wake-up, datagrams sent to browsers
// per system call. A socket is read at most pollRecvRounds times a round;
// one with more waiting is read again in the next round.
const (
	pollRecvBatch   = 8
	pollRecvRounds  = 4
	pollEvents      = 128
	pollSendBatch   = 64
	pollDatagramMax = 1500 // what the goroutine reader takes too
	iceSendSlot     = 1600 // an RTP packet of pollDatagramMax and its SRTP tag
	// coalesceBelow: a round that read fewer datagrams than this is
	// followed by the Options.Coalesce wait; a larger one means the
	// poller is busy enough that its rounds fill without it.
	coalesceBelow = 32
	// iceRecvRounds caps the shared ICE socket's recvmmsg calls a
	// round, as pollRecvRounds the RTP sockets': it carries every
	// browser's media, so it gets more.
	iceRecvRounds = 8
)

// Event ids in the poller's epoll set that are not sockets of bridges
// (those take ids from 1; the stop event is 0).
const (
	pollICEID    = -1 // the shared ICE socket
	pollResumeID = -2 // pion's queue has room again (pionQueue.resume)
)

// rtpPoller reads the RTP leg's sockets of every bridge of an engine from
// one goroutine: the sockets sit in an epoll set of the poller's own, so
// that one wake-up reads every socket that has datagrams (recvmmsg,
// several a call) where a goroutine per socket would be woken for each
// datagram. The goroutine waits for the set in Go's network poller (the
// set's descriptor is in it, see pollWaiter), not in a blocking
// epoll_wait of its own. The phone's audio for browsers on the fast path
// leaves in one sendmmsg per wake-up on the shared ICE socket; the batch
// is sent at the end of the wake-up that filled it.
//
// At low load each datagram would wake the poller alone (a generator of
// calls spreads them over the 20 ms of an audio frame), and the wake-up
// costs more than the datagram's relay. After a round that read few
// datagrams, the poller pauses for coalesce (Options.Coalesce, a timerfd)
// before it looks again, so that the next round finds those that came in
// the meantime: one wake-up for several, each delayed by at most
// coalesce.
//
// With the fast path the poller reads the shared ICE socket too, so that
// one wake-up (and one pause) serves both directions of every call: the
// browsers' audio on the fast path is decrypted and relayed to the phones
// in the round that reads it, and what is pion's (STUN, DTLS, SRTCP,
// video, legs on pion's path) is queued for pion's mux read loop
// (pionQueue, bounded: when full the poller leaves the socket unread
// until the read loop has made room).
type rtpPoller struct {
	log   *slog.Logger
	clock clock.Clock
	epfd  int
	// coalesce is the wait after a round of fewer than coalesceBelow
	// datagrams, none when not positive; pause sleeps (a test's hook).
	coalesce time.Duration
	pause    func(time.Duration)
	// stop is an eventfd in the set: Close writes it to wake the
	// goroutine, which then closes the set; Close closes stop.
	stop    int
	stopped atomic.Bool

	// mu is read-held while a wake-up handles datagrams: remove returns
	// when none of the socket's is in flight, after which its descriptor
	// is never touched again.
	mu     sync.RWMutex
	socks  map[int32]*polledSock
	nextID int32
	closed bool

	// ice is the fast path's socket, read here; nil without it. resume
	// is an eventfd in the set that pion's queue writes when it has
	// room again (resumeMu: not once Close closed it).
	ice      *fastConn
	resumeMu sync.Mutex
	resume   int

	// Used by the poller's goroutine only.
	events []unix.EpollEvent
	in     *mmsg.Batch
	out    *iceSender // nil without the fast path
	pkt    rtp.Packet
	// again lists the sockets read to their cap in the last round;
	// retry is its spare. Both are used under p.mu's read lock.
	again, retry []int32
	// round counts the datagrams of the round being handled.
	round int
	// pionPending: the round queued datagrams for pion's read loop,
	// which is woken at the end of the round (only then: most rounds
	// carry the fast path's alone, and a wake-up costs a thread's).
	pionPending bool
	// waits parks the goroutine in Go's network poller until the epoll
	// set has events, and makes the pause.
	waits loopWaits
	done  chan struct{}

	wakeups, recvCalls, datagrams, pauses atomic.Uint64
}

// polledSock is one socket in the poller.
type polledSock struct {
	b    *Bridge
	fd   uintptr
	rtcp bool
}

// newRTPPoller starts the poller's goroutine; ice is the fast path's
// shared ICE socket, which the poller then reads and sends the fast
// path's datagrams on, nil without it (or when it has no batch reader);
// coalesce is Options.Coalesce. Close stops it.
func newRTPPoller(log *slog.Logger, c clock.Clock, ice *fastConn, coalesce time.Duration) (*rtpPoller, error) {
	return startRTPPoller(log, c, ice, coalesce, nil)
}

// startRTPPoller is newRTPPoller with a test's pause in place of the
// timer's, unless nil.
func startRTPPoller(log *slog.Logger, c clock.Clock, ice *fastConn, coalesce time.Duration, pause func(time.Duration)) (*rtpPoller, error) {
	if ice != nil && ice.rd == nil {
		ice = nil
	}
	in, err := mmsg.New(mmsg.Config{Slots: pollRecvBatch, Size: pollDatagramMax})
	if err != nil {
		return nil, fmt.Errorf("media: rtp poller: %w", err)
	}
	var out *iceSender
	if ice != nil {
		if out, err = newICESender(ice.rd.sock); err != nil {
			return nil, fmt.Errorf("media: rtp poller: %w", err)
		}
	}
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: rtp poller: %w", err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("media: rtp poller: %w", err)
	}
	resume := -1
	// Id 0 is the stop event's; sockets take ids from 1.
	err = unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, stop, &unix.EpollEvent{Events: unix.EPOLLIN})
	if err == nil && ice != nil {
		resume, err = addICE(fd, ice.rd)
	}
	var waits loopWaits
	if err == nil {
		waits, err = newLoopWaits(fd, "rtp poller")
	}
	if err != nil {
		_ = unix.Close(fd)
		_ = unix.Close(stop)
		if resume >= 0 {
			_ = unix.Close(resume)
		}
		return nil, fmt.Errorf("media: rtp poller: %w", err)
	}
	if pause == nil {
		pause = waits.timer.sleep
	}
	p := &rtpPoller{
		log:      log,
		clock:    c,
		epfd:     fd,
		coalesce: coalesce,
		pause:    pause,
		stop:     stop,
		socks:    map[int32]*polledSock{},
		events:   make([]unix.EpollEvent, pollEvents),
		in:       in,
		out:      out,
		ice:      ice,
		resume:   resume,
		waits:    waits,
		done:     make(chan struct{}),
	}
	if ice != nil {
		ice.feed().setResume(p.resumeICE)
	}
	go p.run()
	return p, nil
}

// addICE puts the ICE socket of r in the epoll set epfd, edge-triggered
// as the bridges' sockets, with an eventfd for pion's queue to say it has
// room again; it returns the eventfd.
func addICE(epfd int, r *iceReader) (int, error) {
	resume, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, err
	}
	err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, resume, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: pollResumeID})
	if err == nil {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, r.sock.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: pollICEID})
	}
	if err != nil {
		_ = unix.Close(resume)
		return -1, err
	}
	return resume, nil
}

// resumeICE wakes the poller to read the ICE socket again, which it left
// when pion's queue was full.
func (p *rtpPoller) resumeICE() {
	p.resumeMu.Lock()
	defer p.resumeMu.Unlock()
	if p.resume >= 0 {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(p.resume, one[:])
	}
}

// run waits for datagrams and handles them until Close.
//
// The sockets are in the set edge-triggered and each is read until a
// recvmmsg comes back short (its queue was empty then): a datagram that
// comes later makes a new edge. Level-triggered sockets would be put back
// on the ready list by each epoll_wait, to be found empty by the next.
func (p *rtpPoller) run() {
	defer close(p.done)
	defer func() {
		p.waits.close()
		_ = unix.Close(p.epfd)
	}()
	// capped: sockets were read to their cap (they come first); more:
	// that, or a pause just ended. Either way the set is read without
	// waiting first.
	more, capped := false, false
	for {
		if !more {
			if err := p.waits.ready.wait(); err != nil {
				p.log.Error("media: rtp poller stopped", "err", err)
				return
			}
		}
		n, err := epollNow(p.epfd, p.events)
		if err != nil {
			n = 0 // EINTR
		}
		if p.stopped.Load() {
			return
		}
		if n == 0 && !capped {
			more = false
			continue
		}
		p.wakeups.Add(1)
		// A full set of events may have left some out: another
		// round without waiting.
		capped = p.handle(p.events[:n]) || n == len(p.events)
		more = capped
		if !capped && p.coalesce > 0 && p.round > 0 && p.round < coalesceBelow {
			// The gate is shut: what comes during the pause wakes
			// nobody, and is read right after it.
			p.pauses.Add(1)
			p.pause(p.coalesce)
			more = true
		}
	}
}

// handle reads the sockets of evs and those left with datagrams by the
// last round; true when some are left again.
func (p *rtpPoller) handle(evs []unix.EpollEvent) bool {
	now := p.clock.Now() // one clock read for the wake-up's datagrams
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.round = 0
	p.retry, p.again = p.again, p.retry[:0]
	for _, id := range p.retry {
		if id == pollICEID {
			p.drainICE(now)
		} else {
			p.drain(id, now)
		}
	}
	for _, ev := range evs {
		switch ev.Fd {
		case pollResumeID:
			var b [8]byte
			_, _ = readNow(p.resume, b[:])
			p.drainICE(now)
		case pollICEID:
			p.drainICE(now)
		default:
			p.drain(ev.Fd, now)
		}
	}
	if p.out != nil {
		p.out.flush()
	}
	if p.pionPending {
		// After the round's sends: waking pion's read loop costs a
		// system call and brings a thread to compete for the CPUs,
		// which the relayed datagrams need not wait for.
		p.pionPending = false
		p.ice.q.notify()
	}
	return len(p.again) > 0
}

// drain reads socket id until it is empty, or for pollRecvRounds calls
// (a flood on one port does not hold the others up): then it is read
// again in the next round. p.mu is read-held.
func (p *rtpPoller) drain(id int32, now time.Time) {
	s := p.socks[id]
	if s == nil {
		return
	}
	for range pollRecvRounds {
		n, err := p.in.Recv(s.fd)
		if err != nil {
			return // EAGAIN: empty
		}
		p.recvCalls.Add(1)
		p.datagrams.Add(uint64(n))
		p.round += n
		for i := range n {
			d := p.in.Datagram(i)
			switch {
			case s.rtcp:
				s.b.rtpIn.addRTCP()
			case d.Truncated || !d.Src.IsValid():
				s.b.rtpIn.drop(dropMalformed)
			default:
				s.b.fromRTP(d.B, d.Src, &p.pkt, now, p.out)
			}
		}
		if n < p.in.Cap() {
			return // the queue was empty: a later datagram makes an edge
		}
	}
	p.again = append(p.again, id)
}

// drainICE reads the shared ICE socket until it is empty, for
// iceRecvRounds calls, or until pion's queue has no room for another
// batch (its read loop resumes the poller). The fast path's datagrams are
// relayed here, the others queued for pion in the order they came. p.mu
// is read-held.
func (p *rtpPoller) drainICE(now time.Time) {
	c, r := p.ice, p.ice.rd
	q := c.q
	for range iceRecvRounds {
		if !q.reserve(r.m.Cap()) {
			return
		}
		n, err := r.recv()
		if err != nil {
			return // EAGAIN: empty; or closed
		}
		p.round += n
		for i := range n {
			d := r.m.Datagram(i)
			if d.Truncated || !d.Src.IsValid() || len(d.B) == 0 {
				continue
			}
			if !c.handle(d.B, d.Src, now) {
				q.push(d.B, d.Src)
				p.pionPending = true
			}
		}
		if n < r.m.Cap() {
			return
		}
	}
	p.again = append(p.again, pollICEID)
}

// add puts the bridge's RTP and RTCP sockets in the poller, out of Go's
// network poller; false when it cannot (the bridge then reads them with
// goroutines of its own).
func (p *rtpPoller) add(b *Bridge) bool {
	pp := b.pair
	v6 := pp.rtp.LocalAddr().(*net.UDPAddr).IP.To4() == nil
	var fds [2]int
	for i, c := range []*net.UDPConn{pp.rtp, pp.rtcp} {
		fd, err := dupSocket(c)
		if err != nil {
			if i == 1 {
				_ = unix.Close(fds[0])
			}
			p.log.Warn("media: rtp poller: the bridge reads its sockets itself", "err", err)
			return false
		}
		fds[i] = fd
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.closed {
		err = ErrClosed
	}
	var ids [2]int32
	for i := 0; i < 2 && err == nil; i++ {
		ids[i] = p.freeID()
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: ids[i]}
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fds[i], &ev); err == nil {
			p.socks[ids[i]] = &polledSock{b: b, fd: uintptr(fds[i]), rtcp: i == 1}
		}
	}
	if err != nil {
		for _, id := range ids {
			p.removeLocked(id)
		}
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
		p.log.Warn("media: rtp poller: the bridge reads its sockets itself", "err", err)
		return false
	}
	// From here the duplicates are the sockets: Go's are closed.
	_ = pp.rtp.Close()
	_ = pp.rtcp.Close()
	pp.polled = &polledPair{rtp: &rawUDP{fd: fds[0], v6: v6}, rtcp: &rawUDP{fd: fds[1], v6: v6}}
	b.pollIDs = ids
	return true
}

// freeID returns an id no socket in the poller has. p.mu is held.
func (p *rtpPoller) freeID() int32 {
	for {
		p.nextID++
		if p.nextID <= 0 {
			p.nextID = 1
		}
		if p.socks[p.nextID] == nil {
			return p.nextID
		}
	}
}

// remove takes the bridge's sockets out; it returns when no datagram of
// theirs is in flight, so that they may be closed.
func (p *rtpPoller) remove(b *Bridge) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range b.pollIDs {
		p.removeLocked(id)
	}
}

func (p *rtpPoller) removeLocked(id int32) {
	if s := p.socks[id]; s != nil {
		delete(p.socks, id)
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(s.fd), nil)
	}
}

// Close stops the poller's goroutine and closes its epoll descriptor;
// sockets still in it are left to their bridges.
func (p *rtpPoller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.stopped.Store(true)
	var one [8]byte
	one[0] = 1 // a count other than zero, whatever the byte order
	_, err := unix.Write(p.stop, one[:])
	<-p.done
	// Closed here, not by the goroutine, which may see stopped and
	// return before the write (after a pause it looks without waiting).
	_ = unix.Close(p.stop)
	p.resumeMu.Lock()
	if p.resume >= 0 {
		_ = unix.Close(p.resume)
		p.resume = -1
	}
	p.resumeMu.Unlock()
	return err
}

func (p *rtpPoller) len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.socks)
}

// sockFD returns the descriptor of c, which stays open as long as c.
func sockFD(c *net.UDPConn) (uintptr, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var fd uintptr
	if err := raw.Control(func(f uintptr) { fd = f }); err != nil {
		return 0, false
	}
	return fd, true
}

// iceSender queues the fast path's datagrams to browsers on the shared
// ICE socket and sends them with sendmmsg. Used by the poller's goroutine
// only.
type iceSender struct {
	sock   *rawUDP
	m      *mmsg.Batch
	owners []*Bridge // of each queued datagram, to count a failed send

	calls, sent atomic.Uint64
}

func newICESender(sock *rawUDP) (*iceSender, error) {
	m, err := mmsg.New(mmsg.Config{Slots: pollSendBatch, Size: iceSendSlot, IPv6: sock.v6})
	if err != nil {
		return nil, err
	}
	return &iceSender{sock: sock, m: m, owners: make([]*Bridge, pollSendBatch)}, nil
}

// slot returns the buffer for the next datagram, sending the batch first
// when it is full.
func (s *iceSender) slot() []byte {
	if b := s.m.Next(); b != nil {
		return b
	}
	s.flush()
	return s.m.Next()
}

// queue adds the datagram enc for dst: written in the last slot, or in
// memory that stays unchanged until the flush (the batch does not copy
// it); false when it is larger than a slot or dst of another family.
func (s *iceSender) queue(b *Bridge, enc []byte, dst netip.AddrPort) bool {
	i := s.m.Len()
	if s.m.Queue(enc, dst, netip.Addr{}) != nil {
		return false
	}
	s.owners[i] = b
	return true
}

// flush sends what is queued. A datagram the kernel refuses is counted as
// a failed relay of its bridge and the rest still go; when the socket's
// buffer is full the rest are dropped, as the network would.
func (s *iceSender) flush() {
	for start := 0; start < s.m.Len(); {
		n, err := s.sock.sendBatch(s.m, start)
		s.calls.Add(1)
		s.sent.Add(uint64(n))
		start += n
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, net.ErrClosed):
			for i := start; i < s.m.Len(); i++ {
				s.owners[i].rtpIn.drop(dropFailed)
			}
			start = s.m.Len()
		case err != nil:
			s.owners[start].rtpIn.drop(dropFailed)
			start++
		}
	}
	clear(s.owners[:s.m.Len()])
	s.m.Reset()
}

// mustWait reports whether the reader's next read would wait in
// epoll_wait: its batch is handed out and its last recvmmsg found the
// queue empty.
func (r *iceReader) mustWait() bool { return r.next >= r.n && r.empty }

// iceWaits are the ICE read loop's waits in Go's network poller: for the
// reader's epoll set (through a gate) and the coalescing pause.
type iceWaits struct {
	loopWaits
	r *iceReader
}

// newICEWaits returns nil when it cannot: the reader then waits in
// epoll_wait, without pauses.
func newICEWaits(r *iceReader, log *slog.Logger) *iceWaits {
	waits, err := newLoopWaits(r.ep, "ice reader")
	if err != nil {
		log.Warn("media: the ice socket's reader waits in epoll_wait", "err", err)
		return nil
	}
	r.polled = true
	return &iceWaits{loopWaits: waits, r: r}
}

// wait returns when the reader's epoll set has events, through the gate;
// after a pause (the gate shut) it first takes the events the set has
// now, and waits only without them.
func (w *iceWaits) wait(paused bool) error {
	if paused && w.r.readyNow() {
		return nil
	}
	return w.ready.wait()
}

// sparse reports whether the reader's next read needs a system call and
// the last one brought fewer than coalesceBelow datagrams: the reader's
// owner then pauses first (fastConn.coalesce).
func (r *iceReader) sparse() bool {
	return r.next >= r.n && r.n > 0 && r.n < coalesceBelow
}

// polledPair is a port pair's sockets once the poller reads them: out of
// Go's network poller, which would otherwise wake a thread for each
// datagram (its epoll set holds them edge-triggered, and nobody waits on
// them there).
type polledPair struct {
	rtp, rtcp *rawUDP
}

func (p *polledPair) close() {
	p.rtp.close()
	p.rtcp.close()
}

// rawUDP is a non-blocking UDP socket outside Go's network poller, for
// sending; the poller reads it. A send that would wait is dropped, as the
// network would.
type rawUDP struct {
	mu sync.Mutex // serialises the sends (sa) and the close
	fd int        // -1 once closed
	v6 bool
	sa mmsg.Sockaddr
}

// dupSocket returns a duplicate of c's descriptor. Once c is closed (Go
// takes its descriptor out of its network poller and closes it) the
// duplicate holds the socket alone, non-blocking like c (the mode belongs
// to the socket).
func dupSocket(c *net.UDPConn) (int, error) {
	fd, ok := sockFD(c)
	if !ok {
		return -1, errors.New("media: rtp poller: no descriptor")
	}
	nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("media: rtp poller: dup: %w", err)
	}
	return nfd, nil
}

// sendBatch sends the datagrams of m from start on (sendmmsg), without
// waiting: how many went, and the error of the first that did not.
func (s *rawUDP) sendBatch(m *mmsg.Batch, start int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	return m.Send(uintptr(s.fd), start)
}

func (s *rawUDP) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
}

// WriteToUDPAddrPort sends b to dst, without waiting.
func (s *rawUDP) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	n, err := mmsg.SendTo(uintptr(s.fd), b, dst, s.v6, &s.sa)
	if errors.Is(err, mmsg.ErrFamily) {
		return 0, &net.AddrError{Err: "address of another family", Addr: dst.String()}
	}
	return n, err
}

func (e *Engine) batchStats() BatchStats {
	var st BatchStats
	if p := e.poller; p != nil {
		st.Wakeups, st.RTPReads, st.RTPDatagrams = p.wakeups.Load(), p.recvCalls.Load(), p.datagrams.Load()
		st.Pauses = p.pauses.Load()
		if p.out != nil {
			st.ICESends, st.ICESent = p.out.calls.Load(), p.out.sent.Load()
		}
	}
	if e.fast != nil && e.fast.rd != nil {
		st.ICEReads, st.ICEDatagrams = e.fast.rd.calls.Load(), e.fast.rd.datagrams.Load()
		st.ICEPauses = e.fast.pauses.Load()
		if q := e.fast.q; q != nil {
			st.PionHolds, st.PionQueued = q.counts()
		}
	}
	return st
}
