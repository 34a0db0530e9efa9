//go:build !linux

package mediapeer

import (
	"context"
	"errors"
	"net/netip"
)

// batchConn needs Linux (sendmmsg, recvmmsg, IP_PKTINFO, SO_BINDTODEVICE);
// elsewhere the load generator cannot be made.
type batchConn struct{}

var errBatchUnsupported = errors.New("mediapeer: batched UDP needs Linux")

func listenBatch(context.Context, netip.AddrPort, bool) (*batchConn, error) {
	return nil, errBatchUnsupported
}

func (c *batchConn) Port() uint16                          { return 0 }
func (c *batchConn) Close() error                          { return nil }
func (c *batchConn) readBatch([]batchMsg) (int, error)     { return 0, errBatchUnsupported }
func (c *batchConn) writeBatch(ms []batchMsg) (int, error) { return len(ms), errBatchUnsupported }
func (c *batchConn) writeOne([]byte, netip.AddrPort, netip.Addr) (int, error) {
	return 0, errBatchUnsupported
}
