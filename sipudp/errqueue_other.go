//go:build !linux

package sipudp

// Only Linux hands the ICMP errors of an unconnected UDP socket to the
// program; elsewhere a transaction to a closed port runs to its timeout
// (initSocket says so).

func isICMPError(error) bool { return false }

func (t *Transport) drainErrQueue() {}
