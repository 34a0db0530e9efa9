package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/gateway/iceservers"
	"github.com/switchboard/switchboard/sip/digest"
)

const testTURNSecret = "turn-shared-secret-0123456789"

// iceGet sends GET /api/ice-servers with the headers given.
func (g *testGateway) iceGet(t *testing.T, hdr http.Header) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.addr+iceServersPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// iceAuth answers the challenge of res as user with password, for uri.
func iceAuth(t *testing.T, res *http.Response, user, password, uri string) http.Header {
	t.Helper()
	ch, err := digest.ParseChallenge(res.Header.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatalf("challenge %q: %v", res.Header.Get("WWW-Authenticate"), err)
	}
	client := digest.Client{Username: user, Password: password}
	cr, err := client.Authorize(ch, http.MethodGet, uri)
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"Authorization": {cr.String()}}
}

// TestICEServersAPI: /api/ice-servers hands TURN credentials of the
// REST API scheme to users of the gateway that answer its Digest
// challenge, and to nobody else; /config.json points the softphone at
// it; the secret never reaches the log.
func TestICEServersAPI(t *testing.T) {
	g := startGateway(t, testConfig(t, map[string]string{
		"SWITCHBOARD_USERS":       "alice:alice-secret",
		"SWITCHBOARD_TURN_URLS":   "turn:127.0.0.1:3478,turns:turn.example.com:5349?transport=tcp",
		"SWITCHBOARD_TURN_SECRET": testTURNSecret,
		"SWITCHBOARD_TURN_TTL":    "1h",
		"SWITCHBOARD_WS_ORIGINS":  "https://app.example.com",
	}))

	_, _, cfg := g.get(t, "/config.json")
	if !strings.Contains(cfg, `"iceServersPath":"/api/ice-servers"`) || strings.Contains(cfg, "turn:") {
		t.Errorf("/config.json %s: want the path, and no servers", cfg)
	}

	res, body := g.iceGet(t, nil)
	if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Digest ") {
		t.Fatalf("no credentials: %d %s %q", res.StatusCode, body, res.Header.Get("WWW-Authenticate"))
	}
	if strings.Contains(body, "turn:") {
		t.Fatalf("the 401 shows the servers: %s", body)
	}

	// A wrong password: 401 again, counted by the throttle.
	bad, body := g.iceGet(t, iceAuth(t, res, "alice", "guess", iceServersPath))
	if bad.StatusCode != http.StatusUnauthorized || strings.Contains(body, "iceServers") {
		t.Fatalf("wrong password: %d %s", bad.StatusCode, body)
	}
	if v := g.metric(t, `switchboard_auth_failures_total{origin="http"}`); v != 1 {
		t.Errorf("http auth failures %v, want 1", v)
	}
	// Credentials for another URI are not for this request.
	if r, body := g.iceGet(t, iceAuth(t, res, "alice", "alice-secret", "/admin/calls")); r.StatusCode != http.StatusBadRequest {
		t.Errorf("digest of another uri: %d %s, want 400", r.StatusCode, body)
	}

	before := time.Now()
	ok, body := g.iceGet(t, iceAuth(t, res, "alice", "alice-secret", iceServersPath))
	if ok.StatusCode != http.StatusOK || ok.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("good credentials: %d %s (Cache-Control %q)", ok.StatusCode, body, ok.Header.Get("Cache-Control"))
	}
	var got iceservers.Servers
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(got.ICEServers) != 1 || len(got.ICEServers[0].URLs) != 2 || got.TTL != 3600 {
		t.Fatalf("servers %s", body)
	}
	s := got.ICEServers[0]
	exp, user, _ := strings.Cut(s.Username, ":")
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || user != "alice" || s.Credential != iceservers.Password([]byte(testTURNSecret), s.Username) {
		t.Fatalf("credentials %q / %q", s.Username, s.Credential)
	}
	if d := time.Unix(expires, 0).Sub(before); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("credentials expire in %v, want an hour", d)
	}

	// A page of an allowed origin may read the answer (CORS); others not.
	r, _ := g.iceGet(t, http.Header{"Origin": {"https://app.example.com"}})
	if r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("allowed origin: CORS headers %v", r.Header)
	}
	if r, _ := g.iceGet(t, http.Header{"Origin": {"https://evil.example"}}); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin allowed: %v", r.Header)
	}
	if code, _, _ := g.get(t, iceServersPath+"?x=1"); code != http.StatusUnauthorized {
		t.Errorf("with a query: %d", code)
	}
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}
	if log := g.log.String(); strings.Contains(log, testTURNSecret) || strings.Contains(log, s.Credential) {
		t.Errorf("the log shows the TURN secret or a password:\n%s", log)
	}
	if !strings.Contains(g.log.String(), "turn:127.0.0.1:3478") {
		t.Errorf("the listening line does not name the TURN servers:\n%s", g.log.String())
	}
}

// TestICEServersAPIWithoutTURN: with no servers configured the endpoint
// still wants a user, then hands out an empty list; /config.json does not
// point at it.
func TestICEServersAPIWithoutTURN(t *testing.T) {
	g := startGateway(t, testConfig(t, map[string]string{"SWITCHBOARD_USERS": "alice:alice-secret"}))
	if _, _, cfg := g.get(t, "/config.json"); strings.Contains(cfg, "iceServersPath") {
		t.Errorf("/config.json %s", cfg)
	}
	res, _ := g.iceGet(t, nil)
	ok, body := g.iceGet(t, iceAuth(t, res, "alice", "alice-secret", iceServersPath))
	if ok.StatusCode != http.StatusOK || strings.TrimSpace(body) != "{\n  \"iceServers\": []\n}" {
		t.Errorf("%d %q", ok.StatusCode, body)
	}
}
