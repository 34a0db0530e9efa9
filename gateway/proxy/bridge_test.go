package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/transaction"
)

// fakeBridged is a bridged branch the test drives: what a B2BUA's Leg is to
// the proxy, on channels.
type fakeBridged struct {
	t        testing.TB
	req      *sip.Request // the INVITE the proxy handed to Bridge, copied
	target   Target
	tag      string
	ch       chan *sip.Response
	canceled chan struct{}
	reason   string        // of the first cancel; read after canceled
	watched  chan struct{} // closed when the proxy asks for Responses
	once     sync.Once
	wonce    sync.Once
	eonce    sync.Once
}

func (b *fakeBridged) Responses() <-chan *sip.Response {
	b.wonce.Do(func() { close(b.watched) })
	return b.ch
}

func (b *fakeBridged) CancelWithReason(reason string) {
	b.once.Do(func() {
		b.reason = reason
		close(b.canceled)
	})
}

// respond puts a response of the bridge's own on the branch: made for the
// caller, with the caller's Via and the bridge's To tag and Contact.
func (b *fakeBridged) respond(code int) *sip.Response {
	res := sip.NewResponse(b.req, code, "")
	res.SetToTag(b.tag)
	if code >= 200 && code < 300 {
		res.Add("Contact", "<sip:b2bua@192.0.2.10:5060>")
	}
	b.ch <- res
	return res
}

// end closes the branch: nothing more comes from it.
func (b *fakeBridged) end() { b.eonce.Do(func() { close(b.ch) }) }

// waitCanceled waits for the proxy to cancel the branch.
func (b *fakeBridged) waitCanceled() {
	b.t.Helper()
	select {
	case <-b.canceled:
	case <-time.After(waitLimit):
		b.t.Fatal("the bridged branch was not canceled")
	}
}

func (b *fakeBridged) isCanceled() bool {
	select {
	case <-b.canceled:
		return true
	default:
		return false
	}
}

// browserTarget is a browser's binding, which the fixtures of this file
// bridge.
var browserTarget = Target{URI: mustURI("sip:bob@bob-df7jal23.invalid;transport=ws"), Q: 1000}

// newBridgeFixture is a fixture whose Bridge takes the targets with
// transport=ws and hands each fake branch to the test on the channel.
func newBridgeFixture(t *testing.T, tweak func(*Options)) (*fixture, <-chan *fakeBridged) {
	made := make(chan *fakeBridged, 4)
	var mu sync.Mutex
	var all []*fakeBridged
	f := newFixture(t, func(o *Options) {
		o.Bridge = func(_ context.Context, req *sip.Request, _ Caller, tg Target) (BridgedBranch, bool) {
			if tr, _ := tg.URI.Params.Get("transport"); tr != "ws" {
				return nil, false
			}
			if req.Method != sip.MethodInvite || req.To().Tag() != "" {
				t.Errorf("Bridge asked about a %s with To tag %q", req.Method, req.To().Tag())
			}
			b := &fakeBridged{
				t: t, req: req.Clone(), target: tg, tag: "bridge-" + sip.NewTag(),
				ch: make(chan *sip.Response, 16), canceled: make(chan struct{}), watched: make(chan struct{}),
			}
			mu.Lock()
			all = append(all, b)
			mu.Unlock()
			made <- b
			return b, true
		}
		if tweak != nil {
			tweak(o)
		}
	})
	// Before the fixture closes (cleanups run last first): a test that
	// failed half way must not leave the proxy waiting for a branch.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range all {
			b.end()
		}
	})
	return f, made
}

func nextBridged(t *testing.T, made <-chan *fakeBridged) *fakeBridged {
	t.Helper()
	select {
	case b := <-made:
		return b
	case <-time.After(waitLimit):
		t.Fatal("no target was bridged")
		return nil
	}
}

// awaitStatus reads ct's responses until one with code, and returns it.
func awaitStatus(t *testing.T, ct *transaction.ClientTx, code int) *sip.Response {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case res, ok := <-ct.Responses():
			if !ok {
				t.Fatalf("the caller's transaction ended before a %d", code)
			}
			if res.StatusCode == code {
				return res
			}
			if res.StatusCode >= 200 {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, code)
			}
		case <-deadline:
			t.Fatalf("no %d reached the caller", code)
		}
	}
}

