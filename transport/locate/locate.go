// Package locate finds where to send a SIP request or response (RFC 3263,
// "Locating SIP Servers"): NAPTR, then SRV, then A/AAAA, giving an ordered
// list of targets that a proxy or trunk walks for failover.
//
// Go's net package cannot look up NAPTR records, so the DNS is reached
// through the small DNS interface: NetResolver uses net.Resolver for
// SRV, A and AAAA and reports no NAPTR records, and tests plug in a fake
// zone.
//
// What finds next hops for the rest of the gateway is a [Resolver]: a
// *Locator is one, and tests plug in tables.
package locate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/switchboard/switchboard/sip"
)

// ErrNotFound means the name has no usable record of any kind.
var ErrNotFound = errors.New("no sip server found")

// ErrUnsupportedTransport means the URI asks for a transport this locator
// does not use (a transport parameter it does not know, or sips over UDP).
var ErrUnsupportedTransport = errors.New("unsupported transport")

// NAPTR is a NAPTR record (RFC 3403) as RFC 3263 §4.1 uses it.
type NAPTR struct {
	Order       uint16
	Preference  uint16
	Flags       string // "s" for records that point to SRV names
	Service     string // "SIP+D2U", "SIP+D2T", "SIPS+D2T", "SIP+D2W", "SIPS+D2W"
	Regexp      string
	Replacement string // the SRV name to look up
}

