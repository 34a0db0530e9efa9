package digest

import "strings"

// Challenge is a Digest challenge, the value of a WWW-Authenticate or
// Proxy-Authenticate header field (RFC 7616 §3.3).
type Challenge struct {
	// Realm names the protection space; in SIP usually the domain.
	Realm string
	// Domain is the space-separated list of URIs the challenge covers.
	Domain string
	// Nonce is the server's opaque, server-specific data.
	Nonce string
	// Opaque is returned unchanged by the client.
	Opaque string
	// Algorithm is e.g. "MD5" or "SHA-256"; "" (absent) means MD5.
	Algorithm string
	// QOP lists the offered qop values; empty for RFC 2069 servers.
	QOP []string
	// Stale reports that the previous credentials were right but their
	// nonce was too old: retry with the new nonce without asking the user.
	Stale bool
	// UserHash reports that the server accepts a hashed username.
	UserHash bool
}

var challengeParams = []string{"realm", "domain", "nonce", "opaque", "algorithm", "qop", "stale", "userhash"}

// ParseChallenge parses a WWW-Authenticate or Proxy-Authenticate header
// value such as `Digest realm="example.com", nonce="...", qop="auth"`. The
// scheme and parameter names are case-insensitive, unknown parameters are
// ignored, and realm and nonce are required. A header of another scheme
// yields [ErrUnsupportedScheme].
func ParseChallenge(headerValue string) (Challenge, error) {
	var ch Challenge
	var seen paramSet
	err := parseAuth(headerValue, func(name, value string) error {
		i := lookupParam(challengeParams, name)
		if i < 0 {
			return nil
		}
		if err := seen.add(uint(i), name); err != nil {
			return err
		}
		switch i {
		case 0:
			ch.Realm = value
		case 1:
			ch.Domain = value
		case 2:
			ch.Nonce = value
		case 3:
			ch.Opaque = value
		case 4:
			ch.Algorithm = value
		case 5:
			ch.QOP = splitQOP(value)
		case 6:
			// RFC 7616 §3.3: anything but "true" means false.
			ch.Stale = strings.EqualFold(value, "true")
		case 7:
			ch.UserHash = strings.EqualFold(value, "true")
		}
		return nil
	})
	if err != nil {
		return Challenge{}, err
	}
	for _, i := range []uint{0, 2} {
		if !seen.has(i) {
			return Challenge{}, malformed("missing %s", challengeParams[i])
		}
	}
	return ch, nil
}

// splitQOP splits the qop-options list ("auth, auth-int").
func splitQOP(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.Trim(f, " \t\r\n"); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// String formats the challenge as a header value, quoting the parameters
// RFC 7616 §3.3 quotes and leaving algorithm, stale and userhash bare.
// Realm and nonce are always written; other empty fields are omitted.
func (ch Challenge) String() string {
	var w writer
	w.start()
	w.quoted("realm", ch.Realm)
	if ch.Domain != "" {
		w.quoted("domain", ch.Domain)
	}
	w.quoted("nonce", ch.Nonce)
	if ch.Opaque != "" {
		w.quoted("opaque", ch.Opaque)
	}
	if ch.Stale {
		w.bare("stale", "true")
	}
	if ch.Algorithm != "" {
		w.bare("algorithm", ch.Algorithm)
	}
	if len(ch.QOP) > 0 {
		w.quoted("qop", strings.Join(ch.QOP, ","))
	}
	if ch.UserHash {
		w.bare("userhash", "true")
	}
	return w.String()
}

// offersAuth reports whether qop=auth is among the offered values.
func offersAuth(qop []string) bool {
	for _, q := range qop {
		if strings.EqualFold(q, "auth") {
			return true
		}
	}
	return false
}

// Select returns the challenge to answer among several for the same realm
// (RFC 8760: a server may offer one per algorithm). It prefers the
// strongest algorithm this package implements (SHA-512-256, then SHA-256,
// then MD5), then the first in header order, and skips challenges that
// cannot be answered (unknown algorithm, only qop=auth-int). It reports
// false if none can be answered. A response carrying several realms (a
// forking proxy) needs one Select per realm.
func Select(challenges []Challenge) (Challenge, bool) {
	best, bestRank := -1, 0
	for i, ch := range challenges {
		a := lookupAlgorithm(ch.Algorithm)
		if a == nil || !answerable(a, ch.QOP) {
			continue
		}
		if a.rank > bestRank {
			best, bestRank = i, a.rank
		}
	}
	if best < 0 {
		return Challenge{}, false
	}
	return challenges[best], true
}

// answerable reports whether a client can answer with qop=auth or, for an
// RFC 2069 server, without qop. A -sess algorithm needs a cnonce, which
// RFC 2617 forbids sending without qop.
func answerable(a *algorithm, qop []string) bool {
	if len(qop) == 0 {
		return !a.sess
	}
	return offersAuth(qop)
}
