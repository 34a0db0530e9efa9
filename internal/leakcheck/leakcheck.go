// Package leakcheck lets tests fail when goroutines they started outlive
// them: every goroutine of the gateway has an owner that must stop it.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// Count fails t, at its cleanup, if more goroutines run than when Count was
// called. Goroutines take a moment to exit after they signal that they are
// done, and nothing signals that last step, so the check polls until limit
// before it reports, with every goroutine's stack. Call it first in a test,
// so that it runs after the test's other cleanups; not in parallel tests.
func Count(t testing.TB, limit time.Duration) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.After(limit)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for runtime.NumGoroutine() > before {
			select {
			case <-deadline:
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			case <-tick.C:
			}
		}
	})
}
