package digest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
)

// maxClientNonces bounds the nonce counters a Client keeps; servers that
// send more realms than this only cost a reset of the counters.
const maxClientNonces = 64

// Client answers Digest challenges for one account. It counts the uses of
// each realm's current nonce, so reusing a challenge for several requests
// (a REGISTER refresh, a re-INVITE) yields increasing nonce counts. The zero
// value is usable; methods are safe for concurrent use. A Client must not be
// copied after first use.
type Client struct {
	// Username and Password are the account's; the password never leaves
	// the client.
	Username string
	Password string
	// Rand is the source of client nonces; nil means crypto/rand. Tests
	// inject a fixed source.
	Rand io.Reader

	mu     sync.Mutex
	counts map[string]nonceCount // by realm
}

type nonceCount struct {
	nonce string
	nc    uint32
}

// Authorize answers ch for a request with the given method and
// Request-URI. It picks qop=auth when offered and answers RFC 2069 style
// when no qop is offered. It fails with ErrUnsupportedAlgorithm or
// ErrUnsupportedQOP when the challenge cannot be answered (see [Select]),
// or with the error of Rand. Put the result in Authorization (after a 401)
// or Proxy-Authorization (after a 407) with Credentials.String.
func (c *Client) Authorize(ch Challenge, method, uri string) (Credentials, error) {
	a := lookupAlgorithm(ch.Algorithm)
	if a == nil {
		return Credentials{}, fmt.Errorf("%w %q", ErrUnsupportedAlgorithm, ch.Algorithm)
	}
	if !answerable(a, ch.QOP) {
		return Credentials{}, fmt.Errorf("%w %q", ErrUnsupportedQOP, ch.QOP)
	}
	cr := Credentials{
		Username:  c.Username,
		Realm:     ch.Realm,
		Nonce:     ch.Nonce,
		URI:       uri,
		Algorithm: ch.Algorithm,
		Opaque:    ch.Opaque,
	}
	if len(ch.QOP) > 0 {
		var b [16]byte
		r := c.Rand
		if r == nil {
			r = rand.Reader
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Credentials{}, fmt.Errorf("digest: cnonce: %w", err)
		}
		cr.QOP = "auth"
		cr.CNonce = hex.EncodeToString(b[:])
		cr.NC = fmt.Sprintf("%08x", c.next(ch.Realm, ch.Nonce))
	}
	ha1 := a.sum(c.Username, ch.Realm, c.Password)
	cr.Response = a.response(ha1, cr.Nonce, cr.NC, cr.CNonce, cr.QOP, method, uri)
	if ch.UserHash {
		// RFC 7616 §3.4.4: the name travels hashed; A1 keeps the real one.
		cr.Username = a.sum(c.Username, ch.Realm)
		cr.UserHash = true
	}
	return cr, nil
}

// next returns the next nonce count for realm's nonce, starting at 1 when
// the nonce changes.
func (c *Client) next(realm, nonce string) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	nc, ok := c.counts[realm]
	if !ok && len(c.counts) >= maxClientNonces || c.counts == nil {
		c.counts = make(map[string]nonceCount)
	}
	if nc.nonce != nonce {
		nc = nonceCount{nonce: nonce}
	}
	nc.nc++
	c.counts[realm] = nc
	return nc.nc
}

// Answer answers a challenge once with a username and password, as a
// Client with nonce count 1 would. Use a Client to reuse a nonce.
func Answer(ch Challenge, method, uri, username, password string) (Credentials, error) {
	c := Client{Username: username, Password: password}
	return c.Authorize(ch, method, uri)
}
