package transport

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
)

func TestSchedulerRoundRobin(t *testing.T) {
	s := newScheduler(limits{perSource: 3, total: 100, perSourceBytes: 1 << 20, totalBytes: 1 << 20})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	push := func(k netip.Addr, n int) bool {
		return s.push(k, item{closed: udpAddr(netip.AddrPortFrom(k, uint16(n)).String())}, false) == queued
	}
	for i := 1; i <= 5; i++ {
		if got, want := push(a, i), i <= 3; got != want {
			t.Errorf("push a%d: %v", i, got)
		}
	}
	push(b, 1)
	push(c, 1)
	push(c, 2)
	var order []string
	var src hold
	for n, _ := s.len(); n > 0; n, _ = s.len() {
		var it item
		src, it, _ = s.next(src, true)
		order = append(order, it.closed.AddrPort.String())
	}
	want := "[192.0.2.1:1 192.0.2.2:1 192.0.2.3:1 192.0.2.1:2 192.0.2.3:2 192.0.2.1:3]"
	if got := fmt.Sprint(order); got != want {
		t.Errorf("order %s\nwant  %s", got, want)
	}
	s.release(src)
	if len(s.sources) != 0 {
		t.Errorf("%d sources kept after draining", len(s.sources))
	}
	// A forced push passes the caps.
	for range 5 {
		push(a, 9)
	}
	if s.push(a, item{}, true) != queued {
		t.Error("forced push refused")
	}
	s.close()
	if _, _, ok := s.next(hold{}, true); ok {
		t.Error("next after close")
	}
}

func TestSchedulerTotalCap(t *testing.T) {
	s := newScheduler(limits{perSource: 10, total: 4, perSourceBytes: 1 << 20, totalBytes: 1 << 20})
	for i := range 10 {
		k := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if got, want := s.push(k, item{}, false) == queued, i < 4; got != want {
			t.Errorf("push %d: %v", i, got)
		}
	}
	if len(s.sources) != 4 {
		t.Errorf("%d sources, want 4", len(s.sources))
	}
}

// TestSchedulerByteCaps: a source's queue and the whole are capped in
// bytes too; what a worker takes gives its bytes back.
func TestSchedulerByteCaps(t *testing.T) {
	s := newScheduler(limits{perSource: 100, total: 100, perSourceBytes: 10000, totalBytes: 25000})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	big := item{size: 4000}
	for i, want := range []bool{true, true, false} { // 8000, then 12000 > 10000
		if got := s.push(a, big, false) == queued; got != want {
			t.Fatalf("push a%d: %v", i, got)
		}
	}
	s.push(b, big, false)
	s.push(b, big, false)                             // 16000 in all
	if s.push(c, item{size: 9000}, false) != queued { // 25000: at the cap
		t.Fatal("push c refused below the total")
	}
	if s.push(c, item{size: 1}, false) == queued {
		t.Fatal("push beyond the total byte cap accepted")
	}
	if n, bytes := s.len(); n != 5 || bytes != 25000 {
		t.Fatalf("len %d, %d bytes", n, bytes)
	}
	src, _, _ := s.next(hold{}, true)
	if _, bytes := s.len(); bytes != 21000 {
		t.Fatalf("%d bytes after next, want 21000", bytes)
	}
	s.release(src)
	if s.push(c, item{size: 1}, false) != queued {
		t.Fatal("push refused after room was made")
	}
}

// TestSchedulerReserve: the last eighth of the total is kept for light
// sources (fewer than 8 items queued): heavy sources stop short of it.
func TestSchedulerReserve(t *testing.T) {
	s := newScheduler(limits{perSource: 100, total: 80, perSourceBytes: 1 << 20, totalBytes: 1 << 20})
	heavy := netip.MustParseAddr("192.0.2.1")
	n := 0
	for s.push(heavy, item{size: 1}, false) == queued {
		n++
	}
	if n != 70 {
		t.Fatalf("a heavy source queued %d, want 70 (80 less the reserve)", n)
	}
	for i := range 10 {
		light := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		if s.push(light, item{size: 1}, false) != queued {
			t.Fatalf("light source %d refused in the reserve", i)
		}
	}
	if s.push(netip.MustParseAddr("192.0.2.99"), item{size: 1}, false) == queued {
		t.Fatal("push beyond the total accepted")
	}
}

