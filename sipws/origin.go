package sipws

import (
	"errors"
	"net/url"
	"strings"
)

// originPattern is one parsed entry of Options.AllowedOrigins.
//
// The WebSocket library has OriginPatterns too, but it matches them with
// path.Match (so '?' and '[' are wildcards, and "*" crosses dots), checks
// them only when a browser connects, and reports a bad one through the
// standard logger. These patterns are validated once, in New.
type originPattern struct {
	scheme string // "http", "https", or "" for any
	host   string // lower case; with wildcard, the suffix ".example.com"
	port   string // "" for the scheme's default port
	// wildcard is set for "*.example.com": any subdomain of host.
	wildcard bool
}

func parseOriginPattern(s string) (originPattern, error) {
	var p originPattern
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/")
	rest := s
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return p, errors.New("scheme must be http or https")
		}
		p.scheme, rest = scheme, after
	}
	if rest == "" || rest == "*" {
		return p, errors.New("want scheme://host[:port], host[:port] or *.domain")
	}
	if strings.ContainsAny(rest, "/?#@") {
		return p, errors.New("an origin has no path, query or user")
	}
	if strings.HasPrefix(rest, "*.") {
		p.wildcard = true
		rest = rest[1:]
	}
	// Let net/url split host and port (IPv6 brackets, numeric port).
	u, err := url.Parse("http://" + rest)
	if err != nil {
		return p, errors.New("malformed host or port")
	}
	p.host, p.port = u.Hostname(), u.Port()
	if p.wildcard {
		p.host = "." + strings.TrimPrefix(p.host, ".")
	}
	if strings.Trim(p.host, ".") == "" || strings.Contains(p.host, "*") {
		return p, errors.New(`only a leading "*." is allowed as a wildcard`)
	}
	if isDefaultPort(p.scheme, p.port) {
		p.port = ""
	}
	return p, nil
}

func isDefaultPort(scheme, port string) bool {
	return scheme == "http" && port == "80" || scheme == "https" && port == "443"
}

func (p *originPattern) match(scheme, host, port string) bool {
	if p.scheme != "" && p.scheme != scheme || p.port != port {
		return false
	}
	if p.wildcard {
		return len(host) > len(p.host) && strings.HasSuffix(host, p.host)
	}
	return host == p.host
}

// allowOrigin reports whether a browser page from origin may connect to
// this gateway, reached as requestHost (the Host header). The gateway's own
// host is always allowed: it serves the softphone page itself.
func (t *Transport) allowOrigin(origin, requestHost string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed pages, file:) and garbage
	}
	if strings.EqualFold(u.Host, requestHost) {
		return true
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if isDefaultPort(scheme, port) {
		port = ""
	}
	for i := range t.origins {
		if t.origins[i].match(scheme, host, port) {
			return true
		}
	}
	return false
}