// Resolver finds the addresses of the next hop named by a URI, best first,
// as RFC 3263 orders them: the proxy, the trunks and the B2BUA try them in
// turn when one fails. *Locator is the Resolver of the gateway.
type Resolver interface {
	Resolve(ctx context.Context, uri sip.URI) ([]sip.Addr, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, uri sip.URI) ([]sip.Addr, error)

// Resolve calls f(ctx, uri).
func (f ResolverFunc) Resolve(ctx context.Context, uri sip.URI) ([]sip.Addr, error) {
	return f(ctx, uri)
}

// DNS is the DNS as this package needs it. A name that does not exist
// or has no records of the type is an empty answer or an error for which
// IsNotFound reports true; any other error is a failure (a timeout).
type DNS interface {
	// LookupNAPTR returns the NAPTR records of name.
	LookupNAPTR(ctx context.Context, name string) ([]NAPTR, error)
	// LookupSRV looks up _service._proto.name, or name itself when service
	// and proto are empty, as net.Resolver.LookupSRV does.
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	// LookupIPAddr returns the A and AAAA addresses of host.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// NetResolver is the DNS of the system: a net.Resolver (nil means
// net.DefaultResolver) for SRV, A and AAAA. It finds no NAPTR records,
// since Go's net package cannot ask for them; RFC 3263 §4.1 then goes
// straight to SRV.
type NetResolver struct {
	*net.Resolver
}

// LookupNAPTR returns no records.
func (NetResolver) LookupNAPTR(context.Context, string) ([]NAPTR, error) { return nil, nil }

// IsNotFound reports whether err means "no such name or no such record"
// rather than a failure to ask.
func IsNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// DefaultPort returns the port of a transport when a URI or Via names none:
// 5060, or 5061 for TLS (RFC 3261 §19.1.2); 80 and 443 for WS and WSS
// (RFC 7118 §5 uses the HTTP ports).
func DefaultPort(transport string) int {
	switch strings.ToUpper(transport) {
	case sip.TLS:
		return 5061
	case sip.WS:
		return 80
	case sip.WSS:
		return 443
	}
	return 5060
}

// Locator finds SIP servers. The zero value uses the system resolver,
// transports UDP, TCP and TLS, and a random source from math/rand/v2.
type Locator struct {
	// DNS answers DNS queries; nil means NetResolver{}.
	DNS DNS
	// Transports lists the transports that may be chosen, most preferred
	// first; it orders the SRV queries made when there are no NAPTR
	// records. Nil means UDP, TCP, TLS.
	Transports []string
	// Rand returns a uniform random integer in [0, n); it drives the
	// weighted choice among SRV records of equal priority (RFC 2782).
	// Nil means math/rand/v2.IntN. Tests make it deterministic.
	Rand func(n int) int
}

var defaultTransports = []string{sip.UDP, sip.TCP, sip.TLS}

func (l *Locator) dns() DNS {
	if l == nil || l.DNS == nil {
		return NetResolver{}
	}
	return l.DNS
}

func (l *Locator) transports() []string {
	if l == nil || l.Transports == nil {
		return defaultTransports
	}
	return l.Transports
}

func (l *Locator) supports(tr string) bool {
	return slices.ContainsFunc(l.transports(), func(s string) bool { return strings.EqualFold(s, tr) })
}

func (l *Locator) intn(n int) int {
	if l == nil || l.Rand == nil {
		return rand.IntN(n)
	}
	return l.Rand(n)
}

// service ties a NAPTR service (RFC 3263 §4.1, RFC 7118 §9) and an SRV
// prefix to a transport.
type service struct {
	naptr     string
	srv       string // _service._proto
	transport string
	secure    bool
}

var services = []service{
	{"SIP+D2U", "_sip._udp", sip.UDP, false},
	{"SIP+D2T", "_sip._tcp", sip.TCP, false},
	{"SIPS+D2T", "_sips._tcp", sip.TLS, true},
	{"SIP+D2W", "_sip._ws", sip.WS, false},
	{"SIPS+D2W", "_sips._ws", sip.WSS, true},
}

// Resolve returns the ordered targets of a request for u (RFC 3263 §4): the
// first is tried first, the others on failure (see Failover). u is the
// Request-URI, or the URI of the top Route when there is one.
//
//   - maddr, when present, replaces the host (RFC 3263 §4);
//   - a transport parameter, or the sips scheme, selects the transport
//     (transport=tcp in a sips URI means TLS);
//   - a numeric host, or an explicit port, skips NAPTR and SRV (§4.2): the
//     transport is the chosen one, else UDP for sip and TLS for sips;
//   - otherwise usable NAPTR records, by order and preference, lead to SRV
//     names; without them SRV is asked for each supported transport in the
//     order of Locator.Transports (_sip._udp, _sip._tcp, _sips._tcp; only
//     _sips._tcp for sips); without SRV, A/AAAA with the default port.
//
// SRV records are ordered by priority and, within a priority, by RFC
// 2782's weighted random choice; every address of every SRV target is a
// target. When several NAPTR records or transports have servers, all of
// them are returned, most preferred first, as further failover targets.
func (l *Locator) Resolve(ctx context.Context, u sip.URI) ([]sip.Addr, error) {
	if !u.IsSIP() {
		return nil, fmt.Errorf("locate %s uri: %w", u.Scheme, ErrUnsupportedTransport)
	}
	secure := u.Scheme == "sips"
	target := u.Host
	if m, ok := u.Params.Get("maddr"); ok && m != "" {
		target = m
	}
	target = trimBrackets(target)
	tr := ""
	if p, ok := u.Params.Get("transport"); ok {
		var err error
		if tr, err = transportParam(p, secure); err != nil {
			return nil, fmt.Errorf("locate %s: %w", target, err)
		}
		if !l.supports(tr) {
			return nil, fmt.Errorf("locate %s: transport %s: %w", target, tr, ErrUnsupportedTransport)
		}
	}
	fallback := tr
	if fallback == "" {
		fallback = sip.UDP
		if secure {
			fallback = sip.TLS
		}
	}
	if ip, err := netip.ParseAddr(target); err == nil {
		port := u.Port
		if port == 0 {
			port = DefaultPort(fallback)
		}
		return []sip.Addr{{Transport: fallback, AddrPort: netip.AddrPortFrom(ip.Unmap(), uint16(port))}}, nil
	}
	if u.Port != 0 {
		return l.hostTargets(ctx, target, fallback, u.Port)
	}
	// failed keeps the first lookup that failed (not "not found"): it is
	// the better error when nothing at all is found.
	var failed error
	if tr == "" {
		addrs, err := l.naptrTargets(ctx, target, secure)
		if len(addrs) > 0 {
			return addrs, nil
		}
		failed = err
		var all []sip.Addr
		for _, want := range l.transports() {
			s, ok := serviceOf(want)
			if !ok || secure && !s.secure {
				continue
			}
			addrs, err := l.srvTargets(ctx, s.srv+"."+target, s.transport)
			failed = cmp.Or(failed, err)
			all = append(all, addrs...)
		}
		if len(all) > 0 {
			return all, nil
		}
	} else if s, ok := serviceOf(tr); ok {
		addrs, err := l.srvTargets(ctx, s.srv+"."+target, tr)
		if len(addrs) > 0 {
			return addrs, nil
		}
		failed = err
	}
	addrs, err := l.hostTargets(ctx, target, fallback, DefaultPort(fallback))
	if err != nil && failed != nil && errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("locate %s: %w", target, failed)
	}
	return addrs, err
}

// SentBy returns where to send a response whose top Via has the sent-by
// host and port and no usable received parameter (RFC 3263 §5): a numeric
// host as it is; a name with a port by A/AAAA; a name without one by SRV
// for the Via's transport, then A/AAAA with the default port.
func (l *Locator) SentBy(ctx context.Context, transport, host string, port int) ([]sip.Addr, error) {
	tr := strings.ToUpper(transport)
	host = trimBrackets(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		if port == 0 {
			port = DefaultPort(tr)
		}
		return []sip.Addr{{Transport: tr, AddrPort: netip.AddrPortFrom(ip.Unmap(), uint16(port))}}, nil
	}
	if port != 0 {
		return l.hostTargets(ctx, host, tr, port)
	}
	var failed error
	if s, ok := serviceOf(tr); ok {
		addrs, err := l.srvTargets(ctx, s.srv+"."+host, tr)
		if len(addrs) > 0 {
			return addrs, nil
		}
		failed = err
	}
	addrs, err := l.hostTargets(ctx, host, tr, DefaultPort(tr))
	if err != nil && failed != nil && errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("locate %s: %w", host, failed)
	}
	return addrs, err
}

