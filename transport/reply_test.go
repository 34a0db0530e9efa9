package transport

import (
	"context"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// fakeBatcher is a fakeTransport that batches: what its batches write
// is recorded apart from what Send writes.
type fakeBatcher struct {
	*fakeTransport
	mu      sync.Mutex
	flushed [][]string    // the messages of each Flush
	flush   chan struct{} // a value at each Flush
}

func (f *fakeBatcher) NewBatch() Batch { return &fakeBatch{f: f} }

func (f *fakeBatcher) flushes() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.flushed...)
}

type fakeBatch struct {
	f   *fakeBatcher
	out []string
}

func (b *fakeBatch) Add(msg sip.Message, _ sip.Addr) bool {
	b.out = append(b.out, msg.Header().CallID())
	return true
}

func (b *fakeBatch) Len() int { return len(b.out) }

func (b *fakeBatch) Flush() error {
	b.f.mu.Lock()
	b.f.flushed = append(b.f.flushed, b.out)
	b.f.mu.Unlock()
	b.f.flush <- struct{}{}
	b.out = nil
	return nil
}

// replier answers each request it is handed with Reply, and passes the
// request on when done.
type replier struct {
	l    *Layer
	done chan *sip.Request
}

func (r *replier) HandleMessage(m sip.Message) {
	req := m.(*sip.Request)
	res := sip.NewResponse(req, 503, "")
	res.SetToTag("x")
	_ = r.l.Reply(context.Background(), req, res)
	r.done <- req
}

func (r *replier) HandleFlowClosed(sip.Addr) {}

// TestReplyHeldOnlyByItsWorker: an answer given by the worker handling its
// request waits in the worker's batch and leaves when the run ends; an
// answer to a request that no worker is handling (a goroutine of its own
// answering late) is sent at once, through Send.
func TestReplyHeldOnlyByItsWorker(t *testing.T) {
	f := &fakeBatcher{fakeTransport: newFake(sip.UDP, "127.0.0.1:5060"), flush: make(chan struct{}, 4)}
	l := NewLayer(Config{Workers: 1})
	l.Add(f)
	h := &replier{l: l, done: make(chan *sip.Request, 1)}
	serve(t, l, h)
	feed := f.handler(t)

	req := request(t, "", udpAddr("192.0.2.10:5062"))
	feed.HandleMessage(req)
	recv(t, h.done)
	// The worker wrote its batch before it waited for more work.
	recv(t, f.flush)
	if got := f.flushes()[0]; len(got) != 1 || got[0] != req.CallID() {
		t.Errorf("flushed %q", got)
	}
	if s := f.sends(); len(s) != 0 {
		t.Errorf("sent alone too: %v", s)
	}

	// The same request, answered again from this goroutine: no worker
	// holds it now.
	res := sip.NewResponse(req, 503, "")
	res.SetToTag("y")
	if err := l.Reply(context.Background(), req, res); err != nil {
		t.Fatal(err)
	}
	if s := f.sends(); len(s) != 1 || s[0].dst != udpAddr("192.0.2.10:5062") {
		t.Errorf("sent %v, want one answer to the Via's address", s)
	}
	if n := len(f.flushes()); n != 1 {
		t.Errorf("%d flushes, want 1", n)
	}
}
