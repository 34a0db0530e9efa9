package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// cpuQuota creates a cgroup whose processes may use cpus CPUs between
// them (the CFS quota of a 100 ms period, as a container's CPU limit
// sets it; cgroup v2, or v1's cpu controller) and returns its directory.
// It is removed when the test ends, after the gateways started later in
// the test have stopped. It needs root, as the tests in network
// namespaces do.
func cpuQuota(t *testing.T, cpus float64) string {
	t.Helper()
	const period = 100000 // µs
	quota := int(cpus * period)
	name := fmt.Sprintf("switchboard-e2e-%d-%d", os.Getpid(), quota)
	var dir string
	var files [][2]string
	v2, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	_, v1 := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
	switch {
	case slices.Contains(strings.Fields(string(v2)), "cpu"):
		dir = filepath.Join("/sys/fs/cgroup", name)
		files = [][2]string{{"cpu.max", fmt.Sprintf("%d %d", quota, period)}}
	case v1 == nil:
		dir = filepath.Join("/sys/fs/cgroup/cpu", name)
		files = [][2]string{{"cpu.cfs_period_us", fmt.Sprint(period)}, {"cpu.cfs_quota_us", fmt.Sprint(quota)}}
	default:
		t.Fatal("no cgroup cpu controller at /sys/fs/cgroup (v2) or /sys/fs/cgroup/cpu (v1): this test needs one, and root")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create a cgroup (this test needs root): %v", err)
	}
	// Registered before any gateway's stop, so run after it: a cgroup
	// with a process in it cannot be removed.
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0o644); err != nil {
			t.Fatalf("set %s: %v", f[0], err)
		}
	}
	return dir
}

// TestCPUQuota: in a container limited to one CPU or less the gateway
// runs the Go scheduler on one P (a second one costs more than it gives
// there, docs/performance.md); above it, Go's own choice stands; and
// GOMAXPROCS in the environment wins over both.
func TestCPUQuota(t *testing.T) {
	// A GOMAXPROCS of the developer's shell would reach the gateways.
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	cases := []struct {
		name string
		cpus float64
		env  map[string]string
		want int
	}{
		{"half a CPU", 0.5, nil, 1},
		{"one CPU", 1, nil, 1},
		// Go's default under a quota of 1.5: rounded up, at most the CPUs.
		{"one and a half CPUs", 1.5, nil, min(2, runtime.NumCPU())},
		{"GOMAXPROCS set", 0.5, map[string]string{"GOMAXPROCS": "3"}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, gatewayOptions{bin: plainBin, cgroup: cpuQuota(t, c.cpus), env: c.env})
			if got := g.metric(t, "go_sched_gomaxprocs_threads"); got != float64(c.want) {
				t.Errorf("GOMAXPROCS %v under a quota of %g CPU, want %d", got, c.cpus, c.want)
			}
		})
	}
}
