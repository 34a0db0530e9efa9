//go:build !linux

package sipudp

import "github.com/switchboard/switchboard/transport"

// readBatch is the cap of a batched read, which needs Linux (recvmmsg).
const readBatch = 1

// reads is the state of batched reads, which need Linux.
type reads struct{}

// readBatches reports false: batched reads need Linux.
func (t *Transport) readBatches(transport.Handler) (bool, error) { return false, nil }

// startReads does nothing: batched reads need Linux.
func (t *Transport) startReads(transport.Handler) {}

// Poll does nothing: the read loops read alone (transport.Poller).
func (t *Transport) Poll() {}
