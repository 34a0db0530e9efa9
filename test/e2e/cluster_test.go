package e2e

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
)

// Cluster mode (issue 13): gateways that share one location service on a
// real redis-server, each a process of the real binary on loopback.

// clusterWait bounds the waits for what a heartbeat tells: an instance
// gone (its key lives 5 s), Redis gone or back (a beat a second).
const clusterWait = 20 * time.Second

// testCluster is a redis-server and the gateways that share it.
type testCluster struct {
	redis *redistest.Server
	gws   []*gateway
}

// startCluster starts a redis-server and n gateways on it; env adds
// settings to every gateway.
func startCluster(t *testing.T, n int, env map[string]string) *testCluster {
	t.Helper()
	c := &testCluster{redis: redistest.Start(t)}
	for range n {
		e := map[string]string{"SWITCHBOARD_REDIS_URL": c.redis.URL()}
		for k, v := range env {
			e[k] = v
		}
		c.gws = append(c.gws, startGateway(t, gatewayOptions{env: e}))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- redis-server log ---\n%s", c.redis.Log())
		}
	})
	return c
}

// httpAddr is the gateway's HTTP address, host:port.
func (g *gateway) httpAddr() string { return net.JoinHostPort(g.host, strconv.Itoa(g.httpPort)) }

// waitMetric waits, polling /metrics until a deadline, until the metric
// has the value want.
func (g *gateway) waitMetric(t *testing.T, name string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := g.metric(t, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after %v, want %v", name, got, within, want)
		}
		time.Sleep(100 * time.Millisecond) // polling /metrics, with a deadline
	}
}

// answeredCalls is how many bridged calls the gateway runs: where the
// B2BUA of a call is.
func (g *gateway) answeredCalls(t *testing.T) float64 {
	return g.metric(t, `switchboard_calls_active{state="answered"}`)
}

// newClusterBrowser connects a browser to g under a .invalid host of its
// own, so that two browsers of one user are two bindings, and registers
// it as user.
func newClusterBrowser(t *testing.T, g *gateway, user, host string) *e2eBrowser {
	t.Helper()
	br := newE2EBrowser(t, g.httpAddr())
	br.host = host + ".invalid"
	br.register(user)
	return br
}

// answerBridged answers, in the browser, the B2BUA's INVITE with a
// WebRTC answer, and returns the browser's dialog.
func answerBridged(t *testing.T, br *e2eBrowser, user string) *dialog.Dialog {
	t.Helper()
	bin := br.awaitRequest(sip.MethodInvite)
	if !bytes.Contains(bin.Body, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("the browser's INVITE has no WebRTC offer:\n%s", bin)
	}
	ok := sip.NewResponse(bin, 200, "")
	ok.SetToTag(sip.NewTag())
	ok.Add("Contact", "<sip:"+user+"@"+br.host+";transport=ws>")
	ok.CopyFrom(&bin.Headers, "Record-Route")
	ok.SetBody(br.Answer(bin.Body), "application/sdp")
	d, err := dialog.NewUAS(bin, ok)
	if err != nil {
		t.Fatal(err)
	}
	br.sendResponse(ok)
	br.awaitRequest(sip.MethodAck)
	return d
}

// phoneCallsBrowser has the phone call user through its gateway and the
// browser answer; it returns the phone's dialog once it has sent the ACK.
func phoneCallsBrowser(t *testing.T, ph *e2ePhone, from string, br *e2eBrowser, user string) (phDlg, brDlg *dialog.Dialog) {
	t.Helper()
	inv := ph.call(from, user, ph.sdp(1, ""))
	brDlg = answerBridged(t, br, user)
	return ph.acceptAnswer(inv), brDlg
}

// acceptAnswer waits for the 200 to the phone's INVITE inv (any final
// failure fails the test), learns its SDP, sends the ACK and returns the
// phone's dialog.
func (p *e2ePhone) acceptAnswer(inv *sip.Request) *dialog.Dialog {
	t := p.t
	t.Helper()
	var answer *sip.Response
	p.awaitResponses(inv.CSeq(), func(res *sip.Response) bool {
		if res.StatusCode >= 300 {
			t.Fatalf("caller: %d %s, want 200", res.StatusCode, res.Reason)
		}
		answer = res
		return res.IsSuccess()
	})
	if err := p.Learn(answer.Body); err != nil {
		t.Fatalf("caller: %v\n%s", err, answer.Body)
	}
	d, err := dialog.NewUAC(inv, answer)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := d.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	p.send(ack)
	return d
}

