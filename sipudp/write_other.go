//go:build !linux

package sipudp

import (
	"net/netip"

	"github.com/switchboard/switchboard/transport"
)

// rawSocket is empty: raw sends need Linux; Send writes through the
// UDPConn.
type rawSocket struct{}

func (t *Transport) initRaw()  {}
func (t *Transport) closeRaw() {}

// writeRaw reports false: the datagram goes through the UDPConn.
func (t *Transport) writeRaw([]byte, netip.AddrPort) (bool, error) { return false, nil }

// NewBatch returns nil: batches need Linux (transport.Batcher).
func (t *Transport) NewBatch() transport.Batch { return nil }
