package sipudp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sipudp"
)

// arrived is an ArrivedHandler that passes on when each message arrived.
type arrived struct{ at chan int64 }

func (a arrived) HandleMessage(sip.Message)             { a.at <- 0 }
func (a arrived) HandleArrived(_ sip.Message, at int64) { a.at <- at }
func (a arrived) HandleFlowClosed(sip.Addr)             {}

// TestArrivedTime: a datagram read from the socket is handed to an
// ArrivedHandler with the time the kernel received it, between its
// sending and its reading, so that its wait in the socket's buffer can
// count.
func TestArrivedTime(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	h := arrived{at: make(chan int64, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c, err := net.Dial("udp", tr.LocalAddr().AddrPort.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := time.Now()
	if _, err := c.Write([]byte(options("arrived"))); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-h.at:
		if got := time.Unix(0, at); got.Before(sent.Add(-time.Second)) || got.After(time.Now()) {
			t.Errorf("arrived at %v, want between its sending at %v and now", got, sent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing handed over")
	}
}
