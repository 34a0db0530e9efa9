package clock

import (
	"testing"
	"time"
)

func TestFakeRunsTimersInOrder(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var got []int
	c.AfterFunc(2*time.Second, func() { got = append(got, 2) })
	c.AfterFunc(time.Second, func() {
		got = append(got, 1)
		c.AfterFunc(500*time.Millisecond, func() { got = append(got, 15) })
	})
	stopped := c.AfterFunc(1500*time.Millisecond, func() { got = append(got, -1) })
	if !stopped.Stop() {
		t.Fatal("Stop returned false for a pending timer")
	}
	c.Advance(1999 * time.Millisecond)
	if want := []int{1, 15}; !equal(got, want) {
		t.Fatalf("after 1.999s got %v, want %v", got, want)
	}
	c.Advance(time.Millisecond)
	if want := []int{1, 15, 2}; !equal(got, want) {
		t.Fatalf("after 2s got %v, want %v", got, want)
	}
	if c.Pending() != 0 || !c.Now().Equal(time.Unix(2, 0)) {
		t.Fatalf("pending %d, now %v", c.Pending(), c.Now())
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
