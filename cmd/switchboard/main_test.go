package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/transport/transporttest"
)

// testTimeout bounds every wait in these tests, so that a hang fails the
// test with a message instead of stalling the suite.
const testTimeout = 10 * time.Second

// testConfig is a valid configuration that listens on a free loopback port,
// opens no SIP listener and keeps its data in a temporary directory.
func testConfig(t *testing.T, extra map[string]string) Config {
	t.Helper()
	environ := map[string]string{
		"SWITCHBOARD_HTTP":     "127.0.0.1:0",
		"SWITCHBOARD_SIP_UDP":  "",
		"SWITCHBOARD_SIP_TCP":  "",
		"SWITCHBOARD_DATA_DIR": filepath.Join(t.TempDir(), "data"),
		"SWITCHBOARD_ICE_PORT": "0",
	}
	for k, v := range extra {
		environ[k] = v
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// gateway is a run() started by a test.
type testGateway struct {
	l      listening           // where it listens
	addr   string              // HTTP address, host:port
	log    *transporttest.Logs // what run wrote to stdout
	cancel func()              // asks run to stop
	done   <-chan error        // receives run's result
}

// startGateway starts run with cfg and waits until it listens.
func startGateway(t *testing.T, cfg Config) *testGateway {
	t.Helper()
	return startGatewayWith(t, cfg, control{})
}

// startGatewayWith is startGateway with a control; its ready is replaced.
func startGatewayWith(t *testing.T, cfg Config, ctl control) *testGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	log := &transporttest.Logs{}
	bound := make(chan listening, 1)
	done := make(chan error, 1)
	go func() {
		ctl.ready = func(l listening) { bound <- l }
		done <- run(ctx, cfg, log, ctl)
	}()
	select {
	case l := <-bound:
		g := &testGateway{l: l, addr: l.HTTP.String(), log: log, cancel: cancel, done: done}
		t.Cleanup(func() { g.stop(t) })
		return g
	case err := <-done:
		cancel()
		t.Fatalf("run returned before listening: %v\nlog:\n%s", err, log)
	case <-time.After(testTimeout):
		cancel()
		t.Fatalf("run did not listen within %v\nlog:\n%s", testTimeout, log)
	}
	return nil
}

// stop cancels run and returns its result; later calls return nil.
func (g *testGateway) stop(t *testing.T) error {
	t.Helper()
	if g.done == nil {
		return nil
	}
	g.cancel()
	defer func() { g.done = nil }()
	select {
	case err := <-g.done:
		return err
	case <-time.After(testTimeout):
		t.Fatalf("run did not return within %v of cancel\nlog:\n%s", testTimeout, g.log)
		return nil
	}
}

func (g *testGateway) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestRunServesHTTPAndStops(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			g := startGateway(t, testConfig(t, map[string]string{"SWITCHBOARD_LOG_FORMAT": format}))

			if code, _, body := g.get(t, "/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
				t.Errorf("/healthz = %d %q, want 200 ok", code, body)
			}
			if code, _, body := g.get(t, "/readyz"); code != http.StatusOK {
				t.Errorf("/readyz = %d %q, want 200", code, body)
			}
			code, hdr, body := g.get(t, "/metrics")
			if code != http.StatusOK {
				t.Errorf("/metrics = %d", code)
			}
			for _, metric := range []string{`switchboard_build_info{goversion="`, "go_goroutines ", "process_start_time_seconds ", "promhttp_metric_handler_requests_total"} {
				if !strings.Contains(body, metric) {
					t.Errorf("/metrics has no %s", metric)
				}
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("/metrics Content-Type = %q", ct)
			}
			code, hdr, body = g.get(t, "/")
			// The softphone, or the page saying how to build it.
			if code != http.StatusOK || !strings.Contains(body, "Switchboard") {
				t.Errorf("/ = %d %q", code, body)
			}
			if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("/ Content-Security-Policy = %q", csp)
			}
			if code, _, body := g.get(t, "/config.json"); code != http.StatusOK || !strings.Contains(body, `"domain"`) {
				t.Errorf("/config.json = %d %q", code, body)
			}
			if code, _, _ := g.get(t, "/no-such-page"); code != http.StatusNotFound {
				t.Errorf("/no-such-page = %d, want 404", code)
			}

			if err := g.stop(t); err != nil {
				t.Fatalf("run returned %v after cancel, want nil", err)
			}
			log := g.log.String()
			for _, want := range []string{"alice", "alice-secret", "bob", "bob-secret", "listening", "stopped"} {
				if !strings.Contains(log, want) {
					t.Errorf("log does not mention %q:\n%s", want, log)
				}
			}
			if format == "json" {
				sc := bufio.NewScanner(strings.NewReader(log))
				for sc.Scan() {
					if !json.Valid(sc.Bytes()) {
						t.Errorf("log line is not JSON: %s", sc.Text())
					}
				}
			}
		})
	}
}

