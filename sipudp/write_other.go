//go:build !linux

package sipudp

import "net/netip"

// rawSocket is empty: raw sends need Linux; Send writes through the
// UDPConn.
type rawSocket struct{}

func (t *Transport) initRaw()  {}
func (t *Transport) closeRaw() {}

// writeRaw reports false: the datagram goes through the UDPConn.
func (t *Transport) writeRaw([]byte, netip.AddrPort) (bool, error) { return false, nil }
