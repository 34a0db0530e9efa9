package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// sipPhone is a bare SIP UDP endpoint on loopback that sends requests to
// the gateway and reads its answers: enough to register and to be refused.
type sipPhone struct {
	t    *testing.T
	conn *net.UDPConn
	gw   *net.UDPAddr
	seq  int
}

func newSIPPhone(t *testing.T, gw netip.AddrPort) *sipPhone {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &sipPhone{t: t, conn: conn, gw: net.UDPAddrFromAddrPort(gw)}
}

// send sends a request built from the start line and header lines, and
// returns the first final response.
func (p *sipPhone) send(method, uri string, hdrs ...string) *sip.Response {
	p.t.Helper()
	p.seq++
	local := p.conn.LocalAddr().String()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bKops%d;rport\r\n", local, p.seq)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "Call-ID: ops-%d@test\r\n", p.seq)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", p.seq, method)
	for _, h := range hdrs {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := p.conn.WriteToUDP([]byte(b.String()), p.gw); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(testTimeout))
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			p.t.Fatalf("%s: no final response: %v", method, err)
		}
		m, err := sip.ParseDatagram(buf[:n])
		if err != nil {
			p.t.Fatalf("%s: unparsable answer: %v", method, err)
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode >= 200 {
			return res
		}
	}
}

// register registers user with password; a wrong password gets the 401.
func (p *sipPhone) register(user, password string) *sip.Response {
	p.t.Helper()
	uri := "sip:localhost"
	from := fmt.Sprintf("From: <sip:%s@localhost>;tag=ops%d", user, p.seq+1)
	to := fmt.Sprintf("To: <sip:%s@localhost>", user)
	contact := fmt.Sprintf("Contact: <sip:%s@%s>;expires=60", user, p.conn.LocalAddr())
	res := p.send("REGISTER", uri, from, to, contact)
	if res.StatusCode != 401 {
		return res
	}
	ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
	if err != nil {
		p.t.Fatal(err)
	}
	cred, err := digest.Answer(ch, "REGISTER", uri, user, password)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.send("REGISTER", uri, from, to, contact, "Authorization: "+cred.String())
}

func udpConfig(t *testing.T, extra map[string]string) Config {
	t.Helper()
	env := map[string]string{"SWITCHBOARD_SIP_UDP": "127.0.0.1:0", "SWITCHBOARD_RTP_PORTS": "31000-31099"}
	for k, v := range extra {
		env[k] = v
	}
	return testConfig(t, env)
}