// browserCallsPhoneOn has the browser (alice) call the phone's user and
// the phone answer; it returns both dialogs.
func browserCallsPhoneOn(t *testing.T, br *e2eBrowser, ph *e2ePhone, user string) (brDlg, phDlg *dialog.Dialog) {
	t.Helper()
	type result struct {
		req *sip.Request
		res *sip.Response
		err error
	}
	done := make(chan result, 1)
	offer := br.Offer()
	go func() {
		req, res, err := br.invite(user, offer)
		done <- result{req, res, err}
	}()
	inv := ph.expectRequest(sip.MethodInvite)
	if !bytes.Contains(inv.Body, []byte("RTP/AVP")) {
		t.Fatalf("the phone's INVITE has no RTP/AVP offer:\n%s", inv)
	}
	phDlg = ph.answer(inv, user)
	var r result
	select {
	case r = <-done:
	case <-time.After(webrtcWait):
		t.Fatal("the browser got no final answer to its INVITE")
	}
	if r.err != nil {
		t.Fatalf("browser INVITE: %v", r.err)
	}
	brDlg, err := dialog.NewUAC(r.req, r.res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := brDlg.NewAck(r.req.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	br.send(ack)
	br.SetAnswer(r.res.Body)
	ph.expectRequest(sip.MethodAck)
	return brDlg, phDlg
}

// hangUpFromBrowser sends the browser's BYE and has the phone answer it.
func hangUpFromBrowser(t *testing.T, br *e2eBrowser, brDlg *dialog.Dialog, ph *e2ePhone) {
	t.Helper()
	bye, err := brDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- br.transact(bye) }()
	pbye := ph.expectRequest(sip.MethodBye)
	ph.respond(sip.NewResponse(pbye, 200, ""))
	awaitBye(t, byeRes)
}

// TestClusterRegistrations: registrations spread over three instances;
// each instance knows them all, a REGISTER challenged by one is answered
// to another, and a MESSAGE or SUBSCRIBE that reaches one instance goes
// to the browser connected to another.
func TestClusterRegistrations(t *testing.T) {
	c := startCluster(t, 3, nil)
	g1, g2, g3 := c.gws[0], c.gws[1], c.gws[2]

	// A phone challenged by g1 answers to g2: the nonce verifies there.
	ph := newE2EPhone(t, g1)
	ph.registerAs("1000", "<sip:1000@"+ph.sipAddr()+">", g2)
	bob := newSigPeer(t, g2, sip.WS, "bob", domain, "")
	bob.register()
	alice := newClusterBrowser(t, g3, "alice", "alice3")
	_ = alice

	// g3 lists the phone's contact, which g2 stored.
	q := newSigPeer(t, g3, sip.UDP, "1000", domain, "")
	res := q.registerWith(func(r *sip.Request) { r.Del("Contact") })
	if res.StatusCode != 200 || !strings.Contains(res.Get("Contact"), ph.sipAddr()) {
		t.Errorf("a query at g3 lists %q (%d), want the phone's contact stored through g2", res.Values("Contact"), res.StatusCode)
	}
	for name, want := range map[*gateway][]string{
		g1: {"ws", "0", "udp", "0"},
		g2: {"ws", "1", "udp", "1"},
		g3: {"ws", "1", "udp", "0"},
	} {
		for i := 0; i < len(want); i += 2 {
			w, _ := strconv.ParseFloat(want[i+1], 64)
			name.waitMetric(t, `switchboard_registrations{transport="`+want[i]+`"}`, w, clusterWait)
		}
	}
	for _, g := range c.gws {
		g.waitMetric(t, "switchboard_cluster_peers", 2, clusterWait)
		if v := g.metric(t, "switchboard_cluster_redis_up"); v != 1 {
			t.Errorf("switchboard_cluster_redis_up %v, want 1", v)
		}
	}

	// A stranger's MESSAGE and SUBSCRIBE to bob reach g1 and go to g2.
	stranger := newSigPeer(t, g1, sip.UDP, "carol", "elsewhere.example", "")
	for _, method := range []string{sip.MethodMessage, sip.MethodSubscribe} {
		req := stranger.request(method, "sip:bob@"+domain)
		if method == sip.MethodSubscribe {
			req.Add("Event", "presence")
			req.Add("Expires", "60")
		}
		res := stranger.transact(req)
		if res.StatusCode != 200 {
			t.Fatalf("%s to bob through g1: %d %s", method, res.StatusCode, res.Reason)
		}
		got := bob.expectRequest(method)
		if got.CallID() != req.CallID() {
			t.Errorf("bob got another %s", method)
		}
		if method == sip.MethodSubscribe {
			// Both instances record-route the dialog it makes.
			rrs, _ := res.RecordRoutes()
			if len(rrs) != 2 {
				t.Errorf("the SUBSCRIBE's 200 has %d Record-Routes, want one per instance: %v", len(rrs), res.Values("Record-Route"))
			}
		}
	}
}

// TestClusterCalls: browser⇄phone calls whose two ends are on different
// instances, with audio both ways. The instance that holds the browser's
// connection runs the B2BUA and relays the media:
//   - a phone on g1 calls a browser on g2: g1 sends the call to g2, which
//     bridges it;
//   - a browser on g3 calls a phone that registered at g1 from behind NAT
//     (reachable only from g1's socket): g3 bridges it and routes its leg
//     through g1;
//   - a phone calls bob, who has browsers on g2 and g3 and a phone on g1:
//     every one rings, the browser on g3 answers, the others are canceled.
func TestClusterCalls(t *testing.T) {
	c := startCluster(t, 3, nil)
	g1, g2, g3 := c.gws[0], c.gws[1], c.gws[2]

	t.Run("phone on g1 to browser on g2", func(t *testing.T) {
		bob := newClusterBrowser(t, g2, "bob", "bob2")
		ph := newE2EPhone(t, g1)
		ph.register("1000")
		phDlg, brDlg := phoneCallsBrowser(t, ph, "1000", bob, "bob")
		expectAudio(t, ph, bob)
		if g2.answeredCalls(t) != 1 || g1.answeredCalls(t) != 0 {
			t.Errorf("bridged calls: g1 %v, g2 %v; want the browser's instance, g2", g1.answeredCalls(t), g2.answeredCalls(t))
		}
		// The phone hangs up, through g1 and g2: the BYE, like the ACK
		// before it, costs no round trip to Redis.
		trips := func() float64 {
			return g1.metric(t, "switchboard_cluster_redis_calls_total") + g2.metric(t, "switchboard_cluster_redis_calls_total")
		}
		before := trips()
		bye, err := phDlg.NewRequest(sip.MethodBye)
		if err != nil {
			t.Fatal(err)
		}
		byeRes := make(chan *sip.Response, 1)
		go func() { byeRes <- ph.transactAsync(bye) }()
		bbye := bob.awaitRequest(sip.MethodBye)
		if err := brDlg.ReceiveRequest(bbye); err != nil {
			t.Errorf("the browser's BYE is not in its dialog: %v", err)
		}
		bob.sendResponse(sip.NewResponse(bbye, 200, ""))
		awaitBye(t, byeRes)
		if after := trips(); after != before {
			t.Errorf("the BYE made %v round trips to Redis, want none", after-before)
		}
	})

	t.Run("browser on g3 to phone behind NAT at g1", func(t *testing.T) {
		alice := newClusterBrowser(t, g3, "alice", "alice3")
		ph := newE2EPhone(t, g1)
		// A private address that is not the phone's source: only g1,
		// whose socket the phone's NAT binding is for, can reach it.
		ph.registerAs("1001", "<sip:1001@10.11.12.13:5060>", nil)
		brDlg, _ := browserCallsPhoneOn(t, alice, ph, "1001")
		expectAudio(t, ph, alice)
		if g3.answeredCalls(t) != 1 || g1.answeredCalls(t) != 0 {
			t.Errorf("bridged calls: g1 %v, g3 %v; want the browser's instance, g3", g1.answeredCalls(t), g3.answeredCalls(t))
		}
		hangUpFromBrowser(t, alice, brDlg, ph)
	})

	t.Run("fork over three instances", func(t *testing.T) {
		b2 := newClusterBrowser(t, g2, "bob", "fork2")
		b3 := newClusterBrowser(t, g3, "bob", "fork3")
		desk := newE2EPhone(t, g1)
		desk.register("bob")
		caller := newE2EPhone(t, g1)
		caller.register("1000")
		inv := caller.call("1000", "bob", caller.sdp(1, ""))

		// The other browser and the desk phone ring (a CANCEL waits for
		// a provisional answer, RFC 3261 §9.1); the browser on g3 answers.
		b2in := b2.awaitRequest(sip.MethodInvite)
		b2ring := sip.NewResponse(b2in, 180, "")
		b2ring.SetToTag(sip.NewTag())
		b2.sendResponse(b2ring)
		din := desk.expectRequest(sip.MethodInvite)
		ring := sip.NewResponse(din, 180, "")
		ring.SetToTag(sip.NewTag())
		desk.respond(ring)
		b3Dlg := answerBridged(t, b3, "bob")
		callerDlg := caller.acceptAnswer(inv)

		// The other branches are canceled.
		if cancel := b2.awaitRequest(sip.MethodCancel); cancel.CallID() != b2in.CallID() {
			t.Errorf("the browser on g2 got another CANCEL")
		} else {
			b2.sendResponse(sip.NewResponse(cancel, 200, ""))
			gone := sip.NewResponse(b2in, 487, "")
			gone.SetToTag(b2ring.To().Tag())
			b2.sendResponse(gone)
		}
		dcancel := desk.expectRequest(sip.MethodCancel)
		desk.respond(sip.NewResponse(dcancel, 200, ""))
		gone := sip.NewResponse(din, 487, "")
		gone.SetToTag(ring.To().Tag())
		desk.respond(gone)

		expectAudio(t, caller, b3)
		if g3.answeredCalls(t) != 1 {
			t.Errorf("bridged calls on g3: %v, want 1", g3.answeredCalls(t))
		}
		bye, err := callerDlg.NewRequest(sip.MethodBye)
		if err != nil {
			t.Fatal(err)
		}
		byeRes := make(chan *sip.Response, 1)
		go func() { byeRes <- caller.transactAsync(bye) }()
		bbye := b3.awaitRequest(sip.MethodBye)
		if err := b3Dlg.ReceiveRequest(bbye); err != nil {
			t.Errorf("the BYE is not in the browser's dialog: %v", err)
		}
		b3.sendResponse(sip.NewResponse(bbye, 200, ""))
		awaitBye(t, byeRes)
	})
}

// sigkill ends g at once with SIGKILL, as a crash would, and waits for
// the exit; the gateway's log is printed if t fails.
func (g *gateway) sigkill(t *testing.T) {
	t.Helper()
	g.stopped = true // no SIGTERM and no clean exit to check
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-g.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("the gateway still runs %v after SIGKILL", stopTimeout)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- gateway log of the killed instance (%s) ---\n%s", g.logPath, tail(readFile(g.logPath), 256<<10))
		}
	})
}

