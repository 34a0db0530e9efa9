// Package forwarded tells who sent an HTTP request that reached the
// gateway through reverse proxies: the client's address and whether it
// used TLS, as the proxies report them in Forwarded (RFC 7239) or
// X-Forwarded-For and X-Forwarded-Proto.
//
// Those headers are written by whoever sends the request, so they are
// believed only when the connection comes from a trusted proxy, and then
// only as far back as the proxies are trusted. Each proxy appends the
// address it received the request from; reading right to left, the first
// hop that is not a trusted proxy is the client. Anything left of it was
// written by the client itself and proves nothing.
//
// Only one kind of header is read (Trust.Header): the one the proxies
// write. A proxy passes the other kind through as the client sent it, so
// reading both would let a client name itself.
//
// A Trust is a value: the zero Trust believes nobody, and
//
//	t := forwarded.Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
//	c, err := t.Client(r) // c.Addr is the client, c.TLS whether it used TLS
package forwarded

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Header names the forwarding header the trusted proxies write.
type Header uint8

// The forwarding headers.
const (
	// XForwardedFor is X-Forwarded-For with X-Forwarded-Proto: what
	// nginx, Caddy, HAProxy and most load balancers write.
	XForwardedFor Header = iota
	// Forwarded is the standard header of RFC 7239.
	Forwarded
)

// String returns the header's name.
func (h Header) String() string {
	if h == Forwarded {
		return "Forwarded"
	}
	return "X-Forwarded-For"
}

// ParseHeader reads a Header from its name, without regard to case:
// "X-Forwarded-For" or "Forwarded".
func ParseHeader(s string) (Header, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "x-forwarded-for":
		return XForwardedFor, nil
	case "forwarded":
		return Forwarded, nil
	}
	return 0, fmt.Errorf("%q is not a forwarding header; use X-Forwarded-For or Forwarded", s)
}

// MaxHops bounds the hops read from the right of a request's forwarding
// header: past it the chain is not followed further, and the farthest hop
// read stands for the client. No real chain of proxies is that long.
const MaxHops = 32

// Trust says whose forwarding headers are believed. The zero value
// believes nobody: every request's client is its connection's peer.
type Trust struct {
	// Proxies are the addresses of the trusted reverse proxies.
	Proxies []netip.Prefix
	// Header is the header they write.
	Header Header
}

// Client is who sent a request.
type Client struct {
	// Addr is the client's address. Its port is 0 when a proxy named the
	// client without one.
	Addr netip.AddrPort
	// TLS reports whether the client reached us over TLS: the connection
	// is TLS, or a trusted proxy said that the client used https.
	TLS bool
	// Proxied reports whether trusted proxies named the client; Addr is
	// then not the connection's peer.
	Proxied bool
}

// ErrRemoteAddr is returned by Client for a request whose RemoteAddr is
// not an IP address and port, as requests that a net/http server reads
// from a TCP connection always have.
var ErrRemoteAddr = errors.New("forwarded: remote address is not ip:port")

// Trusted reports whether ip is one of the trusted proxies.
func (t *Trust) Trusted(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range t.Proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Client returns who sent r: its connection's peer, or, when that is a
// trusted proxy, the client its forwarding header names.
func (t *Trust) Client(r *http.Request) (Client, error) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return Client{}, fmt.Errorf("%w: %q", ErrRemoteAddr, r.RemoteAddr)
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap().WithZone(""), peer.Port())
	c := Client{Addr: peer, TLS: r.TLS != nil}
	if len(t.Proxies) == 0 || !t.Trusted(peer.Addr()) {
		return c, nil
	}
	var hops []Hop
	if t.Header == Forwarded {
		hops = ParseForwarded(r.Header.Values("Forwarded"))
	} else {
		hops = ParseXForwardedFor(r.Header.Values("X-Forwarded-For"), r.Header.Values("X-Forwarded-Proto"))
	}
	return t.walk(c, hops), nil
}

