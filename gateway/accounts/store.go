package accounts

import (
	"fmt"
	"slices"
	"sync/atomic"
)

// Store is the set of accounts, read-mostly. Lookups take no lock; Set
// replaces the whole set at once, so a reload is seen entirely or not at
// all. The zero value is an empty store; a Store must not be copied after
// first use. Its methods are safe for concurrent use.
type Store struct {
	m atomic.Pointer[map[string]Account]
}

// NewStore returns a store holding accounts (see Set).
func NewStore(accounts []Account) (*Store, error) {
	s := new(Store)
	if err := s.Set(accounts); err != nil {
		return nil, err
	}
	return s, nil
}

// Set replaces every account with accounts. It checks them first and, on
// error, keeps the previous set: a bad reload must not lock everyone out.
// Each account needs a user and at least one HA1, and a user may appear
// once. Errors wrap ErrBadAccount.
func (s *Store) Set(accounts []Account) error {
	m := make(map[string]Account, len(accounts))
	for i, a := range accounts {
		switch {
		case a.User == "":
			return fmt.Errorf("%w: account %d has no user", ErrBadAccount, i+1)
		case a.HA1MD5 == "" && a.HA1SHA256 == "":
			return fmt.Errorf("%w: account %q has no HA1", ErrBadAccount, a.User)
		}
		if _, dup := m[a.User]; dup {
			return fmt.Errorf("%w: user %q is listed twice", ErrBadAccount, a.User)
		}
		m[a.User] = a
	}
	s.m.Store(&m)
	return nil
}

// Lookup returns the account of user. User names are case-sensitive, as
// the user part of a SIP URI is (RFC 3261 §19.1.4).
func (s *Store) Lookup(user string) (Account, bool) {
	m := s.m.Load()
	if m == nil {
		return Account{}, false
	}
	a, ok := (*m)[user]
	return a, ok
}

// Len returns the number of accounts.
func (s *Store) Len() int {
	if m := s.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Users returns the user names, sorted, for the admin API.
func (s *Store) Users() []string {
	m := s.m.Load()
	if m == nil {
		return nil
	}
	users := make([]string, 0, len(*m))
	for u := range *m {
		users = append(users, u)
	}
	slices.Sort(users)
	return users
}
