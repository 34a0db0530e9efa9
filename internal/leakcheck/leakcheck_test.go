package leakcheck

import (
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

func TestCount(t *testing.T) {
	ft := &fakeT{}
	Count(ft, 50*time.Millisecond)
	stop := make(chan struct{})
	go func() { <-stop }()
	ft.finish()
	if !ft.failed {
		t.Error("a goroutine left running was not reported")
	}
	close(stop)

	ft = &fakeT{}
	Count(ft, time.Second)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	ft.finish()
	if ft.failed {
		t.Error("a goroutine that ended was reported")
	}
}