// metric returns the value of the sample of /metrics that starts with
// series (name and labels as exposed), or -1 when there is none.
func (g *testGateway) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, _, body := g.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestMetrics: /metrics shows registrations, transactions by method and
// status, and authentication failures as they happen.
func TestMetrics(t *testing.T) {
	g := startGateway(t, udpConfig(t, nil))
	if v := g.metric(t, `switchboard_registrations{transport="udp"}`); v != 0 {
		t.Fatalf("registrations before any: %v", v)
	}
	phone := newSIPPhone(t, g.l.UDP)
	if res := phone.register("alice", "wrong"); res.StatusCode != 401 {
		t.Fatalf("wrong password: %d", res.StatusCode)
	}
	if res := phone.register("alice", "alice-secret"); res.StatusCode != 200 {
		t.Fatalf("register: %d %s", res.StatusCode, res.Reason)
	}
	if res := phone.send("FROB", "sip:localhost", "From: <sip:a@localhost>;tag=x", "To: <sip:localhost>"); res.StatusCode != 501 {
		t.Fatalf("unknown method: %d", res.StatusCode)
	}
	for series, want := range map[string]float64{
		`switchboard_registrations{transport="udp"}`:                                              1,
		`switchboard_registered_users`:                                                            1,
		`switchboard_accounts`:                                                                    2,
		`switchboard_auth_failures_total{origin="register"}`:                                      1,
		`switchboard_sip_transactions_total{method="REGISTER",side="server",status="401"}`:        3,
		`switchboard_sip_transactions_total{method="REGISTER",side="server",status="200"}`:        1,
		`switchboard_sip_transactions_total{method="other",side="server",status="501"}`:           1,
		`switchboard_calls_active{state="answered"}`:                                              0,
		`switchboard_call_legs_active{type="webrtc"}`:                                             0,
		`switchboard_rtp_packets_total{direction="in",leg="webrtc"}`:                              0,
		`switchboard_websocket_connections`:                                                       0,
		`switchboard_sip_connections{state="unregistered",transport="ws"}`:                        0,
		`switchboard_sip_connections_refused_total{reason="per_address",transport="ws"}`:          0,
		`switchboard_sip_connections_evicted_total{transport="ws"}`:                               0,
		`switchboard_sip_connections{state="dialed",transport="tcp"}`:                             -1, // TCP is off
		`switchboard_sip_transactions_total{method="INVITE",side="server",status="200"}`:          -1,
		`switchboard_config_reloads_total{result="ok"}`:                                           -1,
		`switchboard_sip_messages_received_total`:                                                 5,
		`switchboard_auth_refused_total`:                                                          0,
		`switchboard_rtp_ports{state="in_use"}`:                                                   0,
		`switchboard_sip_transactions_total{method="REGISTER",side="client",status="200"}`:        -1,
		`switchboard_sip_overload_rejected_total`:                                                 0,
		`switchboard_sip_transactions_evicted_total`:                                              0,
		`switchboard_sip_client_transactions_refused_total`:                                       0,
		`switchboard_sip_client_transactions_lingering`:                                           0,
		`switchboard_sip_client_transactions_evicted_total`:                                       0,
		`switchboard_sip_admission_refused_total{action="answered"}`:                              0,
		`switchboard_sip_messages_dropped_total`:                                                  0,
		`switchboard_build_info{goversion="` + runtime.Version() + `",version="` + version + `"}`: 1,
		// The 200 is sent once the binding is in the journal and synced.
		`switchboard_location_journal_records_total`: 1,
		`switchboard_location_journal_syncs_total`:   1,
		`switchboard_location_snapshots_total`:       1,
		`switchboard_location_write_errors_total`:    0,
		`switchboard_call_reconnects_total`:          0,
		`switchboard_calls_lost_connection_total`:    0,
		`switchboard_calls_refused_busy_total`:       0,
		`switchboard_proxy_in_dialog_refused_total`:  0,
		`switchboard_proxy_in_dialog_skipped_total`:  0,
		`switchboard_registration_reconnects_total`:  0,
		`switchboard_ice_restarts_total`:             0,
	} {
		if got := g.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestAdminAPI: the API is off without a token, refuses a wrong one, lists
// registrations and calls, and says 404 for a call that does not exist.
func TestAdminAPI(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		g := startGateway(t, testConfig(t, nil))
		if code, _, body := g.get(t, "/admin/calls"); code != http.StatusNotFound || !strings.Contains(body, "SWITCHBOARD_ADMIN_TOKEN") {
			t.Errorf("without a token: %d %s", code, body)
		}
	})
	const token = "0123456789abcdef-admin"
	g := startGateway(t, udpConfig(t, map[string]string{"SWITCHBOARD_ADMIN_TOKEN": token}))
	phone := newSIPPhone(t, g.l.UDP)
	if res := phone.register("bob", "bob-secret"); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	for _, auth := range []string{"", "Bearer nope-nope-nope-nope", "Basic " + token, "Bearer " + token + "x"} {
		code, hdr, _ := g.admin(t, http.MethodGet, "/admin/registrations", auth)
		if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d, WWW-Authenticate %q", auth, code, hdr.Get("WWW-Authenticate"))
		}
	}
	code, _, body := g.admin(t, http.MethodGet, "/admin/registrations", "Bearer "+token)
	var regs struct {
		Registrations []adminBinding `json:"registrations"`
	}
	if err := json.Unmarshal([]byte(body), &regs); code != http.StatusOK || err != nil {
		t.Fatalf("registrations: %d %v %s", code, err, body)
	}
	if len(regs.Registrations) != 1 || regs.Registrations[0].AOR != "sip:bob@localhost" || regs.Registrations[0].Transport != "udp" ||
		regs.Registrations[0].Source != phone.conn.LocalAddr().String() {
		t.Errorf("registrations: %+v", regs.Registrations)
	}
	code, _, body = g.admin(t, http.MethodGet, "/admin/calls", "Bearer "+token)
	if code != http.StatusOK || !strings.Contains(body, `"calls": []`) || !strings.Contains(body, `"ended": []`) {
		t.Errorf("calls: %d %s", code, body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if code, _, body := g.admin(t, m, "/admin/calls/nope", "Bearer "+token); code != http.StatusNotFound || !strings.Contains(body, "no call nope") {
			t.Errorf("%s of an unknown call: %d %s", m, code, body)
		}
	}
	if code, _, _ := g.admin(t, http.MethodGet, "/admin/nothing", "Bearer "+token); code != http.StatusNotFound {
		t.Errorf("unknown endpoint: %d", code)
	}
}

