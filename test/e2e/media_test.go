package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/mediapeer"
	"github.com/switchboard/switchboard/internal/netsim"
	"github.com/switchboard/switchboard/sip/digest"
)

// adminToken is the admin API token of the media tests' gateways.
const adminToken = "media-test-admin-token-0123456789"

// callTransport is how the admin API says a call's media went.
type callTransport struct {
	Media struct {
		Web struct {
			Transport *struct {
				Local, Remote struct{ Type, Protocol, Address string }
				DTLSRole      string `json:"dtls_role"`
				SRTPProfile   string `json:"srtp_profile"`
			} `json:"transport"`
		} `json:"web"`
		RTP struct {
			Remote string `json:"remote"`
		} `json:"rtp"`
	} `json:"media"`
}

// httpGet GETs path from the gateway with the headers given and returns
// the response and its body.
func (g *gateway) httpGet(t *testing.T, path string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), webrtcWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(g.host, strconv.Itoa(g.httpPort))+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// webTransport waits until the admin API knows how the one call's web
// leg connected, and returns what it says.
func (g *gateway) webTransport(t *testing.T) callTransport {
	t.Helper()
	deadline := time.Now().Add(webrtcWait)
	for {
		res, body := g.httpGet(t, "/admin/calls", http.Header{"Authorization": {"Bearer " + adminToken}})
		var out struct{ Calls []callTransport }
		if res.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
			t.Fatalf("/admin/calls: %d %s", res.StatusCode, body)
		}
		if len(out.Calls) == 1 && out.Calls[0].Media.Web.Transport != nil {
			return out.Calls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("/admin/calls never told the web leg's transport: %s", body)
		}
		time.Sleep(20 * time.Millisecond) // polling the API, with a deadline
	}
}

// TestICETCPCall: a browser whose network blocks UDP (pion held to TCP)
// calls a phone through the binary: the gateway offers a passive TCP
// candidate on SWITCHBOARD_ICE_PORT, the call connects over it with audio
// both ways, and the listening line, the admin API and /metrics say so.
func TestICETCPCall(t *testing.T) {
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_ADMIN_TOKEN": adminToken}})
	ice := net.JoinHostPort(g.host, strconv.Itoa(g.icePort))
	if log := readFile(g.logPath); !strings.Contains(log, "ice_udp="+ice) || !strings.Contains(log, "ice_tcp="+ice) {
		t.Fatalf("the listening line does not name the ICE port %s", ice)
	}
	c := browserCallsPhoneWith(t, g, mediapeer.BrowserOptions{Network: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}})
	answer := c.br.PC.RemoteDescription().SDP
	if !regexp.MustCompile(`a=candidate:\S+ 1 tcp \d+ 127\.0\.0\.1 ` + strconv.Itoa(g.icePort) + ` typ host tcptype passive`).MatchString(answer) {
		t.Fatalf("the gateway's answer has no passive TCP candidate on the ICE port:\n%s", answer)
	}
	stop := flowAudio(t, c.br, c.ph)
	defer stop()
	if local, _ := c.br.SelectedPair(); local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("the browser's pair is %s", local.String())
	}
	tr := g.webTransport(t).Media.Web.Transport
	if tr.Local.Type != "host" || tr.Local.Protocol != "tcp" || tr.Local.Address != ice || tr.Remote.Protocol != "tcp" || tr.DTLSRole != "client" || tr.SRTPProfile == "" {
		t.Errorf("admin API transport %+v", *tr)
	}
	g.expectMetric(t, fmt.Sprintf(`switchboard_webrtc_transports_total{local_protocol="tcp",local_type="host",remote_protocol="tcp",remote_type=%q}`, tr.Remote.Type), 1)
}

// TestICELiteCall: an ICE-lite gateway takes a browser's call.
func TestICELiteCall(t *testing.T) {
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_ICE_LITE": "true"}})
	c := browserCallsPhone(t, g)
	if !strings.Contains(c.br.PC.RemoteDescription().SDP, "a=ice-lite") {
		t.Fatalf("the gateway's answer is not ice-lite:\n%s", c.br.PC.RemoteDescription().SDP)
	}
	expectAudio(t, c.ph, c.br)
}

