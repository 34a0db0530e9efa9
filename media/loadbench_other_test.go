//go:build !linux

package media

import (
	"net"
	"net/netip"
	"time"
)

func enableRxTimestamps(*net.UDPConn) {}

const lbOOBSize = 0

// readStamped reads one datagram and the receiver's clock after the read.
func readStamped(c *net.UDPConn, b, _ []byte) (int, netip.AddrPort, time.Duration, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	return n, from, lbNow(), err
}
