// Package leakcheck lets tests fail when goroutines they started outlive
// them: every goroutine of the gateway has an owner that must stop it.
//
// Count compares the number of goroutines before and after one test.
// Check and Main look only at the goroutines a Match selects, after one
// test or after them all: those a test started (Started), those started
// by the module's code (CreatedBy), or, where a package's tests run beside
// goroutines that are not theirs (a library's pool, an HTTP server's
// connections), those running named code (Running).
package leakcheck

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
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
		if !poll(limit, func() bool { return runtime.NumGoroutine() <= before }) {
			t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), stacks())
		}
	})
}

// Match selects goroutines by their stack, as runtime.Stack prints it.
type Match func(stack string) bool

// CreatedBy matches the goroutines started by code whose qualified name
// begins with prefix: "example.com/m/pkg." for one package,
// "example.com/m/" for every package of a module.
func CreatedBy(prefix string) Match {
	return func(stack string) bool { return strings.Contains(stack, "created by "+prefix) }
}

// Running matches the goroutines whose stack names any of names anywhere:
// a package ("example.com/lib."), a type's methods ("pkg.(*T)"), a function.
func Running(names ...string) Match {
	return func(stack string) bool {
		for _, n := range names {
			if strings.Contains(stack, n) {
				return true
			}
		}
		return false
	}
}

// Started matches the goroutines started after it was called, except the
// testing package's own (the tests' goroutines, its fuzzing workers) and
// the runtime's, whatever code started them: a timer's callback or a
// context.AfterFunc that a transport left blocked is seen, and a
// goroutine that ends during the test cannot hide one that starts, as it
// can from Count. Goroutine ids are never reused, so the ones running at
// the call name exactly what was there before.
func Started() Match {
	before := map[string]bool{}
	for _, g := range strings.Split(stacks(), "\n\n") {
		before[goroutineID(g)] = true
	}
	return func(stack string) bool { return !before[goroutineID(stack)] && !background(stack) }
}

// goroutineID returns the id in a stack's first line, "goroutine 12
// [running]:".
func goroutineID(stack string) string {
	f := strings.Fields(stack)
	if len(f) < 2 || f[0] != "goroutine" {
		return ""
	}
	return f[1]
}

// background reports the goroutines that belong to the testing package
// or the runtime rather than to the code under test.
func background(stack string) bool {
	for _, s := range []string{"testing.tRunner", "testing.(*T).Run", "testing.runFuzzing",
		"testing.(*F).Fuzz", "runtime.goexit0", "created by runtime.gc", "os/signal.signal_recv",
		"created by testing.(*T).Parallel"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// Goroutines returns the stacks of the running goroutines that match,
// the caller's excepted.
func Goroutines(match Match) []string {
	blocks := strings.Split(stacks(), "\n\n")
	var out []string
	for _, g := range blocks[1:] { // the first is the caller's
		if match(g) {
			out = append(out, g)
		}
	}
	return out
}

// Wait waits until no goroutine matches, at most limit, and returns the
// stacks of those still running then (none when it succeeded).
func Wait(limit time.Duration, match Match) []string {
	var left []string
	poll(limit, func() bool {
		left = Goroutines(match)
		return len(left) == 0
	})
	return left
}

// Check fails t, at its cleanup, if goroutines that match still run after
// limit. Call it first in a test, so that it runs after the test's other
// cleanups; not in parallel tests, whose goroutines it would take for
// this one's.
func Check(t testing.TB, limit time.Duration, match Match) {
	t.Helper()
	t.Cleanup(func() {
		if left := Wait(limit, match); len(left) > 0 {
			t.Errorf("%d goroutines leaked:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

// Runner is what Main runs: *testing.M.
type Runner interface{ Run() int }

// Main runs the tests of m and, if they pass, fails the run when
// goroutines that match still run after limit: a package's check that
// nothing its tests started outlives them all. TestMain passes its result
// to os.Exit.
func Main(m Runner, limit time.Duration, match Match) int {
	return mainTo(os.Stderr, m, limit, match)
}

func mainTo(w io.Writer, m Runner, limit time.Duration, match Match) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if left := Wait(limit, match); len(left) > 0 {
		fmt.Fprintf(w, "goroutines leaked:\n%s\n", strings.Join(left, "\n\n"))
		return 1
	}
	return 0
}

// poll reports whether done holds before limit passes. Goroutines exit a
// little after the calls that wait for them return, and nothing signals
// that last step: polling the runtime is the only way to see it.
func poll(limit time.Duration, done func() bool) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-deadline.C:
			return done()
		case <-tick.C:
		}
	}
	return true
}

// stacks returns the stacks of every goroutine, the caller's first.
func stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
