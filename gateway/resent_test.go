package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// An INVITE with credentials sent again after its server transaction
// ended (under overload the full table ends answered ones early; over TCP
// the ACK of a failure ends it at once, as here) is the same request: it
// gets the same answer, not a 407 that calls its own first copy a replay.
// The credentials still serve no other request: with another branch,
// Call-ID or CSeq, or with the same ones and another Contact, they are a
// replay (407, stale=true).
func TestResentCredentialsAreNoReplay(t *testing.T) {
	st := newStack(t)
	p := st.dial(t)
	invite := func(branch, callID string, cseq int, auth string) string {
		return fmt.Sprintf("INVITE sip:alice@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/TCP phone.invalid;branch=%s\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:alice@%s>;tag=ph1\r\n"+
			"To: <sip:alice@%s>\r\n"+
			"Call-ID: %s\r\n"+
			"CSeq: %d INVITE\r\n"+
			"Contact: <sip:alice@phone.invalid;transport=tcp>\r\n%s"+
			"Content-Length: 0\r\n\r\n", domain, branch, domain, domain, callID, cseq, auth)
	}
	ack := func(branch, callID string, cseq int, res *sip.Response) {
		p.send(fmt.Sprintf("ACK sip:alice@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/TCP phone.invalid;branch=%s\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:alice@%s>;tag=ph1\r\n"+
			"To: %s\r\n"+
			"Call-ID: %s\r\n"+
			"CSeq: %d ACK\r\n"+
			"Content-Length: 0\r\n\r\n", domain, branch, domain, res.Get("To"), callID, cseq))
	}

	b1 := sip.NewBranch()
	p.send(invite(b1, "resent-1", 1, ""))
	res := p.response()
	if res.StatusCode != 407 {
		t.Fatalf("INVITE without credentials: %d, want 407", res.StatusCode)
	}
	ack(b1, "resent-1", 1, res)
	auth := "Proxy-Authorization: " + answer(t, res.Get("Proxy-Authenticate"), "alice-secret", sip.MethodInvite, "sip:alice@"+domain) + "\r\n"

	// alice is not registered: an authenticated caller learns 480.
	b2 := sip.NewBranch()
	withAuth := invite(b2, "resent-1", 2, auth)
	p.send(withAuth)
	first := p.response()
	if first.StatusCode != 480 {
		t.Fatalf("INVITE with credentials: %d, want 480", first.StatusCode)
	}
	// The ACK ends the transaction (Timer I is 0 over TCP); the copy that
	// follows it on the connection starts a new one.
	ack(b2, "resent-1", 2, first)
	p.send(withAuth)
	if again := p.response(); again.StatusCode != 480 {
		t.Errorf("the same INVITE sent again: %d %s (%s), want 480", again.StatusCode, again.Reason, again.Get("Proxy-Authenticate"))
	} else {
		ack(b2, "resent-1", 2, again)
	}

	// The same transaction altered is not the same request: a Contact
	// of someone else's choosing does not ride on the caller's proof.
	altered := strings.Replace(withAuth, "<sip:alice@phone.invalid;transport=tcp>", "<sip:alice@elsewhere.invalid;transport=tcp>", 1)
	if altered == withAuth {
		t.Fatal("the test's INVITE has no Contact to alter")
	}
	p.send(altered)
	if res := p.response(); res.StatusCode != 407 || !strings.Contains(res.Get("Proxy-Authenticate"), "stale=true") {
		t.Errorf("the same INVITE with another Contact: %d (%s), want 407 stale=true", res.StatusCode, res.Get("Proxy-Authenticate"))
	} else {
		ack(b2, "resent-1", 2, res)
	}

	replays := []struct {
		name   string
		branch string
		callID string
		cseq   int
	}{
		{"another branch", sip.NewBranch(), "resent-1", 2},
		{"another call", b2, "resent-2", 2},
		{"another cseq", b2, "resent-1", 3},
	}
	for _, r := range replays {
		p.send(invite(r.branch, r.callID, r.cseq, auth))
		res := p.response()
		if res.StatusCode != 407 || !strings.Contains(res.Get("Proxy-Authenticate"), "stale=true") {
			t.Errorf("credentials replayed in %s: %d (%s), want 407 stale=true", r.name, res.StatusCode, res.Get("Proxy-Authenticate"))
		}
		ack(r.branch, r.callID, r.cseq, res)
	}
}
