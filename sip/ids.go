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
	c.Headers = r.Headers.clone()
	return &c
}

// Clone returns a copy of r whose headers can be changed without touching r.
func (r *Response) Clone() *Response {
	c := *r
	c.Headers = r.Headers.clone()
	return &c
}

func (h *Headers) clone() Headers {
	// The typed cache points into h, so the copy starts without one.
	return Headers{fields: slices.Clone(h.fields)}
}
