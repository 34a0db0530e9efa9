package sip

import (
	"net/netip"
	"strconv"
)

// Transport names as they appear in Via (RFC 3261 §20.42, RFC 7118 §5).
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
	WS  = "WS"
	WSS = "WSS"
)

// Addr is one end of a transport: the transport, an IP address and port,
// and for connection-oriented transports the connection (flow, RFC 5626)
// that a message came over or must leave by. The zero value means "no
// address".
type Addr struct {
	// Transport is UDP, TCP, TLS, WS or WSS.
	Transport string
	// AddrPort is the IP address and port.
	AddrPort netip.AddrPort
	// Flow identifies a connection within its transport; 0 means none (UDP,
	// or "any connection to AddrPort, or a new one").
	Flow uint64
}

// IsValid reports whether a is set.
func (a Addr) IsValid() bool { return a.Transport != "" && a.AddrPort.IsValid() }

// Reliable reports whether the transport is reliable, which turns off
// retransmissions (RFC 3261 §17.1.1.2).
func (a Addr) Reliable() bool { return a.Transport != UDP && a.Transport != "" }

// Secure reports whether the transport is TLS or WSS.
func (a Addr) Secure() bool { return a.Transport == TLS || a.Transport == WSS }

// String returns "UDP 192.0.2.1:5060", with "#flow" for a connection.
func (a Addr) String() string {
	s := a.Transport + " " + a.AddrPort.String()
	if a.Flow != 0 {
		s += "#" + strconv.FormatUint(a.Flow, 10)
	}
	return s
}
