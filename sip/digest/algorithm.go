package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"

	"github.com/switchboard/switchboard/internal/ascii"
)

// algorithm describes one value of the algorithm parameter.
type algorithm struct {
	id     int    // index in algorithms
	name   string // canonical spelling, as RFC 7616 registers it
	lower  string // name in lower case, to compare with ascii.EqualFold
	base   string // name without -sess: the HA1 it needs
	sess   bool
	hash   hashKind
	hexLen int
	rank   int // preference in Select: stronger is higher
}

// hashKind names the hash function of an algorithm.
type hashKind int

const (
	hashMD5 hashKind = iota
	hashSHA256
	hashSHA512256
)

// appendDigest appends the hash of data to dst. The one-shot functions,
// called directly, let data and the result stay on the caller's stack: a
// Verify allocates nothing to hash, where a hash.Hash would take its input
// to the heap.
func (a *algorithm) appendDigest(dst, data []byte) []byte {
	switch a.hash {
	case hashSHA256:
		s := sha256.Sum256(data)
		return append(dst, s[:]...)
	case hashSHA512256:
		s := sha512.Sum512_256(data)
		return append(dst, s[:]...)
	default:
		s := md5.Sum(data)
		return append(dst, s[:]...)
	}
}

var algorithms = [...]algorithm{
	{id: 0, name: "MD5", lower: "md5", base: "MD5", hash: hashMD5, hexLen: 2 * md5.Size, rank: 1},
	{id: 1, name: "MD5-sess", lower: "md5-sess", base: "MD5", sess: true, hash: hashMD5, hexLen: 2 * md5.Size, rank: 1},
	{id: 2, name: "SHA-256", lower: "sha-256", base: "SHA-256", hash: hashSHA256, hexLen: 2 * sha256.Size, rank: 2},
	{id: 3, name: "SHA-256-sess", lower: "sha-256-sess", base: "SHA-256", sess: true, hash: hashSHA256, hexLen: 2 * sha256.Size, rank: 2},
	{id: 4, name: "SHA-512-256", lower: "sha-512-256", base: "SHA-512-256", hash: hashSHA512256, hexLen: 2 * sha512.Size256, rank: 3},
	{id: 5, name: "SHA-512-256-sess", lower: "sha-512-256-sess", base: "SHA-512-256", sess: true, hash: hashSHA512256, hexLen: 2 * sha512.Size256, rank: 3},
}

// maxHex is the longest hex digest of any algorithm.
const maxHex = 2 * sha256.Size

// lookupAlgorithm resolves an algorithm parameter; absent means MD5 (RFC 7616
// §3.3). It returns nil for algorithms this package does not implement.
func lookupAlgorithm(name string) *algorithm {
	if name == "" {
		return &algorithms[0]
	}
	for i := range algorithms {
		// The algorithm is a token, ASCII: strings.EqualFold would
		// take "\u017fHA-256" for "SHA-256".
		if ascii.EqualFold(algorithms[i].lower, name) {
			return &algorithms[i]
		}
	}
	return nil
}

// sum returns the lowercase hex digest of parts joined by colons, the H()
// and KD() of RFC 7616 §3.4.
func (a *algorithm) sum(parts ...string) string {
	var in [256]byte
	var buf [maxHex]byte
	return string(a.appendHex(buf[:0], join(in[:0], parts...)))
}

// join appends parts joined by colons to dst.
func join(dst []byte, parts ...string) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, p...)
	}
	return dst
}

// appendHex appends the lowercase hex digest of data to dst.
func (a *algorithm) appendHex(dst, data []byte) []byte {
	var raw [sha512.Size256]byte
	return hex.AppendEncode(dst, a.appendDigest(raw[:0], data))
}

// appendResponse appends the request-digest of RFC 7616 §3.4.1 (with qop)
// or RFC 2069 (without) to dst. ha1 is the stored H(username:realm:password);
// for -sess it is extended with the nonces here, so one stored value serves
// both variants. Its buffers are on the stack: long enough for most
// requests, and append moves longer ones to the heap.
func (a *algorithm) appendResponse(dst []byte, ha1, nonce, nc, cnonce, qop, method, uri string) []byte {
	var in [256]byte
	var h1, h2 [maxHex]byte
	ha1b := append(h1[:0], ha1...)
	if a.sess {
		ha1b = a.appendHex(h1[:0], join(in[:0], ha1, nonce, cnonce))
	}
	ha2 := a.appendHex(h2[:0], join(in[:0], method, uri))
	data := append(in[:0], ha1b...)
	data = append(append(data, ':'), nonce...)
	if qop != "" {
		data = append(append(data, ':'), nc...)
		data = append(append(data, ':'), cnonce...)
		data = append(append(data, ':'), qop...)
	}
	data = append(append(data, ':'), ha2...)
	return a.appendHex(dst, data)
}

// response returns appendResponse's digest as a string.
func (a *algorithm) response(ha1, nonce, nc, cnonce, qop, method, uri string) string {
	var buf [maxHex]byte
	return string(a.appendResponse(buf[:0], ha1, nonce, nc, cnonce, qop, method, uri))
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
