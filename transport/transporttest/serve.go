package transporttest

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// Server is what Serve runs: a transport.Transport or a *transport.Layer.
type Server interface {
	Serve(ctx context.Context, h transport.Handler) error
}

// Serving is a call of Serve running on a goroutine of its own.
type Serving struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve has returned err
	err    error
}

// Serve calls s.Serve with h on a goroutine of its own. When the test ends
// it cancels Serve's context and waits for Serve to return; it fails t if
// Serve returns an error or still runs after Timeout. Call it after the
// cleanups that must come later (a Recorder's, a listener's Close), so
// that Serve has returned when they run.
func Serve(t testing.TB, s Server, h transport.Handler) *Serving {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sv := &Serving{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sv.done)
		sv.err = s.Serve(ctx, h)
	}()
	t.Cleanup(func() {
		cancel()
		if !sv.returned() {
			t.Errorf("Serve did not return within %v", Timeout)
		} else if sv.err != nil {
			t.Errorf("Serve: %v", sv.err)
		}
	})
	return sv
}

// Cancel cancels Serve's context, as the end of the test does.
func (sv *Serving) Cancel() { sv.cancel() }

// Wait waits up to Timeout for Serve to return and returns what it
// returned; it fails the test if Serve is still running then.
func (sv *Serving) Wait(t testing.TB) error {
	t.Helper()
	if !sv.returned() {
		t.Fatalf("Serve did not return within %v", Timeout)
	}
	return sv.err
}

// returned reports whether Serve returns within Timeout.
func (sv *Serving) returned() bool {
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case <-sv.done:
		return true
	case <-timer.C:
		return false
	}
}

// NewLayer returns a Layer configured by cfg that holds trs.
func NewLayer(cfg transport.Config, trs ...transport.Transport) *transport.Layer {
	l := transport.NewLayer(cfg)
	for _, tr := range trs {
		l.Add(tr)
	}
	return l
}

// ServeLayer returns a Layer configured by cfg that holds trs, served with
// h (see Serve) until the test ends.
func ServeLayer(t testing.TB, cfg transport.Config, h transport.Handler, trs ...transport.Transport) *transport.Layer {
	t.Helper()
	l := NewLayer(cfg, trs...)
	Serve(t, l, h)
	return l
}

// Record serves s (see Serve) with a new Recorder until the test ends,
// and returns the Recorder.
func Record(t testing.TB, s Server) *Recorder {
	t.Helper()
	rec := NewRecorder(t)
	Serve(t, s, rec)
	return rec
}

// Answer serves l (see Serve) until the test ends with a Recorder that
// answers every request it records with 200 through l, to where the
// request came from: its connection, for the connection-oriented
// transports. It returns the Recorder.
func Answer(t testing.TB, l *transport.Layer) *Recorder {
	t.Helper()
	rec := NewRecorder(t)
	rec.OnMessage = func(m sip.Message) {
		if req, ok := m.(*sip.Request); ok {
			_ = l.Send(t.Context(), sip.NewResponse(req, 200, ""), req.Source)
		}
	}
	Serve(t, l, rec)
	return rec
}