// readyz returns the status and body of the gateway's /readyz.
func (g *gateway) readyz(t *testing.T) (int, string) {
	t.Helper()
	res, body := g.httpGet(t, "/readyz", nil)
	return res.StatusCode, string(body)
}

// waitReadyz polls /readyz until it answers status, within clusterWait,
// and returns the body.
func (g *gateway) waitReadyz(t *testing.T, status int) string {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		code, body := g.readyz(t)
		if code == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q after %v, want %d", code, body, clusterWait, status)
		}
		time.Sleep(100 * time.Millisecond) // polling /readyz, with a deadline
	}
}

// audioGoesOn waits until the phone and the browser, which are sending
// (flowAudio), each receive more packets than now.
func audioGoesOn(t *testing.T, ph *e2ePhone, br *e2eBrowser) {
	t.Helper()
	const more = 10
	phWant, brWant := ph.Audio()+more, br.Received()+more
	deadline := time.Now().Add(webrtcWait)
	for ph.Audio() < phWant || br.Received() < brWant {
		if time.Now().After(deadline) {
			t.Fatalf("audio stopped: phone at %d packets (want %d), browser at %d (want %d)", ph.Audio(), phWant, br.Received(), brWant)
		}
		time.Sleep(20 * time.Millisecond) // polling packet counters, with a deadline
	}
}

