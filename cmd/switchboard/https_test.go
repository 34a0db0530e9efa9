package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/forwarded"
	"github.com/switchboard/switchboard/gateway/accounts"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/transport/transporttest"
)

// tlsGateway starts a gateway with HTTPS and SIP TLS on loopback, its
// certificate files issued by a test CA for localhost and 127.0.0.1.
func tlsGateway(t *testing.T, extra map[string]string, ctl control) (*testGateway, *transporttest.CA, string) {
	t.Helper()
	ca := transporttest.NewCA(t)
	dir := t.TempDir()
	cert, key := ca.IssueFiles(t, dir, "localhost", "127.0.0.1")
	env := map[string]string{
		"SWITCHBOARD_HTTPS":    "127.0.0.1:0",
		"SWITCHBOARD_SIP_TLS":  "127.0.0.1:0",
		"SWITCHBOARD_TLS_CERT": cert,
		"SWITCHBOARD_TLS_KEY":  key,
	}
	for k, v := range extra {
		env[k] = v
	}
	return startGatewayWith(t, testConfig(t, env), ctl), ca, dir
}

// httpsClient trusts ca and follows no redirect.
func httpsClient(ca *transporttest.CA) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       testTimeout,
	}
}

func do(t *testing.T, c *http.Client, method, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	res.Body.Close()
	return res
}

// leafOf returns the certificate a TLS listener presents to a client that
// trusts ca, for localhost.
func leafOf(t *testing.T, addr string, ca *transporttest.CA) []byte {
	t.Helper()
	d := &tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
}

// dialWSS opens a SIP WebSocket over TLS.
func dialWSS(t *testing.T, addr string, ca *transporttest.CA) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+addr+"/ws", &websocket.DialOptions{
		HTTPClient:   httpsClient(ca),
		Subprotocols: []string{"sip"},
	})
	if err != nil {
		t.Fatalf("wss://%s/ws: %v", addr, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// options sends an OPTIONS over a WebSocket and returns the response,
// whatever its status: the gateway answered over the flow.
func options(t *testing.T, c *websocket.Conn, callID string) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(transporttest.OptionsRequest(callID, "WSS"))); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	msg, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.CallID() != callID {
		t.Fatalf("got a request, want the OPTIONS response: %q", b)
	}
	return res
}

