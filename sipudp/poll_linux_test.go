package sipudp_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/internal/udpstat"
	"github.com/switchboard/switchboard/internal/waitfor"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// calls records the Call-IDs of the messages handed to it, in order.
type calls struct {
	mu  sync.Mutex
	ids []string
}

func (c *calls) HandleMessage(m sip.Message) {
	c.mu.Lock()
	c.ids = append(c.ids, m.Header().CallID())
	c.mu.Unlock()
}

func (c *calls) HandleFlowClosed(sip.Addr) {}

// take returns the Call-IDs handed on since the last take.
func (c *calls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := c.ids
	c.ids = nil
	return ids
}

// sendQueued sends the REGISTERs of Call-IDs ids (all of one length) to
// tr and waits until the kernel holds them all in tr's socket: perDatagram
// is what one of them takes there.
func sendQueued(t *testing.T, peer *transporttest.UDPPeer, tr *sipudp.Transport, perDatagram uint64, ids []string) {
	t.Helper()
	for _, id := range ids {
		peer.Send(tr.LocalAddr(), register(id))
	}
	want := perDatagram * uint64(len(ids))
	waitfor.Until(t, fmt.Sprintf("%d datagrams queued", len(ids)), transporttest.Timeout, func() bool {
		s, err := udpstat.Find(tr.LocalAddr().AddrPort)
		return err == nil && s.RxQueue >= want
	})
}

// TestPoll: a Poll reads what waits on the socket, in the order it came,
// PollMax datagrams at most, and nothing while a read loop holds the
// read.
func TestPoll(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	h := new(calls)
	sipudp.StartReads(tr, h)
	peer := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")

	// What one datagram takes in the socket's queue, as the kernel counts.
	var one uint64
	peer.Send(tr.LocalAddr(), register("c0000"))
	waitfor.Until(t, "one datagram queued", transporttest.Timeout, func() bool {
		s, err := udpstat.Find(tr.LocalAddr().AddrPort)
		one = s.RxQueue
		return err == nil && one > 0
	})
	release := sipudp.HoldReads(tr)
	tr.Poll()
	release()
	if got := h.take(); len(got) != 0 {
		t.Fatalf("a Poll during a read loop's read handed on %q", got)
	}
	tr.Poll()
	if got := h.take(); !slices.Equal(got, []string{"c0000"}) {
		t.Fatalf("Poll handed on %q, want the datagram that waited", got)
	}

	var ids []string
	for i := range sipudp.PollMax + 5 {
		ids = append(ids, fmt.Sprintf("c%04d", i+1))
	}
	sendQueued(t, peer, tr, one, ids)
	tr.Poll()
	if got := h.take(); !slices.Equal(got, ids[:sipudp.PollMax]) {
		t.Fatalf("one Poll handed on %d datagrams (%q...), want the first %d in order", len(got), got[:min(len(got), 3)], sipudp.PollMax)
	}
	tr.Poll()
	if got := h.take(); !slices.Equal(got, ids[sipudp.PollMax:]) {
		t.Fatalf("the next Poll handed on %q, want %q", got, ids[sipudp.PollMax:])
	}
	tr.Poll()
	if got := h.take(); len(got) != 0 {
		t.Fatalf("a Poll of an empty socket handed on %q", got)
	}
}

// TestPollBeforeServe: a Poll before Serve reads nothing, so what waits
// is still there for the first Poll after it; a Poll after Close reads
// nothing either (the descriptor may be another file's by then).
func TestPollBeforeServe(t *testing.T) {
	tr := listen(t, "127.0.0.1:0", sipudp.Options{})
	peer := transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	peer.Send(tr.LocalAddr(), register("c0001"))
	waitfor.Until(t, "the datagram queued", transporttest.Timeout, func() bool {
		s, err := udpstat.Find(tr.LocalAddr().AddrPort)
		return err == nil && s.RxQueue > 0
	})
	tr.Poll() // must not panic, nor read: nothing to hand it to
	h := new(calls)
	sipudp.StartReads(tr, h)
	tr.Poll()
	if got := h.take(); !slices.Equal(got, []string{"c0001"}) {
		t.Fatalf("the first Poll after Serve handed on %q, want the datagram that waited since before", got)
	}
	peer.Send(tr.LocalAddr(), register("c0002"))
	tr.Close()
	tr.Poll()
	if got := h.take(); len(got) != 0 {
		t.Fatalf("a Poll after Close handed on %q", got)
	}
}

var _ transport.Poller = (*sipudp.Transport)(nil)
