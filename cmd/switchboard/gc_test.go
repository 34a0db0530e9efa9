package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// restoreGC puts the test process's collector settings back when the test
// ends.
func restoreGC(t *testing.T) {
	t.Helper()
	percent := debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func currentGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestApplyGC(t *testing.T) {
	restoreGC(t)
	cfg, err := loadConfig(map[string]string{"SWITCHBOARD_GC_PERCENT": "250", "SWITCHBOARD_MEMORY_LIMIT": "300MiB"})
	if err != nil {
		t.Fatal(err)
	}
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	got := applyGC(cfg, map[string]string{})
	if p := currentGCPercent(); p != 250 || got.GCPercent != 250 {
		t.Errorf("GC percent %d (reported %d), want 250", p, got.GCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l != 300<<20 || got.MemoryLimit != 300<<20 {
		t.Errorf("memory limit %d (reported %d), want %d", l, got.MemoryLimit, 300<<20)
	}

	// 0 is no limit.
	cfg.MemoryLimit = 0
	applyGC(cfg, map[string]string{})
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Errorf("memory limit 0 set %d, want none (%d)", l, int64(math.MaxInt64))
	}
}

// TestApplyGCEnvironmentWins: GOGC and GOMEMLIMIT, which the runtime read
// at start, are left as they are.
func TestApplyGCEnvironmentWins(t *testing.T) {
	restoreGC(t)
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(200 << 20)
	cfg, err := loadConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	got := applyGC(cfg, map[string]string{"GOGC": "150", "GOMEMLIMIT": "200MiB"})
	if p := currentGCPercent(); p != 150 || got.GCPercent != -2 {
		t.Errorf("with GOGC: GC percent %d (reported %d), want 150 left alone", p, got.GCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l != 200<<20 || got.MemoryLimit != -2 {
		t.Errorf("with GOMEMLIMIT: memory limit %d (reported %d), want %d left alone", l, got.MemoryLimit, 200<<20)
	}

	// Each variable wins alone: GOGC set, the limit still comes from cfg.
	got = applyGC(cfg, map[string]string{"GOGC": "150"})
	if p, l := currentGCPercent(), debug.SetMemoryLimit(-1); p != 150 || l != 1<<30 {
		t.Errorf("with GOGC only: percent %d, limit %d; want 150 and 1GiB", p, l)
	}
	if attrs := got.logAttrs(); attrs[1] != "GOGC" || attrs[3] != "1GiB" {
		t.Errorf("log attributes %v, want GOGC and 1GiB", attrs)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1GiB", 1 << 30, true},
		{"512MiB", 512 << 20, true},
		{"64KiB", 64 << 10, true},
		{"2TiB", 2 << 40, true},
		{"1000B", 1000, true},
		{"123456", 123456, true},
		{"0", 0, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"1.5GiB", 0, false},
		{"-1GiB", 0, false},
		{"+1GiB", 0, false},
		{"1GB", 0, false},
		{"1 GiB", 0, false},
		{"9000000TiB", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		var s ByteSize
		err := s.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || s != tt.want {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d, ok %v", tt.in, s, err, tt.want, tt.ok)
			continue
		}
		if tt.ok {
			var again ByteSize
			if err := again.UnmarshalText([]byte(s.String())); err != nil || again != s {
				t.Errorf("%q: String %q reads back as %d, %v", tt.in, s.String(), again, err)
			}
		}
	}
}
