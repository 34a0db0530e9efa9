package main

import (
	"reflect"
	"strings"
	"testing"
)

// The settings parsers read operator input, not network input, but they
// still must never panic, and whatever they accept must keep its invariants
// and survive a round trip.

func FuzzPortRange(f *testing.F) {
	for _, s := range []string{"20000-29999", "2-3", "65534-65535", "20001-29999", "0-1", "-", "1-99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r PortRange
		if err := r.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if r.Start == 0 || r.Start%2 != 0 || r.Start >= r.End {
			t.Fatalf("%q parsed to %v, which breaks the range rules", s, r)
		}
		var again PortRange
		if err := again.UnmarshalText([]byte(r.String())); err != nil || again != r {
			t.Fatalf("%q: round trip of %v gave %v, %v", s, r, again, err)
		}
	})
}

func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"1GiB", "512MiB", "0", "1000B", "8388607TiB", "8388608TiB", "+1", "-1KiB", "1.5GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b ByteSize
		if err := b.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("%q parsed to a negative size %d", s, b)
		}
		var again ByteSize
		if err := again.UnmarshalText([]byte(b.String())); err != nil || again != b {
			t.Fatalf("%q: round trip of %d (%q) gave %d, %v", s, b, b.String(), again, err)
		}
	})
}

func FuzzAccounts(f *testing.F) {
	for _, s := range []string{"alice:secret", "alice:a,bob:b", " 1000:pa:ss , +49:x", "alice", ":x", "a:a,a:b", "a:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a Accounts
		if err := a.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if len(a) == 0 {
			t.Fatalf("%q parsed to no accounts", s)
		}
		entries := make([]string, len(a))
		for i, acc := range a {
			if !validSIPUser(acc.User) || acc.Password == "" {
				t.Fatalf("%q gave an invalid account %q", s, acc.User)
			}
			entries[i] = acc.User + ":" + acc.Password
		}
		// Spaces around entries are dropped, so a password that ends in a
		// space does not survive the round trip; compare on the parsed form.
		var again Accounts
		if err := again.UnmarshalText([]byte(strings.Join(entries, ","))); err != nil {
			t.Fatalf("%q: round trip failed: %v", s, err)
		}
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("%q: round trip changed the accounts", s)
		}
	})
}

func FuzzOrigins(f *testing.F) {
	for _, s := range []string{"https://app.example.com", "http://localhost:3000/, https://[::1]:8443", "*", "https://a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var o OriginList
		if err := o.UnmarshalText([]byte(s)); err != nil {
			return
		}
		var again OriginList
		if err := again.UnmarshalText([]byte(strings.Join(o, ","))); err != nil {
			t.Fatalf("%q: round trip of %q failed: %v", s, o, err)
		}
		if !reflect.DeepEqual(o, again) {
			t.Fatalf("%q: round trip changed %q to %q", s, o, again)
		}
	})
}
