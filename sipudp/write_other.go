//go:build !linux

package sipudp

import (
	"errors"
	"net/netip"

	"github.com/switchboard/switchboard/transport"
)

// rawSocket is empty: raw sends need Linux; Send writes through the
// UDPConn.
type rawSocket struct{}

// initSocket reports that ICMP errors go unheard: only Linux hands those
// of an unconnected UDP socket to the program.
func (t *Transport) initSocket() error { return errors.New("ICMP errors are read on Linux only") }

func (t *Transport) closeRaw() {}

// writeRaw reports false: the datagram goes through the UDPConn.
func (t *Transport) writeRaw([]byte, netip.AddrPort) (bool, error) { return false, nil }

// NewBatch returns nil: batches need Linux (transport.Batcher).
func (t *Transport) NewBatch() transport.Batch { return nil }
