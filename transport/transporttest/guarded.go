package transporttest

import (
	"context"
	"fmt"
	"sync"
)

// guarded is a mutex whose holders can wait for a change another holder
// makes: what Recorder and Logs wait on.
type guarded struct {
	mu      sync.Mutex
	changed chan struct{} // closed at the next change; nil while no one waits
}

// changedLocked wakes the waiters; call it with mu held, after a change.
func (g *guarded) changedLocked() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// wait calls cond with mu held, at once and after every change, until
// it holds or ctx ends.
func (g *guarded) wait(ctx context.Context, cond func() bool) error {
	for {
		g.mu.Lock()
		if cond() {
			g.mu.Unlock()
			return nil
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("transporttest: %w", ctx.Err())
		}
	}
}
