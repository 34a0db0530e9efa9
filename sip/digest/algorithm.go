package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io"
	"strings"
)

// algorithm describes one value of the algorithm parameter.
type algorithm struct {
	name    string // canonical spelling, as RFC 7616 registers it
	base    string // name without -sess: the HA1 it needs
	sess    bool
	newHash func() hash.Hash
	hexLen  int
	rank    int // preference in Select: stronger is higher
}

var algorithms = [...]algorithm{
	{name: "MD5", base: "MD5", newHash: md5.New, hexLen: 2 * md5.Size, rank: 1},
	{name: "MD5-sess", base: "MD5", sess: true, newHash: md5.New, hexLen: 2 * md5.Size, rank: 1},
	{name: "SHA-256", base: "SHA-256", newHash: sha256.New, hexLen: 2 * sha256.Size, rank: 2},
	{name: "SHA-256-sess", base: "SHA-256", sess: true, newHash: sha256.New, hexLen: 2 * sha256.Size, rank: 2},
	{name: "SHA-512-256", base: "SHA-512-256", newHash: sha512.New512_256, hexLen: 2 * sha512.Size256, rank: 3},
	{name: "SHA-512-256-sess", base: "SHA-512-256", sess: true, newHash: sha512.New512_256, hexLen: 2 * sha512.Size256, rank: 3},
}

// lookupAlgorithm resolves an algorithm parameter; absent means MD5 (RFC 7616
// §3.3). It returns nil for algorithms this package does not implement.
func lookupAlgorithm(name string) *algorithm {
	if name == "" {
		return &algorithms[0]
	}
	for i := range algorithms {
		if strings.EqualFold(name, algorithms[i].name) {
			return &algorithms[i]
		}
	}
	return nil
}

// sum returns the lowercase hex digest of parts joined by colons, the H()
// and KD() of RFC 7616 §3.4.
func (a *algorithm) sum(parts ...string) string {
	h := a.newHash()
	for i, p := range parts {
		if i > 0 {
			io.WriteString(h, ":")
		}
		io.WriteString(h, p)
	}
	var buf [sha512.Size]byte
	return hex.EncodeToString(h.Sum(buf[:0]))
}

// response computes the request-digest of RFC 7616 §3.4.1 (with qop) or RFC
// 2069 (without). ha1 is the stored H(username:realm:password); for -sess it
// is extended with the nonces here, so one stored value serves both variants.
func (a *algorithm) response(ha1, nonce, nc, cnonce, qop, method, uri string) string {
	if a.sess {
		ha1 = a.sum(ha1, nonce, cnonce)
	}
	ha2 := a.sum(method, uri)
	if qop == "" {
		return a.sum(ha1, nonce, ha2)
	}
	return a.sum(ha1, nonce, nc, cnonce, qop, ha2)
}

// HA1 returns the lowercase hex H(username ":" realm ":" password) for the
// algorithm ("MD5", "SHA-256", "SHA-512-256", optionally with "-sess";
// case-insensitive; "" means MD5). An account store should keep this value
// instead of the password: it only authenticates in this realm. An algorithm
// and its -sess variant share the same HA1. HA1 returns "" for an unsupported
// algorithm, which no verification accepts.
func HA1(algorithm, username, realm, password string) string {
	a := lookupAlgorithm(algorithm)
	if a == nil {
		return ""
	}
	return a.sum(username, realm, password)
}

// DefaultAlgorithms returns the algorithms a server challenges with when
// its operator chose none: MD5 only. SHA-256 is stronger, but clients
// disagree on which of several challenges to answer: sipp and many desk
// phones read only the first and JsSIP 3.x only the last, and both give up
// unless it is MD5. Offer SHA-256 where every client supports it. Each
// call returns a new slice, so no caller can change another's default.
func DefaultAlgorithms() []string { return []string{"MD5"} }
