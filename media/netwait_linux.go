//go:build linux

package media

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollWaiter parks a goroutine in Go's network poller until a descriptor
// of ours (an epoll set, a timerfd) is readable. The media poller and the
// ICE read loop wait there rather than in a blocking system call of their
// own: a thread blocked in a system call makes Go's sysmon thread tick
// every 20 µs to take its P away, and each return from the call must find
// a P again, waking and parking threads (futex) for every datagram. Parked
// in the network poller, the goroutine is woken by the thread that waits
// for the whole process anyway.
type pollWaiter struct {
	f  *os.File
	rc syscall.RawConn
}

// newPollWaiter registers fd with Go's network poller; the waiter owns fd
// and closes it.
func newPollWaiter(fd int, name string) (*pollWaiter, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	// Only a descriptor in the network poller takes a deadline.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("media: %s: not pollable: %w", name, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	return &pollWaiter{f: f, rc: rc}, nil
}

// wait calls ready with the descriptor until it returns true, parked
// between the calls until the descriptor is readable. ready must not
// block. It fails once close was called.
func (w *pollWaiter) wait(ready func(fd uintptr) bool) error {
	return w.rc.Read(ready)
}

func (w *pollWaiter) close() { _ = w.f.Close() }

// pauseTimer is the coalescing pause: a one-shot timerfd waited for in
// Go's network poller, to the microsecond (Go's own timers round a wait
// under a millisecond up to one when the process is idle).
type pauseTimer struct {
	// mu is held by a sleep; close waits for it (a pause is short) so
	// that fd is not set once closed.
	mu     sync.Mutex
	closed bool
	fd     int // the waiter's, open as long as it
	w      *pollWaiter
	buf    [8]byte
	read   func(fd uintptr) bool
	d      time.Duration // set by sleep for expired's first look
}

func newPauseTimer() (*pauseTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: pause timer: %w", err)
	}
	w, err := newPollWaiter(fd, "pause timer")
	if err != nil {
		return nil, err
	}
	t := &pauseTimer{fd: fd, w: w}
	t.read = t.expired
	return t, nil
}

// The loops' system calls are raw, as mmsg's are: none of them sleeps
// (timeouts of zero, descriptors that do not block), and a system call
// that Go's scheduler sees wakes its sysmon thread whenever the process
// was idle before it, which then ticks every 20 µs for a millisecond or
// more (see mmsg.Batch.Send).

// epollNow returns the events of epfd ready now, without waiting.
func epollNow(epfd int, evs []unix.EpollEvent) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// epollRearm puts fd back in epfd with events (EPOLL_CTL_MOD).
func epollRearm(epfd, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events}
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_MOD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readNow reads fd, which does not block.
func readNow(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// arm sets the timer to expire once, d from now.
func (t *pauseTimer) arm(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	_, _, errno := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(t.fd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// sleep returns after d, or at once if the timer cannot be set or was
// closed. One goroutine at a time.
func (t *pauseTimer) sleep(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || d <= 0 {
		return
	}
	t.d = d
	_ = t.w.wait(t.read)
}

// expired is the wait's look at the timer. The first look sets it, not
// sleep: the wait forgets what Go's poller saw of the descriptor before
// it (internal/poll's prepareRead), so a timer set before could expire
// unseen, while one set by the first look cannot have expired yet, and a
// read to find that out is saved.
func (t *pauseTimer) expired(fd uintptr) bool {
	if t.d > 0 {
		d := t.d
		t.d = 0
		return t.arm(d) != nil
	}
	_, err := readNow(int(fd), t.buf[:])
	return !errors.Is(err, unix.EAGAIN)
}

func (t *pauseTimer) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.w.close()
	}
}

// gate waits in Go's network poller for an epoll set of ours (inner)
// through an epoll set of its own that holds inner one-shot. A set nested
// in Go's poller wakes Go's waiting thread for every event of the inner
// set; the gate passes one, then is shut until the next wait, so that the
// datagrams that arrive while the loop works or pauses wake nobody.
type gate struct {
	fd    int // the gate's set, the waiter's descriptor
	inner int
	armed bool
	w     *pollWaiter
	ev    [1]unix.EpollEvent
	try   func(uintptr) bool
}

// newGate returns a gate on inner, open; the caller keeps inner.
func newGate(inner int, name string) (*gate, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, inner, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	w, err := newPollWaiter(fd, name)
	if err != nil {
		return nil, err
	}
	g := &gate{fd: fd, inner: inner, armed: true, w: w}
	g.try = g.passed
	return g, nil
}

// wait opens the gate and returns when inner has events, the gate shut
// behind them. One goroutine at a time.
func (g *gate) wait() error {
	if !g.armed {
		// An event that came while shut makes the set ready at once.
		if err := epollRearm(g.fd, g.inner, unix.EPOLLIN|unix.EPOLLONESHOT); err != nil {
			return fmt.Errorf("media: gate: %w", err)
		}
		g.armed = true
	}
	return g.w.wait(g.try)
}

func (g *gate) passed(fd uintptr) bool {
	n, err := epollNow(int(fd), g.ev[:])
	if err != nil || n == 0 {
		return false
	}
	g.armed = false
	return true
}

func (g *gate) close() { g.w.close() }

// loopWaits are a read loop's waits in Go's network poller: for its epoll
// set, through a gate, and for the coalescing pause. The RTP poller and
// the ICE read loop each have one.
type loopWaits struct {
	ready *gate
	timer *pauseTimer
}

// newLoopWaits gates the epoll set inner (the caller keeps it) and makes
// the pause's timer.
func newLoopWaits(inner int, name string) (loopWaits, error) {
	ready, err := newGate(inner, name)
	if err != nil {
		return loopWaits{}, err
	}
	timer, err := newPauseTimer()
	if err != nil {
		ready.close()
		return loopWaits{}, err
	}
	return loopWaits{ready: ready, timer: timer}, nil
}

func (w loopWaits) close() {
	w.ready.close()
	w.timer.close()
}