// TestMaxCalls: with SWITCHBOARD_MAX_CALLS=1 a second bridged call gets
// 503 with Retry-After while the first is up, through the proxy's fork,
// and switchboard_calls_refused_busy_total counts it.
func TestMaxCalls(t *testing.T) {
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_MAX_CALLS": "1"}})
	c := browserCallsPhone(t, g)
	if n := g.metric(t, "switchboard_calls_refused_busy_total"); n != 0 {
		t.Fatalf("switchboard_calls_refused_busy_total = %v below the cap", n)
	}
	stop := flowAudio(t, c.br, c.ph)
	defer stop()

	second := mediapeer.NewBrowser(t, mediapeer.BrowserOptions{Wait: webrtcWait})
	_, _, err := c.br.invite("1000", second.Offer())
	if err == nil {
		t.Fatal("a second bridged call was taken beyond SWITCHBOARD_MAX_CALLS=1")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "INVITE: 503 ") || !regexp.MustCompile(`(?m)^Retry-After: 5\r?$`).MatchString(msg) {
		t.Fatalf("second call: %v; want 503 with Retry-After: 5", err)
	}
	if n := g.metric(t, "switchboard_calls_refused_busy_total"); n != 1 {
		t.Errorf("switchboard_calls_refused_busy_total = %v, want 1", n)
	}
}

// coturn is a TURN server (coturn's turnserver) for one test, with
// time-limited credentials from a shared secret.
type coturn struct {
	port int
	log  string
}

// startCoturn starts turnserver on 127.0.0.1 and waits until it answers
// STUN; it is stopped when t ends.
func startCoturn(t *testing.T, secret string) *coturn {
	t.Helper()
	return startCoturnWith(t, coturnOptions{secret: secret})
}

// coturnOptions say where a TURN server runs.
type coturnOptions struct {
	secret string
	// in runs it in a host of a simulated internet (netsim), on ip, at
	// the standard ports: 3478, and 443 for TLS when certFile and keyFile
	// are given. Without in, it runs on 127.0.0.1 at free ports.
	in                *netsim.Host
	ip                string
	certFile, keyFile string
}

func startCoturnWith(t *testing.T, o coturnOptions) *coturn {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatal("turnserver is not installed: install the Debian package coturn (make test does, with scripts/deps.sh)")
	}
	dir := t.TempDir()
	c := &coturn{log: filepath.Join(dir, "turnserver.log")}
	args := []string{"-n",
		"--use-auth-secret", "--static-auth-secret=" + o.secret, "--realm=switchboard.test",
		"--no-cli", "--no-dtls", "--no-rfc5780", "--no-software-attribute", "--fingerprint",
		"--log-file=stdout", "--simple-log", "--verbose",
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"), "--db=" + filepath.Join(dir, "turndb")}
	if o.in == nil {
		o.ip = "127.0.0.1"
		c.port = freeSIPPort(t, o.ip)
		relay := freePort(t, "udp", o.ip)
		args = append(args, "--min-port="+strconv.Itoa(relay), "--max-port="+strconv.Itoa(min(relay+200, 65535)),
			// The gateway is on loopback, which coturn refuses to relay
			// to unless told: only in this test.
			"--allow-loopback-peers")
	} else {
		c.port = 3478
		args = append(args, "--min-port=49152", "--max-port=49407")
	}
	if o.certFile != "" {
		args = append(args, "--tls-listening-port=443", "--cert="+o.certFile, "--pkey="+o.keyFile)
	} else {
		args = append(args, "--no-tls")
	}
	args = append(args, "--listening-ip="+o.ip, "--listening-port="+strconv.Itoa(c.port), "--relay-ip="+o.ip)
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	if o.in != nil {
		cmd = o.in.Command(context.Background(), bin, args...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnserver: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("--- turnserver log ---\n%s", tail(readFile(c.log), 64<<10))
		}
	})
	if err := stunPing(net.JoinHostPort(o.ip, strconv.Itoa(c.port)), exited); err != nil {
		t.Fatalf("turnserver: %v\n%s", err, readFile(c.log))
	}
	return c
}

