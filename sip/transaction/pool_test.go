package transaction

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// burstLayer is a Layer whose handlers each wait for the gate of their
// burst to open (when all of the burst have started) and then answer.
type burstLayer struct {
	l       *Layer
	started atomic.Int64
	size    int64
	gate    atomic.Pointer[chan struct{}]
	next    int
}

func newBurstLayer(t *testing.T, ctx context.Context, size int) *burstLayer {
	b := &burstLayer{size: int64(size)}
	b.l = New(ctx, senderFunc(func(context.Context, sip.Message, sip.Addr) error { return nil }), HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		g := *b.gate.Load()
		if b.started.Add(1)%b.size == 0 {
			close(g)
		}
		<-g
		res := sip.NewResponse(req, 200, "")
		res.SetToTag("pool")
		_ = tx.Respond(res)
	}), Config{})
	t.Cleanup(func() { b.l.Close() })
	return b
}

// burst sends size new requests and waits until their handlers have
// returned and every worker that stays has gone idle (want of them).
func (b *burstLayer) burst(t *testing.T, reqs []*sip.Request, wantIdle int) {
	t.Helper()
	g := make(chan struct{})
	b.gate.Store(&g)
	for _, r := range reqs[b.next : b.next+int(b.size)] {
		b.l.HandleMessage(r)
	}
	b.next += int(b.size)
	eventually(t, "the burst's workers idle", func() bool {
		idle, _ := b.l.workers.counts()
		return idle == wantIdle && b.l.Stats().Handlers == 0
	})
}

// TestPoolKeepsBurstWorkers: the workers of a burst of handlers that
// block together stay for the next burst, which starts no goroutine; a
// pool that kept only 128 idle started the rest again every time.
func TestPoolKeepsBurstWorkers(t *testing.T) {
	const size = 200
	b := newBurstLayer(t, context.Background(), size)
	reqs := benchRequests(t, phoneTCP, 3*size)
	b.burst(t, reqs, size)
	_, started := b.l.workers.counts()
	if started != size {
		t.Fatalf("first burst started %d workers, want %d", started, size)
	}
	b.burst(t, reqs, size)
	b.burst(t, reqs, size)
	if _, now := b.l.workers.counts(); now != started {
		t.Errorf("the next bursts started %d workers, want none", now-started)
	}
}

// TestPoolIdleCap: beyond the cap of idle workers, those that finish end.
func TestPoolIdleCap(t *testing.T) {
	b := newBurstLayer(t, context.Background(), 10)
	b.l.workers.max = 4
	b.burst(t, benchRequests(t, phoneTCP, 10), 4)
}

// TestPoolLetsOldWorkersGo: a worker idle past the TTL is let go at the
// next dispatch, while the one idle last takes the work.
func TestPoolLetsOldWorkersGo(t *testing.T) {
	b := newBurstLayer(t, context.Background(), 2)
	reqs := benchRequests(t, phoneTCP, 4)
	b.burst(t, reqs, 2)
	b.l.workers.ttl = 0 // every idle worker is past it now
	b.size = 1
	b.burst(t, reqs, 1)
	if _, started := b.l.workers.counts(); started != 2 {
		t.Errorf("%d workers started, want the first 2 only", started)
	}
}

// TestPoolEndsWithContext: when the Layer's context ends, its idle
// workers end, before Close.
func TestPoolEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := newBurstLayer(t, ctx, 3)
	b.burst(t, benchRequests(t, phoneTCP, 3), 3)
	cancel()
	eventually(t, "idle workers gone", func() bool {
		idle, _ := b.l.workers.counts()
		return idle == 0
	})
}
