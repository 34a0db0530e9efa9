package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// Addresses of the relay tests: a host outside every domain of ours, and a
// trunk that places calls for whoever the gateway sends.
var (
	farAddr   = mustAddr(sip.UDP, "198.51.100.7:5060")
	trunkAddr = mustAddr(sip.UDP, "203.0.113.5:5060")
)

// relayFixture is a proxy whose Router sends numbers dialed by local users
// to a trunk, with a registered local user bob, a foreign host far and the
// trunk listening, all answering 200 to anything.
type relayFixture struct {
	*fixture
	bob, far, trunk *ua
}

func newRelayFixture(t *testing.T, tweak func(*Options)) *relayFixture {
	f := newFixture(t, func(o *Options) {
		o.Router = RouterFunc(func(_ context.Context, req *sip.Request, caller Caller) ([]Target, bool) {
			if !strings.HasPrefix(req.URI.User, "+") || caller.User == "" {
				return nil, false
			}
			return []Target{{URI: sip.URI{Scheme: "sip", User: req.URI.User, Host: "203.0.113.5"}, Q: 1000}}, true
		})
		if tweak != nil {
			tweak(o)
		}
	})
	rf := &relayFixture{fixture: f}
	rf.bob = f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
	rf.bob.register(1000)
	rf.far = f.newUA("victim", otherDomain, farAddr, respond(200))
	rf.trunk = f.newUA("trunk", otherDomain, trunkAddr, respond(200))
	return rf
}

// leaked reports whether the proxy sent anything to the foreign host or
// the trunk.
func (rf *relayFixture) leaked() bool {
	any := func(sip.Message) bool { return true }
	return rf.sent("proxy", "victim", any) || rf.sent("proxy", "trunk", any)
}

// call has caller, a stranger, call bob, and returns the caller's dialog.
func (rf *relayFixture) call(caller *ua) (*dialog.Dialog, *sip.Request, *sip.Response) {
	rf.t.Helper()
	inv := caller.request(sip.MethodInvite, "sip:bob@"+testDomain)
	res, _ := caller.final(caller.send(inv))
	if res.StatusCode != 200 {
		rf.t.Fatalf("stranger's INVITE to bob: got %d, want 200", res.StatusCode)
	}
	d := uacDialog(rf.t, inv, res)
	ack, err := d.NewAck(inv.CSeq().Seq)
	if err != nil {
		rf.t.Fatal(err)
	}
	caller.sendStateless(ack)
	rf.bob.waitRequest(sip.MethodAck)
	return d, inv, res
}

