package main

import (
	"runtime"

	"go.uber.org/automaxprocs/maxprocs"
)

// The scheduler's processors (GOMAXPROCS) under a CPU quota. Since Go
// 1.25 the runtime sets GOMAXPROCS from its cgroup's CPU quota (a
// container's CPU limit), rounded up, but never below 2. The gateway's
// work is many small messages handed between goroutines (the socket's
// read loop, the transport's workers, the handlers, the location
// journal's group commit), and under a quota of one CPU or less a second
// P costs more than it gives: a hand-off wakes the idle P's thread,
// which spins, finds little and sleeps again, all of it on the quota.
// Capped at half a CPU, a registration took 62–72 µs of CPU on one P
// against 71–83 on two, and at twice the knee the gateway kept 109–113 %
// of the knee's goodput against 92–94 %; at one CPU, 56–62 µs against
// 65–71 (docs/performance.md, "One P under a CPU quota"). So under a
// quota of one CPU or less the gateway runs one P. Above it Go's own
// choice stands, and so does its updating of GOMAXPROCS when the quota
// changes, which a value set here would turn off. automaxprocs reads the
// quota (cgroup v1 and v2, the limits of the parents included): the
// runtime reads it too but does not say what it found.

// procsApplied is what applyProcs did, for the start-up log line.
type procsApplied struct {
	// Procs is GOMAXPROCS after applyProcs.
	Procs int
	// Quota is the CPU quota found, in CPUs; 0 when none was, or when
	// GOMAXPROCS in the environment decided.
	Quota float64
	// Source says who chose Procs: "GOMAXPROCS" (the environment), "cpu
	// quota" (one P under a quota of at most one CPU) or "go" (the
	// runtime's default).
	Source string
	// Err is why the quota could not be read (the runtime's default
	// then stands).
	Err error
}

// applyProcs sets GOMAXPROCS to 1 when the process's CPU quota is one
// CPU or less, unless GOMAXPROCS is in environ: an operator who sets it
// means it.
func applyProcs(environ map[string]string) procsApplied {
	if _, ok := environ["GOMAXPROCS"]; ok {
		return procsApplied{Procs: runtime.GOMAXPROCS(0), Source: "GOMAXPROCS"}
	}
	a := procsApplied{Source: "go"}
	// maxprocs.Set rounds the quota with this function and sets the
	// result; for a quota above one CPU the runtime's default is put
	// back below, automatic updates included.
	_, err := maxprocs.Set(maxprocs.RoundQuotaFunc(func(quota float64) int {
		a.Quota = quota
		return 1
	}))
	switch {
	case err != nil:
		a.Err = err // nothing was set
	case a.Quota > 1:
		runtime.SetDefaultGOMAXPROCS()
	case a.Quota > 0:
		a.Source = "cpu quota"
	}
	a.Procs = runtime.GOMAXPROCS(0)
	return a
}

// logAttrs says what GOMAXPROCS is and why.
func (a procsApplied) logAttrs() []any {
	attrs := []any{"gomaxprocs", a.Procs, "source", a.Source}
	if a.Quota > 0 {
		attrs = append(attrs, "cpu_quota", a.Quota)
	}
	if a.Err != nil {
		attrs = append(attrs, "quota_error", a.Err.Error())
	}
	return attrs
}
