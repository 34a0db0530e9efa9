package sipnet

import (
	"sync"
	"testing"
	"time"
)

// Recorder keeps items in the order they came, for tests to wait for:
// the network's log, the requests a user agent received. Its zero value
// is empty and ready to use; it is safe for concurrent use.
type Recorder[T any] struct {
	mu      sync.Mutex
	items   []T
	taken   []bool
	changed chan struct{} // closed and replaced by Add
}

// Add appends x.
func (r *Recorder[T]) Add(x T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, x)
	r.taken = append(r.taken, false)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Wait returns the first item that matches and that no Wait has taken
// yet, and takes it; it waits for one to be added for at most limit, and
// then fails t with what it waited for and every item so far.
func (r *Recorder[T]) Wait(t testing.TB, limit time.Duration, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i, x := range r.items {
			if !r.taken[i] && match(x) {
				r.taken[i] = true
				r.mu.Unlock()
				return x
			}
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; have %v", limit, what, r.All())
			var zero T
			return zero
		}
	}
}

// All returns every item so far, taken or not.
func (r *Recorder[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}