// TestSchedulerSourceAlone: with the Layer's default caps, one source
// alone (a trunk, or everything a load test sends from 127.0.0.1) may
// queue all but the reserve, 14336 of 16384 messages; it used to be
// held to 256 whether anyone else sent or not. Under contention it stops
// at its share, and another heavy source under its share still gets in.
func TestSchedulerSourceAlone(t *testing.T) {
	s := newScheduler(NewLayer(Config{}).cfg.limits())
	trunk, flood := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	msg := item{size: msgOverhead + 500}
	n := 0
	for s.push(trunk, msg, false) == queued {
		n++
	}
	if want := DefaultMaxPending - DefaultMaxPending/reserveShare; n != want {
		t.Fatalf("a source alone queued %d, want %d", n, want)
	}
	// Drained to 2000, it meets a flood that fills the shared space.
	for range n - 2000 {
		src, _, _ := s.next(hold{}, true)
		s.release(src)
	}
	m := 0
	for s.push(flood, msg, false) == queued {
		m++
	}
	if want := DefaultMaxPending - DefaultMaxPending/reserveShare - 2000; m != want {
		t.Fatalf("the flood queued %d, want %d", m, want)
	}
	// The trunk holds 2000, under its share (14336/2): it goes on into
	// the reserve; the flood, over it, does not.
	if s.push(trunk, msg, false) != queued {
		t.Fatal("the trunk under its share was refused in the reserve")
	}
	if s.push(flood, msg, false) == queued {
		t.Fatal("the flood over its share got into the reserve")
	}
}

// TestSchedulerMaxWait: while the oldest item of a source has waited past
// maxWait, its new datagram requests are refused on arrival (stale), not
// its ACKs and CANCELs nor what is forced; another source, with nothing
// that old, goes on; once the old item is taken the source is let in
// again.
func TestSchedulerMaxWait(t *testing.T) {
	const wait = int64(time.Second)
	s := newScheduler(limits{perSource: 100, total: 100, perSourceBytes: 1 << 20, totalBytes: 1 << 20, maxWait: wait})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	req := func(at int64, lane uint8) item { return item{at: at, lane: lane, resent: true} }
	if got := s.push(a, req(0, 1), false); got != queued {
		t.Fatalf("first item: %v", got)
	}
	if got := s.push(a, req(wait, 2), false); got != queued {
		t.Errorf("at maxWait: %v, want queued", got)
	}
	if got := s.push(a, req(wait+1, 3), false); got != stale {
		t.Errorf("past maxWait: %v, want stale", got)
	}
	if got := s.push(a, item{at: wait + 1, lane: 3}, false); got != queued {
		t.Errorf("an ACK or CANCEL past maxWait: %v, want queued", got)
	}
	if got := s.push(a, req(wait+1, 3), true); got != queued {
		t.Errorf("forced past maxWait: %v, want queued", got)
	}
	if got := s.push(b, req(wait+1, 1), false); got != queued {
		t.Errorf("another source: %v, want queued", got)
	}
	// Taking a's oldest (lane 1, queued at 0) leaves its oldest at wait.
	h, it, _ := s.next(hold{}, true)
	if it.at != 0 {
		t.Fatalf("took the item queued at %d first", it.at)
	}
	s.release(h)
	if got := s.push(a, req(wait+1, 4), false); got != queued {
		t.Errorf("once the old item was taken: %v, want queued", got)
	}
	// Its oldest is now the one queued at wait.
	if got := s.push(a, req(2*wait, 4), false); got != queued {
		t.Errorf("at maxWait after the oldest: %v, want queued", got)
	}
	if got := s.push(a, req(2*wait+1, 4), false); got != stale {
		t.Errorf("past maxWait after the oldest: %v, want stale", got)
	}
	// A source that emptied starts afresh.
	for s.pending > 0 {
		h, _, _ := s.next(hold{}, true)
		s.release(h)
	}
	if got := s.push(a, req(10*wait, 1), false); got != queued {
		t.Errorf("the first item after the source emptied: %v, want queued", got)
	}
	if got := s.push(a, req(11*wait, 2), false); got != queued {
		t.Errorf("at maxWait after the source emptied: %v, want queued", got)
	}
	s = newScheduler(limits{perSource: 100, total: 100, perSourceBytes: 1 << 20, totalBytes: 1 << 20})
	s.push(a, req(0, 1), false)
	if got := s.push(a, req(10*wait, 1), false); got != queued {
		t.Errorf("without maxWait: %v, want queued", got)
	}
}

