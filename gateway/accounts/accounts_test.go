package accounts

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip/digest"
)

func TestFromPassword(t *testing.T) {
	a := FromPassword("alice", "example.com", "secret")
	if a.User != "alice" || a.Realm != "example.com" {
		t.Fatalf("account %+v", a)
	}
	if want := digest.HA1("MD5", "alice", "example.com", "secret"); a.HA1MD5 != want {
		t.Errorf("HA1MD5 = %s, want %s", a.HA1MD5, want)
	}
	if want := digest.HA1("SHA-256", "alice", "example.com", "secret"); a.HA1SHA256 != want {
		t.Errorf("HA1SHA256 = %s, want %s", a.HA1SHA256, want)
	}
	for alg, want := range map[string]string{"MD5": a.HA1MD5, "md5": a.HA1MD5, "": a.HA1MD5, "SHA-256": a.HA1SHA256} {
		if got, ok := a.HA1(alg); !ok || got != want {
			t.Errorf("HA1(%q) = %q, %v", alg, got, ok)
		}
	}
	if _, ok := a.HA1("SHA-512-256"); ok {
		t.Error("HA1(SHA-512-256) reported a value the account does not store")
	}
	if s := fmt.Sprint(a); s != "alice@example.com" {
		t.Errorf("String() = %q: must name the account only", s)
	}
}

func TestFromUserList(t *testing.T) {
	const realm = "example.com"
	tests := []struct {
		list    string
		users   []string // nil with err
		err     string
		secrets []string // must not appear in err
	}{
		{list: "", users: nil},
		{list: "  ", users: nil},
		{list: "alice:secret,1000:pass", users: []string{"alice", "1000"}},
		{list: " alice:secret , +4930123:x ", users: []string{"alice", "+4930123"}},
		{list: "bob:pa:ss", users: []string{"bob"}},
		{list: "alice", err: "entry 1 has no colon"},
		{list: "alice:", err: `user "alice" has an empty password`},
		{list: ":secret", err: "entry 1 has no user", secrets: []string{"secret"}},
		{list: "alice:a,,bob:b", err: "entry 2 is empty"},
		{list: "alice:hunter2,alice:hunter3", err: `entry 2: user "alice" is listed twice`, secrets: []string{"hunter"}},
		{list: "alice@example.com:a", err: "may hold only letters"},
		{list: "bo b:pw", err: "may hold only letters"},
		{list: strings.Repeat("u", MaxUserLen+1) + ":x", err: "longer than 64"},
		{list: "alice:" + strings.Repeat("p", MaxPasswordLen+1), err: "longer than 128"},
		{list: "alice:bad\x01pass", err: "control characters", secrets: []string{"bad"}},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := FromUserList(tt.list, realm)
			if tt.err != "" {
				if !errors.Is(err, ErrBadUserList) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBadUserList with %q", err, tt.err)
				}
				for _, s := range tt.secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q shows the password", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var users []string
			for _, a := range got {
				users = append(users, a.User)
				if a.Realm != realm || a.HA1MD5 == "" || a.HA1SHA256 == "" {
					t.Errorf("account %+v", a)
				}
			}
			if fmt.Sprint(users) != fmt.Sprint(tt.users) {
				t.Errorf("users %v, want %v", users, tt.users)
			}
		})
	}
	got, _ := FromUserList("bob:pa:ss", realm)
	if want := FromPassword("bob", realm, "pa:ss"); got[0] != want {
		t.Errorf("password with a colon: got %+v, want %+v", got[0], want)
	}
}

func TestStore(t *testing.T) {
	var s Store // the zero value is an empty store
	if _, ok := s.Lookup("alice"); ok || s.Len() != 0 || s.Users() != nil {
		t.Fatal("zero Store is not empty")
	}
	alice := FromPassword("alice", "example.com", "secret")
	bob := FromPassword("bob", "example.com", "hunter2")
	if err := s.Set([]Account{alice, bob}); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Lookup("alice"); !ok || got != alice {
		t.Errorf("Lookup(alice) = %+v, %v", got, ok)
	}
	if _, ok := s.Lookup("Alice"); ok {
		t.Error("user names must be case-sensitive")
	}
	if fmt.Sprint(s.Users()) != "[alice bob]" || s.Len() != 2 {
		t.Errorf("Users() = %v", s.Users())
	}

	// A bad set is refused whole, and the previous one stays.
	for _, bad := range [][]Account{
		{alice, alice},
		{{User: "carol", Realm: "example.com"}},
		{{Realm: "example.com", HA1MD5: alice.HA1MD5}},
	} {
		if err := s.Set(bad); !errors.Is(err, ErrBadAccount) {
			t.Errorf("Set(%v) = %v, want ErrBadAccount", bad, err)
		}
	}
	if s.Len() != 2 {
		t.Errorf("a refused Set changed the store: %v", s.Users())
	}
	if _, err := NewStore([]Account{alice, alice}); !errors.Is(err, ErrBadAccount) {
		t.Errorf("NewStore with a duplicate: %v", err)
	}
}

// TestStoreReload reads while another goroutine reloads: every lookup sees
// one whole set or the other (run with -race).
func TestStoreReload(t *testing.T) {
	setA := []Account{FromPassword("alice", "r", "1"), FromPassword("bob", "r", "1")}
	setB := []Account{FromPassword("alice", "r", "2"), FromPassword("carol", "r", "2")}
	s, err := NewStore(setA)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			set := setA
			if i%2 == 0 {
				set = setB
			}
			if err := s.Set(set); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 2000 {
		a, ok := s.Lookup("alice")
		if !ok || (a != setA[0] && a != setB[0]) {
			t.Fatalf("Lookup(alice) = %+v, %v", a, ok)
		}
	}
	wg.Wait()
}
