package e2e

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// TestDrain is issue #6's graceful stop, on the real binary: SIGTERM with
// a bridged call up makes the gateway unready and refuse new calls with
// 503, while the call goes on.
//   - "calls end": the browser hangs up within the grace period, and the
//     gateway exits 0 at once, long before the period is over.
//   - "grace over": nobody hangs up; when the grace period ends the
//     gateway sends BYE to both legs and exits 0.
//   - "second signal": a second SIGTERM ends a long drain at once, with
//     the same BYEs.
func TestDrain(t *testing.T) {
	t.Run("calls end", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": "5m"}})
		c := browserCallsPhone(t, g)
		caller := newE2EPhone(t, g)
		caller.register("1001")
		terminate(t, g)
		refusesCalls(t, g, caller)

		bye, err := c.brDlg.NewRequest(sip.MethodBye)
		if err != nil {
			t.Fatal(err)
		}
		byeRes := make(chan *sip.Response, 1)
		go func() { byeRes <- c.br.transact(bye) }()
		pbye := c.ph.expectRequest(sip.MethodBye)
		c.ph.respond(sip.NewResponse(pbye, 200, ""))
		awaitBye(t, byeRes)
		awaitExit(t, g, stopTimeout)
	})
	for name, ending := range map[string]struct {
		grace  string
		signal bool // a second SIGTERM ends the drain, not the grace period
	}{
		"grace over":    {grace: "1s"},
		"second signal": {grace: "5m", signal: true},
	} {
		t.Run(name, func(t *testing.T) { drainEnds(t, ending.grace, ending.signal) })
	}
}

// drainEnds: when the drain ends with a call still up, by its grace
// period or by a second signal, the gateway ends the call with BYE on
// both legs and exits 0.
func drainEnds(t *testing.T, grace string, secondSignal bool) {
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": grace}})
	c := browserCallsPhone(t, g)
	terminate(t, g)
	if secondSignal {
		if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("second SIGTERM: %v", err)
		}
	}
	pbye := c.ph.expectRequest(sip.MethodBye)
	if err := c.phDlg.ReceiveRequest(pbye); err != nil {
		t.Errorf("the phone's BYE is not in its dialog: %v", err)
	}
	c.ph.respond(sip.NewResponse(pbye, 200, ""))
	bbye := c.br.awaitRequest(sip.MethodBye)
	if err := c.brDlg.ReceiveRequest(bbye); err != nil {
		t.Errorf("the browser's BYE is not in its dialog: %v", err)
	}
	c.br.sendResponse(sip.NewResponse(bbye, 200, ""))
	awaitExit(t, g, stopTimeout)
}

// terminate sends SIGTERM and waits until /readyz says 503: the drain has
// begun. The cleanup then waits for the exit and checks it.
func terminate(t *testing.T, g *gateway) {
	t.Helper()
	g.terminated = true
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	url := "http://" + g.host + ":" + strconv.Itoa(g.httpPort) + "/readyz"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not turn 503 within %v of SIGTERM (last: %v)", readyTimeout, err)
		}
		select {
		case <-g.exited:
			t.Fatalf("the gateway exited during the drain: %v", g.err)
		case <-time.After(10 * time.Millisecond): // poll interval, bounded by the deadline
		}
	}
}

// refusesCalls checks that a new call gets 503 with a Retry-After.
func refusesCalls(t *testing.T, g *gateway, caller *e2ePhone) {
	t.Helper()
	ruri := "sip:alice@" + domain
	req := mustParseRequest(t, "INVITE "+ruri+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+caller.sipAddr()+";branch="+sip.NewBranch()+";rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:1001@"+domain+">;tag="+sip.NewTag()+"\r\n"+
		"To: <"+ruri+">\r\n"+
		"Call-ID: "+sip.NewCallID()+"\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:1001@"+caller.sipAddr()+">\r\n"+
		"Content-Length: 0\r\n\r\n")
	res := caller.transact(req)
	if res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Errorf("a new call while draining: %d %s, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Reason, res.Get("Retry-After"))
	}
}

// awaitExit waits for the gateway to exit; the cleanup checks its status.
func awaitExit(t *testing.T, g *gateway, within time.Duration) {
	t.Helper()
	select {
	case <-g.exited:
	case <-time.After(within):
		t.Fatalf("the gateway still runs %v after the calls ended", within)
	}
}
