package sipudp_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
	"github.com/switchboard/switchboard/sipudp"
	"github.com/switchboard/switchboard/transport"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// The transport Layer answers for the transaction layer's stateless
// answers (transaction.Replier).
var _ transaction.Replier = (*transport.Layer)(nil)

// refuser is a transaction layer over a Layer with one worker and a
// sipudp transport, whose Admit answers every request with admit's
// verdict: refused (a 503 with Retry-After: 7), dropped, or, when admit
// blocks, the worker held in it.
type refuser struct {
	tr   *sipudp.Transport
	l    *transport.Layer
	peer *transporttest.UDPPeer
}

func newRefuser(t *testing.T, admit func(req *sip.Request) (drop bool)) *refuser {
	t.Helper()
	leakcheck.Check(t, transporttest.Timeout, leakcheck.Started())
	rf := &refuser{tr: listen(t, "127.0.0.1:0", sipudp.Options{})}
	rf.l = transporttest.NewLayer(transport.Config{Workers: 1}, rf.tr)
	tx := transaction.New(context.Background(), rf.l, transaction.HandlerFunc(func(context.Context, *transaction.ServerTx, *sip.Request) {
		t.Error("a request was served")
	}), transaction.Config{Admit: func(req *sip.Request, _ time.Duration) (*sip.Response, bool) {
		if admit(req) {
			return nil, true
		}
		res := sip.NewResponse(req, 503, "Overloaded")
		res.Set("Retry-After", "7")
		return res, false
	}})
	t.Cleanup(func() { tx.Close() })
	transporttest.Serve(t, rf.l, transport.HandlerFuncs{Message: tx.HandleMessage, Waited: tx.HandleWaited})
	rf.peer = transporttest.ListenUDP(t, "udp4", "127.0.0.1:0")
	return rf
}

// register is a REGISTER of Call-ID id, whose branch is "z9hG4bK" + id.
func register(id string) string {
	return strings.Replace(strings.Replace(benchMessage, "3c26700d4f1c7a35@10.0.0.1", id, 1), "z9hG4bK5d3e8a7f21", "z9hG4bK"+id, 1)
}

// queue hands the Layer a REGISTER of Call-ID id from the peer, as if
// read from the socket: queued when it returns.
func (rf *refuser) queue(t *testing.T, id string) {
	t.Helper()
	req := transporttest.ParseRequest(t, register(id))
	transport.SetSource(req, sip.Addr{Transport: sip.UDP, AddrPort: rf.peer.Addr()})
	rf.l.HandleMessage(req)
}

// refusal reads the next answer at the peer and checks that it is the
// refusal of one of the REGISTERs: a 503 with Retry-After, its own
// branch and a To tag. It returns the Call-ID and the To tag.
func (rf *refuser) refusal(t *testing.T) (id, tag string) {
	t.Helper()
	res := rf.peer.Response()
	id = res.CallID()
	via, _ := res.TopVia()
	tag = res.To().Tag()
	if res.StatusCode != 503 || res.Get("Retry-After") != "7" || via.Branch() != "z9hG4bK"+id || tag == "" {
		t.Errorf("answer to %s: %d, Retry-After %q, branch %q, To tag %q", id, res.StatusCode, res.Get("Retry-After"), via.Branch(), tag)
	}
	if rport, _ := via.RPort(); rport != int(rf.peer.Addr().Port()) {
		t.Errorf("answer to %s: rport %d, want the peer's %d", id, rport, rf.peer.Addr().Port())
	}
	return id, tag
}

// wait waits for ch to close, failing the test after Timeout.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(transporttest.Timeout):
		t.Fatalf("no %s within %v", what, transporttest.Timeout)
	}
}

// TestRefusalsOfARunLeaveTogether: the refusals a worker gives in one run
// of work leave in one sendmmsg, each with its own Via, To tag and
// Retry-After; a sendto each was the largest part of a refusal's cost.
func TestRefusalsOfARunLeaveTogether(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	rf := newRefuser(t, func(req *sip.Request) bool {
		if req.CallID() == "first" {
			close(entered)
			<-release
		}
		return false
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// The worker holds the first, so that the rest queue behind it and
	// make one run.
	rf.peer.Send(rf.tr.LocalAddr(), register("first"))
	wait(t, entered, "first REGISTER at Admit")
	const n = 10
	for i := range n {
		rf.queue(t, fmt.Sprintf("r%d", i))
	}
	w0 := sipudp.Writes(rf.tr)
	close(release)
	ids, tags := map[string]bool{}, map[string]bool{}
	for range n + 1 {
		id, tag := rf.refusal(t)
		ids[id], tags[tag] = true, true
	}
	if len(ids) != n+1 || len(tags) != n+1 {
		t.Errorf("%d Call-IDs and %d To tags in %d refusals, want all different", len(ids), len(tags), n+1)
	}
	if w := sipudp.Writes(rf.tr) - w0; w != 1 {
		t.Errorf("%d refusals left in %d system calls, want 1", n+1, w)
	}
}

// TestLoneRefusalLeavesAtOnce: a refusal with no other work leaves as its
// request is handled, in a system call of its own, not held for company.
func TestLoneRefusalLeavesAtOnce(t *testing.T) {
	rf := newRefuser(t, func(*sip.Request) bool { return false })
	for i := range 3 {
		w0 := sipudp.Writes(rf.tr)
		id := fmt.Sprintf("lone%d", i)
		rf.peer.Send(rf.tr.LocalAddr(), register(id))
		if got, _ := rf.refusal(t); got != id {
			t.Fatalf("answer to %s, want %s", got, id)
		}
		if w := sipudp.Writes(rf.tr) - w0; w != 1 {
			t.Errorf("refusal %d left in %d system calls", i, w)
		}
	}
}

// TestRefusalNotHeldBehindLongRun: in a long run of other work a refusal
// leaves once a bounded number of items has been handled after it, not at
// the end of the run: here the run's last item waits for the refusal.
func TestRefusalNotHeldBehindLongRun(t *testing.T) {
	entered, release, refused := make(chan struct{}), make(chan struct{}), make(chan struct{})
	rf := newRefuser(t, func(req *sip.Request) bool {
		switch {
		case req.CallID() == "first":
			close(entered)
			<-release
			return true
		case req.CallID() == "last":
			<-refused
			return true
		}
		return strings.HasPrefix(req.CallID(), "filler")
	})
	rf.peer.Send(rf.tr.LocalAddr(), register("first"))
	wait(t, entered, "first REGISTER at Admit")
	rf.queue(t, "refused")
	for i := range 40 {
		rf.queue(t, fmt.Sprintf("filler%d", i))
	}
	rf.queue(t, "last")
	defer close(refused)
	close(release)
	if id, _ := rf.refusal(t); id != "refused" {
		t.Errorf("answer to %s", id)
	}
}
