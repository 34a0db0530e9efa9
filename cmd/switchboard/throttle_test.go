package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/gateway/accounts"
)

// TestAdminThrottle: wrong bearer tokens count in the gateway's one
// throttle; after DefaultMaxFailures the source gets 429 with Retry-After,
// even with the right token, and is refused at the registrar too. A
// request without credentials guesses nothing and does not count.
func TestAdminThrottle(t *testing.T) {
	const token = "0123456789abcdef-admin"
	g := startGateway(t, udpConfig(t, map[string]string{"SWITCHBOARD_ADMIN_TOKEN": token}))
	for range 2 * accounts.DefaultMaxFailures {
		if code, _, _ := g.admin(t, http.MethodGet, "/admin/calls", ""); code != http.StatusUnauthorized {
			t.Fatalf("without a token: %d, want 401", code)
		}
	}
	if v := g.metric(t, `switchboard_auth_failures_total{origin="admin"}`); v != 0 {
		t.Fatalf("admin failures after requests without a token: %v, want 0", v)
	}
	for i := range accounts.DefaultMaxFailures {
		if code, _, _ := g.admin(t, http.MethodGet, "/admin/calls", "Bearer guess-"+strconv.Itoa(i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, code)
		}
	}
	code, hdr, body := g.admin(t, http.MethodGet, "/admin/calls", "Bearer "+token)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "too many failed attempts") {
		t.Fatalf("right token from a blocked source: %d %s, want 429", code, body)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 300 {
		t.Errorf("Retry-After %q, want 1 to 300 seconds", hdr.Get("Retry-After"))
	}
	// The same source is refused at the registrar: one throttle. Over UDP
	// its REGISTER is dropped before any transaction; the in-dialog BYE
	// sent after it is then the first request answered.
	phone := newSIPPhone(t, g.l.UDP)
	phone.sendOnly("REGISTER", "sip:localhost", "From: <sip:alice@localhost>;tag=r1", "To: <sip:alice@localhost>")
	if res := phone.send("BYE", "sip:bob@localhost", "From: <sip:alice@localhost>;tag=r2", "To: <sip:bob@localhost>;tag=y"); res.CSeq().Method != "BYE" {
		t.Errorf("REGISTER from the blocked source got %d %s, want it dropped", res.StatusCode, res.Reason)
	}
	for series, want := range map[string]float64{
		`switchboard_auth_failures_total{origin="admin"}`:           float64(accounts.DefaultMaxFailures),
		`switchboard_auth_failures_total{origin="register"}`:        0,
		`switchboard_auth_failures_total{origin="proxy"}`:           0,
		`switchboard_auth_failures_total{origin="probe"}`:           0,
		`switchboard_auth_refused_total`:                            2,
		`switchboard_sip_admission_refused_total{action="dropped"}`: 1,
		`switchboard_auth_blocked_sources`:                          1,
		`switchboard_auth_blocked_users`:                            0,
	} {
		if got := g.metric(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestProbeMetrics: a stranger's requests for addresses with no target
// count as probes, and the answer is the same for a real account and a
// made-up name.
func TestProbeMetrics(t *testing.T) {
	g := startGateway(t, udpConfig(t, nil))
	phone := newSIPPhone(t, g.l.UDP)
	ask := func(user string) int {
		return phone.send("MESSAGE", "sip:"+user+"@localhost",
			"From: <sip:stranger@example.invalid>;tag=p", "To: <sip:"+user+"@localhost>").StatusCode
	}
	if real, madeUp := ask("alice"), ask("nobody-here"); real != 480 || madeUp != 480 {
		t.Errorf("MESSAGE from a stranger: alice (real, unregistered) %d, made-up %d; want 480 both", real, madeUp)
	}
	if got := g.metric(t, `switchboard_auth_failures_total{origin="probe"}`); got != 2 {
		t.Errorf("probes counted %v, want 2", got)
	}
}
