package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// browserInstance is the +sip.instance of the reconnect tests' browser.
const browserInstance = "urn:uuid:5c3ad7a2-8f0e-4c55-9a7b-2b1d6e0c4f15"

// cut drops the browser's WebSocket without a closing handshake, as a
// network change or a sleeping laptop does.
func (b *e2eBrowser) cut() {
	if err := b.ws.CloseNow(); err != nil {
		b.t.Logf("browser: cut: %v", err)
	}
}

// reconnectCall is browserCallsPhone with a browser that registers an
// RFC 5626 instance, as JsSIP and the softphone do, and the gateway's
// admin API on.
func reconnectCall(t *testing.T, env map[string]string) (*gateway, webCall) {
	t.Helper()
	all := map[string]string{"SWITCHBOARD_ADMIN_TOKEN": adminToken}
	for k, v := range env {
		all[k] = v
	}
	g := startGateway(t, gatewayOptions{env: all})
	ph := newE2EPhone(t, g)
	ph.register("1000")
	br := newE2EBrowser(t, net.JoinHostPort(g.host, strconv.Itoa(g.httpPort)))
	br.instance = browserInstance
	br.register("alice")
	return g, callPhone(t, br, ph)
}

// adminCall is what the admin API says of a call: its state, why it
// ended, where its caller's flow went, and its media.
type adminCall struct {
	ID     string
	State  string
	Cause  string
	Caller struct {
		Dst           string
		FlowDownSince time.Time `json:"flow_down_since"`
	}
	Media struct {
		Web, RTP adminLeg
	}
}

// adminCalls returns the calls in progress and the ended ones.
func (g *gateway) adminCalls(t *testing.T) (calls, ended []adminCall) {
	t.Helper()
	res, body := g.httpGet(t, "/admin/calls", http.Header{"Authorization": {"Bearer " + adminToken}})
	var out struct{ Calls, Ended []adminCall }
	if res.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
		t.Fatalf("/admin/calls: %d %s", res.StatusCode, body)
	}
	return out.Calls, out.Ended
}

// waitAdmin polls the admin API until cond holds of its calls.
func (g *gateway) waitAdmin(t *testing.T, what string, cond func(calls, ended []adminCall) bool) {
	t.Helper()
	deadline := time.Now().Add(webrtcWait)
	for {
		calls, ended := g.adminCalls(t)
		if cond(calls, ended) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; calls %+v, ended %+v", what, webrtcWait, calls, ended)
		}
		time.Sleep(20 * time.Millisecond) // polling the API, with a deadline
	}
}

// waitAudio waits until both ends received more than want more packets.
func waitAudio(t *testing.T, what string, c webCall, want int64) {
	t.Helper()
	ph0, br0 := c.ph.Audio(), c.br.Received()
	deadline := time.Now().Add(webrtcWait)
	for c.ph.Audio()-ph0 <= want || c.br.Received()-br0 <= want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: phone got %d more packets, browser %d; want > %d each", what, c.ph.Audio()-ph0, c.br.Received()-br0, want)
		}
		time.Sleep(20 * time.Millisecond) // polling counters, with a deadline
	}
}

// TestReconnectMidCall is issue 15 point 1 through the binary: the
// browser's WebSocket drops mid-call; the call stays up and its media
// goes on; the browser connects again and registers the same instance;
// the phone's BYE reaches it over the new WebSocket.
func TestReconnectMidCall(t *testing.T) {
	g, c := reconnectCall(t, nil)
	stop := flowAudio(t, c.br, c.ph)
	defer stop()

	c.br.cut()
	g.waitAdmin(t, "the call waits for the browser", func(calls, _ []adminCall) bool {
		return len(calls) == 1 && !calls[0].Caller.FlowDownSince.IsZero()
	})
	waitAudio(t, "audio while the WebSocket is down", c, 10)

	c.br.dial()
	c.br.register("alice")
	g.waitAdmin(t, "the call follows the browser", func(calls, _ []adminCall) bool {
		return len(calls) == 1 && calls[0].Caller.FlowDownSince.IsZero()
	})
	waitAudio(t, "audio after the reconnect", c, 10)
	g.expectMetric(t, "switchboard_call_reconnects_total", 1)
	g.expectMetric(t, "switchboard_registration_reconnects_total", 1)

	// The phone hangs up: the BYE reaches the browser over its new
	// WebSocket (the old one is closed: nothing else could carry it).
	bye, err := c.phDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- c.ph.transact(bye) }()
	got := c.br.awaitRequest(sip.MethodBye)
	c.br.sendResponse(sip.NewResponse(got, 200, ""))
	if res := <-byeRes; res.StatusCode != 200 {
		t.Fatalf("phone's BYE: %d %s", res.StatusCode, res.Reason)
	}
	g.waitAdmin(t, "the call ended by the phone", func(calls, ended []adminCall) bool {
		return len(calls) == 0 && len(ended) == 1 && strings.Contains(ended[0].Cause, "bye from the callee")
	})
	g.expectMetric(t, "switchboard_calls_lost_connection_total", 0)
}

