package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// fakeT records whether Count reported, running cleanups on demand.
type fakeT struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(format string, args ...any) { f.failed = true }

func (f *fakeT) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// quiesce waits until no goroutine runs but the caller and main's: one
// still ending (the previous test's, say) would end within Count's window
// and hide the leak the test makes.
func quiesce(t *testing.T) {
	t.Helper()
	others := func(stack string) bool { return !strings.Contains(stack, "\nmain.main()") }
	if left := Wait(5*time.Second, others); len(left) > 0 {
		t.Fatalf("goroutines still running:\n%s", strings.Join(left, "\n\n"))
	}
}

func TestCount(t *testing.T) {
	quiesce(t)
	reportsLeaks(t, func(ft *fakeT, limit time.Duration) { Count(ft, limit) })
}

// reportsLeaks checks the leak check that arm sets up on a fakeT: a
// goroutine left running is reported, one that ended is not.
func reportsLeaks(t *testing.T, arm func(ft *fakeT, limit time.Duration)) {
	t.Helper()
	ft := &fakeT{}
	arm(ft, 50*time.Millisecond)
	stop := make(chan struct{})
	park(stop)
	ft.finish()
	if !ft.failed {
		t.Error("a goroutine left running was not reported")
	}
	unpark(t, stop)

	ft = &fakeT{}
	arm(ft, time.Second)
	stop = make(chan struct{})
	park(stop)
	close(stop)
	ft.finish()
	if ft.failed {
		t.Error("a goroutine that ended was reported")
	}
}

// parked is a goroutine that leakcheck's matches can name.
func parked(started chan<- struct{}, stop <-chan struct{}) {
	close(started)
	<-stop
}

// unpark closes stop and waits until no parked goroutine is left: one
// that lingered would end within the next test's check, and hide a leak
// from Count.
func unpark(t *testing.T, stop chan struct{}) {
	t.Helper()
	close(stop)
	if left := Wait(time.Second, Running("leakcheck.parked")); len(left) > 0 {
		t.Fatalf("parked goroutines did not end:\n%s", left)
	}
}

// park starts parked and returns once it runs (before, its stack names
// only the go statement's wrapper); it ends when stop is closed.
func park(stop <-chan struct{}) {
	started := make(chan struct{})
	go parked(started, stop)
	<-started
}

func TestMatches(t *testing.T) {
	stop := make(chan struct{})
	park(stop)
	for _, c := range []struct {
		name  string
		match Match
		want  bool
	}{
		{"created by this package", CreatedBy("github.com/switchboard/switchboard/internal/leakcheck."), true},
		{"created by this module", CreatedBy("github.com/switchboard/switchboard/"), true},
		{"created by another package", CreatedBy("github.com/switchboard/switchboard/sip."), false},
		{"running the function", Running("leakcheck.parked"), true},
		{"running something else", Running("sipws.(*conn)", "net/http.(*conn).serve"), false},
	} {
		if got := len(Wait(50*time.Millisecond, c.match)) > 0; got != c.want {
			t.Errorf("%s: sees the parked goroutine %v, want %v", c.name, got, c.want)
		}
	}
	unpark(t, stop) // fails if Wait still sees it
	if left := Goroutines(Running("leakcheck.TestMatches")); len(left) > 0 {
		t.Errorf("the caller's own goroutine is counted:\n%s", left)
	}
}

func TestCheck(t *testing.T) {
	reportsLeaks(t, func(ft *fakeT, limit time.Duration) { Check(ft, limit, Running("leakcheck.parked")) })
}

func TestStarted(t *testing.T) {
	reportsLeaks(t, func(ft *fakeT, limit time.Duration) { Check(ft, limit, Started()) })

	// A goroutine that ran before is not counted, nor are the tests'
	// own: this one and a subtest started after.
	stop := make(chan struct{})
	park(stop)
	defer unpark(t, stop)
	started := Started()
	if left := Goroutines(started); len(left) > 0 {
		t.Errorf("goroutines running before are matched:\n%s", left)
	}
	t.Run("subtest", func(t *testing.T) {
		var own []string
		for _, g := range strings.Split(stacks(), "\n\n") {
			if started(g) {
				own = append(own, g)
			}
		}
		if len(own) > 0 {
			t.Errorf("the tests' goroutines are matched:\n%s", own)
		}
	})
}

// runner stands for testing.M: Run returns code after calling run.
type runner struct {
	code int
	run  func()
}

func (r runner) Run() int { r.run(); return r.code }

func TestMainChecksAfterPassingTests(t *testing.T) {
	match := Running("leakcheck.parked")
	var out strings.Builder
	stop := make(chan struct{})
	defer unpark(t, stop)
	leaky := runner{run: func() { park(stop) }}
	if code := mainTo(&out, leaky, 50*time.Millisecond, match); code != 1 || !strings.Contains(out.String(), "leakcheck.parked") {
		t.Errorf("a leak after passing tests: code %d, output %q", code, out.String())
	}
	out.Reset()
	if code := mainTo(&out, runner{code: 3, run: func() {}}, time.Second, match); code != 3 || out.Len() != 0 {
		t.Errorf("failing tests: code %d, output %q; want their code and no check", code, out.String())
	}
}
