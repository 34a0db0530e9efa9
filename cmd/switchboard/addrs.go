package main

import (
	"fmt"
	"net"
	"net/netip"
)

// mediaAddrs returns where media binds — where SIP listens: loopback for
// the defaults, the operator's address otherwise, every interface for an
// empty host — and the address announced in SDP: SWITCHBOARD_PUBLIC_IP,
// or, when media binds to every interface and that is not set, the
// address of the default route (guessed), as a quick start in a container
// needs. Zero addresses leave the media defaults.
func mediaAddrs(cfg Config) (bind, public netip.Addr, guessed bool, err error) {
	if ip, err := netip.ParseAddr(cfg.PublicIP); err == nil {
		public = ip
	}
	for _, a := range []string{cfg.SIPUDP, cfg.SIPTCP, cfg.HTTP} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if host == "" {
			bind = netip.IPv4Unspecified()
			break
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			bind = ip
			break
		}
	}
	if bind.IsUnspecified() && !public.IsValid() {
		public, err = defaultRouteAddr(bind.Is6())
		if err != nil {
			return bind, public, false, fmt.Errorf("media: listening on %s, so set SWITCHBOARD_PUBLIC_IP to the address peers send media to (could not guess one: %w)", bind, err)
		}
		guessed = true
	}
	return bind, public, guessed, nil
}

// defaultRouteAddr returns the local address the system would send from
// to a global address. Connecting a UDP socket sends nothing: it only
// picks the route.
func defaultRouteAddr(v6 bool) (netip.Addr, error) {
	network, probe := "udp4", "192.0.2.1:9" // TEST-NET-1 (RFC 5737): never sent to
	if v6 {
		network, probe = "udp6", "[2001:db8::1]:9" // documentation prefix (RFC 3849)
	}
	c, err := net.Dial(network, probe)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no default route: %w", err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}
