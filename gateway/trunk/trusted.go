package trunk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
)

// TrustedSources tells which trunk, if any, a request comes from by its
// source address. A trunk's sources are its trusted_sources, or when it
// lists none, the addresses its host resolves to (with Resolve). Trusted
// reads an immutable table and is safe for concurrent use with Resolve.
//
// Only the address is compared, not the port or the transport: providers
// send from ports of their choosing.
type TrustedSources struct {
	static  []source // configured prefixes and IP-literal hosts
	resolve []Trunk  // trunks whose host must be resolved

	mu       sync.Mutex                // serializes Resolve
	resolved map[string][]netip.Prefix // last good answer per trunk

	table atomic.Pointer[[]source]
}

type source struct {
	prefix netip.Prefix
	trunk  string
	order  int // of the trunk in the file
}

// NewTrustedSources builds the sources of trunks. The prefixes listed in
// trusted_sources, and hosts that are IP addresses, are in force at once;
// host names are until Resolve has looked them up.
func NewTrustedSources(trunks []Trunk) (*TrustedSources, error) {
	ts := &TrustedSources{resolved: make(map[string][]netip.Prefix)}
	for i, t := range trunks {
		if t.Name == "" {
			return nil, fmt.Errorf("trunk: trunk %d has no name", i+1)
		}
		switch {
		case len(t.TrustedSources) > 0:
			for _, p := range t.TrustedSources {
				if !p.IsValid() {
					return nil, fmt.Errorf("trunk %q: invalid trusted source", t.Name)
				}
				ts.static = append(ts.static, source{p.Masked(), t.Name, i})
			}
		default:
			if a, err := netip.ParseAddr(t.Host); err == nil {
				a = a.Unmap().WithZone("")
				ts.static = append(ts.static, source{netip.PrefixFrom(a, a.BitLen()), t.Name, i})
			} else {
				ts.resolve = append(ts.resolve, t)
			}
		}
	}
	ts.publish()
	return ts, nil
}

// Resolve looks up the hosts of the trunks that list no trusted_sources
// and puts their addresses in force. A trunk whose lookup fails keeps the
// addresses of its last successful one (none at first); the error joins
// the failures. Call it at start and again now and then (DNS changes), or
// after a reload; calls are serialized.
func (ts *TrustedSources) Resolve(ctx context.Context, r locate.Resolver) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var errs []error
	for _, t := range ts.resolve {
		addrs, err := r.Resolve(ctx, NextHop(t))
		if err == nil && len(addrs) == 0 {
			err = ErrNoTarget
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trunk %q: resolving %s: %w", t.Name, t.Host, err))
			continue
		}
		var ps []netip.Prefix
		for _, a := range addrs {
			ip := a.AddrPort.Addr().Unmap().WithZone("")
			p := netip.PrefixFrom(ip, ip.BitLen())
			if ip.IsValid() && !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
		ts.resolved[t.Name] = ps
	}
	ts.publish()
	return errors.Join(errs...)
}

// publish builds the lookup table: most specific prefix first, then file
// order, so that a /32 of one trunk wins over a /24 of another.
func (ts *TrustedSources) publish() {
	table := slices.Clone(ts.static)
	for i, t := range ts.resolve {
		for _, p := range ts.resolved[t.Name] {
			table = append(table, source{p, t.Name, len(ts.static) + i})
		}
	}
	slices.SortStableFunc(table, func(a, b source) int {
		if c := cmp.Compare(b.prefix.Bits(), a.prefix.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
	ts.table.Store(&table)
}

// Trusted returns the trunk whose sources hold addr (an IPv4-mapped IPv6
// address counts as IPv4). When several do, the most specific prefix wins,
// then the trunk first in the file.
func (ts *TrustedSources) Trusted(addr netip.Addr) (trunk string, ok bool) {
	addr = addr.Unmap().WithZone("")
	for _, s := range *ts.table.Load() {
		if s.prefix.Contains(addr) {
			return s.trunk, true
		}
	}
	return "", false
}

// NextHop returns the URI that locates trunk t with RFC 3263:
// sip:host[:port];transport=udp|tcp|tls. Its Resolver answer is where
// requests to the trunk go.
func NextHop(t Trunk) sip.URI {
	tr := "udp"
	switch t.Transport {
	case sip.TCP:
		tr = "tcp"
	case sip.TLS:
		tr = "tls"
	}
	return sip.URI{Scheme: "sip", Host: t.Host, Port: t.Port, Params: sip.Params(";transport=" + tr)}
}