// hangUpFromPhone sends the phone's BYE in phDlg and returns its final
// response; the browser, when not nil, answers the BYE it gets.
func hangUpFromPhone(t *testing.T, ph *e2ePhone, phDlg *dialog.Dialog, br *e2eBrowser) *sip.Response {
	t.Helper()
	bye, err := phDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- ph.transactAsync(bye) }()
	if br != nil {
		bbye := br.awaitRequest(sip.MethodBye)
		br.sendResponse(sip.NewResponse(bbye, 200, ""))
	}
	select {
	case res := <-byeRes:
		if res == nil {
			t.Fatal("no answer to the phone's BYE")
		}
		return res
	case <-time.After(webrtcWait):
		t.Fatal("no answer to the phone's BYE")
	}
	return nil
}

// finalAnswer returns the final response to the phone's INVITE inv, and
// acknowledges it when it is a failure.
func finalAnswer(t *testing.T, ph *e2ePhone, inv *sip.Request) *sip.Response {
	t.Helper()
	var final *sip.Response
	ph.awaitResponses(inv.CSeq(), func(res *sip.Response) bool {
		final = res
		return res.StatusCode >= 200
	})
	if final.StatusCode >= 300 {
		ph.send(transaction.NewAck(inv, final))
	}
	return final
}