func serviceOf(transport string) (service, bool) {
	for _, s := range services {
		if strings.EqualFold(s.transport, transport) {
			return s, true
		}
	}
	return service{}, false
}

func trimBrackets(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}

// transportParam maps a URI transport parameter to a transport name.
func transportParam(p string, secure bool) (string, error) {
	switch strings.ToLower(p) {
	case "udp":
		if secure {
			// RFC 3261 §26.2.2: sips needs TLS hop by hop, never UDP.
			return "", fmt.Errorf("sips over udp: %w", ErrUnsupportedTransport)
		}
		return sip.UDP, nil
	case "tcp", "tls":
		if secure || strings.EqualFold(p, "tls") {
			return sip.TLS, nil
		}
		return sip.TCP, nil
	case "ws", "wss":
		if secure || strings.EqualFold(p, "wss") {
			return sip.WSS, nil
		}
		return sip.WS, nil
	}
	return "", fmt.Errorf("transport %q: %w", p, ErrUnsupportedTransport)
}

// naptrTargets follows the usable NAPTR records of target (RFC 3263 §4.1):
// flag "s", a service of a supported transport (only secure ones for
// sips), in order and preference.
func (l *Locator) naptrTargets(ctx context.Context, target string, secure bool) ([]sip.Addr, error) {
	recs, err := l.dns().LookupNAPTR(ctx, target)
	if err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("naptr %s: %w", target, err)
	}
	type usable struct {
		rec       NAPTR
		transport string
	}
	var use []usable
	for _, r := range recs {
		if !strings.EqualFold(r.Flags, "s") || r.Replacement == "" {
			continue
		}
		for _, s := range services {
			if strings.EqualFold(r.Service, s.naptr) && (s.secure || !secure) && l.supports(s.transport) {
				use = append(use, usable{r, s.transport})
			}
		}
	}
	slices.SortStableFunc(use, func(a, b usable) int {
		return cmp.Or(cmp.Compare(a.rec.Order, b.rec.Order), cmp.Compare(a.rec.Preference, b.rec.Preference))
	})
	var out []sip.Addr
	var failed error
	for _, u := range use {
		addrs, err := l.srvTargets(ctx, strings.TrimSuffix(u.rec.Replacement, "."), u.transport)
		failed = cmp.Or(failed, err)
		out = append(out, addrs...)
	}
	return out, failed
}

// srvTargets looks up one SRV name and returns the addresses of its
// targets in RFC 2782 order.
func (l *Locator) srvTargets(ctx context.Context, name, transport string) ([]sip.Addr, error) {
	_, recs, err := l.dns().LookupSRV(ctx, "", "", name)
	if err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("srv %s: %w", name, err)
	}
	var out []sip.Addr
	var failed error
	for _, r := range OrderSRV(recs, l.intn) {
		host := strings.TrimSuffix(r.Target, ".")
		if host == "" {
			continue // "." means "no service here" (RFC 2782)
		}
		ips, err := l.lookupIP(ctx, host)
		failed = cmp.Or(failed, err)
		for _, ip := range ips {
			out = append(out, sip.Addr{Transport: transport, AddrPort: netip.AddrPortFrom(ip, r.Port)})
		}
	}
	return out, failed
}

// hostTargets returns every A/AAAA address of host with port.
func (l *Locator) hostTargets(ctx context.Context, host, transport string, port int) ([]sip.Addr, error) {
	ips, err := l.lookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("locate %s: %w", host, ErrNotFound)
	}
	out := make([]sip.Addr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, sip.Addr{Transport: transport, AddrPort: netip.AddrPortFrom(ip, uint16(port))})
	}
	return out, nil
}

func (l *Locator) lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	ips, err := l.dns().LookupIPAddr(ctx, host)
	if err != nil {
		if IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("lookup %s: %w", host, err)
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// OrderSRV returns recs in the order RFC 2782 says to try them: by
// priority, lowest first; within a priority, each next record is drawn at
// random with a probability proportional to its weight (records of weight
// 0 placed first, so that they are picked only when the draw is 0). intn
// returns a uniform integer in [0, n). recs is not modified.
func OrderSRV(recs []*net.SRV, intn func(n int) int) []*net.SRV {
	rs := slices.Clone(recs)
	slices.SortStableFunc(rs, func(a, b *net.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*net.SRV, 0, len(rs))
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Priority == rs[i].Priority {
			j++
		}
		group := rs[i:j]
		slices.SortStableFunc(group, func(a, b *net.SRV) int {
			return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
		})
		for len(group) > 0 {
			sum := 0
			for _, r := range group {
				sum += int(r.Weight)
			}
			n := intn(sum + 1)
			k, run := 0, 0
			for k = range group {
				if run += int(group[k].Weight); run >= n {
					break
				}
			}
			out = append(out, group[k])
			group = slices.Delete(group, k, k+1)
		}
		i = j
	}
	return out
}
