package sipws

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/transport/transporttest"
)

// dialHost dials s with the Host header host and returns the HTTP status:
// 101 when the handshake succeeded.
func (s *server) dialHost(t *testing.T, host string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.url(), &websocket.DialOptions{
		HTTPClient:   s.srv.Client(),
		Host:         host,
		Subprotocols: []string{"sip"},
	})
	if err == nil {
		c.CloseNow()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial with Host %q: %v", host, err)
	}
	return resp.StatusCode
}

func TestHost(t *testing.T) {
	var logs transporttest.Logs
	s := start(t, Options{
		AllowedHosts: []string{"sip.example.com", "*.example.net", "203.0.113.7", "[2001:db8::7]"},
		Logger:       logs.Logger(),
	})
	self := strings.TrimPrefix(s.srv.URL, "http://") // 127.0.0.1:port
	tests := []struct {
		host string
		want int
	}{
		{"", http.StatusSwitchingProtocols}, // the URL's: the listener's address
		{self, http.StatusSwitchingProtocols},
		{"127.0.0.1", http.StatusSwitchingProtocols},
		{"127.0.0.1:1", http.StatusSwitchingProtocols}, // any port
		{"localhost", http.StatusSwitchingProtocols},   // loopback listener
		{"LOCALHOST:8080", http.StatusSwitchingProtocols},
		{"sip.example.com", http.StatusSwitchingProtocols},
		{"SIP.Example.COM.:443", http.StatusSwitchingProtocols},
		{"a.b.example.net:8080", http.StatusSwitchingProtocols},
		{"203.0.113.7:8080", http.StatusSwitchingProtocols},
		{"[2001:db8::7]:443", http.StatusSwitchingProtocols},

		{"attacker.example", http.StatusForbidden},
		{"attacker.example:" + strings.Split(self, ":")[1], http.StatusForbidden},
		{"sip.example.com.attacker.example", http.StatusForbidden},
		{"attacker-sip.example.com", http.StatusForbidden},
		{"example.net", http.StatusForbidden},
		{"127.0.0.2", http.StatusForbidden}, // loopback, but not where we listen
		{"[::1]", http.StatusForbidden},
		{"203.0.113.8", http.StatusForbidden},
		{"localhost.attacker.example", http.StatusForbidden},
	}
	for _, tt := range tests {
		if got := s.dialHost(t, tt.host); got != tt.want {
			t.Errorf("Host %q: HTTP %d, want %d", tt.host, got, tt.want)
		}
	}
	if got, want := s.tr.Stats().Refused, uint64(9); got != want {
		t.Errorf("Stats().Refused = %d, want %d", got, want)
	}
	log := logs.String()
	for _, want := range []string{`msg="sipws: host refused" host=attacker.example remote=127.0.0.1:`, "host=127.0.0.2"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestHostOrigin: the Host check comes first, so that a rebinding page,
// whose Origin matches its Host, cannot pass as same-origin.
func TestHostOrigin(t *testing.T) {
	s := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, s.url(), &websocket.DialOptions{
		HTTPClient:   s.srv.Client(),
		Host:         "attacker.example:8080",
		HTTPHeader:   http.Header{"Origin": {"http://attacker.example:8080"}},
		Subprotocols: []string{"sip"},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rebinding handshake: %v (response %v), want 403", err, resp)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	if !strings.Contains(body.String(), "host not allowed") {
		t.Errorf("403 body %q does not say what was wrong", body)
	}
}

// TestHostHTTP2: over HTTP/2 the host is the :authority pseudo-header,
// which net/http puts in Request.Host like the Host header.
func TestHostHTTP2(t *testing.T) {
	s := startWith(t, Options{}, func(h http.Handler) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		return srv
	}, 16)
	for host, want := range map[string]int{
		"attacker.example": http.StatusForbidden,
		// Ours: refused further on, for want of a WebSocket upgrade.
		strings.TrimPrefix(s.srv.URL, "https://"): http.StatusBadRequest,
	} {
		req, err := http.NewRequest(http.MethodGet, s.srv.URL+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("request went over %s, want HTTP/2", resp.Proto)
		}
		if resp.StatusCode != want {
			t.Errorf(":authority %q: HTTP %d, want %d", host, resp.StatusCode, want)
		}
	}
}

func TestHostPatterns(t *testing.T) {
	bad := []string{"", " ", "*", "*.", "sip.example.com:443", "http://sip.example.com", "sip.example.com/ws",
		"u@sip.example.com", "a*.example.com", "*.*.example.com", "sip..example.com", ".example.com", "[::1]:443"}
	for _, s := range bad {
		if _, err := New(Options{AllowedHosts: []string{s}}); err == nil {
			t.Errorf("New accepted host %q", s)
		}
	}
	good := []string{"sip.example.com", "SIP.Example.com.", "*.example.com", "localhost", "203.0.113.7",
		"2001:db8::1", "[2001:db8::1]", "::ffff:192.0.2.1"}
	for _, s := range good {
		if _, err := New(Options{AllowedHosts: []string{s}}); err != nil {
			t.Errorf("New refused host %q: %v", s, err)
		}
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct {
		in   string
		name string
		ip   string
		ok   bool
	}{
		{"example.com", "example.com", "", true},
		{"Example.COM.:8080", "example.com", "", true},
		{"example.com:", "example.com", "", true},
		{"192.0.2.1:5060", "", "192.0.2.1", true},
		{"[2001:db8::1]:443", "", "2001:db8::1", true},
		{"[::ffff:192.0.2.1]", "", "192.0.2.1", true},
		{"[fe80::1%25eth0]:80", "", "fe80::1", true},
		{"", "", "", false},
		{":80", "", "", false},
		{"2001:db8::1", "", "", false}, // IPv6 without brackets
		{"[2001:db8::1", "", "", false},
		{"[192.0.2.1]", "", "", false},
		{"[2001:db8::1]x", "", "", false},
		{"example.com:http", "", "", false},
		{"example.com:1234567", "", "", false},
		{".", "", "", false},
	}
	for _, tt := range tests {
		name, ip, ok := splitHost(tt.in)
		var want netip.Addr
		if tt.ip != "" {
			want = netip.MustParseAddr(tt.ip)
		}
		if name != tt.name || ip != want || ok != tt.ok {
			t.Errorf("splitHost(%q) = %q, %v, %v; want %q, %v, %v", tt.in, name, ip, ok, tt.name, want, tt.ok)
		}
	}
}
