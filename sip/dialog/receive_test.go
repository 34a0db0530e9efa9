package dialog

import (
	"testing"

	"github.com/switchboard/switchboard/sip"
)

func TestReceiveRequestCSeq(t *testing.T) {
	d, _ := newUASDialog(t, 200) // remote seq 10, from the INVITE
	tests := []struct {
		method string
		cseq   string
		want   error
		remote uint32
	}{
		{sip.MethodAck, "10", nil, 10},
		{sip.MethodInfo, "11", nil, 11},
		{sip.MethodInfo, "11", nil, 11}, // equal is not lower (§12.2.2)
		{sip.MethodOptions, "15", nil, 15},
		{sip.MethodInfo, "12", ErrCSeqOutOfOrder, 15},
		{sip.MethodUpdate, "9", ErrCSeqOutOfOrder, 15},
		// ACK and CANCEL carry their INVITE's number: not checked.
		{sip.MethodAck, "10", nil, 15},
		{sip.MethodInfo, "4000000000", nil, 4000000000},
		{sip.MethodInfo, "16", ErrCSeqOutOfOrder, 4000000000},
	}
	for i, tt := range tests {
		err := d.ReceiveRequest(carolRequest(t, tt.method, tt.cseq))
		if tt.want == nil && err != nil || tt.want != nil && !errorsIs(err, tt.want) {
			t.Errorf("%d: %s %s: error %v, want %v", i, tt.method, tt.cseq, err, tt.want)
		}
		if seq, ok := d.RemoteSeq(); !ok || seq != tt.remote {
			t.Errorf("%d: remote seq %d, %v; want %d", i, seq, ok, tt.remote)
		}
	}
	if d.State() != Confirmed {
		t.Errorf("state %v", d.State())
	}
}

func TestReceiveRequestUnsetRemoteSeq(t *testing.T) {
	// At the UAC the remote seq is unset until the callee's first request:
	// any number is accepted, then it orders the rest.
	d := newUACDialog(t)
	bobInfo := func(cseq string) *sip.Request {
		return parseReq(t, "INFO sip:alice@gw.atlanta.example.com;transport=tcp SIP/2.0\n"+
			"Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKb"+cseq+"\n"+
			"Max-Forwards: 70\n"+
			"From: Bob <sip:bob@biloxi.example.com>;tag=b0b77\n"+
			"To: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=a11ce01\n"+
			"Call-ID: 5c3f0e1a9b@gw.atlanta.example.com\n"+
			"CSeq: "+cseq+" INFO\n"+
			"Content-Length: 0\n")
	}
	if err := d.ReceiveRequest(bobInfo("3")); err != nil {
		t.Fatal(err)
	}
	if seq, ok := d.RemoteSeq(); !ok || seq != 3 {
		t.Errorf("remote seq %d, %v", seq, ok)
	}
	wantErr(t, d.ReceiveRequest(bobInfo("2")), ErrCSeqOutOfOrder)
}

func TestReceiveRequestErrors(t *testing.T) {
	d, _ := newUASDialog(t, 200)
	other := parseReq(t, `
INFO sip:gw@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP phone.example.net:5070;branch=z9hG4bKx1
Max-Forwards: 70
To: <sip:gw@switchboard.example.org>;tag=9w7
From: Carol <sip:carol@example.net>;tag=someone-else
Call-ID: 77aa-31@phone.example.net
CSeq: 20 INFO
Content-Length: 0
`)
	wantErr(t, d.ReceiveRequest(other), ErrMismatch)
	// A re-INVITE whose Contact is a list is refused, and changes nothing.
	bad := carolRequest(t, sip.MethodInvite, "12", "Contact: <sip:carol@192.0.2.50>, <sip:carol@192.0.2.51>")
	wantErr(t, d.ReceiveRequest(bad), ErrMalformed)
	if seq, _ := d.RemoteSeq(); seq != 10 {
		t.Errorf("remote seq %d after a refused request", seq)
	}
	if got := d.RemoteTarget(); got.String() != "sip:carol@phone.example.net:5070" {
		t.Errorf("target %s after a refused request", got.String())
	}

	// A re-INVITE in an early dialog (§14.2: 500).
	early, _ := newUASDialog(t, 180)
	wantErr(t, early.ReceiveRequest(carolRequest(t, sip.MethodInvite, "11", "Contact: <sip:carol@192.0.2.50>")), ErrNotConfirmed)
	// UPDATE and PRACK are fine there.
	for _, r := range []struct{ method, cseq string }{{sip.MethodPrack, "11"}, {sip.MethodUpdate, "12"}} {
		if err := early.ReceiveRequest(carolRequest(t, r.method, r.cseq)); err != nil {
			t.Errorf("%s in early dialog: %v", r.method, err)
		}
	}
}

