// Package identity says who the gateway is on the SIP network: the domains
// it serves, the other names and addresses it answers to, and the
// endpoints peers reach it at (the public address behind NAT, not the
// socket it listens on).
//
// It is the one place that answers "is this URI ours", and the one place
// that writes the gateway's own Via, Contact and Record-Route values and
// its answer to OPTIONS, so that the registrar, the proxy, the B2BUA and
// the trunk registrations cannot disagree about them.
package identity

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/internal/ascii"
	"github.com/switchboard/switchboard/sip"
)

// Endpoint is one of the gateway's SIP addresses as peers must see it.
type Endpoint struct {
	// Transport is sip.UDP, sip.TCP, sip.TLS, sip.WS or sip.WSS.
	Transport string
	// Host is the host name or IP address to advertise.
	Host string
	// Port is the port to advertise; 0 leaves it out (the transport's
	// default port).
	Port int
}

// Config describes the gateway's identity.
type Config struct {
	// Domains are the SIP domains served; the first is the primary one:
	// the domain of a Request-URI that names the gateway by address.
	Domains []string
	// Aliases are more host names and addresses that mean the gateway:
	// a load balancer's name, a public address, the listen addresses.
	Aliases []string
	// Endpoints are the gateway's addresses, one per transport it serves
	// at least. The first one of a transport is used for it.
	Endpoints []Endpoint
}

// ErrInvalid is wrapped by the errors of New.
var ErrInvalid = errors.New("identity: invalid configuration")

// Identity is who the gateway is. Make it with New; it is immutable and
// safe for concurrent use.
type Identity struct {
	domains   []string // lower case, primary first
	names     map[string]bool
	ips       map[netip.Addr]bool
	ports     map[int]bool
	endpoints []Endpoint
}

// New checks cfg and returns the Identity it describes.
func New(cfg Config) (*Identity, error) {
	if len(cfg.Domains) == 0 || cfg.Domains[0] == "" {
		return nil, fmt.Errorf("%w: no domain", ErrInvalid)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoint", ErrInvalid)
	}
	id := &Identity{names: map[string]bool{}, ips: map[netip.Addr]bool{}, ports: map[int]bool{}}
	for _, d := range cfg.Domains {
		if d == "" {
			return nil, fmt.Errorf("%w: an empty domain", ErrInvalid)
		}
		id.domains = append(id.domains, strings.ToLower(trimBrackets(d)))
	}
	for _, ep := range cfg.Endpoints {
		if ep.Host == "" || ep.Transport == "" || ep.Port < 0 || ep.Port > 65535 {
			return nil, fmt.Errorf("%w: endpoint %+v lacks a transport or host, or has a bad port", ErrInvalid, ep)
		}
		ep.Transport = strings.ToUpper(ep.Transport)
		ep.Host = trimBrackets(ep.Host)
		id.endpoints = append(id.endpoints, ep)
		id.addHost(ep.Host)
		id.ports[ep.Port] = true
	}
	for _, a := range cfg.Aliases {
		if a != "" {
			id.addHost(a)
		}
	}
	return id, nil
}

func (id *Identity) addHost(h string) {
	h = trimBrackets(h)
	if ip, err := netip.ParseAddr(h); err == nil {
		id.ips[ip.Unmap().WithZone("")] = true
		return
	}
	id.names[strings.ToLower(h)] = true
}

// Domain returns the primary domain: the digest realm, and the host of
// the addresses of record of a Request-URI that names the gateway by
// address.
func (id *Identity) Domain() string { return id.domains[0] }

// Domains returns the domains served, primary first.
func (id *Identity) Domains() []string { return append([]string(nil), id.domains...) }

// IsDomain reports whether host is one of the domains served.
func (id *Identity) IsDomain(host string) bool { return id.domain(host) != "" }

// domain returns the domain served that host names, in ASCII case
// (RFC 3261 §19.1.4), as configured (lowercase); "" when host is none of
// them. It allocates nothing: a registration asks several times.
func (id *Identity) domain(host string) string {
	host = trimBrackets(host)
	for _, d := range id.domains {
		// Hosts are nearly always written as configured: compared word
		// by word first, byte by byte only when not.
		if d == host || ascii.EqualFold(d, host) {
			return d
		}
	}
	return ""
}

// isHost reports whether host is an alias or an endpoint host.
func (id *Identity) isHost(host string) bool {
	host = trimBrackets(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		return id.ips[ip.Unmap().WithZone("")]
	}
	return id.names[strings.ToLower(host)]
}

// IsLocal reports whether u is a SIP or SIPS URI of ours: its host is one
// of our domains, aliases or endpoint hosts, whatever the port. Requests
// to such a URI are for the gateway or for one of its users.
func (id *Identity) IsLocal(u *sip.URI) bool {
	return u.IsSIP() && id.IsLocalHost(u.Host)
}

