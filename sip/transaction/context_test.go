package transaction

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

// The handler's context ends when its transaction ends, when its INVITE
// is canceled, and when the Layer closes; it carries the values of the
// Layer's context.
func TestHandlerContext(t *testing.T) {
	type key struct{}
	run := func(t *testing.T, h *harness, spec msgSpec, act func(tx *ServerTx)) context.Context {
		t.Helper()
		got := make(chan context.Context, 1)
		txs := make(chan *ServerTx, 1)
		h.l.handler = HandlerFunc(func(ctx context.Context, tx *ServerTx, _ *sip.Request) {
			txs <- tx
			got <- ctx
			<-ctx.Done()
		})
		h.l.HandleMessage(spec.req(t))
		tx := <-txs
		ctx := <-got
		if ctx.Err() != nil {
			t.Fatalf("the context ended before anything happened: %v", ctx.Err())
		}
		act(tx)
		select {
		case <-ctx.Done():
		case <-time.After(waitLimit):
			t.Fatal("the handler's context did not end")
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("context error %v", ctx.Err())
		}
		return ctx
	}

	t.Run("transaction ends", func(t *testing.T) {
		h := newHarness(t, Config{})
		run(t, h, msgSpec{method: "OPTIONS", branch: sip.NewBranch()}, func(tx *ServerTx) {
			_ = tx.Respond(response(tx.Request(), 200, "x"))
			// Timer J on UDP: the transaction ends after it.
			h.clk.Advance(64 * DefaultT1)
		})
	})
	t.Run("invite canceled", func(t *testing.T) {
		h := newHarness(t, Config{TryingDelay: time.Hour})
		spec := msgSpec{method: "INVITE", branch: sip.NewBranch()}
		run(t, h, spec, func(*ServerTx) {
			spec.method = "CANCEL"
			h.l.HandleMessage(spec.req(t))
		})
	})
	t.Run("layer closes", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.l.Close()
		h2 := &harness{t: t, clk: h.clk, net: h.net}
		h2.l = New(context.WithValue(context.Background(), key{}, "v"), h.net, nil, Config{Clock: h.clk})
		ctx := run(t, h2, msgSpec{method: "OPTIONS", branch: sip.NewBranch()}, func(*ServerTx) { h2.l.Close() })
		if ctx.Value(key{}) != "v" {
			t.Error("the handler's context lacks the Layer's values")
		}
	})
	t.Run("context of the layer ends", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		h := &harness{t: t, clk: clock.NewFake(epoch)}
		h.net = newNetRec(h.clk)
		h.l = New(parent, h.net, nil, Config{Clock: h.clk})
		t.Cleanup(func() { h.l.Close() })
		run(t, h, msgSpec{method: "OPTIONS", branch: sip.NewBranch()}, func(*ServerTx) { cancel() })
		// A transaction that starts afterwards hands its handler an
		// ended context.
		got := make(chan error, 1)
		h.l.handler = HandlerFunc(func(ctx context.Context, _ *ServerTx, _ *sip.Request) { got <- ctx.Err() })
		h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: sip.NewBranch()}.req(t))
		select {
		case err := <-got:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("a handler after the end got a context with error %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("no handler ran")
		}
	})
}

// The handler's context ends when ServeSIP returns, as an http.Request's
// does, though its transaction lives on (Timer J here): what the handler
// started with it (a proxy's bridged branch) ends with the handler, and
// what is derived from it later starts ended.
func TestHandlerContextEndsWithHandler(t *testing.T) {
	h := newHarness(t, Config{})
	got := make(chan context.Context, 1)
	h.l.handler = HandlerFunc(func(ctx context.Context, tx *ServerTx, req *sip.Request) {
		_ = tx.Respond(response(req, 200, "x"))
		got <- ctx
	})
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: sip.NewBranch()}.req(t))
	var ctx context.Context
	select {
	case ctx = <-got:
	case <-time.After(waitLimit):
		t.Fatal("no handler ran")
	}
	select {
	case <-ctx.Done():
	case <-time.After(waitLimit):
		t.Fatal("the handler's context did not end when it returned")
	}
	if h.l.Stats().ServerTransactions != 1 {
		t.Error("the transaction ended with its handler: the test shows nothing")
	}
	// A context derived from it now starts ended.
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	if !errors.Is(child.Err(), context.Canceled) {
		t.Errorf("child of an ended context: err %v", child.Err())
	}
	ran := make(chan struct{})
	if context.AfterFunc(ctx, func() { close(ran) })() {
		t.Error("stop after the end reported true")
	}
	select {
	case <-ran:
	case <-time.After(waitLimit):
		t.Fatal("AfterFunc on an ended context did not run")
	}
}

