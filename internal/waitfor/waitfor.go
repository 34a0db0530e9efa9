// Package waitfor is the tests' wait on a condition that another
// goroutine makes true, with a deadline: for state that has no event to
// wait on (a counter, a table's size). Where there is an event, wait on it.
package waitfor

import (
	"runtime"
	"testing"
	"time"
)

// spin is how long Until only yields between checks before it sleeps
// between them: most conditions hold within microseconds, and a sleep
// would cost a timer's granularity (about a millisecond here) each time.
const spin = time.Millisecond

// Until returns once cond holds, and fails t, naming what, when limit
// passes first.
func Until(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		waited := time.Since(start)
		if waited > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		if waited < spin {
			runtime.Gosched()
		} else {
			time.Sleep(time.Millisecond)
		}
	}
}