func TestRunReleasesPortOnStop(t *testing.T) {
	g := startGateway(t, testConfig(t, nil))
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}
	// Once run has returned, the port must be free again: a restarted
	// gateway gets it back.
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		t.Fatalf("port still taken after run returned: %v", err)
	}
	ln.Close()
}

func TestRunFailsWhenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, map[string]string{"SWITCHBOARD_HTTP": ln.Addr().String()})

	done := make(chan error, 1)
	go func() { done <- run(t.Context(), cfg, io.Discard, control{}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listen http") {
			t.Errorf("run = %v, want a listen error", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("run did not fail on a taken port")
	}
}

func TestRunFailsWhenDataDirUnusable(t *testing.T) {
	// A directory below a regular file can never be created.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, nil)
	cfg.DataDir = filepath.Join(blocker, "data")
	err := run(t.Context(), cfg, io.Discard, control{})
	if err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("run = %v, want a data directory error", err)
	}
}

func TestStartAccounts(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantDemo  bool
		wantFixed bool
	}{
		{"loopback quick start", nil, true, true},
		{"exposed quick start", map[string]string{"SWITCHBOARD_SIP_UDP": "0.0.0.0:5060"}, true, false},
		{"configured users", map[string]string{"SWITCHBOARD_USERS": "carol:c"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.env)
			accounts, demo := startAccounts(cfg)
			if demo != tt.wantDemo {
				t.Fatalf("demo = %v, want %v", demo, tt.wantDemo)
			}
			if !demo {
				if len(accounts) != 1 || accounts[0].User != "carol" {
					t.Errorf("accounts = %v, want the configured ones", accounts)
				}
				return
			}
			if len(accounts) != 2 || accounts[0].User != "alice" || accounts[1].User != "bob" {
				t.Fatalf("accounts = %v, want alice and bob", accounts)
			}
			fixed := accounts[0].Password == "alice-secret" && accounts[1].Password == "bob-secret"
			if fixed != tt.wantFixed {
				t.Errorf("fixed passwords = %v, want %v", fixed, tt.wantFixed)
			}
			if !fixed && (len(accounts[0].Password) < 16 || accounts[0].Password == accounts[1].Password) {
				t.Errorf("random passwords look weak")
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	var ready atomic.Bool
	mux := newMux(newMetricsRegistry(), &ready, discardLogger())
	for _, tt := range []struct {
		ready bool
		want  int
	}{{false, http.StatusServiceUnavailable}, {true, http.StatusOK}} {
		ready.Store(tt.ready)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tt.want {
			t.Errorf("ready=%v: /readyz = %d, want %d", tt.ready, rec.Code, tt.want)
		}
	}
	// Probes are GET or HEAD; anything else is refused.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", rec.Code)
	}
}

func TestRealMain(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"version", []string{"version"}, nil, 0, "switchboard dev (", ""},
		{"help", []string{"-h"}, nil, 0, "usage:", ""},
		{"unknown argument", []string{"serve"}, nil, 2, "", "unknown arguments"},
		{"bad setting", nil, []string{"SWITCHBOARD_RTP_PORTS=1"}, 2, "", "SWITCHBOARD_RTP_PORTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(tt.args, tt.environ, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestVersionString(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v1.2.3"
	if got := versionString(); !strings.HasPrefix(got, "switchboard v1.2.3 (") || !strings.Contains(got, "go1.") {
		t.Errorf("versionString() = %q", got)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
