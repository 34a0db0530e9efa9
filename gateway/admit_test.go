package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// Under overload the gateway answers new work from the source that holds
// the load with 503 and Retry-After at once, before any transaction, and
// lets through what completes work begun: the answer to a challenge and a
// request within a dialog. OverloadDelay of 1 ns makes every handler's
// wait for a CPU count as overload, so the layer is overloaded from the
// second request on, as long as requests keep coming (a mean that no
// handler refreshed for 100 ms says nothing, hence the retries).
func TestOverloadSheds(t *testing.T) {
	st := newStack(t, func(c *gateway.Config) { c.Transaction.OverloadDelay = time.Nanosecond })
	p := st.dial(t)
	register := func(auth string) *sip.Response {
		return p.registerOnce("sip:alice@phone.invalid;transport=tcp", 600, auth)
	}

	var shed *sip.Response
	var challenge string
	for i := 0; i < 50 && shed == nil; i++ {
		switch res := register(""); res.StatusCode {
		case 503:
			shed = res
		case 401:
			challenge = res.Get("WWW-Authenticate")
		default:
			t.Fatalf("REGISTER without credentials: %d", res.StatusCode)
		}
	}
	if shed == nil {
		t.Fatal("50 new REGISTERs in a row under overload, none refused with 503")
	}
	if shed.Get("Retry-After") != "5" {
		t.Errorf("503 with Retry-After %q, want 5", shed.Get("Retry-After"))
	}
	if n := st.gw.Shed(); n == 0 {
		t.Error("Shed() = 0 after a 503 for overload")
	}
	if challenge == "" {
		t.Fatal("no challenge before the overload")
	}

	// The answer to the challenge completes work begun: it goes on.
	ch, err := digest.ParseChallenge(challenge)
	if err != nil {
		t.Fatal(err)
	}
	cl := digest.Client{Username: "alice", Password: "alice-secret"}
	cr, err := cl.Authorize(ch, sip.MethodRegister, "sip:"+domain)
	if err != nil {
		t.Fatal(err)
	}
	if res := register("Authorization: " + cr.String() + "\r\n"); res.StatusCode != 200 {
		t.Fatalf("REGISTER with credentials under overload: %d, want 200", res.StatusCode)
	}
	st.registered(t, 1)

	// A request within a dialog (a To tag) is never shed.
	p.send(fmt.Sprintf("BYE sip:alice@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP phone.invalid;branch=%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@%s>;tag=ph1\r\n"+
		"To: <sip:bob@%s>;tag=gone\r\n"+
		"Call-ID: no-such-dialog\r\n"+
		"CSeq: 1 BYE\r\n"+
		"Content-Length: 0\r\n\r\n", domain, sip.NewBranch(), domain, domain))
	if res := p.response(); res.StatusCode == 503 {
		t.Errorf("in-dialog BYE refused with 503 under overload")
	}
}
