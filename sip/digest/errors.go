package digest

import "errors"

// Errors returned by this package. They are wrapped with details, so compare
// with [errors.Is].
var (
	// ErrUnsupportedScheme means the header uses an auth scheme other than
	// Digest (Basic, Bearer, ...). The header is not for this package.
	ErrUnsupportedScheme = errors.New("digest: unsupported auth scheme")

	// ErrMalformed means the header value does not follow the grammar or
	// lacks a required parameter.
	ErrMalformed = errors.New("digest: malformed header")

	// ErrUnsupportedAlgorithm means the algorithm is not MD5, SHA-256 or
	// SHA-512-256 (with or without -sess).
	ErrUnsupportedAlgorithm = errors.New("digest: unsupported algorithm")

	// ErrUnsupportedQOP means no quality of protection this package
	// implements is usable: qop=auth-int, an unknown qop, or (on the server)
	// no qop at all.
	ErrUnsupportedQOP = errors.New("digest: unsupported qop")

	// ErrBadNonce means the nonce was not issued by this server and realm
	// (forged, garbled, issued for another algorithm, or from before a
	// secret change). Re-challenge with stale=false.
	ErrBadNonce = errors.New("digest: bad nonce")

	// ErrStale means the response was correct but the nonce is too old.
	// Re-challenge with stale=true so the client retries without asking
	// its user for the password again.
	ErrStale = errors.New("digest: stale nonce")

	// ErrReplay means the response was correct but its nonce count was not
	// higher than one already accepted for that nonce. Re-challenge with
	// stale=true: a confused honest client recovers, a replayer gains
	// nothing.
	ErrReplay = errors.New("digest: replayed nonce count")

	// ErrBadResponse means the credentials do not prove knowledge of the
	// password: wrong password, unknown user, or another realm.
	ErrBadResponse = errors.New("digest: bad response")
)
