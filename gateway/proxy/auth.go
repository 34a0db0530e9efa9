package proxy

import (
	"errors"
	"math"
	"strconv"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
	"github.com/switchboard/switchboard/sip/transaction"
)

// authorize establishes who sent the out-of-dialog request r, whose
// Request-URI was uri when it arrived, and answers it when the policy
// refuses it (ok false):
//
//   - a trusted trunk is trusted by address;
//   - a caller that claims one of our domains in From (every caller, with
//     AuthenticateAll) must prove it with digest credentials, and be the
//     user of the From;
//   - any other caller is anonymous: the target decides whether it may
//     proceed.
//
// A source the Throttle refuses (it failed too often here, at the
// registrar or at the admin API, or probed for user names) gets 403: as
// an anonymous caller before anything is looked up for it, as one of our
// users when it sends credentials, before they are checked.
func (p *Proxy) authorize(tx *transaction.ServerTx, r *sip.Request, uri sip.URI) (Caller, bool) {
	c := Caller{Source: r.Source}
	if p.trusted != nil {
		if name, ok := p.trusted.Trusted(r.Source); ok {
			c.Trunk = name
			return c, true
		}
	}
	from := r.From()
	local := p.id.IsLocal(&from.URI)
	if !local && !p.authAll {
		return c, !p.throttled(tx, r, "")
	}
	user, ok := p.authenticate(tx, r, uri)
	if !ok {
		return c, false
	}
	if !local || from.URI.User != user {
		p.log.Info("proxy: from does not match credentials", "user", user, "from", from.URI.String(), "source", r.Source)
		p.reply(tx, r, 403, "From Does Not Match Credentials", nil)
		return c, false
	}
	c.User = user
	return c, true
}

// authenticate verifies the Proxy-Authorization of r for our realm (RFC
// 3261 §22.3), or answers r (the caller consumes the credentials once
// verified, in its copy of r): 407 with fresh challenges
// when there are no credentials or they fail, with stale=true when only
// the nonce was old; 403 when the Throttle refuses the source; 400 when
// the credentials name another URI than the request's.
func (p *Proxy) authenticate(tx *transaction.ServerTx, r *sip.Request, uri sip.URI) (string, bool) {
	cr, found := p.credentialsOf(r)
	if !found {
		p.challenge(tx, r, false)
		return "", false
	}
	ip := r.Source.AddrPort.Addr()
	if p.throttled(tx, r, cr.Username) {
		return "", false
	}
	if !digestURIMatches(cr.URI, &uri) {
		p.reply(tx, r, 400, "Authorization URI Mismatch", nil)
		return "", false
	}
	// A copy sent again after its server transaction ended early (the
	// table full under overload) is then not answered 407 as a replay of
	// itself, while the credentials serve no other request, nor this one
	// altered (another Contact or SDP).
	_, err := p.auth.VerifyResent(cr, r.Method, r.AppendReceived, func(algorithm string) (string, bool) {
		if p.creds == nil {
			return "", false
		}
		return p.creds.HA1(cr.Username, algorithm)
	})
	switch {
	case err == nil:
		if p.throttle != nil {
			p.throttle.Success(ip, cr.Username)
		}
	case errors.Is(err, digest.ErrStale), errors.Is(err, digest.ErrReplay):
		p.challenge(tx, r, true)
		return "", false
	default:
		if errors.Is(err, digest.ErrBadResponse) && p.throttle != nil {
			p.throttle.Failure(ip, cr.Username)
		}
		p.log.Info("proxy: authentication failed", "user", cr.Username, "source", r.Source, "err", err)
		p.challenge(tx, r, false)
		return "", false
	}
	return cr.Username, true
}

// throttled asks the Throttle whether r's source may go on, as user when
// not empty, and answers r with 403 and Retry-After when it may not.
func (p *Proxy) throttled(tx *transaction.ServerTx, r *sip.Request, user string) bool {
	if p.throttle == nil {
		return false
	}
	wait, ok := p.throttle.Allow(r.Source.AddrPort.Addr(), user)
	if ok {
		return false
	}
	p.log.Debug("proxy: refused: too many failures", "user", user, "source", r.Source, "retry_after", wait)
	p.reply(tx, r, 403, "Too Many Failed Attempts", func(res *sip.Response) {
		res.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	})
	return true
}

// credentialsOf returns the first Digest credentials of r for our realm.
func (p *Proxy) credentialsOf(r *sip.Request) (digest.Credentials, bool) {
	for _, v := range r.Values("Proxy-Authorization") {
		if c, err := digest.ParseCredentials(v); err == nil && c.Realm == p.realm {
			return c, true
		}
	}
	return digest.Credentials{}, false
}

// consumeCredentials removes the credentials for our realm from r, which
// the next hop has no use for; those for other realms stay (§22.3).
func (p *Proxy) consumeCredentials(r *sip.Request) {
	vs := r.Values("Proxy-Authorization")
	if len(vs) == 0 {
		return
	}
	r.Del("Proxy-Authorization")
	for _, v := range vs {
		if c, err := digest.ParseCredentials(v); err == nil && c.Realm == p.realm {
			continue
		}
		r.Add("Proxy-Authorization", v)
	}
}

// challenge answers r with 407 and one Proxy-Authenticate per algorithm.
func (p *Proxy) challenge(tx *transaction.ServerTx, r *sip.Request, stale bool) {
	p.reply(tx, r, 407, "", func(res *sip.Response) {
		for _, alg := range p.algorithms {
			ch, err := p.auth.Challenge(alg, stale)
			if err != nil {
				continue // cannot happen: both are implemented
			}
			res.Add("Proxy-Authenticate", ch.String())
		}
	})
}

// digestURIMatches reports whether the digest-uri of credentials names the
// Request-URI (RFC 7616 §3.4.6), by SIP URI equivalence when it parses.
func digestURIMatches(digestURI string, uri *sip.URI) bool {
	u, err := sip.ParseURI(digestURI)
	if err != nil {
		return digestURI == uri.String()
	}
	return u.Equal(uri)
}
