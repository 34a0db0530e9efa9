package dialog

import (
	"slices"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestForks(t *testing.T) {
	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	// The INVITE forks to Bob's desk phone (tag "desk") and softphone
	// ("soft"); a third device ("cell") answers late.
	type step struct {
		name    string
		res     *sip.Response
		tag     string // remote tag of ForkResult.Dialog, "" for none
		created bool
		extra   bool
		state   State
		ended   []string // remote tags
	}
	deskRR := "Record-Route: <sip:p2.biloxi.example.com;lr;desk>, <sip:p1.atlanta.example.com;lr>"
	softRR := "Record-Route: <sip:p2.biloxi.example.com;lr;soft>, <sip:p1.atlanta.example.com;lr>"
	steps := []step{
		{name: "100", res: bobResponse(t, "100 Trying", "")},
		{name: "180 desk", res: bobResponse(t, "180 Ringing", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>"), tag: "desk", created: true, state: Early},
		{name: "180 without tag", res: bobResponse(t, "180 Ringing", "")},
		{name: "183 soft", res: bobResponse(t, "183 Session Progress", "soft", softRR, "Contact: <sip:bob@192.0.2.22>"), tag: "soft", created: true, state: Early},
		{name: "180 desk again", res: bobResponse(t, "180 Ringing", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>"), tag: "desk", state: Early},
		{name: "200 soft", res: bobResponse(t, "200 OK", "soft", softRR, "Contact: <sip:bob@192.0.2.22>"), tag: "soft", state: Confirmed, ended: []string{"desk"}},
		{name: "200 soft retransmitted", res: bobResponse(t, "200 OK", "soft", softRR, "Contact: <sip:bob@192.0.2.22>"), tag: "soft", state: Confirmed},
		{name: "180 desk after answer", res: bobResponse(t, "180 Ringing", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>")},
		{name: "200 desk", res: bobResponse(t, "200 OK", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>"), tag: "desk", created: true, extra: true, state: Confirmed},
		{name: "200 desk retransmitted", res: bobResponse(t, "200 OK", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>"), tag: "desk", extra: true, state: Confirmed},
		{name: "180 desk after its 200", res: bobResponse(t, "180 Ringing", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>")},
		{name: "180 soft after its 200", res: bobResponse(t, "180 Ringing", "soft", softRR, "Contact: <sip:bob@192.0.2.22>")},
		{name: "180 cell after answer", res: bobResponse(t, "180 Ringing", "cell", "Contact: <sip:bob@192.0.2.23>")},
		{name: "200 cell", res: bobResponse(t, "200 OK", "cell", "Contact: <sip:bob@192.0.2.23>"), tag: "cell", created: true, extra: true, state: Confirmed},
	}
	dialogs := make(map[string]*Dialog)
	for _, s := range steps {
		r, err := f.ReceiveResponse(s.res)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		switch {
		case s.tag == "" && r.Dialog != nil:
			t.Errorf("%s: dialog %v, want none", s.name, r.Dialog)
			continue
		case s.tag == "":
		case r.Dialog == nil:
			t.Errorf("%s: no dialog", s.name)
			continue
		default:
			if got := r.Dialog.ID().RemoteTag; got != s.tag {
				t.Errorf("%s: dialog %q, want %q", s.name, got, s.tag)
			}
			if got := r.Dialog.State(); got != s.state {
				t.Errorf("%s: state %v, want %v", s.name, got, s.state)
			}
			if prev := dialogs[s.tag]; !s.created && prev != r.Dialog {
				t.Errorf("%s: a different dialog for a known fork", s.name)
			}
			dialogs[s.tag] = r.Dialog
		}
		if r.Created != s.created || r.Extra != s.extra {
			t.Errorf("%s: created %v extra %v, want %v %v", s.name, r.Created, r.Extra, s.created, s.extra)
		}
		var ended []string
		for _, d := range r.Ended {
			ended = append(ended, d.ID().RemoteTag)
			if d.State() != Terminated {
				t.Errorf("%s: ended dialog %s is %v", s.name, d.ID().RemoteTag, d.State())
			}
		}
		if !slices.Equal(ended, s.ended) {
			t.Errorf("%s: ended %q, want %q", s.name, ended, s.ended)
		}
	}

	win := f.Confirmed()
	if win == nil || win.ID().RemoteTag != "soft" {
		t.Fatalf("confirmed %v", win)
	}
	// The winner's route set and target come from its own responses.
	if got := uriStrings(win.RouteSet()); !equalStrings(got, []string{"sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr;soft"}) {
		t.Errorf("winner route set %q", got)
	}
	if got := win.RemoteTarget(); got.String() != "sip:bob@192.0.2.22" {
		t.Errorf("winner target %s", got.String())
	}
	var tags []string
	for _, d := range f.Dialogs() {
		tags = append(tags, d.ID().RemoteTag+"/"+d.State().String())
	}
	if want := []string{"desk/terminated", "soft/confirmed", "desk/confirmed", "cell/confirmed"}; !slices.Equal(tags, want) {
		t.Errorf("dialogs %q, want %q", tags, want)
	}

	// The caller acknowledges and hangs up an extra answer (§13.2.2.4).
	extra := dialogs["desk"]
	ack, err := extra.NewAck(4711)
	if err != nil {
		t.Fatal(err)
	}
	if ack.URI.String() != "sip:bob@192.0.2.21" || ack.Get("To") != `"Bob" <sip:bob@biloxi.example.com>;tag=desk` {
		t.Errorf("ACK to %s, To %s", ack.URI.String(), ack.Get("To"))
	}
	bye, err := extra.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	if bye.CSeq().Seq != 4712 || extra.State() != Terminated {
		t.Errorf("BYE CSeq %v, state %v", bye.CSeq(), extra.State())
	}
	// Its 2xx retransmitted after the BYE is still extra, still ACKable.
	r, err := f.ReceiveResponse(bobResponse(t, "200 OK", "desk", deskRR, "Contact: <sip:bob@192.0.2.21>"))
	if err != nil || r.Dialog != extra || !r.Extra {
		t.Errorf("retransmission after BYE: %+v, %v", r, err)
	}
	if _, err := r.Dialog.NewAck(4711); err != nil {
		t.Error(err)
	}
	// The winner is untouched.
	if win.State() != Confirmed {
		t.Errorf("winner state %v", win.State())
	}
}

func TestForksFailure(t *testing.T) {
	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"desk", "soft"} {
		if _, err := f.ReceiveResponse(bobResponse(t, "180 Ringing", tag, "Contact: <sip:bob@192.0.2.21>")); err != nil {
			t.Fatal(err)
		}
	}
	// A final failure ends every early dialog (§13.2.2.3).
	r, err := f.ReceiveResponse(bobResponse(t, "486 Busy Here", "soft"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dialog != nil || len(r.Ended) != 2 {
		t.Fatalf("result %+v", r)
	}
	for _, d := range f.Dialogs() {
		if d.State() != Terminated {
			t.Errorf("%s is %v", d.ID().RemoteTag, d.State())
		}
	}
	if f.Confirmed() != nil {
		t.Error("a failed request has a confirmed dialog")
	}
}

func TestForksTerminate(t *testing.T) {
	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReceiveResponse(bobResponse(t, "180 Ringing", "desk", bobPhone)); err != nil {
		t.Fatal(err)
	}
	// CANCEL sent and the transaction gave up: the early dialog ends.
	ended := f.Terminate()
	if len(ended) != 1 || ended[0].State() != Terminated {
		t.Fatalf("ended %v", ended)
	}
	if again := f.Terminate(); len(again) != 0 {
		t.Errorf("ended twice: %v", again)
	}
	// A provisional response on the ended fork is not tracked…
	r, err := f.ReceiveResponse(bobResponse(t, "180 Ringing", "desk", bobPhone))
	if err != nil || r.Dialog != nil {
		t.Errorf("180 after Terminate: %+v %v", r, err)
	}
	// …but a 2xx that raced the CANCEL makes a confirmed dialog, for the
	// caller to ACK and BYE.
	r, err = f.ReceiveResponse(bobResponse(t, "200 OK", "desk", bobPhone))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dialog == nil || !r.Created || r.Dialog.State() != Confirmed || r.Dialog == ended[0] {
		t.Errorf("200 after Terminate: %+v", r)
	}
	if f.Confirmed() != r.Dialog {
		t.Error("the late 200 is not the confirmed dialog")
	}
}

func TestForksErrors(t *testing.T) {
	_, err := NewForks(carolRequest(t, sip.MethodInfo, "3"))
	wantErr(t, err, ErrNoDialog)

	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	// A response to another request (other CSeq).
	other := parseRes(t, `
SIP/2.0 200 OK
Via: SIP/2.0/TCP gw.atlanta.example.com:5060;branch=z9hG4bKzz
To: Bob <sip:bob@biloxi.example.com>;tag=b1
From: "Alice A." <sip:alice@atlanta.example.com>;tag=a11ce01
Call-ID: 5c3f0e1a9b@gw.atlanta.example.com
CSeq: 4712 INVITE
Contact: <sip:bob@192.0.2.4>
Content-Length: 0
`)
	_, err = f.ReceiveResponse(other)
	wantErr(t, err, ErrMismatch)
	// A malformed 2xx makes no dialog.
	_, err = f.ReceiveResponse(bobResponse(t, "200 OK", "b1", "Contact: <sip:a@192.0.2.4>, <sip:b@192.0.2.5>"))
	wantErr(t, err, ErrMalformed)
	if len(f.Dialogs()) != 0 || f.Confirmed() != nil {
		t.Error("a bad response made a dialog")
	}
}

func TestForksConcurrent(t *testing.T) {
	f, err := NewForks(parseReq(t, aliceInvite))
	if err != nil {
		t.Fatal(err)
	}
	tags := []string{"f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"}
	responses := make([]*sip.Response, len(tags))
	for i, tag := range tags {
		responses[i] = bobResponse(t, "200 OK", tag, bobPhone)
	}
	results := make([]ForkResult, len(tags))
	var wg sync.WaitGroup
	for i := range responses {
		wg.Go(func() {
			var err error
			if results[i], err = f.ReceiveResponse(responses[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	winners := 0
	for _, r := range results {
		if !r.Extra {
			winners++
			if r.Dialog != f.Confirmed() {
				t.Error("the non-extra dialog is not the confirmed one")
			}
		}
	}
	if winners != 1 {
		t.Errorf("%d winners", winners)
	}
}
