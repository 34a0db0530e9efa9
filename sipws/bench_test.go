package sipws

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// counter is a handler that counts messages and tells when it has seen
// want of them.
type counter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (c *counter) HandleMessage(m sip.Message) {
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}

func (c *counter) HandleFlowClosed(sip.Addr) {}

// benchServer serves h on loopback and returns a client connection to it.
func benchServer(b *testing.B, h transport.Handler) (*Transport, *websocket.Conn) {
	b.Helper()
	tr, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(tr)
	b.Cleanup(srv.Close)
	transporttest.Serve(b, tr, h)
	<-tr.ready
	c, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[len("http"):], &websocket.DialOptions{
		HTTPClient: srv.Client(), Subprotocols: []string{"sip"},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.CloseNow() })
	return tr, c
}

// BenchmarkReceive measures the inbound path over a loopback WebSocket:
// frame read → parse → handler, one client writing REGISTERs as fast as it
// can. allocs/op counts both ends (client write and server read), since
// they share the process.
func BenchmarkReceive(b *testing.B) {
	msg := []byte(request("bench", 1))
	h := &counter{want: int64(b.N), done: make(chan struct{})}
	_, c := benchServer(b, h)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-h.done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// responder answers every request with 200 from the read loop, as a
// stateless server would.
type responder struct {
	tr  *Transport
	err atomic.Pointer[error]
}

func (r *responder) HandleMessage(m sip.Message) {
	req := m.(*sip.Request)
	if err := r.tr.Send(context.Background(), sip.NewResponse(req, 200, ""), req.Source); err != nil {
		r.err.Store(&err)
	}
}

func (r *responder) HandleFlowClosed(sip.Addr) {}

// BenchmarkRoundTrip measures one request in and its answer out, one at a
// time: client write → read → parse → handler → NewResponse → Send →
// client read.
func BenchmarkRoundTrip(b *testing.B) {
	msg := []byte(request("bench", 1))
	h := &responder{}
	tr, c := benchServer(b, h)
	h.tr = tr
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err, h.err.Load())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
