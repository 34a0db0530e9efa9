package transaction

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/delay"
	"github.com/switchboard/switchboard/sip"
)

// TestOverloaded: the layer is overloaded once its handlers' mean wait for
// a CPU passes OverloadDelay; then Overloaded picks the sources that hold
// their weighted share of the places or more (a source alone always), not
// a light one nor a trunk under its share; a mean that no handler has
// refreshed for delay.Stale says nothing.
func TestOverloaded(t *testing.T) {
	flood, trunk, phone := from("192.0.2.66"), from("192.0.2.10"), from("192.0.2.30")
	weights := func(src netip.Addr) int {
		if src == trunk.AddrPort.Addr() {
			return 10
		}
		return 1
	}
	a := newAnswering(t, Config{SourceWeight: weights}, func(*sip.Request) int { return 200 })
	for i := range 30 {
		a.send(spec("OPTIONS", i, flood))
	}
	a.settled()
	if st := a.l.Stats(); st.Overloaded {
		t.Fatalf("overloaded after 30 requests served at once: %+v", st)
	}
	req := func(src sip.Addr) *sip.Request { return spec("OPTIONS", 999, src).req(t) }
	if a.l.Overloaded(req(flood), 0) {
		t.Fatal("Overloaded without overload")
	}

	// Handlers that waited three times the limit for a CPU, on and on:
	// past twice the limit, every piece of new work from a heavy source
	// is refused.
	long := int64(3 * DefaultOverloadDelay)
	for range 4 * delay.Smoothing {
		a.l.load.sample(delay.Now() - long)
	}
	if st := a.l.Stats(); !st.Overloaded || st.HandlerDelay < 2*DefaultOverloadDelay {
		t.Fatalf("after waits of %v: %+v, want overloaded", time.Duration(long), st)
	}
	if !a.l.Overloaded(req(flood), 0) {
		t.Error("the source alone, holding every place, is not refused")
	}
	for i := range 2 {
		a.send(spec("OPTIONS", i, trunk))
	}
	a.settled()
	switch {
	case !a.l.Overloaded(req(flood), 0):
		t.Error("the flood, over its share, is not refused")
	case a.l.Overloaded(req(trunk), 0):
		t.Error("the trunk, under its weighted share, is refused")
	case a.l.Overloaded(req(phone), 0):
		t.Error("a phone that holds nothing is refused")
	}

	// A light newcomer is spared while the flood holds a place or two
	// (its requests ending at once): by the shares alone it would hold
	// its share with nothing.
	c := newAnswering(t, Config{OverloadDelay: time.Hour, QueueDelay: func() time.Duration { return 3 * time.Hour }},
		func(*sip.Request) int { return 200 })
	c.send(spec("OPTIONS", 1, flood))
	c.settled()
	if c.l.Stats().Pending == 0 {
		t.Fatal("the flood holds no place")
	}
	if c.l.Overloaded(req(phone), 0) {
		t.Error("a phone that holds nothing is refused while the flood holds a place")
	}
	if !c.l.Overloaded(req(flood), 0) {
		t.Error("the flood alone is not refused")
	}

	// Waits back under the limit end it.
	for range 4 * delay.Smoothing {
		a.l.load.sample(delay.Now())
	}
	if a.l.Overloaded(req(flood), 0) {
		t.Error("still overloaded once handlers start at once")
	}
	// A stale mean says nothing.
	past := delay.Now() - int64(2*delay.Stale)
	for range 4 * delay.Smoothing {
		a.l.load.handlers.Sample(past-long, past)
	}
	if a.l.Overloaded(req(flood), 0) {
		t.Error("overloaded on a stale mean")
	}

	// OverloadDelay < 0: never.
	b := newAnswering(t, Config{OverloadDelay: -1}, func(*sip.Request) int { return 200 })
	b.send(spec("OPTIONS", 1, flood))
	for range 4 * delay.Smoothing {
		b.l.load.sample(delay.Now() - int64(time.Second))
	}
	if b.l.Overloaded(req(flood), 0) {
		t.Error("overloaded with OverloadDelay < 0")
	}
}

// TestOverloadShedShare: past the limit by half of it, about half of the
// new work is refused; from twice the limit on, all of it; under it,
// none.
func TestOverloadShedShare(t *testing.T) {
	limit := int64(DefaultOverloadDelay)
	var wait int64
	// The queue's wait alone: no handler has started, so theirs is 0.
	o := overload{limit: limit, queue: func() time.Duration { return time.Duration(wait) }}
	share := func(mean int64) float64 {
		wait = mean
		n := 0
		for range 2000 {
			if o.shed() {
				n++
			}
		}
		return float64(n) / 2000
	}
	if got := share(limit); got != 0 {
		t.Errorf("at the limit: %.2f refused, want none", got)
	}
	if got := share(limit + limit/2); got < 0.35 || got > 0.65 {
		t.Errorf("half past the limit: %.2f refused, want about half", got)
	}
	if got := share(2 * limit); got != 1 {
		t.Errorf("at twice the limit: %.2f refused, want all", got)
	}
}

