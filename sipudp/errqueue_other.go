//go:build !linux

package sipudp

import (
	"errors"
	"net"
)

// Only Linux hands the ICMP errors of an unconnected UDP socket to the
// program; elsewhere a transaction to a closed port runs to its timeout.

func enableErrQueue(*net.UDPConn, bool) error {
	return errors.New("ICMP errors are read on Linux only")
}

func isICMPError(error) bool { return false }

func (t *Transport) drainErrQueue() {}
