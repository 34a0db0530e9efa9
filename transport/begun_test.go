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
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
)

// TestOverloadServesBegunWorkFirst: a flood of new INVITEs waits in the
// Layer's queue with, behind it, requests that carry on work begun (BYEs
// within a dialog, INVITEs answering a challenge). Over real UDP on
// loopback, through the transaction layer shedding on the Layer's queue:
// the work begun is served first, by the handler, and every new INVITE
// gets an answer, a 503 with Retry-After for those past the overload;
// none is left to time out. In one queue the work begun waited behind all the
// new work, as long as the requests that were shed: at twice the knee of
// proxied calls, calls already admitted timed out.
func TestOverloadServesBegunWorkFirst(t *testing.T) {
	const nNew, nBegun = 200, 20
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	udp, err := sipudp.Listen(ctx, "127.0.0.1:0", sipudp.Options{ReadBuffer: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	tl := transport.NewLayer(transport.Config{Workers: 1})
	tl.Add(udp)
	var tx *transaction.Layer
	tx = transaction.New(ctx, tl, transaction.HandlerFunc(func(_ context.Context, st *transaction.ServerTx, req *sip.Request) {
		if st == nil {
			return
		}
		code := 200
		if req.Method == sip.MethodInvite {
			code = 486
		}
		_ = st.Respond(sip.NewResponse(req, code, ""))
	}), transaction.Config{
		OverloadDelay: time.Millisecond,
		QueueDelay:    tl.QueueDelay,
		QueueLen:      tl.QueueLen,
		// New work (no To tag, no credentials) is shed under overload,
		// as the gateway does.
		Admit: func(req *sip.Request, waited time.Duration) (*sip.Response, bool) {
			if !req.ContinuesWork() && tx.Overloaded(req, waited) {
				res := sip.NewResponse(req, 503, "Overloaded")
				res.Set("Retry-After", "5")
				return res, false
			}
			return nil, false
		},
	})

	// The Layer's one worker is held on the first request until the
	// flood is queued and has waited well past the overload's limit.
	gate, held := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	type taken struct {
		callID string
		waited time.Duration
	}
	var order []taken // in the order the worker took them
	served := make(chan error, 1)
	go func() {
		served <- tl.Serve(ctx, transport.HandlerFuncs{Waited: func(m sip.Message, d time.Duration) {
			mu.Lock()
			order = append(order, taken{m.Header().CallID(), d})
			first := len(order) == 1
			mu.Unlock()
			if first {
				close(held)
				<-gate
			}
			tx.HandleWaited(m, d)
		}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	server := net.UDPAddrFromAddrPort(udp.LocalAddr().AddrPort)
	send := func(method, callID, extra string) {
		t.Helper()
		msg := fmt.Sprintf("%s sip:bob@example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:alice@example.com>;tag=a1\r\n"+
			"%s"+
			"Call-ID: %s\r\n"+
			"CSeq: 1 %s\r\n"+
			"Content-Length: 0\r\n\r\n", method, client.LocalAddr(), callID, extra, callID, method)
		if _, err := client.WriteToUDP([]byte(msg), server); err != nil {
			t.Fatal(err)
		}
	}
	send("INVITE", "busy", "To: <sip:bob@example.com>\r\n")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the worker")
	}
	for i := range nNew {
		send("INVITE", fmt.Sprint("new-", i), "To: <sip:bob@example.com>\r\n")
	}
	for i := range nBegun {
		if i%2 == 0 {
			send("BYE", fmt.Sprint("begun-", i), "To: <sip:bob@example.com>;tag=b1\r\n")
		} else {
			send("INVITE", fmt.Sprint("begun-", i), "To: <sip:bob@example.com>\r\nProxy-Authorization: Digest username=\"alice\"\r\n")
		}
	}
	waitfor.Until(t, "the flood queued", 10*time.Second, func() bool { return tl.Stats().Pending == nNew+nBegun })
	waitfor.Until(t, "the queue's wait past twice the limit", 10*time.Second, func() bool { return tl.QueueDelay() > 10*time.Millisecond })
	close(gate)

	// Every request gets a final answer (the INVITEs' own 486, or a 503).
	answers := map[string]*sip.Response{}
	buf := make([]byte, 65536)
	if err := client.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for len(answers) < 1+nNew+nBegun {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d requests answered: %v", len(answers), 1+nNew+nBegun, err)
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatalf("parse answer: %v", err)
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode >= 200 {
			answers[res.CallID()] = res
		}
	}
	shed := 0
	for id, res := range answers {
		switch {
		case strings.HasPrefix(id, "begun-") && res.StatusCode == 503:
			t.Errorf("%s, work begun: 503, want the handler's answer", id)
		case res.StatusCode == 503 && res.Get("Retry-After") == "":
			t.Errorf("%s: 503 without Retry-After", id)
		case res.StatusCode == 503:
			shed++
		case res.StatusCode != 200 && res.StatusCode != 486:
			t.Errorf("%s: %d, want the handler's 200 or 486, or 503", id, res.StatusCode)
		}
	}
	if shed == 0 {
		t.Error("no new request shed with 503 under the overload")
	}

	// The work begun was taken first, but for a new request now and
	// then, not after the flood; new requests that had waited 400 ms
	// (4/5 of T1, which a slow host may make them wait here) go first,
	// to be refused at once.
	mu.Lock()
	defer mu.Unlock()
	last := 0
	for i, tk := range order {
		if strings.HasPrefix(tk.callID, "begun-") {
			last = i
		}
	}
	ahead := 0
	for _, tk := range order[1:last] {
		if strings.HasPrefix(tk.callID, "new-") && tk.waited < 400*time.Millisecond {
			ahead++
		}
	}
	if ahead > nBegun {
		t.Errorf("%d new requests, not late, were taken before the last of the work begun; want at most %d", ahead, nBegun)
	}
}