// BenchmarkSchedulerPush measures a datagram request queued and taken
// from a source that keeps an item waiting in each of its lanes, as a
// trunk or a load test does: the push checks the source's queue against
// maxWait.
func BenchmarkSchedulerPush(b *testing.B) {
	s := newScheduler(limits{total: 1 << 20, totalBytes: 1 << 30, maxWait: int64(time.Hour)})
	src := netip.MustParseAddr("192.0.2.1")
	for l := range nLanes {
		s.push(src, item{at: 1, lane: uint8(l), resent: true}, false)
	}
	var at int64 = 2
	b.ReportAllocs()
	for b.Loop() {
		at++
		if s.push(src, item{at: at, lane: uint8(at % nLanes), resent: true}, false) != queued {
			b.Fatal("refused")
		}
		h, _, _ := s.next(hold{}, true)
		s.release(h)
	}
}

// classItem is a datagram message from src, parsed from text, as the
// Layer queues it.
func classItem(t *testing.T, text string, src sip.Addr, at int64) item {
	t.Helper()
	m, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	switch m := m.(type) {
	case *sip.Request:
		m.Source = src
	case *sip.Response:
		m.Source = src
	}
	it := item{msg: m, at: at, lane: laneOf(m, src), resent: true}
	if k := dupKeyOf(m, src); k != (dupKey{}) {
		it.dup = k.hash()
	}
	return it
}

// begunText is testRequest as a request of the given method carrying on
// work begun: within a dialog (a To tag), or answering a challenge.
func begunText(method, callID string, credentials bool) string {
	s := strings.ReplaceAll(testRequest, "OPTIONS", method)
	s = strings.Replace(s, "a84b4c76e66710", callID, 1)
	if credentials {
		return strings.Replace(s, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"alice\"\r\n", 1)
	}
	return strings.Replace(s, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1)
}

// TestSchedulerClasses: what carries on work begun (a response, a
// request within a dialog, one with credentials) is taken before the new
// work queued ahead of it, but a fresh item goes after begunBurst begun
// ones in a row; new requests, CANCELs and what comes over a stream keep
// to the fresh class.
func TestSchedulerClasses(t *testing.T) {
	src := udpAddr("192.0.2.1:5060")
	stream := sip.Addr{Transport: sip.TCP, AddrPort: src.AddrPort, Flow: 7}
	response := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds\r\n" +
		"To: <sip:bob@example.com>;tag=b1\r\nFrom: <sip:alice@example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	for _, c := range []struct {
		name, text string
		src        sip.Addr
		want       uint8
	}{
		{"new request", testRequest, src, fresh},
		{"CANCEL", strings.ReplaceAll(testRequest, "OPTIONS", "CANCEL"), src, fresh},
		{"in a dialog over a stream", begunText("BYE", "s", false), stream, fresh},
		{"in a dialog", begunText("BYE", "d", false), src, begun},
		{"with credentials", begunText("INVITE", "c", true), src, begun},
		{"response", response, src, begun},
	} {
		if got := classOf(classItem(t, c.text, c.src, 0).msg); got != c.want {
			t.Errorf("%s: class %d, want %d", c.name, got, c.want)
		}
	}
	if classOf(nil) != fresh {
		t.Error("a flow's closing is not fresh")
	}

	s := newScheduler(limits{total: 1000, totalBytes: 1 << 30})
	key := src.AddrPort.Addr()
	now := delay.Now() // none of it late
	ids := callIDsOnLanes(nLanes)
	for i := range 3 * nLanes {
		s.push(key, classItem(t, strings.Replace(testRequest, "a84b4c76e66710", fmt.Sprint("new-", i), 1), src, now), false)
	}
	for i := range begunBurst + 2 {
		// Each on a lane of its own, so that none waits for another.
		s.push(key, classItem(t, begunText("BYE", ids[i], i%2 == 0), src, now), false)
	}
	var got []string
	for range begunBurst + 3 {
		h, it, _ := s.next(hold{}, true)
		s.release(h)
		got = append(got, it.msg.(*sip.Request).Method)
	}
	want := slices.Repeat([]string{"BYE"}, begunBurst)
	want = append(want, "OPTIONS", "BYE", "BYE")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("taken %v\nwant  %v", got, want)
	}
}

