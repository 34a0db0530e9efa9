package waitfor

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			n.Add(1)
		}
	}()
	Until(t, "three", time.Minute, func() bool { return n.Load() == 3 })
	<-done
}

// fatalT records a failure instead of ending the test.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(string, ...any) {
	f.failed = true
	panic(f)
}

func TestUntilFails(t *testing.T) {
	f := &fatalT{TB: t}
	func() {
		defer func() { _ = recover() }()
		Until(f, "never", 5*time.Millisecond, func() bool { return false })
	}()
	if !f.failed {
		t.Fatal("Until did not fail when the condition never held")
	}
}
