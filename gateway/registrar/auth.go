package registrar

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/internal/ascii"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// authenticate checks the request's credentials for toUser. It returns
// nil when they are good, else the response to send; resent reports good
// credentials on a copy of a REGISTER accepted before
// (digest.Server.VerifyResent), to be answered as that one was.
func (r *Registrar) authenticate(req *sip.Request, toUser string) (res *sip.Response, resent bool) {
	cred, found, malformed := r.credentials(req)
	if !found {
		if malformed {
			return reply(req, 400, "Malformed Authorization"), false
		}
		return r.challenge(req, false), false
	}
	// The To must be the authenticated user's own AOR. The user may be
	// written decoded or as the AOR escapes it: a digest username cannot
	// carry every octet a SIP user part can (RFC 4475 escnull has %00).
	if cred.UserHash || cred.Username != toUser && cred.Username != escapedUser(r.aorOf(toUser)) {
		return reply(req, 403, "User Does Not Match To"), false
	}
	// RFC 7616 §3.4.6 asks the server to check that the digest uri names
	// the request. Loosely: proxies and clients disagree on ports and
	// parameters, so the user and the domain must match.
	if u, err := sip.ParseURI(cred.URI); err != nil || !u.IsSIP() || u.User != req.URI.User || !r.ours(u.Host) {
		return reply(req, 400, "Authorization URI Mismatch"), false
	}
	src := req.Source.AddrPort.Addr()
	if wait, ok := r.throttle.Allow(src, cred.Username); !ok {
		res := reply(req, 403, "Too Many Failed Attempts")
		res.Add("Retry-After", retryAfter(wait))
		return res, false
	}
	// An unknown user is verified against a dummy HA1: the same work and
	// the same answer as a wrong password, so names cannot be probed.
	acc, known := r.accounts.Lookup(cred.Username)
	known = known && acc.Realm == r.digest.Realm
	// A REGISTER over UDP is sent again until its answer comes, and the
	// copy that comes after its server transaction ended (the table full
	// under load ends answered ones within a second, long before Timer J)
	// would otherwise find its credentials used: a stale challenge, and a
	// client that then fails (§10.3 step 7 refuses the CSeq it reuses).
	resent, err := r.digest.VerifyResent(cred, req.Method, req.AppendReceived, func(alg string) (string, bool) {
		if !known {
			return "", false
		}
		return acc.HA1(alg)
	})
	switch {
	case err == nil:
		// The address becomes one of the user's usual ones, which a
		// guesser elsewhere cannot get blocked for the user.
		r.throttle.Success(src, cred.Username)
		return nil, resent
	case errors.Is(err, digest.ErrStale), errors.Is(err, digest.ErrReplay):
		return r.challenge(req, true), false
	case errors.Is(err, digest.ErrBadResponse):
		blocked := r.throttle.Failure(accounts.OriginRegister, src, cred.Username)
		r.log.Info("registrar: authentication failed", "user", cred.Username, "known", known,
			"source", req.Source.String(), "blocked", blocked)
		return r.challenge(req, false), false
	case errors.Is(err, digest.ErrMalformed):
		return reply(req, 400, "Malformed Authorization"), false
	default:
		// A nonce not ours (or from before a restart), an algorithm or
		// qop not offered: offer again.
		r.log.Debug("registrar: credentials refused", "user", cred.Username, "source", req.Source.String(), "err", err)
		return r.challenge(req, false), false
	}
}

// credentials returns the first Digest credentials for this realm. Headers
// of other schemes or realms are skipped (RFC 4475 regaut01: a registrar
// challenges in a scheme it knows). malformed reports a Digest header that
// did not parse.
func (r *Registrar) credentials(req *sip.Request) (c digest.Credentials, found, malformed bool) {
	// The lines themselves rather than Values, which builds a list.
	for _, f := range req.Fields() {
		// No compact form. (strings.EqualFold took 2 % of a
		// registration to find out that other names are not it.)
		if !ascii.EqualFold("authorization", f.Name) {
			continue
		}
		c, err := digest.ParseCredentials(f.Value)
		switch {
		case errors.Is(err, digest.ErrUnsupportedScheme):
		case err != nil:
			malformed = true
		case c.Realm == r.digest.Realm:
			return c, true, false
		}
	}
	return digest.Credentials{}, false, malformed
}

// challenge returns a 401 with one challenge per algorithm.
func (r *Registrar) challenge(req *sip.Request, stale bool) *sip.Response {
	res := reply(req, 401, "")
	for _, alg := range r.algorithms {
		ch, err := r.digest.ChallengeHeader(alg, stale)
		if err != nil {
			continue // cannot happen: both algorithms are implemented
		}
		res.Add("WWW-Authenticate", ch)
	}
	// The gateway would add one, formatting it anew for every 401.
	res.Add("Date", r.dateOf(r.clock.Now()))
	return res
}

// escapedUser returns the user part of a canonical AOR as written in it.
func escapedUser(aor string) string {
	return aor[len("sip:"):strings.LastIndexByte(aor, '@')]
}

// retryAfter returns d in whole seconds for Retry-After, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatUint(seconds(d), 10)
}