// TestSchedulerMaxWaitByClass: new work that has waited past maxWait
// makes the source's new requests stale, not its requests within a
// dialog, which are served first and wait little.
func TestSchedulerMaxWaitByClass(t *testing.T) {
	const wait = int64(time.Second)
	src := udpAddr("192.0.2.1:5060")
	key := src.AddrPort.Addr()
	s := newScheduler(limits{total: 100, totalBytes: 1 << 30, maxWait: wait})
	s.push(key, classItem(t, testRequest, src, 0), false)
	newer := strings.Replace(testRequest, "a84b4c76e66710", "newer", 1)
	if got := s.push(key, classItem(t, newer, src, wait+1), false); got != stale {
		t.Errorf("new request behind new work older than maxWait: %v, want stale", got)
	}
	if got := s.push(key, classItem(t, begunText("BYE", "bye", false), src, wait+1), false); got != queued {
		t.Errorf("BYE behind new work older than maxWait: %v, want queued", got)
	}
	if got := s.push(key, classItem(t, begunText("INFO", "info", false), src, 2*wait+2), false); got != stale {
		t.Errorf("request within a dialog behind a BYE older than maxWait: %v, want stale", got)
	}
}

// TestSchedulerHeadWaitClasses: the queue's wait is that of the class
// that waits longer, the new work, though begun work is served first.
func TestSchedulerHeadWaitClasses(t *testing.T) {
	src := udpAddr("192.0.2.1:5060")
	key := src.AddrPort.Addr()
	s := newScheduler(limits{total: 100, totalBytes: 1 << 30})
	now := delay.Now() // the new request not late yet, when taken
	s.push(key, classItem(t, testRequest, src, now), false)
	s.push(key, classItem(t, begunText("BYE", "bye", false), src, now+int64(time.Second)), false)
	if d := s.headWait(now + int64(3*time.Second)); d != int64(3*time.Second) {
		t.Errorf("head wait %v, want the new request's 3s", time.Duration(d))
	}
	h, it, _ := s.next(hold{}, true)
	if it.msg.(*sip.Request).Method != "BYE" {
		t.Fatalf("took %s first, want the BYE", it.msg.(*sip.Request).Method)
	}
	s.release(h)
	if d := s.headWait(now + int64(3*time.Second)); d != int64(3*time.Second) {
		t.Errorf("head wait %v after the BYE, want 3s", time.Duration(d))
	}
}

