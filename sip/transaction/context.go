package transaction

import (
	"context"
	"time"
)

// handlerContext is a server transaction seen as its handler's context.
// A context.WithCancel per transaction cost two allocations for every
// request (the context and its CancelFunc), most of whose handlers (a
// registrar's, a challenge) never derive a context from it; the
// transaction, made for every request anyway, carries the few fields it
// needs. It ends (Canceled) when endCtx runs. Its values are those of the
// Layer's context.
//
// It implements AfterFunc, as the context package asks of a context that
// is not its own: a context derived from it (the proxy's and the B2BUA's,
// context.WithCancel, context.AfterFunc) registers its cancellation there,
// as it would with a parent of the context package's, instead of waiting
// for Done in a goroutine of its own.
type handlerContext ServerTx

// afterFunc is a function registered with handlerContext.AfterFunc, on
// the list ServerTx.afters.
type afterFunc struct {
	f    func()
	next *afterFunc
}

// Deadline reports that there is none.
func (c *handlerContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns a channel closed when the context ends, made when first
// asked for.
func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctxDone == nil {
		if c.ctxEnded.Load() {
			return closedDone
		}
		c.ctxDone = make(chan struct{})
	}
	return c.ctxDone
}

// Err returns context.Canceled once the context has ended, nil before.
// It takes no lock: the contexts derived from it read it while they are
// ended, which endCtx does with the transaction's lock held.
func (c *handlerContext) Err() error {
	if c.ctxEnded.Load() {
		return context.Canceled
	}
	return nil
}

// Value returns the Layer's context's value for key.
func (c *handlerContext) Value(key any) any { return c.l.detached.Value(key) }

// String names the context, as those of the context package do.
func (c *handlerContext) String() string { return "transaction.handlerContext" }

// AfterFunc arranges for f to run when the context ends, as
// context.AfterFunc does; stop unregisters it and reports whether it did
// so before f was run. f runs in the goroutine that ends the context, with
// the transaction's lock held: the context package passes functions that
// only cancel a derived context, and runs the user's own in a goroutine
// of theirs. On an ended context, f runs at once in a goroutine of its
// own, since the caller may hold a lock that f takes.
func (c *handlerContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctxEnded.Load() {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f, next: c.afters}
	c.afters = a
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for p := &c.afters; *p != nil; p = &(*p).next {
			if *p == a {
				*p = a.next
				return true
			}
		}
		return false
	}
}

// endCtx ends the handler's context: Done closes, Err is Canceled, the
// functions registered with AfterFunc run. Called with tx.mu held.
func (tx *ServerTx) endCtx() {
	if tx.ctxEnded.Swap(true) {
		return
	}
	if tx.ctxDone != nil {
		close(tx.ctxDone)
	}
	a := tx.afters
	tx.afters = nil
	for ; a != nil; a = a.next {
		a.f()
	}
}

// stopCtx is endCtx for a caller that does not hold tx.mu.
func (tx *ServerTx) stopCtx() {
	tx.mu.Lock()
	tx.endCtx()
	tx.mu.Unlock()
}