// TestReconnectGraceRunsOut: a browser that does not come back within
// SWITCHBOARD_RECONNECT_GRACE loses its call: BYE to the phone, and the
// admin API and the metrics say why.
func TestReconnectGraceRunsOut(t *testing.T) {
	g, c := reconnectCall(t, map[string]string{"SWITCHBOARD_RECONNECT_GRACE": "1s"})
	stop := flowAudio(t, c.br, c.ph)
	defer stop()
	cut := time.Now()
	c.br.cut()
	bye := c.ph.expectRequest(sip.MethodBye)
	c.ph.respond(sip.NewResponse(bye, 200, ""))
	if waited := time.Since(cut); waited < time.Second {
		t.Errorf("BYE %v after the cut, before the grace of 1s", waited)
	}
	g.waitAdmin(t, "the call ended for its lost connection", func(calls, ended []adminCall) bool {
		return len(calls) == 0 && len(ended) == 1 && strings.Contains(ended[0].Cause, "connection lost")
	})
	g.expectMetric(t, "switchboard_calls_lost_connection_total", 1)
	g.expectMetric(t, "switchboard_call_reconnects_total", 0)

	// Coming back too late finds no call: the gateway's dialog is gone
	// (the proxy challenges the request as a new one).
	c.br.dial()
	c.br.register("alice")
	info, err := c.brDlg.NewRequest(sip.MethodInfo)
	if err != nil {
		t.Fatal(err)
	}
	if res := c.br.transact(info); res == nil || res.StatusCode < 400 {
		t.Errorf("INFO after the call ended: %v, want a failure", res)
	}
}

// TestICERestartThroughGateway is issue 15 point 2 through the binary:
// the pion browser re-INVITEs with new ICE credentials (what
// restartIce() does); the gateway answers on the browser's leg alone,
// the phone hears nothing of it, and audio goes on over the new ICE
// session with the same DTLS-SRTP.
func TestICERestartThroughGateway(t *testing.T) {
	g, c := reconnectCall(t, nil)
	stop := flowAudio(t, c.br, c.ph)
	defer stop()

	reinv, err := c.brDlg.NewRequest(sip.MethodInvite)
	if err != nil {
		t.Fatal(err)
	}
	reinv.SetBody(c.br.RestartOffer(), "application/sdp")
	res := c.br.transact(reinv)
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("ICE restart re-INVITE: %v", res)
	}
	ack, err := c.brDlg.NewAck(reinv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	c.br.send(ack)
	answered := time.Now()
	c.br.SetAnswer(res.Body)
	waitAudio(t, "audio after the ICE restart", c, 10)
	t.Logf("audio both ways %v after the restart's answer", time.Since(answered))
	g.expectMetric(t, "switchboard_ice_restarts_total", 1)

	// The phone got no re-INVITE: its next request is the BYE.
	bye, err := c.brDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- c.br.transact(bye) }()
	m := c.ph.next("BYE")
	if !isRequest(m, sip.MethodBye) {
		t.Fatalf("the phone got, after the ICE restart:\n%s", m)
	}
	c.ph.respond(sip.NewResponse(m.(*sip.Request), 200, ""))
	if res := <-byeRes; res == nil || res.StatusCode != 200 {
		t.Errorf("BYE: %v", res)
	}
}

func isRequest(m sip.Message, method string) bool {
	req, ok := m.(*sip.Request)
	return ok && req.Method == method
}

