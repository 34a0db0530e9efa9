package transport

import (
	"context"
	"fmt"

	"github.com/switchboard/switchboard/sip"
)

// SendKept sends res to dst as Send does, and returns the bytes it went
// as and the address they went to, for Resend: a server transaction
// keeps those, not res, to answer its request's retransmissions while it
// lingers (transaction.Resender). wire is nil when res went another way,
// which Resend cannot repeat: over a connection (dst.Flow), to a Via
// that names no address, through a transport that is not a WireSender,
// or with Config.Trace on, which logs messages, not bytes. The caller
// keeps res then.
func (l *Layer) SendKept(ctx context.Context, res *sip.Response, dst sip.Addr) (wire []byte, to sip.Addr, err error) {
	if dst.Flow != 0 || l.cfg.Trace {
		return nil, sip.Addr{}, l.Send(ctx, res, dst)
	}
	t, a, ok := l.viaTarget(res)
	if !ok {
		return nil, sip.Addr{}, l.Send(ctx, res, dst)
	}
	ws, ok := t.(WireSender)
	if !ok {
		return nil, sip.Addr{}, t.Send(ctx, res, a)
	}
	// Written in a pooled buffer, then copied at its size: appending to
	// an empty slice would grow it several times.
	b := GetBuffer()
	*b = res.AppendTo(*b)
	wire = append([]byte(nil), *b...)
	PutBuffer(b)
	if err := ws.SendWire(ctx, wire, a); err != nil {
		return nil, sip.Addr{}, err
	}
	return wire, a, nil
}

// Resend sends wire, from SendKept, to to again.
func (l *Layer) Resend(ctx context.Context, wire []byte, to sip.Addr) error {
	t, err := l.pick(to.Transport, to.AddrPort.Addr())
	if err != nil {
		return err
	}
	ws, ok := t.(WireSender)
	if !ok {
		return fmt.Errorf("transport: resend over %s: %w", to.Transport, ErrNoRoute)
	}
	return ws.SendWire(ctx, wire, to)
}