// IsLocalHost is IsLocal for a bare host.
func (id *Identity) IsLocalHost(host string) bool {
	return id.IsDomain(host) || id.isHost(host)
}

// IsSelf reports whether u names the gateway itself as a hop, as a Route
// or Record-Route does: one of our domains, or an alias or endpoint host
// on one of our ports (or none).
func (id *Identity) IsSelf(u *sip.URI) bool {
	if !u.IsSIP() {
		return false
	}
	if id.IsDomain(u.Host) {
		return true
	}
	return id.isHost(u.Host) && (u.Port == 0 || id.ports[u.Port])
}

// DomainOf returns the domain of a local URI: its host when that is one
// of our domains, else the primary domain (the URI names the gateway by
// address or alias).
func (id *Identity) DomainOf(u *sip.URI) string {
	if d := id.domain(u.Host); d != "" {
		return d
	}
	return id.domains[0]
}

// AOR returns the canonical address of record of a local URI:
// "sip:user@domain", without port or parameters.
func (id *Identity) AOR(u *sip.URI) string {
	a := sip.URI{Scheme: "sip", User: u.User, Host: id.DomainOf(u)}
	return a.String()
}

// Endpoint returns the endpoint of a transport: the first one configured
// for it (WS serves for WSS and the other way round when only one is
// configured), else the first endpoint.
func (id *Identity) Endpoint(transport string) Endpoint {
	transport = strings.ToUpper(transport)
	for _, ep := range id.endpoints {
		if ep.Transport == transport {
			return ep
		}
	}
	if transport == sip.WS || transport == sip.WSS {
		for _, ep := range id.endpoints {
			if ep.Transport == sip.WS || ep.Transport == sip.WSS {
				return ep
			}
		}
	}
	return id.endpoints[0]
}

// Serves reports whether the gateway has an endpoint of transport.
func (id *Identity) Serves(transport string) bool {
	transport = strings.ToUpper(transport)
	for _, ep := range id.endpoints {
		if ep.Transport == transport {
			return true
		}
	}
	return false
}

// Endpoints returns the gateway's endpoints.
func (id *Identity) Endpoints() []Endpoint { return append([]Endpoint(nil), id.endpoints...) }

// Via returns the gateway's Via for a request sent over transport: the
// endpoint of that transport as sent-by, with params (";branch=...").
func (id *Identity) Via(transport string, params sip.Params) sip.Via {
	ep := id.Endpoint(transport)
	return sip.Via{Transport: strings.ToUpper(transport), Host: ep.Host, Port: ep.Port, Params: params}
}

// URI returns a SIP URI of the gateway reached over transport, with user
// (may be "") and, for transports other than UDP, a transport parameter.
func (id *Identity) URI(user, transport string) sip.URI {
	ep := id.Endpoint(transport)
	u := sip.URI{Scheme: "sip", User: user, Host: ep.Host, Port: ep.Port}
	if tr := strings.ToUpper(transport); tr != sip.UDP {
		u.Params = sip.Params(";transport=" + strings.ToLower(tr))
	}
	return u
}

// Contact returns the gateway's Contact for a dialog or registration whose
// peer is reached over transport.
func (id *Identity) Contact(user, transport string) sip.Address {
	return sip.Address{URI: id.URI(user, transport)}
}

// RecordRoute returns a Record-Route value of the gateway facing a peer
// reached over transport: "<sip:[user@]host[:port][;transport=x];lr" then
// params, one after the other, then ">". user carries a flow token,
// params the proxy's stamps (";sbdlg=", stamp: a parameter in pieces,
// so that the caller joins nothing). It is written in a buffer on the
// stack and allocates only its string: the proxy writes two per call.
func (id *Identity) RecordRoute(transport, user string, params ...string) string {
	ep := id.Endpoint(transport)
	var buf [256]byte
	b := append(buf[:0], "<sip:"...)
	if user != "" {
		b = append(b, user...)
		b = append(b, '@')
	}
	if strings.IndexByte(ep.Host, ':') >= 0 {
		b = append(b, '[')
		b = append(b, ep.Host...)
		b = append(b, ']')
	} else {
		b = append(b, ep.Host...)
	}
	if ep.Port != 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(ep.Port), 10)
	}
	if !strings.EqualFold(transport, sip.UDP) {
		b = append(b, ";transport="...)
		for i := 0; i < len(transport); i++ {
			c := transport[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
	}
	b = append(b, ";lr"...)
	for _, p := range params {
		b = append(b, p...)
	}
	b = append(b, '>')
	return string(b)
}

func trimBrackets(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}

// String describes the identity for logs.
func (id *Identity) String() string {
	var b strings.Builder
	b.WriteString(id.domains[0])
	for _, ep := range id.endpoints {
		b.WriteString(" " + ep.Transport + ":" + sip.JoinHostPort(ep.Host, ep.Port))
	}
	return b.String()
}