// walk follows hops from the right, starting from c, the connection's
// peer (a trusted proxy): each hop is who the proxy right of it got the
// request from, so it stands for the client until a hop is not a trusted
// proxy itself, or cannot be read.
func (t *Trust) walk(c Client, hops []Hop) Client {
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		if !h.Addr.IsValid() {
			break
		}
		c.Addr, c.Proxied = h.Addr, true
		switch h.Proto {
		case "https", "wss":
			c.TLS = true
		case "http", "ws":
			c.TLS = false
		}
		if !t.Trusted(h.Addr.Addr()) {
			break
		}
	}
	return c
}

// Hop is one entry of a forwarding header: whom a proxy received the
// request from, and how.
type Hop struct {
	// Addr is the address the proxy received the request from; invalid
	// when the entry names no address: "unknown", an obfuscated name, or
	// something that does not parse. The port is 0 when none was given.
	Addr netip.AddrPort
	// Proto is the scheme the request reached the proxy with, lower case
	// ("http", "https"), or "" when the entry does not say.
	Proto string
}

// ParseXForwardedFor reads the hops of X-Forwarded-For field values, the
// farthest first, and gives them the schemes of X-Forwarded-Proto: one
// each when both headers list as many entries, else the last scheme to
// the last hop, since the proxy nearest to us wrote both. At most MaxHops
// are read, from the right; when there are more, the first is an invalid
// hop that stands for the rest.
func ParseXForwardedFor(forValues, protoValues []string) []Hop {
	fors := lastEntries(forValues)
	protos := lastEntries(protoValues)
	hops := make([]Hop, len(fors))
	for i, s := range fors {
		if ap, err := ParseNode(s); err == nil {
			hops[i].Addr = ap
		}
	}
	switch {
	case len(protos) == len(hops):
		for i := range hops {
			hops[i].Proto = scheme(protos[i])
		}
	case len(protos) > 0 && len(hops) > 0:
		hops[len(hops)-1].Proto = scheme(protos[len(protos)-1])
	}
	return hops
}

// lastEntries returns the comma-separated entries of values, trimmed, at
// most MaxHops of them from the right; when there were more, the first
// entry is "" (an invalid hop).
func lastEntries(values []string) []string {
	var out []string
values:
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for {
			if len(out) == MaxHops {
				out = append(out, "")
				break values
			}
			j := strings.LastIndexByte(v, ',')
			out = append(out, strings.TrimSpace(v[j+1:]))
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	slices.Reverse(out)
	return out
}

// scheme returns s as a scheme, lower case, or "" when it is not one.
func scheme(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 16 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return ""
		}
	}
	return strings.ToLower(s)
}

// ErrNode is wrapped by the errors of ParseNode.
var ErrNode = errors.New("forwarded: not an address")

// ParseNode reads the address of a hop, as X-Forwarded-For entries and
// the for= of a Forwarded element give it: "192.0.2.1", "192.0.2.1:4000",
// "[2001:db8::1]", "[2001:db8::1]:4000" or, leniently, "2001:db8::1". An
// obfuscated port ("_x") counts as none. "unknown", obfuscated names and
// anything else are an error wrapping ErrNode.
func ParseNode(s string) (netip.AddrPort, error) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.AddrPort{}, fmt.Errorf("%w: %q has no closing bracket", ErrNode, s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.AddrPort{}, fmt.Errorf("%w: %q", ErrNode, s)
			}
			port = port[1:]
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		host, port = s[:i], s[i+1:]
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: %q", ErrNode, s)
	}
	var p uint16
	switch {
	case port == "" || port[0] == '_':
	default:
		n := 0
		for i := 0; i < len(port); i++ {
			c := port[i]
			if c < '0' || c > '9' || i >= 5 {
				return netip.AddrPort{}, fmt.Errorf("%w: port of %q", ErrNode, s)
			}
			n = n*10 + int(c-'0')
		}
		if n > 65535 {
			return netip.AddrPort{}, fmt.Errorf("%w: port of %q", ErrNode, s)
		}
		p = uint16(n)
	}
	return netip.AddrPortFrom(ip.Unmap(), p), nil
}