// A user with a phone and a browser: a phone's call forks to both, the
// browser's branch bridged. The bridged branch rings and answers: its
// responses reach the caller as they are (no Via removed), the phone's
// branch is canceled, and the 2xx's retransmissions are forwarded too.
func TestBridgedBranchAnswers(t *testing.T) {
	f, made := newBridgeFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	phone := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), ringUntil(nil, 200))
	phone.register(1000)
	f.loc.add("sip:bob@"+testDomain, browserTarget)

	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	br := nextBridged(t, made)
	if v, _ := br.req.TopVia(); v.Host != "192.0.2.31" {
		t.Errorf("the bridge got the INVITE with top Via %s, want the caller's", v.String())
	}
	if br.target.URI.String() != browserTarget.URI.String() {
		t.Errorf("bridged target %s", br.target.URI.String())
	}
	f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	awaitStatus(t, ct, 180) // the phone's

	br.respond(180)
	if res := awaitStatus(t, ct, 180); res.To().Tag() != br.tag {
		t.Errorf("second 180 has To tag %q, want the bridge's", res.To().Tag())
	}
	br.respond(200)
	res := awaitStatus(t, ct, 200)
	if res.To().Tag() != br.tag || res.Get("Contact") != "<sip:b2bua@192.0.2.10:5060>" {
		t.Errorf("200 from To tag %q, Contact %q: not the bridge's", res.To().Tag(), res.Get("Contact"))
	}
	if vias := res.Values("Via"); len(vias) != 1 {
		t.Errorf("200 has Via %q, want the caller's alone", vias)
	}
	cancel := f.netLog("proxy", "bob", isRequest(sip.MethodCancel)).(*sip.Request)
	if !strings.Contains(cancel.Get("Reason"), "cause=200") {
		t.Errorf("CANCEL Reason %q", cancel.Get("Reason"))
	}
	f.netLog("bob", "proxy", isResponse(487, sip.MethodInvite))

	// Retransmissions of the bridge's 2xx, until the caller's ACK (which
	// goes to the bridge and ends the branch).
	f.netLog("proxy", "dave", isResponse(200, sip.MethodInvite))
	br.respond(200)
	br.respond(200)
	f.netLog("proxy", "dave", isResponse(200, sip.MethodInvite))
	f.netLog("proxy", "dave", isResponse(200, sip.MethodInvite))
	br.end()
	f.settled()
	if f.sent("proxy", "dave", isResponse(487, sip.MethodInvite)) {
		t.Error("the 487 of the canceled phone reached the caller")
	}
	if br.isCanceled() {
		t.Error("the bridged branch that answered was canceled")
	}
}

// The phone answers: the bridged branch is canceled, and its 487 goes no
// further.
func TestBridgedBranchCanceledByAnswer(t *testing.T) {
	f, made := newBridgeFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	f.loc.add("sip:bob@"+testDomain, browserTarget) // first: the loop reads it
	release := make(chan struct{})
	phone := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), ringUntil(release, 200))
	phone.register(1000)

	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	br := nextBridged(t, made)
	br.respond(180)
	awaitStatus(t, ct, 180)
	f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	close(release)
	if res := awaitStatus(t, ct, 200); res.To().Tag() != phone.tag {
		t.Errorf("200 To tag %q, want the phone's", res.To().Tag())
	}
	br.waitCanceled()
	if br.reason != reasonCompletedElsewhere {
		t.Errorf("bridged branch canceled with reason %q, want %q", br.reason, reasonCompletedElsewhere)
	}
	br.respond(487)
	br.end()
	f.settled()
	if f.sent("proxy", "dave", isResponse(487, sip.MethodInvite)) {
		t.Error("the 487 of the canceled bridged branch reached the caller")
	}
}

// The caller's CANCEL cancels the bridged branch with the others.
func TestBridgedBranchCallerCancels(t *testing.T) {
	f, made := newBridgeFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	phone := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), ringUntil(nil, 200))
	phone.register(1000)
	f.loc.add("sip:bob@"+testDomain, browserTarget)

	ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
	br := nextBridged(t, made)
	br.respond(180)
	f.netLog("bob", "proxy", isResponse(180, sip.MethodInvite))
	awaitStatus(t, ct, 180)
	if err := ct.Cancel(); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, ct, 487)
	f.netLog("proxy", "bob", isRequest(sip.MethodCancel))
	br.waitCanceled()
	br.respond(487)
	br.end()
	f.settled()
}

// Timer C on a bridged branch, the only one (read by the loop itself): a
// ringing branch is canceled and the caller gets 408; a silent one counts
// as a 408 at once and is canceled all the same.
func TestBridgedBranchTimerC(t *testing.T) {
	t.Run("ringing", func(t *testing.T) {
		f, made := newBridgeFixture(t, nil)
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		f.loc.add("sip:bob@"+testDomain, browserTarget)
		ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
		br := nextBridged(t, made)
		br.respond(180)
		awaitStatus(t, ct, 180) // Timer C was re-armed before the 180 left
		f.clk.Advance(DefaultTimerC - time.Second)
		if br.isCanceled() {
			t.Fatal("canceled before Timer C")
		}
		f.clk.Advance(time.Second)
		br.waitCanceled()
		br.respond(487)
		br.end()
		awaitStatus(t, ct, 408)
		f.settled()
	})
	t.Run("silent", func(t *testing.T) {
		f, made := newBridgeFixture(t, func(o *Options) { o.TimerC = 10 * time.Second })
		dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
		f.loc.add("sip:bob@"+testDomain, browserTarget)
		ct := dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain))
		br := nextBridged(t, made)
		// Timer C is armed before the proxy reads the branch.
		select {
		case <-br.watched:
		case <-time.After(waitLimit):
			t.Fatal("the proxy does not read the bridged branch")
		}
		f.clk.Advance(10 * time.Second)
		awaitStatus(t, ct, 408)
		br.waitCanceled()
		br.respond(487)
		br.end()
		f.settled()
	})
}

// Requests other than an initial INVITE are never bridged: a MESSAGE to
// the user goes to its phone as usual.
func TestBridgeOnlyInitialInvite(t *testing.T) {
	f, made := newBridgeFixture(t, nil)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	phone := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
	phone.register(1000)
	f.loc.add("sip:bob@"+testDomain, browserTarget)
	res, _ := dave.final(dave.send(dave.request(sip.MethodMessage, "sip:bob@"+testDomain)))
	if res.StatusCode != 200 {
		t.Fatalf("MESSAGE: got %d, want 200", res.StatusCode)
	}
	select {
	case <-made:
		t.Fatal("a MESSAGE was bridged")
	default:
	}
}
