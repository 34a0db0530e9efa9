package accounts

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/switchboard/switchboard/internal/ascii"
	"github.com/switchboard/switchboard/sip/digest"
)

// Errors that callers branch on with errors.Is.
var (
	// ErrBadUserList means a SWITCHBOARD_USERS-style list is malformed. The
	// wrapping error names the entry and the fault, never the password.
	ErrBadUserList = errors.New("invalid user list")
	// ErrBadAccount means an account cannot be stored: no user, no HA1, or a
	// user listed twice.
	ErrBadAccount = errors.New("invalid account")
)

// Limits on what FromUserList accepts; real accounts are far shorter, and
// the bounds keep a typo (a pasted file) from being hashed and stored.
const (
	MaxUserLen     = 64
	MaxPasswordLen = 128
)

// Account is one SIP account of a realm. Only the digest HA1 values are
// kept: they authenticate in Realm and cannot be used as a password
// elsewhere.
type Account struct {
	// User is the user part of the account's address of record, as the
	// digest username carries it.
	User string
	// Realm is the digest realm the HA1 values were computed for, the
	// gateway's SIP domain.
	Realm string
	// HA1MD5 is digest.HA1("MD5", User, Realm, password), lowercase hex.
	HA1MD5 string
	// HA1SHA256 is digest.HA1("SHA-256", User, Realm, password).
	HA1SHA256 string
}

// FromPassword returns the account for user in realm with both HA1 values
// computed from password.
func FromPassword(user, realm, password string) Account {
	return Account{
		User:      user,
		Realm:     realm,
		HA1MD5:    digest.HA1("MD5", user, realm, password),
		HA1SHA256: digest.HA1("SHA-256", user, realm, password),
	}
}

// HA1 returns the stored HA1 for a digest algorithm as digest.Server.Verify
// asks for it ("MD5" or "SHA-256"; -sess variants share their base's
// value). It reports false when the account has none for that algorithm.
func (a Account) HA1(algorithm string) (string, bool) {
	var h string
	switch {
	case ascii.EqualFold("md5", algorithm), algorithm == "":
		h = a.HA1MD5
	case ascii.EqualFold("sha-256", algorithm):
		h = a.HA1SHA256
	}
	return h, h != ""
}

// String returns "user@realm": printing an account never shows a hash.
func (a Account) String() string { return a.User + "@" + a.Realm }

// LogValue logs the account as its String, without the hashes.
func (a Account) LogValue() slog.Value { return slog.StringValue(a.String()) }

// FromUserList parses the SWITCHBOARD_USERS format, comma-separated
// user:password entries such as "alice:secret,1000:pass", into accounts of
// realm. Spaces around an entry are ignored; the password is everything
// after the first colon, so it may hold colons but not commas. A user must
// be a valid unescaped SIP URI user part (letters, digits and
// -_.!~*'()&=+$;?/) and may be listed once. An empty list gives no accounts.
// Errors wrap ErrBadUserList and never quote a password.
func FromUserList(list, realm string) ([]Account, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []Account
	seen := make(map[string]bool)
	for i, entry := range strings.Split(list, ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		user, pass, ok := strings.Cut(entry, ":")
		var fault string
		switch {
		case entry == "":
			fault = fmt.Sprintf("entry %d is empty; write user:password,user2:password2", n)
		case !ok:
			fault = fmt.Sprintf("entry %d has no colon; write user:password", n)
		case user == "":
			fault = fmt.Sprintf("entry %d has no user before the colon", n)
		case len(user) > MaxUserLen:
			fault = fmt.Sprintf("entry %d: user is longer than %d characters", n, MaxUserLen)
		case !ValidUser(user):
			fault = fmt.Sprintf("entry %d: user %q may hold only letters, digits and -_.!~*'()&=+$;?/", n, user)
		case seen[user]:
			fault = fmt.Sprintf("entry %d: user %q is listed twice", n, user)
		case pass == "":
			fault = fmt.Sprintf("entry %d: user %q has an empty password", n, user)
		case len(pass) > MaxPasswordLen:
			fault = fmt.Sprintf("entry %d: the password of %q is longer than %d characters", n, user, MaxPasswordLen)
		case strings.ContainsFunc(pass, isControl):
			fault = fmt.Sprintf("entry %d: the password of %q contains control characters", n, user)
		}
		if fault != "" {
			return nil, fmt.Errorf("%w: %s", ErrBadUserList, fault)
		}
		seen[user] = true
		out = append(out, FromPassword(user, realm, pass))
	}
	return out, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// ValidUser reports whether s can stand unescaped as the user part of a SIP
// URI: the unreserved and user-unreserved characters of RFC 3261 §25.1,
// except the comma, which separates entries of a user list.
func ValidUser(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte("-_.!~*'()&=+$;?/", c) < 0 {
			return false
		}
	}
	return s != ""
}