// An ACK without transaction is handled before HandleMessage returns, so
// that the request that follows it from the same source (a BYE right after
// the ACK of a 2xx) cannot overtake it on its way on.
func TestAckHandledInOrder(t *testing.T) {
	h := newHarness(t, Config{})
	order := make(chan string, 2)
	h.l.handler = HandlerFunc(func(_ context.Context, tx *ServerTx, req *sip.Request) {
		order <- req.Method
		if tx != nil {
			_ = tx.Respond(response(req, 200, "x"))
		}
	})
	h.l.HandleMessage(msgSpec{method: "ACK", branch: sip.NewBranch(), toTag: "t1"}.req(t))
	select {
	case m := <-order:
		if m != "ACK" {
			t.Fatalf("handled %s first", m)
		}
	default:
		t.Fatal("HandleMessage returned before the ACK was handled")
	}
	h.l.HandleMessage(msgSpec{method: "BYE", branch: sip.NewBranch(), toTag: "t1", cseq: 2}.req(t))
	if m := <-order; m != "BYE" {
		t.Fatalf("then %s", m)
	}
}

// An ACK without transaction gets the Layer's own context, one a call:
// no context of its own per ACK (each took the lock of the Layer's). It
// ends when the Layer closes.
func TestAckContextIsTheLayers(t *testing.T) {
	h := newHarness(t, Config{})
	got := make(chan context.Context, 1)
	h.l.handler = HandlerFunc(func(ctx context.Context, tx *ServerTx, _ *sip.Request) {
		if tx == nil {
			got <- ctx
		}
	})
	h.l.HandleMessage(msgSpec{method: "ACK", branch: sip.NewBranch(), toTag: "uas"}.req(t))
	var ctx context.Context
	select {
	case ctx = <-got:
	case <-time.After(waitLimit):
		t.Fatal("the ACK reached no handler")
	}
	if ctx != h.l.ctx {
		t.Error("the ACK's handler got a context of its own")
	}
	h.l.Close()
	if ctx.Err() == nil {
		t.Error("the ACK's context did not end with the Layer")
	}
}

// Contexts derived from the handler's end with it, registered through its
// AfterFunc as they would be with a parent of the context package's (no
// goroutine of their own waiting for its Done); one canceled before takes
// itself off, and context.AfterFunc's stop keeps its function from
// running.
func TestHandlerContextDerived(t *testing.T) {
	h := newHarness(t, Config{})
	type derived struct {
		child, timed, early context.Context
		ran                 chan struct{}
		stopped             bool
		registered          int
		cancels             []context.CancelFunc
	}
	got := make(chan derived, 1)
	release := make(chan struct{})
	h.l.handler = HandlerFunc(func(ctx context.Context, tx *ServerTx, req *sip.Request) {
		var d derived
		var cancel, cancelTimed context.CancelFunc
		d.child, cancel = context.WithCancel(ctx)
		d.timed, cancelTimed = context.WithTimeout(ctx, time.Hour)
		d.cancels = []context.CancelFunc{cancel, cancelTimed}
		var cancelEarly context.CancelFunc
		d.early, cancelEarly = context.WithCancel(ctx)
		d.ran = make(chan struct{})
		context.AfterFunc(ctx, func() { close(d.ran) })
		stop := context.AfterFunc(ctx, func() { t.Error("a stopped AfterFunc ran") })
		d.stopped = stop()
		cancelEarly()
		tx.mu.Lock()
		for a := tx.afters; a != nil; a = a.next {
			d.registered++
		}
		tx.mu.Unlock()
		got <- d
		<-release
		_ = tx.Respond(response(req, 200, "x"))
	})
	h.l.HandleMessage(msgSpec{method: "OPTIONS", branch: sip.NewBranch()}.req(t))
	d := <-got
	defer func() {
		for _, cancel := range d.cancels {
			cancel()
		}
	}()
	if !d.stopped {
		t.Error("stop of a pending AfterFunc reported false")
	}
	// The child, the timed child and the AfterFunc: the canceled child
	// and the stopped function took themselves off.
	if d.registered != 3 {
		t.Errorf("%d functions registered with the handler's context, want 3", d.registered)
	}
	if d.child.Err() != nil || d.timed.Err() != nil {
		t.Fatal("derived contexts ended before the handler's")
	}
	if !errors.Is(d.early.Err(), context.Canceled) {
		t.Error("the child canceled early is not")
	}
	close(release)
	for _, c := range []context.Context{d.child, d.timed} {
		select {
		case <-c.Done():
		case <-time.After(waitLimit):
			t.Fatal("a derived context did not end with the handler's")
		}
		if !errors.Is(c.Err(), context.Canceled) || !errors.Is(context.Cause(c), context.Canceled) {
			t.Errorf("derived context: err %v, cause %v", c.Err(), context.Cause(c))
		}
	}
	select {
	case <-d.ran:
	case <-time.After(waitLimit):
		t.Fatal("context.AfterFunc's function did not run")
	}
}