// TestOverloadQueue: the wait below the layer (Config.QueueDelay) counts
// too: a queue that makes requests wait past twice the limit overloads
// the layer though its handlers start at once.
func TestOverloadQueue(t *testing.T) {
	var queue atomic.Int64
	a := newAnswering(t, Config{QueueDelay: func() time.Duration { return time.Duration(queue.Load()) }},
		func(*sip.Request) int { return 200 })
	flood := from("192.0.2.66")
	a.send(spec("OPTIONS", 1, flood))
	req := spec("OPTIONS", 999, flood).req(t)
	if a.l.Overloaded(req, 0) {
		t.Fatal("overloaded with an empty queue")
	}
	queue.Store(int64(3 * DefaultOverloadDelay))
	if !a.l.Overloaded(req, 0) || !a.l.Stats().Overloaded {
		t.Fatal("not overloaded with requests waiting three times the limit in the queue")
	}
	queue.Store(0)
	if a.l.Overloaded(req, 0) {
		t.Fatal("still overloaded once the queue is empty")
	}
}

// TestOverloadFloor: with Config.QueueLen the layer sheds only while a
// backlog of its own stands behind the wait. Requests that waited three
// times the limit with hardly anything queued (the host kept the process
// off the CPUs) are not refused; the same waits with shedFloor requests
// queued, or handed to handlers that have not started, are; and once the
// backlog drains the layer serves again at once, though the mean of the
// waits is still high (on a busy host it went on refusing after an
// overload while the queues were empty).
func TestOverloadFloor(t *testing.T) {
	var queued atomic.Int64
	a := newAnswering(t, Config{
		QueueDelay: func() time.Duration { return 3 * DefaultOverloadDelay },
		QueueLen:   func() int { return int(queued.Load()) },
	}, func(*sip.Request) int { return 200 })
	flood := from("192.0.2.66")
	a.send(spec("OPTIONS", 1, flood))
	a.settled()
	req := spec("OPTIONS", 999, flood).req(t)

	if a.l.Overloaded(req, 0) || a.l.Stats().Overloaded {
		t.Fatal("overloaded by long waits with nothing queued")
	}
	queued.Store(shedFloor - 1)
	if a.l.Overloaded(req, 0) {
		t.Fatalf("overloaded with %d queued, under the floor of %d", shedFloor-1, shedFloor)
	}
	queued.Store(shedFloor)
	if !a.l.Overloaded(req, 0) || !a.l.Stats().Overloaded {
		t.Fatalf("not overloaded with %d queued and waits of three times the limit", shedFloor)
	}
	// Handlers handed over and not started are a backlog too.
	queued.Store(shedFloor / 2)
	a.l.load.waiting.Add(shedFloor / 2)
	if !a.l.Overloaded(req, 0) {
		t.Error("not overloaded with half the floor queued and half waiting for a CPU")
	}
	a.l.load.waiting.Add(-shedFloor / 2)

	// The load drops: the queue drains, the mean still says three times
	// the limit; new work is served at once.
	queued.Store(0)
	if a.l.Overloaded(req, 0) {
		t.Error("still refusing once the queue drained")
	}
	a.send(spec("OPTIONS", 2, flood))
	a.settled()
	if st := a.l.Stats(); st.Overloaded {
		t.Errorf("after the queue drained: %+v", st)
	}
}