func TestTargetRefreshReceived(t *testing.T) {
	tests := []struct {
		method  string
		contact string
		target  string
	}{
		{sip.MethodInvite, "Contact: <sip:carol@192.0.2.50:5070>", "sip:carol@192.0.2.50:5070"},
		{sip.MethodUpdate, "Contact: <sip:carol@192.0.2.51>", "sip:carol@192.0.2.51"},
		{sip.MethodNotify, "Contact: <sip:carol@192.0.2.53>", "sip:carol@192.0.2.53"},
		// Not target refresh requests: the Contact is ignored.
		{sip.MethodInfo, "Contact: <sip:carol@192.0.2.52>", "sip:carol@phone.example.net:5070"},
		{sip.MethodMessage, "Contact: <sip:carol@192.0.2.52>", "sip:carol@phone.example.net:5070"},
		// A target refresh without Contact keeps the target.
		{sip.MethodInvite, "", "sip:carol@phone.example.net:5070"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.contact, func(t *testing.T) {
			d, _ := newUASDialog(t, 200)
			routes := uriStrings(d.RouteSet())
			var extra []string
			if tt.contact != "" {
				extra = append(extra, tt.contact)
			}
			// A target refresh may carry Record-Route: the route set
			// stays as it is (§12.2).
			extra = append(extra, "Record-Route: <sip:p9.example.com;lr>")
			if err := d.ReceiveRequest(carolRequest(t, tt.method, "11", extra...)); err != nil {
				t.Fatal(err)
			}
			if got := d.RemoteTarget(); got.String() != tt.target {
				t.Errorf("target %s, want %s", got.String(), tt.target)
			}
			if got := uriStrings(d.RouteSet()); !equalStrings(got, routes) {
				t.Errorf("route set changed to %q", got)
			}
			// The next request goes to the new target.
			req, err := d.NewRequest(sip.MethodInfo)
			if err != nil {
				t.Fatal(err)
			}
			if req.URI.String() != tt.target {
				t.Errorf("next request to %s", req.URI.String())
			}
		})
	}
}

