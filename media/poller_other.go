//go:build !linux

package media

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// Elsewhere than on Linux, each bridge reads its RTP sockets with
// goroutines of its own and the shared ICE socket is read one datagram a
// call (see poller_linux.go).

type rtpPoller struct{}

func newRTPPoller(*slog.Logger, clock.Clock, *fastConn, time.Duration) (*rtpPoller, error) {
	return nil, errors.New("media: rtp poller: linux only")
}

func (*rtpPoller) add(*Bridge) bool { return false }
func (*rtpPoller) remove(*Bridge)   {}
func (*rtpPoller) Close() error     { return nil }

type polledPair struct{ rtp, rtcp udpWriter }

func (*polledPair) close() {}

type iceSender struct{}

func (*iceSender) slot() []byte                               { return nil }
func (*iceSender) queue(*Bridge, []byte, netip.AddrPort) bool { return false }

type iceReader struct{}

func newICEReader(*net.UDPConn) *iceReader { return nil }

func (*iceReader) writer() udpWriter { return nil }
func (*iceReader) close()            {}

func (*iceReader) read() ([]byte, netip.AddrPort, bool, error) {
	return nil, netip.AddrPort{}, false, errors.ErrUnsupported
}

func (*Engine) batchStats() BatchStats { return BatchStats{} }

func (*iceReader) sparse() bool { return false }

func (*iceReader) mustWait() bool { return false }

type iceWaits struct {
	timer interface{ sleep(time.Duration) }
}

func newICEWaits(*iceReader, *slog.Logger) *iceWaits { return nil }

func (*iceWaits) wait(bool) error { return nil }

var errNotReady = errors.New("media: ice reader: nothing to read yet")

func (*iceWaits) close() {}
