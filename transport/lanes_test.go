package transport

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
)

// TestSchedulerLanes: a source's lanes are served by several workers at
// once, each lane by one at a time and in order, and the sources in
// turn, whatever number of lanes each has ready.
func TestSchedulerLanes(t *testing.T) {
	s := newScheduler(NewLayer(Config{}).cfg.limits())
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	push := func(k netip.Addr, lane uint8, n int) {
		t.Helper()
		if r := s.push(k, item{closed: udpAddr(fmt.Sprintf("%s:%d", k, n)), lane: lane}, false); r != queued {
			t.Fatalf("push %s #%d: %v", k, n, r)
		}
	}
	port := func(it item) uint16 { return it.closed.AddrPort.Port() }
	push(a, 1, 1)
	push(a, 2, 2)
	push(a, 1, 3)
	push(b, 0, 4)
	h1, it, _ := s.next(hold{}, true)
	if port(it) != 1 {
		t.Fatalf("first %d, want a's #1", port(it))
	}
	// a's other ready lane waits for a's next turn, after b's.
	h4, it, _ := s.next(hold{}, true)
	if port(it) != 4 {
		t.Fatalf("second %d, want b's #4", port(it))
	}
	// Lane 2 of a goes to another worker while lane 1 is held.
	h2, it, _ := s.next(hold{}, true)
	if port(it) != 2 {
		t.Fatalf("third %d, want a's #2 on its second lane", port(it))
	}
	// #3 waits in lane 1, held for #1: nothing is ready.
	if s.readyLen() != 0 {
		t.Fatalf("%d sources ready while a's lane 1 is held", s.readyLen())
	}
	h3, it, _ := s.next(h1, true)
	if port(it) != 3 {
		t.Fatalf("after releasing lane 1: %d, want a's #3", port(it))
	}
	for _, h := range []hold{h2, h3, h4} {
		s.release(h)
	}
	if n, bytes := s.len(); n != 0 || bytes != 0 || len(s.sources) != 0 {
		t.Errorf("drained: %d items, %d bytes, %d sources kept", n, bytes, len(s.sources))
	}
}

// TestSchedulerHeadWait: the queue's wait is the wait of the next item to
// be served, not the mean of those served.
func TestSchedulerHeadWait(t *testing.T) {
	s := newScheduler(NewLayer(Config{}).cfg.limits())
	a := netip.MustParseAddr("192.0.2.1")
	now := delay.Now()
	if d := s.headWait(now); d != 0 {
		t.Fatalf("empty queue waits %v", time.Duration(d))
	}
	s.push(a, item{at: now - int64(time.Second), lane: 1}, false)
	s.push(a, item{at: now - int64(time.Millisecond), lane: 1}, false)
	if d := s.headWait(now); d != int64(time.Second) {
		t.Fatalf("head wait %v, want 1s", time.Duration(d))
	}
	h, _, _ := s.next(hold{}, true)
	if d := s.headWait(now); d != 0 {
		t.Fatalf("head wait %v with the only waiting item's lane held", time.Duration(d))
	}
	s.release(h)
	if d := s.headWait(now); d != int64(time.Millisecond) {
		t.Fatalf("head wait %v, want 1ms", time.Duration(d))
	}
}