// registerInstance registers p as an RFC 5626 instance with reg-id 1, as
// JsSIP does.
func (p *sigPeer) registerInstance(instance string) {
	p.t.Helper()
	res := p.registerWith(func(req *sip.Request) {
		req.Set("Contact", "<"+p.contact()+">;reg-id=1;+sip.instance=\"<"+instance+">\"")
		req.Set("Supported", "outbound, path")
	})
	if res.StatusCode != 200 {
		p.t.Fatalf("%s: REGISTER of instance: %d %s", p.user, res.StatusCode, res.Reason)
	}
}

// TestReconnectProxiedCall is issue 15 point 4 through the binary: a call
// between two browsers goes through the proxy, whose Record-Route entries
// carry each browser's flow token. The callee's WebSocket drops, and it
// registers the same instance over a new one: the dialog's route set,
// fixed at its start, still names the old connection, and the proxy
// follows the token to the new one, both ways.
func TestReconnectProxiedCall(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	const bobInstance = "urn:uuid:0d9e4a3c-55a1-4f7e-8d3b-6c2b7e1f0a42"
	bob := newSigPeer(t, g, sip.WS, "bob", domain, "")
	bob.registerInstance(bobInstance)
	alice := newSigPeer(t, g, sip.WS, "alice", domain, "")
	alice.register()

	inv := alice.request(sip.MethodInvite, "sip:bob@"+domain)
	res := alice.transact(inv)
	if res.StatusCode == 407 {
		inv = alice.authorize(inv, res)
		res = alice.transact(inv)
	}
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	atBob := bob.expectRequest(sip.MethodInvite)
	aliceDlg, err := dialog.NewUAC(inv, res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := aliceDlg.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	alice.send(ack)
	bob.expectRequest(sip.MethodAck)
	// Bob's side of the dialog, as his answer made it.
	ok := sip.NewResponse(atBob, 200, "")
	ok.SetToTag(bob.tag)
	ok.CopyFrom(&atBob.Headers, "Record-Route")
	ok.Set("Contact", "<"+bob.contact()+">")
	bobDlg, err := dialog.NewUAS(atBob, ok)
	if err != nil {
		t.Fatal(err)
	}
	if len(bobDlg.RouteSet()) == 0 {
		t.Fatalf("no route set at the callee: %q", atBob.Values("Record-Route"))
	}

	// Bob's WebSocket drops; he comes back over a new one, with the same
	// instance (a new peer: a new connection, as JsSIP opens).
	bob.stop()
	again := newSigPeer(t, g, sip.WS, "bob", domain, "")
	again.tag = bob.tag
	again.registerInstance(bobInstance)

	// Alice's request rides her route set, whose token names bob's old
	// connection: it reaches him over the new one.
	info, err := aliceDlg.NewRequest(sip.MethodInfo)
	if err != nil {
		t.Fatal(err)
	}
	if res := alice.transact(info); res.StatusCode != 200 {
		t.Fatalf("INFO to the reconnected browser: %d %s", res.StatusCode, res.Reason)
	}
	again.expectRequest(sip.MethodInfo)
	// Bob's own requests, over the new connection with the same route
	// set, reach alice.
	info, err = bobDlg.NewRequest(sip.MethodInfo)
	if err != nil {
		t.Fatal(err)
	}
	if res := again.transact(info); res.StatusCode != 200 {
		t.Fatalf("INFO from the reconnected browser: %d %s", res.StatusCode, res.Reason)
	}
	alice.expectRequest(sip.MethodInfo)
	bye, err := aliceDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	if res := alice.transact(bye); res.StatusCode != 200 {
		t.Fatalf("BYE to the reconnected browser: %d %s", res.StatusCode, res.Reason)
	}
	again.expectRequest(sip.MethodBye)
	g.expectMetric(t, "switchboard_registration_reconnects_total", 1)
}

// adminRTP is what the admin API says of the one call's RTP leg.
type adminRTP struct {
	Remote  string
	Latched bool
	Dropped struct{ Source uint64 }
}

func (g *gateway) rtpLeg(t *testing.T) adminRTP {
	t.Helper()
	res, body := g.httpGet(t, "/admin/calls", http.Header{"Authorization": {"Bearer " + adminToken}})
	var out struct {
		Calls []struct {
			Media struct{ RTP adminRTP }
		}
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &out) != nil || len(out.Calls) != 1 {
		t.Fatalf("/admin/calls: %d %s", res.StatusCode, body)
	}
	return out.Calls[0].Media.RTP
}

// TestPhoneMovesThroughGateway is issue 15 point 3 through the binary: the
// phone of a call moves to 127.0.0.2, registers from there and re-INVITEs
// with its new media address. The gateway's requests go there, the RTP
// leg latches to the new source, and packets from anywhere else — the
// phone's old address, which goes on sending, and a stranger on 127.0.0.3
// — are dropped: only signalling moves the media.
func TestPhoneMovesThroughGateway(t *testing.T) {
	g, c := reconnectCall(t, nil)
	stop := flowAudio(t, c.br, c.ph)
	defer stop()

	moved := newE2EPhoneAt(t, g, net.IPv4(127, 0, 0, 2))
	moved.register("1000")
	c.phDlg.SetLocalContact(sip.Address{URI: sip.URI{Scheme: "sip", User: "1000", Host: "127.0.0.2", Port: moved.sip.LocalAddr().(*net.UDPAddr).Port}})
	reinv, err := c.phDlg.NewRequest(sip.MethodInvite)
	if err != nil {
		t.Fatal(err)
	}
	reinv.SetBody(moved.sdp(2, ""), "application/sdp")
	res := moved.transact(reinv)
	if res.StatusCode != 200 {
		t.Fatalf("re-INVITE from the new address: %d %s", res.StatusCode, res.Reason)
	}
	if err := moved.Learn(res.Body); err != nil {
		t.Fatal(err)
	}
	ack, err := c.phDlg.NewAck(reinv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	moved.send(ack)

	// A stranger sends to the call's RTP port, before and after the phone
	// does: dropped.
	stranger := newE2EPhoneAt(t, g, net.IPv4(127, 0, 0, 3))
	stranger.Far = moved.Far
	for range 5 {
		stranger.SendPCMU(make([]byte, 160))
	}
	stopMoved := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); moved.SendAudio(stopMoved) }()
	defer func() { close(stopMoved); <-done }()
	deadline := time.Now().Add(webrtcWait)
	for {
		leg := g.rtpLeg(t)
		if leg.Latched && leg.Remote == moved.Addr().String() && moved.Audio() > 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RTP leg %+v, phone at its new address got %d packets; want latched to %s and > 10", leg, moved.Audio(), moved.Addr())
		}
		time.Sleep(20 * time.Millisecond) // polling the API, with a deadline
	}
	for range 5 {
		stranger.SendPCMU(make([]byte, 160))
	}
	// The old address goes on sending, 50 packets a second, and the
	// stranger sent 10: all dropped.
	before := g.rtpLeg(t).Dropped.Source
	waitAudio(t, "audio with the phone at its new address", webCall{br: c.br, ph: moved}, 10)
	oldAudio := c.ph.Audio()
	waitAudio(t, "more audio with the phone at its new address", webCall{br: c.br, ph: moved}, 10)
	if n := c.ph.Audio() - oldAudio; n > 0 {
		t.Errorf("the phone's old address got %d packets after the move", n)
	}
	leg := g.rtpLeg(t)
	if leg.Remote != moved.Addr().String() || leg.Dropped.Source <= before {
		t.Errorf("RTP leg %+v after the move, want %s latched and the old address's packets dropped (more than %d)", leg, moved.Addr(), before)
	}
	if stranger.Audio() != 0 {
		t.Errorf("the stranger got %d packets", stranger.Audio())
	}

	// The browser hangs up: the BYE goes to the phone's new address.
	bye, err := c.brDlg.NewRequest(sip.MethodBye)
	if err != nil {
		t.Fatal(err)
	}
	byeRes := make(chan *sip.Response, 1)
	go func() { byeRes <- c.br.transact(bye) }()
	got := moved.expectRequest(sip.MethodBye)
	moved.respond(sip.NewResponse(got, 200, ""))
	if res := <-byeRes; res == nil || res.StatusCode != 200 {
		t.Errorf("BYE: %v", res)
	}
}