// An outsider with no credentials calls a local user, then replays the
// Record-Route entry it got to make the gateway send requests anywhere
// else: every variant is authorised as an out-of-dialog request, refused,
// and nothing reaches the foreign host or the trunk. Legitimate requests
// of the dialog still pass, both ways.
func TestReplayedStampRelaysNothing(t *testing.T) {
	attackers := map[string]func(f *fixture) *ua{
		"udp": func(f *fixture) *ua {
			return f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), respond(200))
		},
		"tcp": func(f *fixture) *ua {
			return f.newUA("dave", otherDomain, mustAddr(sip.TCP, "192.0.2.31:5070"), respond(200))
		},
		"ws": func(f *fixture) *ua { return f.newWSUA("dave", otherDomain, "198.51.100.20:51000", respond(200)) },
	}
	variants := []struct {
		name   string
		method string
		edit   func(rf *relayFixture, r *sip.Request, other *dialog.Dialog)
	}{
		{"made-up to tag, foreign host", sip.MethodMessage, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:victim@198.51.100.7")
			setToTag(r, "madeup1")
		}},
		{"made-up to tag, same request-uri", sip.MethodInvite, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			setToTag(r, "madeup2")
		}},
		{"changed request-uri, foreign host", sip.MethodMessage, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:victim@198.51.100.7")
		}},
		{"changed request-uri, invite", sip.MethodInvite, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:victim@198.51.100.7")
		}},
		{"a number", sip.MethodInvite, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:+19005551234@" + testDomain)
		}},
		{"a number at the trunk", sip.MethodInvite, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:+19005551234@203.0.113.5")
		}},
		{"a foreign domain", sip.MethodMessage, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			r.URI = mustURI("sip:victim@198.51.100.7;transport=udp")
			r.Set("To", "<sip:victim@evil.example>;tag="+r.To().Tag())
		}},
		{"a stamp from another call", sip.MethodMessage, func(rf *relayFixture, r *sip.Request, other *dialog.Dialog) {
			r.URI = mustURI("sip:victim@198.51.100.7")
			r.Del("Route")
			for _, rt := range other.RouteSet() {
				r.Add("Route", rt.String())
			}
		}},
		{"the caller posing as the callee", sip.MethodMessage, func(rf *relayFixture, r *sip.Request, _ *dialog.Dialog) {
			from, to := r.From().Tag(), r.To().Tag()
			r.URI = mustURI("sip:victim@198.51.100.7")
			r.Set("From", "<sip:bob@"+testDomain+">;tag="+to)
			r.Set("To", "<sip:dave@"+otherDomain+">;tag="+from)
		}},
	}
	for tr, newAttacker := range attackers {
		for _, v := range variants {
			t.Run(tr+"/"+v.name, func(t *testing.T) {
				rf := newRelayFixture(t, nil)
				dave := newAttacker(rf.fixture)
				d, _, _ := rf.call(dave)
				other, _, _ := rf.call(dave)

				req, err := d.NewRequest(v.method)
				if err != nil {
					t.Fatal(err)
				}
				v.edit(rf, req, other)
				res, _ := dave.final(dave.send(req))
				if res.StatusCode < 400 {
					t.Fatalf("replayed stamp: got %d, want a refusal", res.StatusCode)
				}
				if rf.leaked() {
					t.Fatal("the proxy sent a request to the foreign host or the trunk")
				}
				if st := rf.proxy.DialogStats(); st.Mismatched == 0 {
					t.Errorf("mismatch not counted: %+v", st)
				}

				// The dialog itself still works, both ways.
				msg, err := d.NewRequest(sip.MethodMessage)
				if err != nil {
					t.Fatal(err)
				}
				if res, _ := dave.final(dave.send(msg)); res.StatusCode != 200 {
					t.Fatalf("in-dialog MESSAGE from the caller: got %d, want 200", res.StatusCode)
				}
				rf.bob.waitRequest(sip.MethodMessage)
				atBob := rf.bob.reqs.all()[0]
				ds, err := dialog.NewUAS(atBob, rf.bob.response(atBob, 200))
				if err != nil {
					t.Fatal(err)
				}
				bye, _ := ds.NewRequest(sip.MethodBye)
				if res, _ := rf.bob.final(rf.bob.send(bye)); res.StatusCode != 200 {
					t.Fatalf("BYE from the callee: got %d, want 200", res.StatusCode)
				}
				dave.waitRequest(sip.MethodBye)
			})
		}
	}
}

// An ACK that rides a replayed stamp somewhere else is dropped: it cannot
// be refused, so it must not be forwarded.
func TestReplayedStampAckDropped(t *testing.T) {
	rf := newRelayFixture(t, nil)
	dave := rf.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	d, inv, _ := rf.call(dave)
	ack, _ := d.NewAck(inv.CSeq().Seq)
	ack.URI = mustURI("sip:victim@198.51.100.7")
	dave.sendStateless(ack)
	// A request sent after it on the same path arrives after it: once it
	// did, the ACK was dealt with.
	msg, _ := d.NewRequest(sip.MethodMessage)
	if res, _ := dave.final(dave.send(msg)); res.StatusCode != 200 {
		t.Fatalf("in-dialog MESSAGE: got %d", res.StatusCode)
	}
	if rf.leaked() {
		t.Fatal("the replayed ACK was forwarded to the foreign host")
	}
}