// TestClusterInstanceKilled: one of three instances dies (SIGKILL) with
// calls up. The call it bridged ends; a call bridged on another instance
// goes on, with audio; within seconds the others stop routing to the
// dead instance's users (a call to one gets 480, not a timeout), and a
// browser that reconnects to another instance and registers again is
// reached there.
func TestClusterInstanceKilled(t *testing.T) {
	c := startCluster(t, 3, nil)
	g1, g2, g3 := c.gws[0], c.gws[1], c.gws[2]
	for _, g := range c.gws {
		g.waitMetric(t, "switchboard_cluster_peers", 2, clusterWait)
	}
	bob := newClusterBrowser(t, g3, "bob", "bob3")
	alice := newClusterBrowser(t, g2, "alice", "alice2")
	ph1 := newE2EPhone(t, g1)
	ph1.register("1000")
	ph2 := newE2EPhone(t, g1)
	ph2.register("1001")

	bobCall, _ := phoneCallsBrowser(t, ph1, "1000", bob, "bob")
	aliceCall, _ := phoneCallsBrowser(t, ph2, "1001", alice, "alice")
	expectAudio(t, ph2, alice)
	stop := flowAudio(t, bob, ph1)
	defer stop()

	g2.sigkill(t)

	// The call bridged on g3 goes on.
	audioGoesOn(t, ph1, bob)
	stop()
	// The others give g2 up within its heartbeat's TTL.
	killed := time.Now()
	g1.waitMetric(t, "switchboard_cluster_peers", 1, clusterWait)
	g3.waitMetric(t, "switchboard_cluster_peers", 1, clusterWait)
	t.Logf("the others gave the dead instance up %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	// The call bridged on g2 has ended: its phone's BYE finds no one.
	if res := hangUpFromPhone(t, ph2, aliceCall, nil); res.StatusCode < 300 {
		t.Errorf("the BYE of the call bridged on the dead instance: %d %s, want a failure", res.StatusCode, res.Reason)
	}
	// alice's binding through g2 is not a target any more: 480 at once.
	if res := finalAnswer(t, ph2, ph2.call("1001", "alice", ph2.sdp(1, ""))); res.StatusCode != 480 {
		t.Errorf("a call to alice, whose instance died: %d %s, want 480", res.StatusCode, res.Reason)
	}

	// alice's browser reconnects to g3 and registers again: she is
	// reached there, with audio.
	alice3 := newClusterBrowser(t, g3, "alice", "alice3")
	phDlg, _ := phoneCallsBrowser(t, ph2, "1001", alice3, "alice")
	expectAudio(t, ph2, alice3)
	if res := hangUpFromPhone(t, ph2, phDlg, alice3); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
	}
	if res := hangUpFromPhone(t, ph1, bobCall, bob); res.StatusCode != 200 {
		t.Errorf("BYE of the call on g3: %d %s", res.StatusCode, res.Reason)
	}
}

