package transport_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/waitfor"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport"
)

// TestOverloadShedsOnArrival: over real UDP on loopback, through the
// transaction layer as the gateway wires it (transaction.Layer.Shed as
// the Shedder), a source whose new work has waited in the Layer's queue
// past the overload gets its further new requests answered with 503 and
// Retry-After at once, by a free worker, ahead of that queue: they take no
// place in it. Its work begun and a light source's new request are served
// meanwhile. Refused only after their wait, the excess was answered once
// the queue before it had been served: at twice the REGISTER knee 0.4-1.5 s
// late, after its clients had sent it again.
func TestOverloadShedsOnArrival(t *testing.T) {
	const nQueued, nLate, nBegun = 70, 50, 5 // nQueued over the layer's floor of 64
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// A request that waited past 4/5 of T1 (80 ms) below the layer is
	// late, and refused as new work.
	st := newShedStack(t, ctx, 2, 100*time.Millisecond, func(*sip.Request) int { return 200 })
	tl, tx := st.tl, st.tx

	// One worker is held on the first request of the Call-ID "held"; the
	// requests of that Call-ID wait behind it in its lane, while the
	// other worker is free.
	gate, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	served := make(chan error, 1)
	go func() {
		served <- tl.Serve(ctx, transport.HandlerFuncs{
			Waited: func(m sip.Message, d time.Duration) {
				if m.Header().CallID() == "held" {
					once.Do(func() {
						close(held)
						<-gate
					})
				}
				tx.HandleWaited(m, d)
			},
			Arrival: tx.Shed,
		})
	}()
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	t.Cleanup(func() {
		open()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	listen := func(ip string) *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetReadBuffer(4 << 20); err != nil {
			t.Fatal(err)
		}
		return c
	}
	flood, light := listen("127.0.0.1"), listen("127.0.0.2")
	server := st.server
	send := func(c *net.UDPConn, branch, callID, toTag string) {
		t.Helper()
		msg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:alice@example.com>;tag=a1\r\n"+
			"To: <sip:alice@example.com>%s\r\n"+
			"Call-ID: %s\r\n"+
			"CSeq: 1 REGISTER\r\n"+
			"Content-Length: 0\r\n\r\n", c.LocalAddr(), branch, toTag, callID)
		if _, err := c.WriteToUDP([]byte(msg), server); err != nil {
			t.Fatal(err)
		}
	}
	send(flood, "busy", "held", "")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the worker")
	}
	for i := range nQueued {
		send(flood, fmt.Sprint("queued-", i), "held", "")
	}
	waitfor.Until(t, "the new work queued", 10*time.Second, func() bool { return tl.Stats().Pending == nQueued })
	// The Layer measures waits on the monotonic clock (internal/delay),
	// which has no fake: the queue's wait is real time.
	queued := time.Now()
	waitfor.Until(t, "the new work's wait past the arrival wait and T1's 4/5", 10*time.Second, func() bool { return time.Since(queued) > 250*time.Millisecond })

	for i := range nLate {
		send(flood, fmt.Sprint("late-", i), fmt.Sprint("late-", i), "")
	}
	for i := range nBegun {
		send(flood, fmt.Sprint("begun-", i), fmt.Sprint("begun-", i), ";tag=b1")
	}
	send(light, "light", "light", "")

	// While the lane is held: every late request gets 503 with
	// Retry-After, the work begun its 200.
	if err := flood.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for answered := map[string]bool{}; len(answered) < nLate+nBegun; {
		n, err := flood.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d answered while the queue was held: %v", len(answered), nLate+nBegun, err)
		}
		res := parseResponse(t, buf[:n])
		id := res.CallID()
		switch {
		case strings.HasPrefix(id, "begun-") && res.StatusCode != 200:
			t.Errorf("%s, work begun: %d, want 200", id, res.StatusCode)
		case strings.HasPrefix(id, "late-") && (res.StatusCode != 503 || res.Get("Retry-After") == "" || res.To().Tag() == ""):
			t.Fatalf("%s: %d, Retry-After %q, To tag %q: want 503 with Retry-After and a To tag", id, res.StatusCode, res.Get("Retry-After"), res.To().Tag())
		case !strings.HasPrefix(id, "begun-") && !strings.HasPrefix(id, "late-"):
			t.Fatalf("%s answered %d while its lane was held", id, res.StatusCode)
		}
		answered[id] = true
	}
	if err := light.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := light.Read(buf)
	if err != nil {
		t.Fatalf("the light source's request: %v", err)
	}
	if res := parseResponse(t, buf[:n]); res.StatusCode != 200 {
		t.Errorf("the light source's request: %d, want 200", res.StatusCode)
	}
	if s := tl.Stats(); s.Shed != nLate || s.Pending != nQueued {
		t.Errorf("stats %+v: want %d shed on arrival, %d pending", s, nLate, nQueued)
	}

	// Released, the held lane is answered.
	open()
	if err := flood.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for answered := map[string]bool{}; len(answered) < 1+nQueued; {
		n, err := flood.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d answered after the release: %v", len(answered), 1+nQueued, err)
		}
		res := parseResponse(t, buf[:n])
		if via, ok := res.TopVia(); ok {
			answered[via.Branch()] = true
		}
	}
}

func parseResponse(t *testing.T, b []byte) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("parse answer: %v", err)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("got a %T, want a response", m)
	}
	return res
}