// TestHTTPS: with SWITCHBOARD_HTTPS the web endpoints are served over TLS
// with the certificate of the files, /ws as WSS; the plain listener
// redirects with 308 to the same path and query, except the health checks
// and metrics; SIP TLS presents the same certificate.
func TestHTTPS(t *testing.T) {
	g, ca, _ := tlsGateway(t, nil, control{})
	https := g.l.HTTPS.String()
	client := httpsClient(ca)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/config.json", "/"} {
		if res := do(t, client, "GET", "https://"+https+path, nil); res.StatusCode != http.StatusOK {
			t.Errorf("GET https://%s%s: %d, want 200", https, path, res.StatusCode)
		}
	}
	if res := do(t, client, "GET", "https://"+https+"/admin/calls", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("admin API over HTTPS without a token: %d, want its 404", res.StatusCode)
	}

	_, httpsPort, _ := net.SplitHostPort(https)
	for _, tt := range []struct{ host, path, want string }{
		{"", "/config.json?x=1&y=%20", "https://127.0.0.1:" + httpsPort + "/config.json?x=1&y=%20"},
		{"localhost:8080", "/", "https://localhost:" + httpsPort + "/"},
		{"localhost", "/ws", "https://localhost:" + httpsPort + "/ws"},
		{"[::1]:8080", "/admin/calls", "https://[::1]:" + httpsPort + "/admin/calls"},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+g.addr+tt.path, nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != tt.want {
			t.Errorf("POST http://%s%s (Host %q): %d %q, want 308 %q", g.addr, tt.path, tt.host, res.StatusCode, res.Header.Get("Location"), tt.want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if res := do(t, client, "GET", "http://"+g.addr+path, nil); res.StatusCode != http.StatusOK {
			t.Errorf("GET http://%s%s: %d, want 200 without redirect", g.addr, path, res.StatusCode)
		}
	}

	// WSS carries SIP.
	c := dialWSS(t, https, ca)
	options(t, c, "https-1")
	// SIP TLS has the same certificate.
	if a, b := leafOf(t, https, ca), leafOf(t, g.l.TLS.String(), ca); string(a) != string(b) {
		t.Error("HTTPS and SIP TLS present different certificates")
	}
	if log := g.log.String(); !strings.Contains(log, "https=https://"+https+"/") || !strings.Contains(log, "wss=wss://"+https+"/ws") {
		t.Errorf("the listening line does not name HTTPS and WSS:\n%s", log)
	}
}

// TestRedirectToHTTPS: the redirect's edge cases, and a proxy that
// terminates TLS and forwards to the plain listener: believed only from a
// trusted address.
func TestRedirectToHTTPS(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	trust := &forwarded.Trust{Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	h := redirectToHTTPS(next, 443, trust)
	for _, tt := range []struct {
		name, remote, host, proto string
		wantCode                  int
		wantLocation              string
	}{
		{"port 443 is left out", "192.0.2.1:1", "sip.example.com:80", "", 308, "https://sip.example.com/p?q=1"},
		{"IPv6", "192.0.2.1:1", "[2001:db8::1]", "", 308, "https://[2001:db8::1]/p?q=1"},
		{"no host", "192.0.2.1:1", "", "", 400, ""},
		{"bad host", "192.0.2.1:1", "a_b", "", 400, ""},
		{"trusted proxy over https: served", "10.0.0.1:1", "sip.example.com", "https", 299, ""},
		{"trusted proxy over http: redirected", "10.0.0.1:1", "sip.example.com", "http", 308, "https://sip.example.com/p?q=1"},
		{"a client that says https: redirected", "192.0.2.1:1", "sip.example.com", "https", 308, "https://sip.example.com/p?q=1"},
	} {
		r := httptest.NewRequest("GET", "http://x/p?q=1", nil)
		r.RemoteAddr, r.Host = tt.remote, tt.host
		if tt.proto != "" {
			r.Header.Set("X-Forwarded-For", "192.0.2.9")
			r.Header.Set("X-Forwarded-Proto", tt.proto)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.wantCode || w.Header().Get("Location") != tt.wantLocation {
			t.Errorf("%s: %d %q, want %d %q", tt.name, w.Code, w.Header().Get("Location"), tt.wantCode, tt.wantLocation)
		}
	}
}

// TestCertificateReload: a reload (SIGHUP) reads the certificate files
// again; new handshakes, HTTPS and SIP TLS, get the new certificate, the
// connections up stay up; files that do not load change nothing.
func TestCertificateReload(t *testing.T) {
	reload := make(chan struct{})
	reloaded := make(chan error, 1)
	g, ca, dir := tlsGateway(t, nil, control{reload: reload, reloaded: func(err error) { reloaded <- err }})
	https, sipTLS := g.l.HTTPS.String(), g.l.TLS.String()
	old := leafOf(t, https, ca)
	ws := dialWSS(t, https, ca)
	options(t, ws, "reload-1")

	ca.IssueFiles(t, dir, "localhost", "127.0.0.1")
	if err := g.reload(t, reload, reloaded); err != nil {
		t.Fatalf("reload: %v", err)
	}
	renewed := leafOf(t, https, ca)
	if string(renewed) == string(old) {
		t.Fatal("HTTPS presents the old certificate after the reload")
	}
	if string(leafOf(t, sipTLS, ca)) != string(renewed) {
		t.Error("SIP TLS does not present the new certificate")
	}
	// The connection opened before the reload still carries SIP.
	options(t, ws, "reload-2")
	if !strings.Contains(g.log.String(), "tls certificate reloaded") {
		t.Error("the reload is not logged")
	}

	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.reload(t, reload, reloaded); err == nil || !strings.Contains(err.Error(), "tls certificate") {
		t.Fatalf("reload of a broken certificate: %v, want an error", err)
	}
	if string(leafOf(t, https, ca)) != string(renewed) {
		t.Error("a failed reload changed the certificate")
	}
	if got := g.metric(t, `switchboard_config_reloads_total{result="error"}`); got != 1 {
		t.Errorf("failed reloads counted %v, want 1", got)
	}
}

// TestAdminThrottleBehindProxy: the admin API's throttle keys by the
// client the trusted proxy names, and by the connection's peer for
// everyone else, whatever X-Forwarded-For they send: an attacker cannot
// escape the throttle, nor get a victim blocked, by naming addresses.
func TestAdminThrottleBehindProxy(t *testing.T) {
	const token = "0123456789abcdef-admin"
	g := startGateway(t, testConfig(t, map[string]string{
		"SWITCHBOARD_ADMIN_TOKEN":     token,
		"SWITCHBOARD_TRUSTED_PROXIES": "127.0.0.2",
	}))
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testTimeout}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: testTimeout}
	}
	attacker, proxy := from("127.0.0.1"), from("127.0.0.2")
	ask := func(c *http.Client, xff, auth string) int {
		h := http.Header{"Authorization": {auth}}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		return do(t, c, "GET", "http://"+g.addr+"/admin/calls", h).StatusCode
	}

	// The attacker names a new address with each guess, and a victim's.
	for i := range accounts.DefaultMaxFailures {
		if code := ask(attacker, "198.51.100."+strconv.Itoa(i)+", 198.51.100.200", "Bearer guess"); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code := ask(attacker, "198.51.100.77", "Bearer "+token); code != http.StatusTooManyRequests {
		t.Errorf("the attacker after %d guesses under other names: %d, want 429 under its own address", accounts.DefaultMaxFailures, code)
	}
	if code := ask(proxy, "198.51.100.200", "Bearer "+token); code != http.StatusOK {
		t.Errorf("the victim the attacker named, through the proxy: %d, want 200", code)
	}

	// Behind the proxy, one client's guesses block that client only.
	for range accounts.DefaultMaxFailures {
		ask(proxy, "198.51.100.9", "Bearer guess")
	}
	if code := ask(proxy, "198.51.100.9", "Bearer "+token); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client behind the proxy: %d, want 429", code)
	}
	if code := ask(proxy, "198.51.100.10", "Bearer "+token); code != http.StatusOK {
		t.Errorf("another client behind the same proxy: %d, want 200", code)
	}
	if log := g.log.String(); !strings.Contains(log, "remote=198.51.100.9:0") || !strings.Contains(log, "remote=127.0.0.1:") {
		t.Errorf("the log does not name the clients:\n%s", log)
	}
}
