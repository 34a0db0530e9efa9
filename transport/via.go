package transport

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/locate"
)

// StampReceived records in the top Via of req where it came from
// (req.Source), as a server transport must (RFC 3261 §18.2.1, RFC 3581 §4,
// RFC 7118 §5 for WebSocket):
//
//   - received=<source IP> when the sent-by host is a name or another
//     address than the source;
//   - with an rport parameter, rport=<source port> and received, always.
//
// A received or rport value that the sender wrote itself is overwritten:
// responses go to received:rport, and trusting the sender's values would
// let it aim them at a third party. The Layer calls StampReceived for every
// request it delivers; it is exported for transports served outside one.
func StampReceived(req *sip.Request) {
	src := req.Source.AddrPort
	if !src.IsValid() {
		return
	}
	v, ok := req.TopVia()
	if !ok {
		return
	}
	ip := src.Addr().Unmap().WithZone("")
	ipText := ip.String()
	_, hasRport := v.Params.Get("rport")
	received, hasReceived := v.Params.Get("received")
	switch {
	case hasRport:
		v.Params = v.Params.Set("received", ipText)
		v.Params = v.Params.Set("rport", strconv.Itoa(int(src.Port())))
	case !sameIP(v.Host, ip) || hasReceived && received != ipText:
		v.Params = v.Params.Set("received", ipText)
	default:
		return
	}
	req.SetTopVia(v)
}

func sameIP(host string, ip netip.Addr) bool {
	a, err := netip.ParseAddr(trimBrackets(host))
	return err == nil && a.Unmap().WithZone("") == ip
}

func trimBrackets(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}

// ResponseAddr returns where a response goes when it cannot go back over
// the request's connection (RFC 3261 §18.2.2, RFC 3581 §4), from its top
// Via:
//
//   - the address is received, else the sent-by host when it is an IP
//     address;
//   - over UDP the port is rport when it has a value, else the sent-by
//     port; over a reliable transport it is the sent-by port (rport there
//     is the source port of a connection that is gone);
//   - a missing port is the transport's default (5060, 5061 for TLS).
//
// ok is false when the sent-by host is a name and there is no received:
// then RFC 3263 §5 applies (locate.Locator.SentBy). maddr (multicast
// responses, §18.2.2) is ignored: this gateway never serves multicast.
func ResponseAddr(via sip.Via) (addr sip.Addr, ok bool) {
	tr := strings.ToUpper(via.Transport)
	ip, err := netip.ParseAddr(trimBrackets(via.Received()))
	if err != nil {
		if ip, err = netip.ParseAddr(trimBrackets(via.Host)); err != nil {
			return sip.Addr{}, false
		}
	}
	port := via.Port
	if tr == sip.UDP {
		if rp, ok := via.RPort(); ok && rp > 0 && rp <= 65535 {
			port = rp
		}
	}
	if port == 0 {
		port = locate.DefaultPort(tr)
	}
	return sip.Addr{Transport: tr, AddrPort: netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port))}, true
}
