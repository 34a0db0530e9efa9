package media

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestPionQueue: the queue keeps order, refuses a batch it has no room
// for (once, until the reader has taken half of it, which resumes the
// producer once), and on close fails a waiting pop, drops what it held
// and resumes a held producer.
func TestPionQueue(t *testing.T) {
	q := newPionQueue()
	resumed := 0
	q.setResume(func() { resumed++ })
	src := netip.MustParseAddrPort("127.0.0.1:5004")
	for i := range pionQueueLen - 3 {
		if !q.reserve(1) {
			t.Fatalf("no room for datagram %d", i)
		}
		q.push([]byte{byte(i), byte(i >> 8)}, src)
	}
	for range 2 { // held once
		if q.reserve(4) {
			t.Fatal("room for 4 in a queue with 3 free")
		}
	}
	if holds, queued := q.counts(); holds != 1 || queued != pionQueueLen-3 {
		t.Fatalf("holds %d, queued %d", holds, queued)
	}
	buf := make([]byte, 8)
	for i := range pionQueueLen - 3 {
		n, from, err := q.pop(buf)
		if err != nil || from != src || !bytes.Equal(buf[:n], []byte{byte(i), byte(i >> 8)}) {
			t.Fatalf("pop %d: %x from %v, %v", i, buf[:n], from, err)
		}
		left, want := pionQueueLen-3-(i+1), 0
		if left <= pionQueueLen/2 {
			want = 1
		}
		if resumed != want {
			t.Fatalf("resumed %d times with %d queued, want %d", resumed, left, want)
		}
	}
	// A large datagram gets a slot its size.
	big := bytes.Repeat([]byte{7}, 5000)
	q.push(big, src)
	if n, _, err := q.pop(make([]byte, 8192)); n != len(big) || err != nil {
		t.Fatalf("big datagram: %d bytes, %v", n, err)
	}

	got := make(chan error, 1)
	go func() {
		_, _, err := q.pop(buf)
		got <- err
	}()
	for q.reserve(1) {
		q.push([]byte{1}, src)
	}
	q.notify()
	if err := <-got; err != nil {
		t.Fatalf("pop with datagrams: %v", err)
	}
	for q.reserve(1) {
		q.push([]byte{1}, src)
	}
	resumed = 0
	q.close()
	if resumed != 1 {
		t.Fatalf("a held producer resumed %d times by close", resumed)
	}
	if _, _, err := q.pop(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("pop after close: %v", err)
	}
	if !q.reserve(pionQueueLen) {
		t.Fatal("a closed queue refuses")
	}
	q.push([]byte{1}, src) // dropped
	q.close()

	// A pop that waits fails at close.
	q2 := newPionQueue()
	go func() {
		_, _, err := q2.pop(buf)
		got <- err
	}()
	q2.close()
	select {
	case err := <-got:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting pop at close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not wake the pop")
	}
}
