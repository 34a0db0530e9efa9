package mediapeer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard/switchboard/internal/leakcheck"
	"github.com/switchboard/switchboard/internal/waitfor"
)

func newLean(t *testing.T) *LeanBrowser {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLeanBrowser(conn, nil)
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	return l
}

// TestLeanBrowserWithPion: the lean browser offers, a pion PeerConnection
// answers (as DTLS client and as DTLS server), ICE and DTLS come up and
// PCMU flows both ways, decrypted intact.
func TestLeanBrowserWithPion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		role  webrtc.DTLSRole
		setup string
	}{
		{"answerer-active", 0, "a=setup:active"},
		{"answerer-passive", webrtc.DTLSRoleServer, "a=setup:passive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Count(t, DefaultWait)
			l := newLean(t)
			got := ServeLean(t, l)
			offer := l.Offer()
			for _, want := range []string{"a=group:BUNDLE 0", "a=setup:actpass", "a=rtcp-mux", "PCMU/8000", "telephone-event/8000", "a=ice-ufrag:", "a=fingerprint:sha-256 ", "typ host", "a=ssrc:"} {
				if !strings.Contains(offer, want) {
					t.Errorf("offer lacks %q:\n%s", want, offer)
				}
			}
			pc := NewBrowser(t, BrowserOptions{AnswerDTLSRole: tc.role})
			answer := pc.Answer([]byte(offer))
			if !bytes.Contains(answer, []byte(tc.setup)) {
				t.Fatalf("answer without %s:\n%s", tc.setup, answer)
			}
			if err := l.SetAnswer(string(answer)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), DefaultWait)
			defer cancel()
			if err := l.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			pc.WaitConnected()

			// lean → pion
			deadline := time.After(DefaultWait)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			h := rtp.Header{PayloadType: 0}
			for done := false; !done; {
				h.SequenceNumber++
				h.Timestamp += 160
				if err := l.WriteRTP(&h, []byte("lean to pion")); err != nil {
					t.Fatal(err)
				}
				select {
				case p := <-pc.Packets():
					if string(p.Payload) != "lean to pion" || p.SSRC != l.SSRC() {
						t.Fatalf("pion got %q from SSRC %d, want %q from %d", p.Payload, p.SSRC, "lean to pion", l.SSRC())
					}
					done = true
				case <-tick.C:
				case <-deadline:
					t.Fatal("nothing from the lean browser reached pion")
				}
			}
			// The send path allocates nothing, even for the largest
			// packet (a load generator sends 50 000 a second).
			// AllocsPerRun counts the whole process's allocations, and
			// pion, receiving these packets in its own goroutines,
			// allocates meanwhile: a send that allocates shows in every
			// trial, pion's noise only in some, so one clean trial of five
			// is enough.
			big := make([]byte, 1200-12)
			var a float64
			for range 5 {
				if a = testing.AllocsPerRun(50, func() {
					h.SequenceNumber++
					_ = l.WriteRTP(&h, big)
				}); a == 0 {
					break
				}
			}
			if a != 0 {
				t.Errorf("WriteRTP: %.1f allocations per packet", a)
			}

			// Hostile datagrams from the far end's address: SRTP that
			// does not decrypt is refused with an error, truncated or
			// odd ones are dropped, nothing panics.
			from := l.remote.Load().addr
			var hh rtp.Header
			forged := append([]byte{0x80, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 1}, bytes.Repeat([]byte{0xaa}, 40)...)
			if _, ok, err := l.Handle(forged, from, &hh); ok || err == nil {
				t.Errorf("forged SRTP: ok %v, err %v", ok, err)
			}
			if u := l.Stats().Undecryptable; u != 1 {
				t.Errorf("Undecryptable = %d after one forged packet", u)
			}
			for _, b := range [][]byte{nil, {0}, {0x80}, {0x80, 0xc8}, {22, 254, 253}, {0, 1, 0, 0}, {200}, bytes.Repeat([]byte{0x90}, 11)} {
				if _, ok, _ := l.Handle(append([]byte(nil), b...), from, &hh); ok {
					t.Errorf("Handle(%x) took it for RTP", b)
				}
			}

			// Consent: the far end answers the browser's keepalive.
			if c := l.Stats().Consent; c != 0 {
				t.Fatalf("%d answers to keepalives before any", c)
			}
			if err := l.Keepalive(); err != nil {
				t.Fatal(err)
			}
			waitLean(t, "the answer to a keepalive", func() bool { return l.Stats().Consent == 1 })

			// pion → lean
			AudioToLean(t, func() { pc.SendPCMU([]byte("pion to lean")) }, got, "pion to lean")
		})
	}
}

