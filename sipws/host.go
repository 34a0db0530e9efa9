package sipws

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// The Host check stops DNS rebinding. A page of attacker.example whose
// name the attacker re-points at the gateway's address (a loopback or
// LAN address the attacker cannot reach) is same-origin with itself, so
// the Origin check lets it in; but the browser still names the page's
// host in the Host header. Only the names and addresses of the gateway are
// let through, with any port: the port adds nothing, since rebinding works
// through the name.

// hostPattern is one parsed entry of Options.AllowedHosts.
type hostPattern struct {
	name string     // lower case, no trailing dot; with wildcard, ".example.com"
	ip   netip.Addr // set instead of name for an IP address
	// wildcard is set for "*.example.com": any subdomain of the name.
	wildcard bool
}

// CheckAllowedHost reports why s cannot be an entry of
// Options.AllowedHosts, or nil when it can: configuration checks it early
// with it.
func CheckAllowedHost(s string) error {
	_, err := parseHostPattern(s)
	return err
}

func parseHostPattern(s string) (hostPattern, error) {
	var p hostPattern
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "*" {
		return p, errors.New(`want a host name, an IP address or "*.domain"`)
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		p.ip = ip.Unmap().WithZone("")
		return p, nil
	}
	if strings.ContainsAny(s, ":/?#@[] ") {
		return p, errors.New("a host has no scheme, port, path or user: any port is allowed")
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		p.wildcard = true
		s = rest
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || strings.HasPrefix(s, ".") || strings.Contains(s, "..") || strings.Contains(s, "*") {
		return p, errors.New(`malformed name; only a leading "*." is allowed as a wildcard`)
	}
	p.name = s
	if p.wildcard {
		p.name = "." + s
	}
	return p, nil
}

func (p *hostPattern) match(name string, ip netip.Addr) bool {
	switch {
	case p.ip.IsValid():
		return p.ip == ip
	case p.wildcard:
		return len(name) > len(p.name) && strings.HasSuffix(name, p.name)
	}
	return name == p.name
}

// splitHost returns the host of a Host header value ("name", "name:port",
// "1.2.3.4:port", "[::1]:port"): a lower-case name without its trailing
// dot, or an IP address. ok is false for a value that is neither.
func splitHost(hostport string) (name string, ip netip.Addr, ok bool) {
	host := hostport
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 || !validPort(host[end+1:]) {
			return "", netip.Addr{}, false
		}
		host = host[1:end]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, false
		}
		return "", a.Unmap().WithZone(""), true
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		if !validPort(host[i:]) {
			return "", netip.Addr{}, false // a bare IPv6 address, or garbage
		}
		host = host[:i]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return "", a.Unmap(), true
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.HasPrefix(host, ".") {
		return "", netip.Addr{}, false
	}
	return host, netip.Addr{}, true
}

// validPort reports whether s is "" or ":" followed by at most 5 digits
// (an empty port is allowed by RFC 3986).
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) > 6 {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// allowHost reports whether r names this gateway in its Host header
// (HTTP/2's :authority, which net/http also puts in r.Host): one of
// Options.AllowedHosts, the host of Options.LocalAddr, the address of the
// listener the request came in on, or "localhost" when that listener is on
// loopback.
func (t *Transport) allowHost(r *http.Request) bool {
	name, ip, ok := splitHost(r.Host)
	if !ok {
		return false
	}
	var local netip.Addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			local = ap.Addr().Unmap().WithZone("")
		}
	}
	if ip.IsValid() {
		if ip == local || ip == t.local.AddrPort.Addr().Unmap() && !ip.IsUnspecified() {
			return true
		}
	} else if name == "localhost" && local.IsLoopback() {
		// What a browser on the gateway's own machine is pointed at; an
		// attacker cannot make another name resolve to it.
		return true
	}
	for i := range t.hosts {
		if t.hosts[i].match(name, ip) {
			return true
		}
	}
	return false
}
