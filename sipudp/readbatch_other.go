//go:build !linux

package sipudp

import "github.com/switchboard/switchboard/transport"

// readBatch is the cap of a batched read, which needs Linux (recvmmsg).
const readBatch = 1

// readBatches reports false: batched reads need Linux.
func (t *Transport) readBatches(transport.Handler) (bool, error) { return false, nil }
