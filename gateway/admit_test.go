package gateway_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway"
	"github.com/switchboard/switchboard/sip"
)

// Under overload the gateway answers new work from the source that holds
// the load with 503 and Retry-After at once, before any transaction, and
// lets through what completes work begun: the answer to a challenge and a
// request within a dialog. The overload is the test's: a queue wait
// (Transaction.QueueDelay) of three hours against a limit of one, with
// a backlog (Transaction.QueueLen) of a thousand requests.
func TestOverloadSheds(t *testing.T) {
	var queue atomic.Int64
	st := newStack(t, func(c *gateway.Config) {
		c.Transaction.OverloadDelay = time.Hour
		c.Transaction.QueueDelay = func() time.Duration { return time.Duration(queue.Load()) }
		c.Transaction.QueueLen = func() int { return 1000 }
	})
	p := st.dial(t)
	register := func(auth string) *sip.Response {
		return p.registerOnce("sip:alice@phone.invalid;transport=tcp", 600, auth)
	}

	res := register("")
	if res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials, no overload: %d, want 401", res.StatusCode)
	}
	challenge := res.Get("WWW-Authenticate")

	queue.Store(int64(3 * time.Hour))
	shed := register("")
	if shed.StatusCode != 503 || shed.Get("Retry-After") != "5" {
		t.Fatalf("new REGISTER under overload: %d with Retry-After %q, want 503 with 5", shed.StatusCode, shed.Get("Retry-After"))
	}
	if n := st.gw.Shed(); n != 1 {
		t.Errorf("Shed() = %d after one 503 for overload", n)
	}

	// The answer to the challenge completes work begun: it goes on.
	if res := register("Authorization: " + answer(t, challenge, "alice-secret", sip.MethodRegister, "sip:"+domain) + "\r\n"); res.StatusCode != 200 {
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

	// Once the queue is empty, new work is served again.
	queue.Store(0)
	if res := register(""); res.StatusCode != 401 {
		t.Errorf("REGISTER without credentials after the overload: %d, want 401", res.StatusCode)
	}
}