// A callee of a local user's call to a foreign host gets the entry that
// sends towards the caller; it cannot send anywhere else with it, nor move
// the caller's side by sending the initial request again.
func TestCalleeCannotRedirectCallerSide(t *testing.T) {
	rf := newRelayFixture(t, nil)
	alice := rf.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))
	far := rf.newUA("far", otherDomain, mustAddr(sip.UDP, "198.51.100.9:5060"), respond(180, 200))
	inv, res := alice.do(alice.request(sip.MethodInvite, "sip:far@198.51.100.9"))
	if res.StatusCode != 200 {
		t.Fatalf("alice's INVITE to far: got %d", res.StatusCode)
	}
	atFar := far.waitRequest(sip.MethodInvite)

	// far sends alice's initial INVITE again with its own Contact, as a
	// stranger calling bob: a new call to bob, but alice's side stays.
	again := atFar.Clone()
	again.Del("Via")
	again.Del("Record-Route")
	again.URI = mustURI("sip:bob@" + testDomain)
	again.Set("From", "<sip:far@"+otherDomain+">;tag="+inv.From().Tag())
	again.Set("Contact", "<sip:victim@198.51.100.7>")
	again.Set("CSeq", "7 INVITE")
	if res, _ := far.final(far.send(again)); res.StatusCode != 200 {
		t.Fatalf("far's INVITE to bob: got %d", res.StatusCode)
	}

	ds, err := dialog.NewUAS(atFar, far.response(atFar, 200))
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"sip:victim@198.51.100.7", "sip:+19005551234@203.0.113.5"} {
		msg, _ := ds.NewRequest(sip.MethodMessage)
		msg.URI = mustURI(uri)
		if res, _ := far.final(far.send(msg)); res.StatusCode < 400 {
			t.Fatalf("callee's MESSAGE to %s: got %d, want a refusal", uri, res.StatusCode)
		}
	}
	if rf.leaked() {
		t.Fatal("the callee made the proxy send to a host of its choice")
	}
	bye, _ := ds.NewRequest(sip.MethodBye)
	if res, _ := far.final(far.send(bye)); res.StatusCode != 200 {
		t.Fatalf("BYE from far: got %d, want 200", res.StatusCode)
	}
	alice.waitRequest(sip.MethodBye)
}

// A dialog is forgotten DialogLifetime after its last in-dialog request;
// requests keep it alive, and a target refresh moves where requests may
// go.
func TestDialogLifetimeAndRefresh(t *testing.T) {
	const life = time.Hour
	rf := newRelayFixture(t, func(o *Options) { o.DialogLifetime = life })
	dave := rf.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	d, _, _ := rf.call(dave)
	target := ""
	send := func(method string) int {
		t.Helper()
		r, err := d.NewRequest(method)
		if err != nil {
			t.Fatal(err)
		}
		if target != "" {
			r.URI = mustURI(target)
		}
		res, _ := dave.final(dave.send(r))
		return res.StatusCode
	}
	rf.clk.Advance(life - time.Minute)
	if code := send(sip.MethodMessage); code != 200 {
		t.Fatalf("MESSAGE before the lifetime: got %d", code)
	}
	rf.clk.Advance(life - time.Minute) // 2h - 2m after the answer, 59m after the MESSAGE
	if code := send(sip.MethodMessage); code != 200 {
		t.Fatalf("MESSAGE within the refreshed lifetime: got %d", code)
	}

	// bob moves: a re-INVITE from bob with a new Contact.
	atBob := rf.bob.reqs.all()[0]
	ds, _ := dialog.NewUAS(atBob, rf.bob.response(atBob, 200))
	reinv, _ := ds.NewRequest(sip.MethodInvite)
	reinv.Set("Contact", "<sip:bob@192.0.2.23:5060>")
	dave.behave = respond(200)
	if res, _ := rf.bob.final(rf.bob.send(reinv)); res.StatusCode != 200 {
		t.Fatalf("re-INVITE from bob: got %d", res.StatusCode)
	}
	moved := rf.newUA("bob2", testDomain, mustAddr(sip.UDP, "192.0.2.23:5060"), respond(200))
	target = "sip:bob@192.0.2.23:5060"
	if code := send(sip.MethodMessage); code != 200 {
		t.Fatalf("MESSAGE to bob's new Contact: got %d", code)
	}
	moved.waitRequest(sip.MethodMessage)

	rf.clk.Advance(life + time.Second)
	if code := send(sip.MethodMessage); code < 400 {
		t.Fatalf("MESSAGE after the lifetime: got %d, want a refusal", code)
	}
}