// TestClusterDrain: SIGTERM drains one instance: it refuses new calls
// with 503 while its bridged call goes on, and the others take new calls
// to the same users.
func TestClusterDrain(t *testing.T) {
	c := startCluster(t, 2, map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": "5m"})
	g1, g2 := c.gws[0], c.gws[1]
	bob := newClusterBrowser(t, g1, "bob", "bob1")
	alice := newClusterBrowser(t, g2, "alice", "alice2")
	ph := newE2EPhone(t, g2)
	ph.register("1000")
	bobCall, _ := phoneCallsBrowser(t, ph, "1000", bob, "bob")

	terminate(t, g1)
	caller := newE2EPhone(t, g1)
	refusesCalls(t, g1, caller)
	caller.toward(g2)
	caller.register("1001")
	phDlg, _ := phoneCallsBrowser(t, caller, "1001", alice, "alice")
	expectAudio(t, caller, alice)
	expectAudio(t, ph, bob)
	if res := hangUpFromPhone(t, caller, phDlg, alice); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
	}
	if res := hangUpFromPhone(t, ph, bobCall, bob); res.StatusCode != 200 {
		t.Errorf("BYE of the drained instance's call: %d %s", res.StatusCode, res.Reason)
	}
	awaitExit(t, g1, stopTimeout)
}

// TestClusterRedisRestart: Redis stops with three instances up. They
// show it on /readyz and /metrics, refuse new registrations with 503
// and Retry-After, and go on calling the users connected to them. When
// Redis is back, empty, they reconnect by themselves, write their
// bindings back, and calls across instances and registrations work
// again.
func TestClusterRedisRestart(t *testing.T) {
	c := startCluster(t, 3, nil)
	g1, g2 := c.gws[0], c.gws[1]
	for _, g := range c.gws {
		g.waitMetric(t, "switchboard_cluster_peers", 2, clusterWait)
	}
	// Two users connected to g2: bob is called during the outage, alice
	// after it (a test browser makes one call).
	bob := newClusterBrowser(t, g2, "bob", "bob2")
	alice := newClusterBrowser(t, g2, "alice", "alice2")
	local := newE2EPhone(t, g2)
	local.register("1000")
	far := newE2EPhone(t, g1)
	far.register("1001")

	c.redis.Stop()
	for _, g := range c.gws {
		if body := g.waitReadyz(t, http.StatusServiceUnavailable); !strings.Contains(body, "redis") {
			t.Errorf("/readyz during the outage says %q, want it to name redis", body)
		}
		g.waitMetric(t, "switchboard_cluster_redis_up", 0, clusterWait)
	}
	res := newSigPeer(t, g1, sip.UDP, "1000", domain, "").registerWith(nil)
	if res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Errorf("a REGISTER during the outage: %d %s, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Reason, res.Get("Retry-After"))
	}
	// A call to bob, connected to g2, through g2.
	phDlg, _ := phoneCallsBrowser(t, local, "1000", bob, "bob")
	expectAudio(t, local, bob)
	if res := hangUpFromPhone(t, local, phDlg, bob); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
	}

	c.redis.Restart()
	for _, g := range c.gws {
		g.waitReadyz(t, http.StatusOK)
		g.waitMetric(t, "switchboard_cluster_redis_up", 1, clusterWait)
	}
	// g2 wrote alice's binding back: a call through g1 reaches her.
	phDlg, _ = phoneCallsBrowser(t, far, "1001", alice, "alice")
	expectAudio(t, far, alice)
	if res := hangUpFromPhone(t, far, phDlg, alice); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s", res.StatusCode, res.Reason)
	}
	newSigPeer(t, g1, sip.UDP, "1000", domain, "").register()
}
