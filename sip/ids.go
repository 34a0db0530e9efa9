package sip

import (
	"crypto/rand"
	"encoding/base32"
	"slices"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns n random bytes as lower-case base32.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return idEncoding.EncodeToString(b)
}

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
