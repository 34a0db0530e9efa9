package accounts

import (
	"strings"
	"testing"
)

// FuzzFromUserList: any input either parses into valid, distinct accounts
// or fails with ErrBadUserList, and no error ever shows a password.
func FuzzFromUserList(f *testing.F) {
	for _, s := range []string{"alice:secret,1000:pass", " a:b , c:d:e", "alice", ":x", "a:,b:c", "a:b,,c:d", "é:x", "a:\x00", "a:b,a:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		accs, err := FromUserList(list, "example.com")
		if err == nil {
			seen := map[string]bool{}
			for _, a := range accs {
				if !ValidUser(a.User) || seen[a.User] || a.HA1MD5 == "" || a.HA1SHA256 == "" {
					t.Fatalf("bad account %+v from %q", a, list)
				}
				seen[a.User] = true
			}
			if _, err := NewStore(accs); err != nil {
				t.Fatalf("parsed accounts refused by the store: %v", err)
			}
		}
		// The same list with every password replaced by a marker (alone,
		// and with a control character, one more way to fail): whatever
		// its error, the marker must not appear in it.
		const marker = "PASSWORD-MARKER-7f3a"
		for _, suffix := range []string{"", "\x01"} {
			entries := strings.Split(list, ",")
			for i, e := range entries {
				if user, _, ok := strings.Cut(e, ":"); ok {
					entries[i] = user + ":" + marker + suffix
				}
			}
			if _, err := FromUserList(strings.Join(entries, ","), "example.com"); err != nil && strings.Contains(err.Error(), marker) {
				t.Fatalf("error %q shows a password", err)
			}
		}
	})
}
