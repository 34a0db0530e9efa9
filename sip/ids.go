package sip

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"
	"sync"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns n (at most 16) random bytes as lower-case base32.
func randomID(n int) string {
	g := idSources.Get().(*mrand.ChaCha8)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.Uint64())
	idSources.Put(g)
	var out [26]byte // base32 of 16 bytes
	idEncoding.Encode(out[:], b[:n])
	return string(out[:idEncoding.EncodedLen(n)])
}

// idSources hold the generators of branches, tags and Call-IDs: ChaCha8,
// which is cryptographically strong, as §19.3 wants tags and a branch
// that an attacker could guess would let him answer for the transaction;
// each is seeded from crypto/rand. crypto/rand itself for each ID (its
// DRBG and a getrandom call) cost a fifth of the time of building a
// response, and every response of a UAS has a new tag.
var idSources = sync.Pool{New: func() any {
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails (Go 1.24+)
	return mrand.NewChaCha8(seed)
}}

// NewBranch returns a fresh Via branch with the RFC 3261 magic cookie and
// 80 random bits, unique across space and time as §8.1.1.7 asks.
func NewBranch() string { return BranchCookie + randomID(10) }

// NewTag returns a random From/To tag (§19.3: at least 32 random bits).
func NewTag() string { return randomID(8) }

// NewCallID returns a random Call-ID.
func NewCallID() string { return randomID(15) }

// Clone returns a copy of r whose headers can be changed without touching r.
// Strings and the body are shared: they are never written in place.
func (r *Request) Clone() *Request {
	c := *r
	c.Headers.cloneFrom(&r.Headers)
	return &c
}

// Clone returns a copy of r whose headers can be changed without touching r.
func (r *Response) Clone() *Response {
	c := *r
	c.Headers.cloneFrom(&r.Headers)
	return &c
}

// cloneFrom finishes a struct copy of src: the header lines get their own
// array, and typed lists that pointed into src's inline arrays point into
// h's, so the typed cache stays valid without parsing again.
func (h *Headers) cloneFrom(src *Headers) {
	if len(src.fields) > 0 && &src.fields[0] == &src.fieldArr[0] {
		h.fields = h.fieldArr[:len(src.fields)]
	} else {
		h.fields = slices.Clone(src.fields)
	}
	// Both copies may append raw lines and parse their lists again:
	// neither may write over the other's.
	if src.rare != nil {
		r := *src.rare
		r.raws = slices.Clip(r.raws)
		h.rare = &r
	}
	if len(src.via) > 0 && &src.via[0] == &src.viaArr[0] {
		h.via = h.viaArr[:len(src.via)]
	}
	if len(src.contacts) > 0 && &src.contacts[0] == &src.contactArr[0] {
		h.contacts = h.contactArr[:len(src.contacts)]
	}
}