// stunPing sends STUN binding requests to addr until one is answered.
func stunPing(addr string, exited <-chan struct{}) error {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Binding request (RFC 5389 §6): type 1, no attributes, the magic
	// cookie and a transaction id.
	req := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited")
		default:
		}
		if _, err := conn.Write(req); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && n >= 20 && buf[0] == 1 && buf[1] == 1 {
			return nil
		}
	}
	return fmt.Errorf("no STUN answer from %s within %v", addr, readyTimeout)
}

// TestTURNRelayCall: a browser that may use relay candidates only (a
// network that lets nothing through but its TURN server) gets time-limited
// credentials from the gateway's /api/ice-servers as alice, allocates a
// relay on a real coturn with use-auth-secret, and calls a phone through
// it with audio both ways; the admin API and /metrics see a relayed call.
func TestTURNRelayCall(t *testing.T) {
	const secret = "e2e-turn-shared-secret-0123456789"
	turn := startCoturn(t, secret)
	g := startGateway(t, gatewayOptions{env: map[string]string{
		"SWITCHBOARD_ADMIN_TOKEN": adminToken,
		"SWITCHBOARD_TURN_URLS":   fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", turn.port),
		"SWITCHBOARD_TURN_SECRET": secret,
	}})

	// The credentials, as a web app gets them: Digest with alice's SIP
	// password.
	res, _ := g.httpGet(t, "/api/ice-servers", nil)
	ch, err := digest.ParseChallenge(res.Header.Get("WWW-Authenticate"))
	if res.StatusCode != http.StatusUnauthorized || err != nil {
		t.Fatalf("/api/ice-servers without credentials: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	client := digest.Client{Username: "alice", Password: users["alice"]}
	cr, err := client.Authorize(ch, http.MethodGet, "/api/ice-servers")
	if err != nil {
		t.Fatal(err)
	}
	res, body := g.httpGet(t, "/api/ice-servers", http.Header{"Authorization": {cr.String()}})
	var got struct {
		ICEServers []webrtc.ICEServer `json:"iceServers"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || len(got.ICEServers) != 1 {
		t.Fatalf("/api/ice-servers: %d %s", res.StatusCode, body)
	}
	if u := got.ICEServers[0].Username; !strings.HasSuffix(u, ":alice") {
		t.Fatalf("TURN username %v", got.ICEServers[0].Username)
	}

	c := browserCallsPhoneWith(t, g, mediapeer.BrowserOptions{ICEServers: got.ICEServers, RelayOnly: true})
	offer := c.br.PC.LocalDescription().SDP
	if !strings.Contains(offer, " typ relay") || strings.Contains(offer, " typ host") {
		t.Fatalf("the browser's offer is not relay-only:\n%s", offer)
	}
	stop := flowAudio(t, c.br, c.ph)
	defer stop()
	if local, _ := c.br.SelectedPair(); local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("the browser's pair is %s", local.String())
	}
	tr := g.webTransport(t).Media.Web.Transport
	if tr.Remote.Type != "relay" || tr.Remote.Protocol != "udp" || tr.Local.Type != "host" {
		t.Errorf("admin API transport %+v", *tr)
	}
	g.expectMetric(t, `switchboard_webrtc_transports_total{local_protocol="udp",local_type="host",remote_protocol="udp",remote_type="relay"}`, 1)
	// coturn saw the allocation of the user alice.
	if !strings.Contains(readFile(turn.log), ":alice") {
		t.Errorf("the TURN server's log does not show alice's allocation")
	}
	if strings.Contains(readFile(g.logPath), secret) {
		t.Error("the gateway's log shows the TURN secret")
	}
}
