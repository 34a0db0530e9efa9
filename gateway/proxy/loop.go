package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// branchPrefix starts the branch of every Via the proxy writes: the RFC
// 3261 cookie and a marker, then the loop-detection hash, a dot and a
// unique part (§16.6 step 8).
const branchPrefix = sip.BranchCookie + "sb"

// loopHash returns the loop-detection part of the branch (§16.6 step 8,
// RFC 5393 §4.2): a hash of what decides how the proxy handles the
// request — Request-URI, To and From tags, Call-ID, CSeq number, Route,
// Proxy-Require and Proxy-Authorization — taken before the proxy changes
// anything. The top Via, which §16.6 lists too, is left out: it differs at
// every pass of a looping request, which would hide the loop. The hash
// only compares; it protects nothing, so a fast 64-bit FNV-1a does.
func loopHash(r *sip.Request) string {
	h := newFNV()
	var buf [256]byte
	h.field(r.URI.AppendTo(buf[:0]))
	to, from := r.To(), r.From()
	h.fieldString(to.Tag())
	h.fieldString(from.Tag())
	h.fieldString(r.CallID())
	h.field(strconv.AppendUint(buf[:0], uint64(r.CSeq().Seq), 10))
	for _, name := range [...]string{"Route", "Proxy-Require", "Proxy-Authorization"} {
		for _, v := range r.Values(name) {
			h.fieldString(v)
		}
		h.fieldString("")
	}
	return h.hex()
}

// newBranch returns a branch for a forwarded request: the loop hash and
// a unique part.
func newBranch(hash string) string {
	return branchPrefix + hash + "." + sip.NewBranch()[len(sip.BranchCookie):]
}

// statelessBranch returns the branch for a request forwarded without a
// transaction (the ACK of a 2xx): derived from the received top Via's
// branch, so that a retransmitted ACK keeps its branch downstream (§16.11).
func statelessBranch(hash, received string) string {
	h := newFNV()
	h.write(received)
	return branchPrefix + hash + "." + h.hex()
}

// fnv64a is 64-bit FNV-1a, as hash/fnv's New64a computes it, written out
// so that hashing strings goes through no interface and allocates nothing.
type fnv64a uint64

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func newFNV() fnv64a { return fnvOffset64 }

func (h *fnv64a) write(s string) {
	for i := 0; i < len(s); i++ {
		*h = (*h ^ fnv64a(s[i])) * fnvPrime64
	}
}

// fieldString hashes s and the 0 byte that ends a field of loopHash.
func (h *fnv64a) fieldString(s string) {
	h.write(s)
	*h *= fnvPrime64 // the 0 byte: xor with 0 leaves h as it is
}

// field is fieldString for bytes.
func (h *fnv64a) field(b []byte) {
	for _, c := range b {
		*h = (*h ^ fnv64a(c)) * fnvPrime64
	}
	*h *= fnvPrime64 // the 0 byte
}

// hex returns the sum in lower-case hex, big-endian as hash.Hash64's Sum.
func (h fnv64a) hex() string {
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], uint64(h))
	var out [16]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// looped reports whether r carries a Via of this proxy whose branch holds
// hash: the request passed here before unchanged, so it loops rather
// than spirals (§16.3 step 4, RFC 5393 §4.2).
func (p *Proxy) looped(r *sip.Request, hash string) bool {
	for _, v := range r.Via() {
		b := v.Branch()
		if !strings.HasPrefix(b, branchPrefix) || !p.id.IsLocalHost(v.Host) {
			continue
		}
		if rest := b[len(branchPrefix):]; len(rest) > len(hash) && rest[:len(hash)] == hash && rest[len(hash)] == '.' {
			return true
		}
	}
	return false
}
