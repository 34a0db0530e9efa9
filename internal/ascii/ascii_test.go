package ascii

import (
	"strings"
	"testing"
)

// TestEqualFold checks EqualFold against strings.EqualFold on every pair
// of short strings from bytes chosen at the edges of the letters, and
// that non-ASCII folds are refused.
func TestEqualFold(t *testing.T) {
	bytes := []byte{0, '@', 'A', 'S', 'Z', '[', '`', 'a', 's', 'z', '{', 0x7f, 0x80, 0xc5, 0xbf, 0xff, '-', '0'}
	var all []string
	all = append(all, "")
	for _, a := range bytes {
		all = append(all, string([]byte{a}))
		for _, b := range bytes {
			all = append(all, string([]byte{a, b}))
		}
	}
	for _, s := range all {
		lower := strings.ToLower(s)
		if lower != asciiLower(s) {
			continue // not a lower-case form EqualFold is asked about
		}
		for _, u := range all {
			want := strings.EqualFold(lower, u) && len(lower) == len(u) && asciiLower(u) == lower
			if got := EqualFold(lower, u); got != want {
				t.Errorf("EqualFold(%q, %q) = %v, want %v", lower, u, got, want)
			}
		}
	}
	for _, c := range []struct {
		lower, s string
		want     bool
	}{
		{"localhost", "LocalHost", true},
		{"localhost", "localhost", true},
		{"localhost", "localhos", false},
		{"sha-256", "\u017fHA-256", false}, // ſ is not ASCII
		{"sha-256", "SHA-256", true},
		{"kelvin", "\u212aelvin", false},
		{"a-b", "A\rB", false}, // | 0x20 would take CR for '-'
	} {
		if got := EqualFold(c.lower, c.s); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", c.lower, c.s, got, c.want)
		}
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func BenchmarkEqualFold(b *testing.B) {
	for b.Loop() {
		EqualFold("localhost", "localhost")
		EqualFold("authorization", "Authorization")
		EqualFold("username", "USERNAME")
	}
}
