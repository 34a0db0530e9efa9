//go:build !linux

package mmsg

// Batch needs Linux (sendmmsg, recvmmsg); elsewhere New fails.
type Batch struct{}

// New fails with ErrUnsupported.
func New(cfg Config) (*Batch, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}
