// Package ascii compares protocol text in ASCII case: SIP's host names,
// header names and tokens, and HTTP Digest's parameter names and values,
// where only A to Z fold to a to z. strings.EqualFold folds Unicode as
// well: it takes "ſ" (U+017F) for "s" and "K" (U+212A, Kelvin) for "k",
// and checks for multi-byte runes on every byte.
package ascii

// EqualFold reports whether s is lower with ASCII letters in any case.
// lower must be in lower case (it is the caller's constant or a name
// lowercased once); then any two spellings of it in ASCII case are equal
// to it, and nothing else is.
func EqualFold(lower, s string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if toLower[s[i]] != lower[i] {
			return false
		}
	}
	return true
}

// toLower maps A to Z to a to z and every other byte to itself: one load
// per byte, where a range test is two compares and a branch.
var toLower = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()