// The table is bounded: beyond MaxDialogs the oldest ended dialog is
// forgotten, else the oldest early one, and when every dialog is
// confirmed and under way a new one gets 503.
func TestDialogTableCap(t *testing.T) {
	rf := newRelayFixture(t, func(o *Options) { o.MaxDialogs = 2 })
	dave := rf.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	first, _, _ := rf.call(dave)
	rf.call(dave)
	res, _ := dave.final(dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
	if res.StatusCode != 503 {
		t.Fatalf("third dialog with two confirmed: got %d, want 503", res.StatusCode)
	}
	if st := rf.proxy.DialogStats(); st.Refused != 1 || st.Dialogs != 2 {
		t.Errorf("stats %+v, want 1 refused and 2 dialogs", st)
	}
	bye, _ := first.NewRequest(sip.MethodBye)
	if res, _ := dave.final(dave.send(bye)); res.StatusCode != 200 {
		t.Fatalf("BYE: got %d", res.StatusCode)
	}
	// The ended dialog makes room at once, not CancelTimeout later: at a
	// few thousand calls a second the dialogs of the last 32 s would fill
	// the table.
	third, _, _ := rf.call(dave)
	if st := rf.proxy.DialogStats(); st.Refused != 1 || st.Evicted != 0 || st.Dialogs != 2 {
		t.Errorf("stats %+v after a call in the ended dialog's room, want 1 refused, none evicted, 2 dialogs", st)
	}
	bye, _ = third.NewRequest(sip.MethodBye)
	if res, _ := dave.final(dave.send(bye)); res.StatusCode != 200 {
		t.Fatalf("BYE of the third call: got %d", res.StatusCode)
	}
	rf.clk.Advance(DefaultCancelTimeout + sweepEvery)
	rf.call(dave) // room again once the ended dialog expired

	// Early dialogs make room for new ones: the oldest goes.
	rf = newRelayFixture(t, func(o *Options) { o.MaxDialogs = 2 })
	dave = rf.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	release := make(chan struct{})
	rf.bob.behave = ringUntil(release, 486)
	var cts []*transaction.ClientTx
	for range 3 {
		cts = append(cts, dave.send(dave.request(sip.MethodInvite, "sip:bob@"+testDomain)))
		rf.netLog("proxy", "dave", isResponse(180, sip.MethodInvite))
	}
	if st := rf.proxy.DialogStats(); st.Evicted != 1 || st.Dialogs != 2 {
		t.Errorf("stats %+v, want 1 evicted and 2 dialogs", st)
	}
	close(release)
	for _, ct := range cts {
		if res, _ := dave.final(ct); res.StatusCode != 486 {
			t.Errorf("ringing INVITE: got %d, want 486", res.StatusCode)
		}
	}
	if st := rf.proxy.DialogStats(); st.Dialogs != 0 {
		t.Errorf("%d dialogs left after every INVITE failed", st.Dialogs)
	}
}

// setToTag replaces the tag of r's To.
func setToTag(r *sip.Request, tag string) {
	to := r.To()
	to.Params = sip.Params(";tag=" + tag)
	r.Set("To", to.String())
}

// A dialog a BYE ended stays ended: neither a 2xx that confirms it late
// (a BYE in the early dialog crossed the 200) nor a request routed in it
// gives it back the lifetime of a dialog under way.
func TestEndedDialogStaysEnded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	d := newDialogs(4, time.Hour)
	key := dialogKey{callID: "c1", callerTag: "t1"}
	if err := d.open(key, side{}, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	d.ending(key, now.Add(time.Second))
	d.answered(key, "b1", side{}, true, now, now.Add(time.Minute))
	dl := d.m[key]
	if dl == nil || dl.expires != now.Add(time.Second) || dl.early != nil || dl.ended == nil {
		t.Fatalf("after the late 2xx: %+v, want it ending in 1s, off the early list, on the ended one", dl)
	}
	d.forget(dl)
	if d.ended.Len() != 0 || d.early.Len() != 0 || len(d.m) != 0 {
		t.Fatalf("forgotten dialog left behind: ended %d, early %d, map %d", d.ended.Len(), d.early.Len(), len(d.m))
	}
}
