package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// The garbage collector's settings. The gateway's live heap is small
// beside what passes through it (a registration allocates about 6 KiB and
// keeps under 200 bytes), so with Go's default GOGC=100 the collector
// runs every few MiB of allocation: a tenth of the CPU under REGISTER
// load went to its mark workers (docs/performance.md). A higher percent
// runs it less often; the soft memory limit keeps the heap bounded when
// the live heap grows (calls under overload), where the runtime collects
// more often again, up to about half the CPU, rather than pass the limit.
const (
	defaultGCPercent = 400
	minGCPercent     = 10
	maxGCPercent     = 10000
	// minMemoryLimit is the smallest soft limit accepted: below it the
	// gateway's own live heap under load would keep the collector running.
	minMemoryLimit = 64 << 20
)

// gcApplied is what applyGC did, for the start-up log line.
type gcApplied struct {
	// GCPercent is the percent set, or -2 when GOGC in the environment
	// decided (the runtime read it at start).
	GCPercent int
	// MemoryLimit is the limit set in bytes (math.MaxInt64: none), or -2
	// when GOMEMLIMIT in the environment decided.
	MemoryLimit int64
}

// applyGC sets the collector's percent and soft memory limit from cfg,
// except where GOGC or GOMEMLIMIT are in environ: the runtime has read
// those at start, and an operator who sets them means them.
func applyGC(cfg Config, environ map[string]string) gcApplied {
	var a gcApplied
	if _, ok := environ["GOGC"]; ok {
		a.GCPercent = -2
	} else {
		a.GCPercent = cfg.GCPercent
		debug.SetGCPercent(cfg.GCPercent)
	}
	if _, ok := environ["GOMEMLIMIT"]; ok {
		a.MemoryLimit = -2
	} else {
		a.MemoryLimit = math.MaxInt64
		if cfg.MemoryLimit > 0 {
			a.MemoryLimit = int64(cfg.MemoryLimit)
		}
		debug.SetMemoryLimit(a.MemoryLimit)
	}
	return a
}

// ByteSize is a number of bytes, written as GOMEMLIMIT is: a whole number
// with an optional unit B, KiB, MiB, GiB or TiB ("1GiB", "512MiB").
type ByteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// UnmarshalText parses a size such as "1GiB".
func (s *ByteSize) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	num, shift := str, uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(str, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || num == "" || num[0] == '+' {
		return fmt.Errorf("%q is not a size; write a whole number with B, KiB, MiB, GiB or TiB, e.g. 1GiB", str)
	}
	if n > math.MaxInt64>>shift {
		return fmt.Errorf("%q is too large", str)
	}
	*s = ByteSize(n << shift)
	return nil
}

// String writes the size in the largest unit that divides it; "0" for none.
func (s ByteSize) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range byteUnits {
		if u.shift > 0 && int64(s)&(1<<u.shift-1) == 0 {
			return strconv.FormatInt(int64(s)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// logAttrs says where each setting came from.
func (a gcApplied) logAttrs() []any {
	var attrs []any
	if a.GCPercent == -2 {
		attrs = append(attrs, "gc_percent", "GOGC")
	} else {
		attrs = append(attrs, "gc_percent", a.GCPercent)
	}
	switch a.MemoryLimit {
	case -2:
		attrs = append(attrs, "memory_limit", "GOMEMLIMIT")
	case math.MaxInt64:
		attrs = append(attrs, "memory_limit", "none")
	default:
		attrs = append(attrs, "memory_limit", ByteSize(a.MemoryLimit).String())
	}
	return attrs
}