// callIDsOnLanes returns n Call-IDs that laneOf puts on n different lanes.
func callIDsOnLanes(n int) []string {
	var ids []string
	seen := map[uint8]bool{}
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("call-%d", i)
		m, _ := sip.ParseMessage([]byte(strings.Replace(testRequest, "a84b4c76e66710", id, 1)))
		if l := laneOf(m, sip.Addr{}) % nLanes; !seen[l] {
			seen[l] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// requestIn is testRequest with Call-ID id, CSeq n and a branch of its
// own, from src.
func requestIn(t testing.TB, id string, n int, src sip.Addr) *sip.Request {
	t.Helper()
	req := request(t, fmt.Sprintf("SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d", src.AddrPort, id, n), src)
	req.Set("Call-ID", id)
	req.Set("CSeq", fmt.Sprintf("%d OPTIONS", n))
	return req
}

// TestLayerOneSourceParallel: the messages of one source (a trunk, an
// SBC) are handled by several workers at once, each Call-ID's in the
// order they came and never two at once. With a worker per source, the
// second Call-ID waited for the first's handler.
func TestLayerOneSourceParallel(t *testing.T) {
	l := NewLayer(Config{Workers: 4})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	h := newChanHandler()
	h.block = make(chan struct{})
	serve(t, l, h)
	feed := udp.handler(t)
	src := udpAddr("198.51.100.1:5060")
	ids := callIDsOnLanes(2)
	feed.HandleMessage(requestIn(t, ids[0], 1, src))
	feed.HandleMessage(requestIn(t, ids[1], 1, src))
	got := map[string]bool{}
	for range 2 { // both handlers run: neither is let go before
		got[recv(t, h.msgs).Header().CallID()] = true
	}
	if !got[ids[0]] || !got[ids[1]] {
		t.Fatalf("handled %v, want %v", got, ids)
	}
	close(h.block)
}

// orderHandler checks that each Call-ID's messages come in CSeq order,
// one at a time.
type orderHandler struct {
	mu      sync.Mutex
	last    map[string]int
	busy    map[string]bool
	most    int // Call-IDs handled at once, at most
	errs    []string
	pending sync.WaitGroup
	hold    chan struct{} // closed when the handlers may return
}

func (h *orderHandler) HandleMessage(m sip.Message) {
	defer h.pending.Done()
	id, n := m.Header().CallID(), int(m.Header().CSeq().Seq)
	h.mu.Lock()
	if h.busy[id] {
		h.errs = append(h.errs, fmt.Sprintf("%s #%d while another of its messages was handled", id, n))
	}
	if n != h.last[id]+1 {
		h.errs = append(h.errs, fmt.Sprintf("%s #%d after #%d", id, n, h.last[id]))
	}
	h.busy[id], h.last[id] = true, n
	h.most = max(h.most, len(h.busy))
	h.mu.Unlock()
	if n == 1 {
		<-h.hold // the first of each waits, so that the others queue up
	}
	h.mu.Lock()
	delete(h.busy, id)
	h.mu.Unlock()
}

func (h *orderHandler) HandleFlowClosed(sip.Addr) {}

// TestLayerOneSourceOrder: from one source, many Call-IDs and many
// messages of each, handled by four workers: each Call-ID's in order.
func TestLayerOneSourceOrder(t *testing.T) {
	const calls, each = 40, 25
	l := NewLayer(Config{Workers: 4})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	h := &orderHandler{last: map[string]int{}, busy: map[string]bool{}, hold: make(chan struct{})}
	h.pending.Add(calls * each)
	serve(t, l, h)
	feed := udp.handler(t)
	src := udpAddr("198.51.100.1:5060")
	for n := 1; n <= each; n++ {
		for c := range calls {
			feed.HandleMessage(requestIn(t, fmt.Sprintf("call-%d", c), n, src))
		}
	}
	close(h.hold)
	done := make(chan struct{})
	go func() { h.pending.Wait(); close(done) }()
	recv(t, done)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.errs {
		t.Error(e)
	}
	if h.most < 2 {
		t.Errorf("at most %d Call-ID handled at once, want several", h.most)
	}
	if s := l.Stats(); s.Dropped != 0 || s.Duplicates != 0 {
		t.Errorf("stats %+v", s)
	}
}

// heldLayer serves a Layer of cfg with one worker over a fake UDP transport and
// holds the worker with a request from src, so that what the test feeds
// next waits in the queue; the handler passes each message on when told
// through its block channel.
func heldLayer(t *testing.T, cfg Config, src sip.Addr) (*Layer, *fakeTransport, *chanHandler, Handler) {
	t.Helper()
	cfg.Workers = 1
	l := NewLayer(cfg)
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	h := newChanHandler()
	h.block = make(chan struct{})
	serve(t, l, h)
	t.Cleanup(func() { close(h.block) })
	feed := udp.handler(t)
	feed.HandleMessage(requestIn(t, "busy", 1, src))
	recv(t, h.msgs)
	return l, udp, h, feed
}

// TestLayerDropsQueuedRetransmission: a retransmission of a request still
// queued (a client's answer to a slow queue) is dropped, not queued twice;
// once the request is taken, a retransmission goes up again, for the
// transaction to absorb. An ACK with its INVITE's branch is not one.
func TestLayerDropsQueuedRetransmission(t *testing.T) {
	src := udpAddr("198.51.100.1:5060")
	l, _, h, feed := heldLayer(t, Config{}, src)
	r := requestIn(t, "slow", 1, src)
	feed.HandleMessage(r)
	feed.HandleMessage(requestIn(t, "slow", 1, src)) // its retransmission
	ack := requestIn(t, "slow", 1, src)
	ack.Method = sip.MethodAck
	feed.HandleMessage(ack)
	over := requestIn(t, "slow", 1, sip.Addr{Transport: sip.TCP, AddrPort: src.AddrPort, Flow: NextFlowID()})
	feed.HandleMessage(over) // over a stream: no retransmissions, not matched
	if s := l.Stats(); s.Duplicates != 1 || s.Pending != 3 {
		t.Fatalf("stats %+v, want 1 duplicate, 3 pending", s)
	}
	h.block <- struct{}{}
	var got []string
	for range 3 {
		m := recv(t, h.msgs).(*sip.Request)
		got = append(got, m.Method+"/"+m.Source.Transport)
		h.block <- struct{}{}
	}
	// The TCP one is on a lane of its own: it may come anywhere.
	if udp := slices.DeleteFunc(slices.Clone(got), func(s string) bool { return s == "OPTIONS/TCP" }); len(got) != 3 ||
		fmt.Sprint(udp) != "[OPTIONS/UDP ACK/UDP]" {
		t.Errorf("handled %v, want the UDP OPTIONS once, then the ACK, and the TCP OPTIONS", got)
	}
	feed.HandleMessage(requestIn(t, "slow", 1, src)) // taken already: it goes up
	if m := recv(t, h.msgs); m.Header().CallID() != "slow" {
		t.Errorf("retransmission after the request was taken: %s", m.Header().CallID())
	}
	if s := l.Stats(); s.Duplicates != 1 {
		t.Errorf("stats %+v, want still 1 duplicate", s)
	}
}

// TestSchedulerRecycleBound: a source recycled after a burst keeps no
// large lane, and no more than maxFree sources are kept.
func TestSchedulerRecycleBound(t *testing.T) {
	s := newScheduler(NewLayer(Config{}).cfg.limits())
	a := netip.MustParseAddr("192.0.2.1")
	for range 100 {
		s.push(a, item{lane: 3}, false)
	}
	var h hold
	for n, _ := s.len(); n > 0; n, _ = s.len() {
		h, _, _ = s.next(h, true)
	}
	s.release(h)
	if len(s.free) != 1 || cap(s.free[0].lanes[3].items) != 0 {
		t.Fatalf("%d sources kept, the burst's lane with room for %d", len(s.free), cap(s.free[0].lanes[3].items))
	}
	for i := range maxFree + 10 {
		k := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		s.push(k, item{}, false)
	}
	h = hold{}
	for n, _ := s.len(); n > 0; n, _ = s.len() {
		h, _, _ = s.next(h, true)
	}
	s.release(h)
	if len(s.free) != maxFree {
		t.Errorf("%d sources kept, want %d", len(s.free), maxFree)
	}
}

// TestLayerWaitHandler: an upper Handler that is a WaitHandler gets each
// message through HandleWaited, with how long it waited in the queue (at
// least the time a busy worker kept it there), and HandleMessage is not
// called; HandlerFuncs without Waited passes the messages to Message.
func TestLayerWaitHandler(t *testing.T) {
	src := udpAddr("198.51.100.7:5060")
	type got struct {
		id     string
		waited time.Duration
	}
	waited := make(chan got, 8)
	block := make(chan struct{})
	l := NewLayer(Config{Workers: 1})
	udp := newFake(sip.UDP, "127.0.0.1:5060")
	l.Add(udp)
	serve(t, l, HandlerFuncs{
		Message: func(m sip.Message) { t.Errorf("HandleMessage called for %s", m.Header().CallID()) },
		Waited: func(m sip.Message, d time.Duration) {
			waited <- got{m.Header().CallID(), d}
			<-block
		},
	})
	feed := udp.handler(t)
	feed.HandleMessage(requestIn(t, "busy", 1, src))
	if g := recv(t, waited); g.id != "busy" {
		t.Fatalf("first message %s", g.id)
	}
	feed.HandleMessage(requestIn(t, "queued", 1, src))
	queued := time.Now() // the message was queued before this
	if s := l.Stats(); s.Pending != 1 {
		t.Fatalf("stats %+v, want the message queued behind the busy worker", s)
	}
	released := time.Now()
	close(block)
	g := recv(t, waited)
	if g.id != "queued" || g.waited < released.Sub(queued) {
		t.Errorf("got %s after %v, want queued after at least %v", g.id, g.waited, released.Sub(queued))
	}

	var plain []string
	var mu sync.Mutex
	f := HandlerFuncs{Message: func(m sip.Message) { mu.Lock(); plain = append(plain, m.Header().CallID()); mu.Unlock() }}
	f.HandleWaited(requestIn(t, "plain", 1, src), time.Second)
	if fmt.Sprint(plain) != "[plain]" {
		t.Errorf("HandlerFuncs without Waited passed %v to Message, want [plain]", plain)
	}
}

// TestLayerMaxWait: while a source's oldest queued message has waited
// past Config.MaxWait, its new datagram requests are dropped on arrival
// and counted as stale, not its ACKs and CANCELs, nor requests over a
// stream, nor another source's.
func TestLayerMaxWait(t *testing.T) {
	src := udpAddr("198.51.100.1:5060")
	l, _, h, feed := heldLayer(t, Config{MaxWait: time.Nanosecond}, src)
	feed.HandleMessage(requestIn(t, "old", 1, src))
	feed.HandleMessage(requestIn(t, "new", 1, src))
	ack := requestIn(t, "ack", 1, src)
	ack.Method = sip.MethodAck
	feed.HandleMessage(ack)
	cancel := requestIn(t, "cancel", 1, src)
	cancel.Method = sip.MethodCancel
	feed.HandleMessage(cancel)
	feed.HandleMessage(requestIn(t, "stream", 1, sip.Addr{Transport: sip.TCP, AddrPort: src.AddrPort, Flow: NextFlowID()}))
	feed.HandleMessage(requestIn(t, "other", 1, udpAddr("198.51.100.2:5060")))
	if s := l.Stats(); s.Stale != 1 || s.Dropped != 1 || s.Pending != 5 {
		t.Fatalf("stats %+v, want 1 stale of 1 dropped, 5 pending", s)
	}
	var got []string
	for range 5 {
		h.block <- struct{}{}
		got = append(got, recv(t, h.msgs).Header().CallID())
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[ack cancel old other stream]" {
		t.Errorf("handled %v, want all but new", got)
	}
}
