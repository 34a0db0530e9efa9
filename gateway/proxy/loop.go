package proxy

import (
	"encoding/hex"
	"hash/fnv"
	"io"
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
	h := fnv.New64a()
	w := func(s string) {
		io.WriteString(h, s)
		h.Write([]byte{0})
	}
	w(r.URI.String())
	to, from := r.To(), r.From()
	w(to.Tag())
	w(from.Tag())
	w(r.CallID())
	w(strconv.FormatUint(uint64(r.CSeq().Seq), 10))
	for _, name := range [...]string{"Route", "Proxy-Require", "Proxy-Authorization"} {
		for _, v := range r.Values(name) {
			w(v)
		}
		w("")
	}
	var sum [8]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
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
	h := fnv.New64a()
	io.WriteString(h, received)
	var sum [8]byte
	return branchPrefix + hash + "." + hex.EncodeToString(h.Sum(sum[:0]))
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