func (g *testGateway) admin(t *testing.T, method, path, auth string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+g.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestReload: a reload puts the accounts of an edited config file in force
// and counts; a broken file changes nothing and counts as an error.
func TestReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "switchboard.toml")
	writeAccounts := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	account := func(user, password string) string {
		return fmt.Sprintf("[[account]]\nuser = %q\npassword = %q\n", user, password)
	}
	writeAccounts(account("carol", "carol-secret-1"))
	reload := make(chan struct{})
	reloaded := make(chan error, 1)
	g := startGatewayWith(t, udpConfig(t, map[string]string{"SWITCHBOARD_CONFIG": file}),
		control{reload: reload, reloaded: func(err error) { reloaded <- err }})
	phone := newSIPPhone(t, g.l.UDP)
	if res := phone.register("carol", "carol-secret-1"); res.StatusCode != 200 {
		t.Fatalf("register before the reload: %d", res.StatusCode)
	}

	writeAccounts(account("carol", "carol-secret-2") + account("dave", "dave-secret"))
	if err := g.reload(t, reload, reloaded); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if res := phone.register("carol", "carol-secret-1"); res.StatusCode != 401 {
		t.Errorf("old password after the reload: %d", res.StatusCode)
	}
	for user, pw := range map[string]string{"carol": "carol-secret-2", "dave": "dave-secret"} {
		if res := phone.register(user, pw); res.StatusCode != 200 {
			t.Errorf("%s after the reload: %d", user, res.StatusCode)
		}
	}

	writeAccounts("[[account]\nuser = ")
	if err := g.reload(t, reload, reloaded); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	for result, want := range map[string]float64{"ok": 1, "error": 1} {
		if got := g.metric(t, `switchboard_config_reloads_total{result="`+result+`"}`); got != want {
			t.Errorf("reloads %s = %v, want %v", result, got, want)
		}
	}
	if res := phone.register("dave", "dave-secret"); res.StatusCode != 200 {
		t.Errorf("after a failed reload: %d", res.StatusCode)
	}
}

// reload asks for a reload and returns its outcome.
func (g *testGateway) reload(t *testing.T, reload chan<- struct{}, reloaded <-chan error) error {
	t.Helper()
	select {
	case reload <- struct{}{}:
	case <-time.After(testTimeout):
		t.Fatal("the gateway does not take the reload")
	}
	select {
	case err := <-reloaded:
		return err
	case <-time.After(testTimeout):
		t.Fatal("the reload does not end")
	}
	return nil
}

// TestDrainRefusesNewCalls: once the server drains, a new INVITE gets 503
// with a Retry-After, while registrations go on.
func TestDrainRefusesNewCalls(t *testing.T) {
	g := startGateway(t, udpConfig(t, nil))
	g.l.stack.gw.Drain(4500 * time.Millisecond)
	phone := newSIPPhone(t, g.l.UDP)
	res := phone.send("INVITE", "sip:bob@localhost", "From: <sip:alice@localhost>;tag=d1", "To: <sip:bob@localhost>",
		"Contact: <sip:alice@"+phone.conn.LocalAddr().String()+">")
	if res.StatusCode != 503 || res.Get("Retry-After") != "5" {
		t.Errorf("INVITE while draining: %d %s, Retry-After %q", res.StatusCode, res.Reason, res.Get("Retry-After"))
	}
	if res := phone.register("alice", "alice-secret"); res.StatusCode != 200 {
		t.Errorf("REGISTER while draining: %d", res.StatusCode)
	}
}

