package locate

import (
	"context"
	"fmt"

	"github.com/switchboard/switchboard/sip"
)

// ShouldFailover reports whether RFC 3263 §4.3 moves on to the next target
// after an attempt that ended with status (0 when no response came) or err:
// a transport error or a transaction timeout (any non-nil err), or a 503
// Service Unavailable.
func ShouldFailover(status int, err error) bool { return err != nil || status == 503 }

// Targets walks an ordered list of targets, for a proxy or trunk that runs
// each attempt as its own client transaction and asks for the next target
// when ShouldFailover says so.
type Targets struct {
	list []sip.Addr
	next int
}

// NewTargets returns a walker over list (as Resolve returns it).
func NewTargets(list []sip.Addr) *Targets { return &Targets{list: list} }

// Next returns the next target, or false when none is left.
func (t *Targets) Next() (sip.Addr, bool) {
	if t.next >= len(t.list) {
		return sip.Addr{}, false
	}
	a := t.list[t.next]
	t.next++
	return a, true
}

// Remaining returns how many targets Next has still to give.
func (t *Targets) Remaining() int { return len(t.list) - t.next }

// Attempt sends a request to one target and reports the final status, 0
// when none arrived, or an error for a transport failure or timeout.
type Attempt func(ctx context.Context, dst sip.Addr) (status int, err error)

// Failover tries targets in order until one ends in a way ShouldFailover
// does not cover, and returns that target and its status. When every
// target failed it returns the last one with its status and error (a 503
// with a nil error when the last answer was 503). It stops at once when ctx
// is done, and fails with ErrNotFound for an empty list.
func Failover(ctx context.Context, targets []sip.Addr, try Attempt) (sip.Addr, int, error) {
	if len(targets) == 0 {
		return sip.Addr{}, 0, fmt.Errorf("failover: %w", ErrNotFound)
	}
	var (
		last   sip.Addr
		status int
		err    error
	)
	for t := NewTargets(targets); ; {
		dst, ok := t.Next()
		if !ok {
			return last, status, err
		}
		if cerr := ctx.Err(); cerr != nil {
			return dst, 0, fmt.Errorf("failover: %w", cerr)
		}
		last = dst
		status, err = try(ctx, dst)
		if !ShouldFailover(status, err) {
			return dst, status, nil
		}
	}
}
