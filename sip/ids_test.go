package sip

import (
	"strings"
	"sync"
	"testing"
)

// TestIDs: branches, tags and Call-IDs have their lengths and alphabet,
// carry the magic cookie where they must, and never repeat, drawn by
// several goroutines at once from the pooled generators.
func TestIDs(t *testing.T) {
	const goroutines, each = 8, 2000
	kinds := []struct {
		name   string
		new    func() string
		prefix string
		n      int // characters after the prefix
	}{
		{"branch", NewBranch, BranchCookie, 16},
		{"tag", NewTag, "", 13},
		{"call-id", NewCallID, "", 24},
	}
	for _, k := range kinds {
		var mu sync.Mutex
		seen := make(map[string]bool, goroutines*each)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				ids := make([]string, each)
				for i := range ids {
					ids[i] = k.new()
				}
				mu.Lock()
				defer mu.Unlock()
				for _, id := range ids {
					if seen[id] {
						t.Errorf("%s %q drawn twice", k.name, id)
					}
					seen[id] = true
					rest, ok := strings.CutPrefix(id, k.prefix)
					if !ok || len(rest) != k.n || strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz234567") != "" {
						t.Errorf("%s %q: want %q and %d base32 characters", k.name, id, k.prefix, k.n)
					}
				}
			})
		}
		wg.Wait()
	}
}

// BenchmarkNewTag is a UAS's tag, one in every response it builds.
func BenchmarkNewTag(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewTag()
	}
}