// TestMediaAddrs: media binds where SIP listens, and a gateway listening
// on every interface without SWITCHBOARD_PUBLIC_IP announces the address
// of its default route, or says to set it.
func TestMediaAddrs(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.2")
	for _, tt := range []struct {
		env          map[string]string
		bind, public netip.Addr
	}{
		{map[string]string{"SWITCHBOARD_SIP_UDP": "127.0.0.2:5060"}, lo, netip.Addr{}},
		{map[string]string{"SWITCHBOARD_SIP_UDP": "", "SWITCHBOARD_SIP_TCP": "127.0.0.2:5060"}, lo, netip.Addr{}},
		{map[string]string{"SWITCHBOARD_SIP_UDP": "0.0.0.0:5060", "SWITCHBOARD_PUBLIC_IP": "203.0.113.7"},
			netip.IPv4Unspecified(), netip.MustParseAddr("203.0.113.7")},
		{map[string]string{"SWITCHBOARD_SIP_UDP": ":5060", "SWITCHBOARD_PUBLIC_IP": "203.0.113.7"},
			netip.IPv4Unspecified(), netip.MustParseAddr("203.0.113.7")},
	} {
		bind, public, guessed, err := mediaAddrs(testConfig(t, tt.env))
		if err != nil || bind != tt.bind || public != tt.public || guessed {
			t.Errorf("%v: bind %v, public %v, guessed %v, err %v; want %v, %v", tt.env, bind, public, guessed, err, tt.bind, tt.public)
		}
	}

	route, routeErr := defaultRouteAddr(false)
	bind, public, guessed, err := mediaAddrs(testConfig(t, map[string]string{"SWITCHBOARD_SIP_UDP": "0.0.0.0:5060"}))
	switch {
	case routeErr != nil:
		// No default route here (a loopback-only namespace): the error
		// must say what to set.
		if err == nil || !strings.Contains(err.Error(), "SWITCHBOARD_PUBLIC_IP") {
			t.Errorf("without a default route: err %v, want one naming SWITCHBOARD_PUBLIC_IP", err)
		}
	case err != nil || !bind.IsUnspecified() || public != route || !guessed:
		t.Errorf("0.0.0.0 without a public IP: bind %v, public %v (default route %v), guessed %v, err %v", bind, public, route, guessed, err)
	}
}

// TestMetricsFinalCounters: the counters that onFinal keeps are each its
// own labels' series, the side among them, and a method that is a slice
// of a larger buffer is counted under its label.
func TestMetricsFinalCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newSIPMetrics(reg)
	datagram := "REGISTER sip:localhost SIP/2.0"
	for range 3 {
		m.onFinal(true, datagram[:8], 200)
	}
	m.onFinal(false, "REGISTER", 200)
	m.onFinal(true, "REGISTER", 401)
	m.onFinal(true, "FROB", 501)
	got := map[[3]string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_sip_transactions_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range mt.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[[3]string{l["side"], l["method"], l["status"]}] = mt.GetCounter().GetValue()
		}
	}
	want := map[[3]string]float64{
		{"server", "REGISTER", "200"}: 3,
		{"client", "REGISTER", "200"}: 1,
		{"server", "REGISTER", "401"}: 1,
		{"server", "other", "501"}:    1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("transactions series %v, want %v", got, want)
	}
}

// BenchmarkOnFinal: what counting a final response costs the transaction
// layer's goroutine.
func BenchmarkOnFinal(b *testing.B) {
	m := newSIPMetrics(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.onFinal(true, sip.MethodRegister, 401)
		m.onFinal(true, sip.MethodRegister, 200)
	}
}