// TestOverloadLate: a new request that itself waited below the layer
// (HandleWaited) past four fifths of T1 is refused as new work, though the
// mean of the waits says nothing (every handler started at once); one that
// waited up to that is served; a late one is served while the
// backlog is under the floor (the host's doing); and the wait is the
// request's own: the next one, not late, is served.
func TestOverloadLate(t *testing.T) {
	var queued atomic.Int64
	var l atomic.Pointer[Layer]
	a := newAnswering(t, Config{
		QueueLen: func() int { return int(queued.Load()) },
		Admit: func(req *sip.Request, waited time.Duration) (*sip.Response, bool) {
			if l.Load().Overloaded(req, waited) {
				return sip.NewResponse(req, 503, "Overloaded"), false
			}
			return nil, false
		},
	}, func(*sip.Request) int { return 200 })
	l.Store(a.l)
	flood := from("192.0.2.66")
	n := 0
	answer := func(waited time.Duration) string {
		t.Helper()
		n++
		a.l.HandleWaited(spec("OPTIONS", n, flood).req(t), waited)
		sent := a.net.wait(t, 1)
		if len(sent) != 1 {
			t.Fatalf("sent %s, want one answer", labels(sent))
		}
		return label(sent[0].msg)
	}
	late := DefaultT1 * 4 / 5
	queued.Store(shedFloor)
	for _, c := range []struct {
		waited time.Duration
		want   string
	}{
		{0, "200 OPTIONS"},
		{2 * DefaultOverloadDelay, "200 OPTIONS"},
		{late, "200 OPTIONS"},
		{late + time.Millisecond, "503 OPTIONS"},
		{DefaultOverloadDelay, "200 OPTIONS"},
		{time.Second, "503 OPTIONS"},
	} {
		if got := answer(c.waited); got != c.want {
			t.Errorf("after a wait of %v below the layer: %s, want %s", c.waited, got, c.want)
		}
	}
	queued.Store(shedFloor - 1)
	if got := answer(time.Second); got != "200 OPTIONS" {
		t.Errorf("late with %d queued, under the floor: %s, want 200 OPTIONS", shedFloor-1, got)
	}
	// With a short T1, twice the limit still holds: a request is never
	// late while the mean would refuse only part of the new work.
	if got, want := lateAfter(int64(DefaultOverloadDelay), 100*time.Millisecond), int64(2*DefaultOverloadDelay); got != want {
		t.Errorf("late after %v with T1 100ms, want %v", time.Duration(got), time.Duration(want))
	}
	// HandleMessage knows no wait: never late.
	queued.Store(shedFloor)
	if got := a.send(spec("OPTIONS", 1000, flood)); label(got.msg) != "200 OPTIONS" {
		t.Errorf("through HandleMessage: %s, want 200 OPTIONS", got)
	}
}

// clientBoundLayer is an answering Layer with MaxClientTransactions
// max, and a new request of the one source it has seen, which brings all
// the load: Overloaded is then the client bound's answer alone.
func clientBoundLayer(t *testing.T, max int) (*answering, *sip.Request) {
	t.Helper()
	flood := from("192.0.2.66")
	a := newAnswering(t, Config{MaxClientTransactions: max}, func(*sip.Request) int { return 200 })
	a.send(spec("OPTIONS", 1, flood))
	a.settled()
	return a, spec("INVITE", 999, flood).req(t)
}

// TestOverloadClientBound: while the client transactions hold more than
// 3/4 of MaxClientTransactions the layer is overloaded, however short
// the waits: a call admitted then would find no client transaction for
// its INVITE or its BYE, and fail half way with 500. Room back, it is
// not.
func TestOverloadClientBound(t *testing.T) {
	a, req := clientBoundLayer(t, 8)
	for range 6 {
		if _, err := a.l.Request(context.Background(), clientReq(t, "OPTIONS", sip.UDP), peerUDP); err != nil {
			t.Fatal(err)
		}
	}
	if a.l.Overloaded(req, 0) {
		t.Fatal("overloaded with 6 client transactions of 8")
	}
	tx, err := a.l.Request(context.Background(), clientReq(t, "OPTIONS", sip.UDP), peerUDP)
	if err != nil {
		t.Fatal(err)
	}
	if !a.l.Overloaded(req, 0) {
		t.Fatal("not overloaded with 7 client transactions of 8")
	}
	a.l.HandleMessage(wire(t, response(tx.Request(), 200, "uas"), peerUDP))
	// Its answer ends the transaction over a reliable transport at once;
	// over UDP Timer K (T4) keeps it.
	a.clk.Advance(DefaultT4)
	eventually(t, "the answered client transaction ended", func() bool { return a.l.Stats().ClientTransactions == 6 })
	if a.l.Overloaded(req, 0) {
		t.Error("still overloaded once a client transaction ended")
	}
}

// TestOverloadClientLingering: the client transactions that only linger
// after their final response are no work: a table full of them does not
// make the layer overloaded; 3/4 of the bound working does.
func TestOverloadClientLingering(t *testing.T) {
	a, req := clientBoundLayer(t, 8)
	start := func() *ClientTx {
		t.Helper()
		tx, err := a.l.Request(context.Background(), clientReq(t, "BYE", sip.UDP), peerUDP)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	for range 8 {
		answer(t, a.l, start().Request(), 200)
	}
	if st := a.l.Stats(); st.ClientTransactions != 8 || st.ClientLingering != 8 {
		t.Fatalf("stats %+v, want 8 lingering", st)
	}
	if a.l.Overloaded(req, 0) {
		t.Fatal("overloaded by 8 lingering client transactions")
	}
	for range 6 {
		start()
	}
	if a.l.Overloaded(req, 0) {
		t.Fatal("overloaded with 6 client transactions of 8 working")
	}
	start()
	if st := a.l.Stats(); st.ClientTransactions != 8 || st.ClientLingering != 1 {
		t.Fatalf("stats %+v, want 7 working and 1 lingering", st)
	}
	if !a.l.Overloaded(req, 0) {
		t.Fatal("not overloaded with 7 client transactions of 8 working")
	}
}