func TestTargetRefreshSent(t *testing.T) {
	// bobAnswer is Bob's response to a request Alice sent in the dialog.
	bobAnswer := func(req *sip.Request, code int, contact string) *sip.Response {
		v := reparse(t, req)
		res := sip.NewResponse(v, code, "")
		if contact != "" {
			res.Add("Contact", contact)
		}
		res.Add("Record-Route", "<sip:p9.example.com;lr>")
		return parseRes(t, res.String())
	}
	tests := []struct {
		method  string
		code    int
		contact string
		target  string
		state   State
	}{
		{sip.MethodInvite, 200, "<sip:bob@192.0.2.60>", "sip:bob@192.0.2.60", Confirmed},
		{sip.MethodUpdate, 200, "<sip:bob@192.0.2.61>", "sip:bob@192.0.2.61", Confirmed},
		{sip.MethodInvite, 200, "", "sip:bob@192.0.2.4", Confirmed},
		// Only 2xx responses to target refresh requests refresh.
		{sip.MethodInvite, 491, "<sip:bob@192.0.2.62>", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodInvite, 183, "<sip:bob@192.0.2.62>", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodInfo, 200, "<sip:bob@192.0.2.63>", "sip:bob@192.0.2.4", Confirmed},
		// 481 and 408 end the dialog (§12.2.1.2).
		{sip.MethodInfo, 481, "", "sip:bob@192.0.2.4", Terminated},
		{sip.MethodInvite, 408, "", "sip:bob@192.0.2.4", Terminated},
		{sip.MethodBye, 481, "", "sip:bob@192.0.2.4", Terminated},
		// A 481 or 408 to a request of a subscription usage ends only
		// that usage (RFC 5057 §5): the call and its dialog go
		// on.
		{sip.MethodNotify, 481, "", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodSubscribe, 481, "", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodRefer, 481, "", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodNotify, 408, "", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodSubscribe, 408, "", "sip:bob@192.0.2.4", Confirmed},
		{sip.MethodRefer, 408, "", "sip:bob@192.0.2.4", Confirmed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+sip.StatusText(tt.code), func(t *testing.T) {
			d := newUACDialog(t)
			routes := uriStrings(d.RouteSet())
			req, err := d.NewRequest(tt.method)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.ReceiveResponse(bobAnswer(req, tt.code, tt.contact)); err != nil {
				t.Fatal(err)
			}
			if got := d.RemoteTarget(); got.String() != tt.target {
				t.Errorf("target %s, want %s", got.String(), tt.target)
			}
			if got := uriStrings(d.RouteSet()); !equalStrings(got, routes) {
				t.Errorf("route set changed to %q", got)
			}
			if d.State() != tt.state {
				t.Errorf("state %v, want %v", d.State(), tt.state)
			}
		})
	}

	// The call goes on after a 481 or 408 to a NOTIFY (a transfer's
	// progress report the transferee's side no longer takes): the next
	// requests are built, the BYE ends it.
	for _, code := range []int{481, 408} {
		d := newUACDialog(t)
		notify, err := d.NewRequest(sip.MethodNotify)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ReceiveResponse(bobAnswer(notify, code, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := d.NewRequest(sip.MethodInfo); err != nil {
			t.Errorf("a request after a %d to a NOTIFY: %v", code, err)
		}
		if _, err := d.NewRequest(sip.MethodBye); err != nil || d.State() != Terminated {
			t.Errorf("BYE after a %d to a NOTIFY: %v, state %v", code, err, d.State())
		}
	}

	// A bad Contact in a 2xx to a re-INVITE is an error and changes nothing.
	d := newUACDialog(t)
	req, err := d.NewRequest(sip.MethodInvite)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, d.ReceiveResponse(bobAnswer(req, 200, "*")), ErrMalformed)
	if got := d.RemoteTarget(); got.String() != "sip:bob@192.0.2.4" {
		t.Errorf("target %s after a bad response", got.String())
	}
	// 100 Trying is ignored, a response of another dialog refused.
	trying := bobAnswer(req, 100, "")
	if err := d.ReceiveResponse(trying); err != nil {
		t.Error(err)
	}
	other := bobAnswer(req, 200, "")
	other.Set("To", "<sip:bob@biloxi.example.com>;tag=zzz")
	wantErr(t, d.ReceiveResponse(other), ErrMismatch)
}

func TestSendResponse(t *testing.T) {
	d, _ := newUASDialog(t, 200)
	// Carol re-INVITEs; the gateway answers with a new Contact, which is
	// its local Contact from then on.
	reinvite := carolRequest(t, sip.MethodInvite, "11", "Contact: <sip:carol@phone.example.net:5070>")
	if err := d.ReceiveRequest(reinvite); err != nil {
		t.Fatal(err)
	}
	ok := sip.NewResponse(reinvite, 200, "")
	ok.Add("Contact", "<sip:gw@198.51.100.8:5060>")
	if err := d.SendResponse(ok); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.LocalContact(); c.URI.String() != "sip:gw@198.51.100.8:5060" {
		t.Errorf("local contact %s", c.URI.String())
	}
	upd, err := d.NewRequest(sip.MethodUpdate)
	if err != nil {
		t.Fatal(err)
	}
	if got := upd.Get("Contact"); got != "<sip:gw@198.51.100.8:5060>" {
		t.Errorf("UPDATE Contact %q", got)
	}
	// A 2xx to INFO does not change the local Contact.
	info := carolRequest(t, sip.MethodInfo, "12")
	okInfo := sip.NewResponse(info, 200, "")
	okInfo.Add("Contact", "<sip:gw@198.51.100.9>")
	if err := d.SendResponse(okInfo); err != nil {
		t.Fatal(err)
	}
	if c, _ := d.LocalContact(); c.URI.String() != "sip:gw@198.51.100.8:5060" {
		t.Errorf("local contact %s after INFO", c.URI.String())
	}
	// Mismatched and 100 responses.
	trying := sip.NewResponse(parseReq(t, carolInvite), 100, "")
	if err := d.SendResponse(trying); err != nil {
		t.Error(err)
	}
	stray := sip.NewResponse(parseReq(t, carolInvite), 200, "")
	stray.SetToTag("not-mine")
	wantErr(t, d.SendResponse(stray), ErrMismatch)
}

func TestBye(t *testing.T) {
	d, _ := newUASDialog(t, 200)
	bye := carolRequest(t, sip.MethodBye, "11")
	if err := d.ReceiveRequest(bye); err != nil {
		t.Fatal(err)
	}
	if d.State() != Terminated {
		t.Fatalf("state after BYE %v", d.State())
	}
	// The 200 to the BYE is accepted; anything further is not.
	if err := d.SendResponse(sip.NewResponse(bye, 200, "")); err != nil {
		t.Error(err)
	}
	wantErr(t, d.ReceiveRequest(carolRequest(t, sip.MethodInfo, "12")), ErrTerminated)
	_, err := d.NewRequest(sip.MethodInfo)
	wantErr(t, err, ErrTerminated)
	wantErr(t, d.ReceiveResponse(sip.NewResponse(bye, 200, "")), ErrMismatch) // a response the UAS never asked for

	// A BYE from the caller ends an early dialog too.
	early, _ := newUASDialog(t, 180)
	if err := early.ReceiveRequest(carolRequest(t, sip.MethodBye, "11")); err != nil {
		t.Fatal(err)
	}
	if early.State() != Terminated {
		t.Errorf("early dialog state after BYE %v", early.State())
	}

	// Terminate ends a dialog outright.
	u := newUACDialog(t)
	u.Terminate()
	if u.State() != Terminated {
		t.Errorf("state after Terminate %v", u.State())
	}
}

// A dialog that a SUBSCRIBE created has no usage but its subscription: a
// 481 to a refresh ends it.
func TestSubscriptionDialog481(t *testing.T) {
	req, res := parseReq(t, aliceSubscribe), parseRes(t, subResponse("200 OK", "n1"))
	d, err := NewUAC(req, res)
	if err != nil {
		t.Fatal(err)
	}
	refresh, err := d.NewRequest(sip.MethodSubscribe)
	if err != nil {
		t.Fatal(err)
	}
	gone := sip.NewResponse(reparse(t, refresh), 481, "")
	if err := d.ReceiveResponse(parseRes(t, gone.String())); err != nil {
		t.Fatal(err)
	}
	if d.State() != Terminated {
		t.Errorf("state %v after a 481 to the refresh, want terminated", d.State())
	}
}
