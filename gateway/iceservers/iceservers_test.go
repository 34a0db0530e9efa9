package iceservers

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
)

// TestTimeLimited: with a shared secret each user gets a username that
// expires TTL from now and the TURN REST API password of it (the vector
// was computed apart, with Python's hmac module).
func TestTimeLimited(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	i, err := New(Config{
		URLs:   []string{"stun:turn.example.com", "turn:turn.example.com:3478", "turns:turn.example.com:5349?transport=tcp"},
		Secret: "north-wind",
		Clock:  clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := i.For("alice")
	if len(got.ICEServers) != 2 {
		t.Fatalf("servers %+v, want a STUN entry and a TURN one", got.ICEServers)
	}
	if s := got.ICEServers[0]; len(s.URLs) != 1 || s.Username != "" || s.Credential != "" {
		t.Errorf("stun entry %+v, want its URL without credentials", s)
	}
	turn := got.ICEServers[1]
	if turn.Username != "1767312000:alice" || turn.Credential != "47ipCOYu8HyZorq7O8rgoPbISyE=" {
		t.Errorf("credentials %q / %q", turn.Username, turn.Credential)
	}
	if got.TTL != 86400 || !got.Expires.Equal(time.Unix(1767312000, 0)) {
		t.Errorf("ttl %d, expires %v", got.TTL, got.Expires)
	}
	// Later, another expiry and so another password.
	clk.Advance(time.Hour)
	if later := i.For("alice").ICEServers[1]; later.Username != "1767315600:alice" || later.Credential == turn.Credential {
		t.Errorf("an hour later: %+v", later)
	}
}

func TestStatic(t *testing.T) {
	i, err := New(Config{URLs: []string{"turn:192.0.2.7?transport=udp"}, Username: "web", Password: "p4ss"})
	if err != nil {
		t.Fatal(err)
	}
	got := i.For("alice")
	if len(got.ICEServers) != 1 || got.ICEServers[0].Username != "web" || got.ICEServers[0].Credential != "p4ss" || got.TTL != 0 {
		t.Errorf("%+v", got)
	}
	var none *Issuer
	if none.Enabled() || none.For("x").ICEServers == nil {
		t.Error("a nil issuer hands out an empty list")
	}
}

// TestInvalid: every bad setting is refused with a reason, and never
// with the secret in it.
func TestInvalid(t *testing.T) {
	const secret = "s3cr3t-value"
	for _, cfg := range []Config{
		{URLs: []string{"turn:host"}},
		{URLs: []string{"turn:host"}, Username: "u"},
		{URLs: []string{"turn:host"}, Username: "u", Password: "p", Secret: secret},
		{URLs: []string{"stun:host"}, Secret: secret},
		{URLs: []string{"turn:host"}, Secret: secret, TTL: time.Second},
		{URLs: []string{"turn:host"}, Secret: secret, TTL: 30 * 24 * time.Hour},
		{URLs: []string{"turn:host"}, Username: "a:b", Password: "p"},
		{URLs: []string{"http://host"}, Secret: secret},
		{URLs: []string{"turn:"}, Secret: secret},
		{URLs: []string{"turn:host:0"}, Secret: secret},
		{URLs: []string{"turn:host:99999"}, Secret: secret},
		{URLs: []string{"turn:ho st"}, Secret: secret},
		{URLs: []string{"turn:user@host"}, Secret: secret},
		{URLs: []string{"turn:host?transport=sctp"}, Secret: secret},
		{URLs: []string{"turn:host?foo=bar"}, Secret: secret},
		{URLs: []string{"turns:host?transport=udp"}, Secret: secret},
		{URLs: []string{"stun:host?transport=udp"}},
		{URLs: []string{"turn:::1:3478"}, Secret: secret},
		{URLs: []string{"turn://host:3478"}, Secret: secret},
	} {
		_, err := New(cfg)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg.URLs, err)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	for _, u := range []string{"turn:[2001:db8::1]:3478", "turn:[2001:db8::1]", "stuns:stun.example.com:5349", "turn:h.example?transport=tcp"} {
		if _, err := CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	i, err := New(Config{URLs: []string{"turn:host"}, Secret: "s3cr3t-value"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "turn", i)
	if strings.Contains(b.String(), "s3cr3t") || !strings.Contains(b.String(), "turn:host") {
		t.Errorf("log %s", b.String())
	}
}