// TestSchedulerLateFreshFirst: new work that has waited lateWait is
// taken before the begun work queued with it, for it will only be
// refused; younger new work waits its turn behind the begun work.
func TestSchedulerLateFreshFirst(t *testing.T) {
	src := udpAddr("192.0.2.1:5060")
	key := src.AddrPort.Addr()
	s := newScheduler(limits{total: 100, totalBytes: 1 << 30})
	now := delay.Now()
	s.push(key, classItem(t, testRequest, src, now-2*lateWait), false)
	s.push(key, classItem(t, begunText("BYE", "bye", false), src, now), false)
	young := strings.Replace(testRequest, "a84b4c76e66710", "young", 1)
	s.push(key, classItem(t, young, src, now), false)
	s.push(key, classItem(t, begunText("BYE", "bye2", false), src, now), false)
	var got []string
	for range 4 {
		h, it, _ := s.next(hold{}, true)
		s.release(h)
		got = append(got, it.msg.Header().CallID())
	}
	if want := "[a84b4c76e66710 bye bye2 young]"; fmt.Sprint(got) != want {
		t.Errorf("taken %v, want %s", got, want)
	}
}

// TestDupKeyHash: a key hashes alike each time, a change in any of its
// parts changes the hash, and no hash is 0 (no key).
func TestDupKeyHash(t *testing.T) {
	base := dupKey{branch: "z9hG4bK776asdhds", method: sip.MethodRegister, callID: "a84b4c76e66710", src: netip.MustParseAddrPort("192.0.2.1:5060")}
	same := base
	same.branch = strings.Clone(base.branch)
	if same.hash() != base.hash() {
		t.Fatal("one key, two hashes")
	}
	seen := map[uint64]string{base.hash(): "base"}
	for name, k := range map[string]dupKey{
		"branch":  {branch: "z9hG4bK776asdhdt", method: base.method, callID: base.callID, src: base.src},
		"method":  {branch: base.branch, method: sip.MethodInvite, callID: base.callID, src: base.src},
		"call-id": {branch: base.branch, method: base.method, callID: "a84b4c76e66711", src: base.src},
		"address": {branch: base.branch, method: base.method, callID: base.callID, src: netip.MustParseAddrPort("192.0.2.2:5060")},
		"port":    {branch: base.branch, method: base.method, callID: base.callID, src: netip.MustParseAddrPort("192.0.2.1:5061")},
		"zone":    {branch: base.branch, method: base.method, callID: base.callID, src: netip.MustParseAddrPort("[fe80::1%eth0]:5060")},
		"no zone": {branch: base.branch, method: base.method, callID: base.callID, src: netip.MustParseAddrPort("[fe80::1]:5060")},
		// The parts' bounds count: the same bytes split otherwise.
		"split": {branch: base.branch + "R", method: "EGISTER", callID: base.callID, src: base.src},
		"empty": {},
	} {
		h := k.hash()
		if h == 0 {
			t.Errorf("%s: hash 0", name)
		}
		if other, ok := seen[h]; ok {
			t.Errorf("%s hashes as %s", name, other)
		}
		seen[h] = name
	}
}

// BenchmarkSchedulerDuplicates is BenchmarkSchedulerPush with datagram
// requests, whose retransmissions the queue finds, behind 4,096 others,
// as under overload; each key's hash in the loop, as the Layer takes it.
func BenchmarkSchedulerDuplicates(b *testing.B) {
	s := newScheduler(limits{total: 1 << 20, totalBytes: 1 << 30, maxWait: int64(time.Hour)})
	src := netip.MustParseAddr("192.0.2.1")
	const depth = 4096
	keys := make([]dupKey, 2*depth)
	for i := range keys {
		keys[i] = dupKey{branch: fmt.Sprintf("z9hG4bK%016x", i), method: sip.MethodRegister, callID: fmt.Sprintf("%016x@192.0.2.1", i), src: netip.AddrPortFrom(src, 5060)}
	}
	var at int64 = 1
	for i := range depth {
		at++
		s.push(src, item{at: at, lane: uint8(i % nLanes), dup: keys[i].hash(), resent: true}, false)
	}
	i := depth
	b.ReportAllocs()
	for b.Loop() {
		at++
		if s.push(src, item{at: at, lane: uint8(i % nLanes), dup: keys[i%len(keys)].hash(), resent: true}, false) != queued {
			b.Fatal("refused")
		}
		i++
		h, _, _ := s.next(hold{}, true)
		s.release(h)
	}
}
