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
	var ipBuf [64]byte
	ipText := ip.AppendTo(ipBuf[:0])
	_, hasRport := v.Params.Get("rport")
	received, hasReceived := v.Params.Get("received")
	if !hasRport && sameIP(v.Host, ip) && (!hasReceived || received == string(ipText)) {
		return
	}
	// One pass over the parameters, replacing rport and received where
	// they stand and appending received when absent: this runs for every
	// request received, so it builds one string, not one per change.
	var b strings.Builder
	b.Grow(len(v.Params) + len(ipText) + 24)
	wroteReceived := false
	v.Params.Range(func(name, value string) bool {
		switch {
		case strings.EqualFold(name, "rport"):
			var portBuf [8]byte
			b.WriteString(";rport=")
			b.Write(strconv.AppendUint(portBuf[:0], uint64(src.Port()), 10))
		case strings.EqualFold(name, "received"):
			if !wroteReceived {
				b.WriteString(";received=")
				b.Write(ipText)
				wroteReceived = true
			}
		default:
			b.WriteByte(';')
			b.WriteString(name)
			if value != "" {
				b.WriteByte('=')
				b.WriteString(value)
			}
		}
		return true
	})
	if !wroteReceived {
		b.WriteString(";received=")
		b.Write(ipText)
	}
	v.Params = sip.Params(b.String())
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