// TestLeanBrowserRefusesAnswer: an answer that lacks what the browser
// needs, or points it off loopback, is refused with ErrLeanAnswer.
func TestLeanBrowserRefusesAnswer(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	good := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwxyz\r\na=fingerprint:sha-256 AB:CD\r\na=setup:active\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n"
	l := newLean(t)
	defer func() { _ = l.Close() }()
	for _, tc := range []struct{ name, from, to string }{
		{"off loopback", "127.0.0.1 4000", "192.0.2.1 4000"},
		{"no ufrag", "a=ice-ufrag:abcd\r\n", ""},
		{"no fingerprint", "a=fingerprint:sha-256 AB:CD\r\n", ""},
		{"sha-1 only", "sha-256", "sha-1"},
		{"setup actpass", "setup:active", "setup:actpass"},
		{"tcp candidate only", "udp", "tcp"},
		{"no m-line", "m=audio", "x=audio"},
	} {
		err := l.SetAnswer(strings.Replace(good, tc.from, tc.to, 1))
		if !errors.Is(err, ErrLeanAnswer) {
			t.Errorf("%s: %v, want ErrLeanAnswer", tc.name, err)
		}
	}
	if err := l.SetAnswer(good); err != nil {
		t.Fatalf("the good answer: %v", err)
	}
	if err := l.SetAnswer(good); !errors.Is(err, ErrLeanAnswer) {
		t.Errorf("a second answer: %v, want ErrLeanAnswer", err)
	}
	if err := l.WriteRTP(&rtp.Header{}, nil); !errors.Is(err, ErrLeanNotConnected) {
		t.Errorf("WriteRTP before Connect: %v", err)
	}
}

// TestLeanBrowserChecksTheFarEnd: the browser answers only checks from the
// answer's candidate that carry its own credentials, and the DTLS
// handshake fails when the far end's certificate is not the one the
// answer's fingerprint names.
func TestLeanBrowserChecksTheFarEnd(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	l := newLean(t)
	ServeLean(t, l)
	pc := NewBrowser(t, BrowserOptions{})
	answer := string(pc.Answer([]byte(l.Offer())))
	fp := regexp.MustCompile(`a=fingerprint:sha-256 ([0-9A-F:]+)`)
	if !fp.MatchString(answer) {
		t.Fatalf("no fingerprint in the answer:\n%s", answer)
	}
	wrong := fp.ReplaceAllString(answer, "a=fingerprint:sha-256 "+strings.Repeat("00:", 31)+"00")
	if err := l.SetAnswer(wrong); err != nil {
		t.Fatal(err)
	}

	// A check from an address that is not the answer's candidate, with
	// the wrong password, is not answered.
	ufrag := regexp.MustCompile(`a=ice-ufrag:(\S+)`).FindStringSubmatch(l.Offer())[1]
	probe, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":x"),
		stun.NewShortTermIntegrity("not the password"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stranger.Close() }()
	dropped := l.Stats().Dropped
	if _, err := stranger.WriteToUDPAddrPort(probe.Raw, l.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	waitLean(t, "the stranger's check dropped", func() bool { return l.Stats().Dropped > dropped })

	ctx, cancel := context.WithTimeout(context.Background(), DefaultWait)
	defer cancel()
	err = l.Connect(ctx)
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("Connect with the wrong fingerprint: %v", err)
	}
	_ = stranger.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := stranger.ReadFrom(make([]byte, 1500)); err == nil {
		t.Errorf("the stranger got %d bytes back", n)
	}
}

func waitLean(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Until(t, what, DefaultWait, cond)
}
