package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// TestUASChecks: what a UAS refuses in an INVITE (RFC 4475 invut, sdp01,
// bext01; RFC 4028 §8.1).
func TestUASChecks(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ph := newTestPhone(t)
	for _, tc := range []struct {
		name   string
		body   []byte
		hdrs   []string
		code   int
		header string // name: value the response must carry
	}{
		{"invut", []byte("<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n"), []string{"Content-Type", "application/unknownformat"}, 415, "Accept: application/sdp"},
		{"sdp01", ph.sdp(1, "0"), []string{"Accept", "text/nobodyKnowsThis"}, 406, "Accept: application/sdp"},
		{"bext01", ph.sdp(1, "0"), []string{"Require", "nothingSupportsThis, timer"}, 420, "Unsupported: nothingSupportsThis"},
		{"encoded", ph.sdp(1, "0"), []string{"Content-Encoding", "gzip"}, 415, "Accept-Encoding: identity"},
		{"short session", ph.sdp(1, "0"), []string{"Session-Expires", "30", "Supported", "timer"}, 422, "Min-SE: 90"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oc := h.phone.invite("browser", tc.body, tc.hdrs...)
			res := oc.await(tc.code)
			name, value, _ := strings.Cut(tc.header, ": ")
			if got := res.Get(name); got != value {
				t.Errorf("%s: %q, want %q\n%s", name, got, value, res)
			}
		})
	}
	h.browser.idle(sip.MethodInvite)
	if n := len(h.b2b.Calls()); n != 0 {
		t.Errorf("%d calls", n)
	}
}

func TestNotCrossing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ph := newTestPhone(t)
	// A phone's offer routed to a SIP target: the proxy's business.
	oc := h.phone.invite("phone", ph.sdp(1, "0"))
	oc.await(500)
	h.ended()
}

func TestParseDTMF(t *testing.T) {
	for _, tc := range []struct {
		ctype, body string
		digit       rune
		dur         time.Duration
		ok          bool
	}{
		{"application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", '5', 160 * time.Millisecond, true},
		{"application/dtmf-relay", "Signal= #\nDuration= 250", '#', 250 * time.Millisecond, true},
		{"application/dtmf-relay", "Signal=10\r\nDuration=100", '*', 100 * time.Millisecond, true},
		{"Application/DTMF-Relay; charset=x", "signal=a", 'A', 0, true},
		{"application/dtmf", "7", '7', 0, true},
		{"application/dtmf", "11", '#', 0, true},
		{"application/dtmf-relay", "Signal=X", 0, 0, false},
		{"application/dtmf-relay", "Duration=100", 0, 0, false},
		{"text/plain", "Signal=5", 0, 0, false},
	} {
		req := sip.NewRequest(sip.MethodInfo, sip.URI{Scheme: "sip", Host: "x"})
		req.SetBody([]byte(tc.body), tc.ctype)
		d, dur, ok := parseDTMF(req)
		if d != tc.digit || dur != tc.dur || ok != tc.ok {
			t.Errorf("%s %q: %q %v %v, want %q %v %v", tc.ctype, tc.body, d, dur, ok, tc.digit, tc.dur, tc.ok)
		}
	}
}

func TestHangup(t *testing.T) {
	t.Run("ringing", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		br := h.newBrowser()
		oc := h.browser.invite("phone", br.Offer())
		in := h.phone.expect(sip.MethodInvite)
		in.respond(180, nil)
		oc.await(180)
		calls := h.b2b.Calls()
		if len(calls) != 1 || calls[0].State != "ringing" {
			t.Fatalf("calls %+v", calls)
		}
		if err := h.b2b.Hangup(calls[0].ID); err != nil {
			t.Fatal(err)
		}
		oc.await(480)
		select {
		case <-in.tx.Canceled():
		case <-timeAfter():
			t.Fatal("the phone's invite was not canceled")
		}
		in.respond(487, nil)
		h.ended()
		if err := h.b2b.Hangup(calls[0].ID); err == nil {
			t.Error("hangup of an ended call")
		}
	})
	t.Run("answered", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		browserCallsPhone(t, h)
		calls := h.b2b.Calls()
		if err := h.b2b.Hangup(calls[0].ID); err != nil {
			t.Fatal(err)
		}
		h.browser.expect(sip.MethodBye).respond(200, nil)
		h.phone.expect(sip.MethodBye).respond(200, nil)
		h.ended()
	})
}

// TestClose: Close ends the calls with BYE, waits for the answers, and
// refuses new calls.
// TestDrain: new calls are refused at once, the call in progress goes on
// until a party hangs up, and Drain returns then; a Drain whose context
// ends first says so.
func TestDrain(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, _, oc, _ := browserCallsPhone(t, h)
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.b2b.Drain(expired); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain with an ended context = %v, want context.Canceled", err)
	}
	h.phone.invite("browser", newTestPhone(t).sdp(1, "0")).await(503)
	if n := len(h.b2b.Calls()); n != 1 {
		t.Fatalf("%d calls while draining, want the one in progress", n)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- h.b2b.Drain(ctx)
	}()
	if n := len(h.b2b.Calls()); n != 1 {
		t.Fatalf("%d calls while draining, want the one in progress", n)
	}
	select {
	case err := <-done:
		t.Fatalf("Drain returned with a call in progress: %v", err)
	default:
	}
	if res := h.browser.request(oc.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	h.phone.expect(sip.MethodBye).respond(200, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timeAfter():
		t.Fatal("Drain did not return once the call ended")
	}
}

func TestClose(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	browserCallsPhone(t, h)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- h.b2b.Close(ctx)
	}()
	h.browser.expect(sip.MethodBye).respond(200, nil)
	h.phone.expect(sip.MethodBye).respond(200, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timeAfter():
		t.Fatal("Close did not return")
	}
	oc := h.phone.invite("browser", newTestPhone(t).sdp(1, "0"))
	oc.await(503)
}

// TestMaxCalls: beyond MaxCalls a new call gets 503 with Retry-After at
// once, as a caller through a proxy's fork (Branch) does; when a call
// ends, its place is free again.
func TestMaxCalls(t *testing.T) {
	h := newHarness(t, harnessOptions{b2bua: Options{MaxCalls: 1, BusyRetryAfter: 7 * time.Second}})
	_, _, oc, _ := browserCallsPhone(t, h)
	if n := h.b2b.Stats().Busy; n != 0 {
		t.Fatalf("%d calls counted busy below the cap", n)
	}
	for i, user := range []string{"browser", "fork"} {
		res := h.phone.invite(user, newTestPhone(t).sdp(1, "0")).await(503)
		if ra := res.Get("Retry-After"); ra != "7" {
			t.Errorf("%s: 503 with Retry-After %q, want 7", user, ra)
		}
		h.ended()
		if n := h.b2b.Stats().Busy; n != uint64(i+1) {
			t.Errorf("after %d calls refused at the cap, Stats().Busy = %d", i+1, n)
		}
	}
	if n := len(h.b2b.Calls()); n != 1 {
		t.Fatalf("%d calls, want the one in progress", n)
	}
	if res := h.browser.request(oc.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	h.phone.expect(sip.MethodBye).respond(200, nil)
	h.ended()
	// The place is free: the next call reaches the phone.
	br := h.newBrowser()
	next := h.browser.invite("phone", br.Offer())
	h.phone.expect(sip.MethodInvite).respond(486, nil)
	next.await(486)
	h.ended()
	if n := h.b2b.Stats().Busy; n != 2 {
		t.Errorf("Stats().Busy = %d after a call below the cap, want still 2", n)
	}
}

// TestCallEndLogsTransport: CallInfo and the call-end log line say how
// the web leg's media went (candidate types and protocols, DTLS role,
// SRTP profile, the pairs checked, the fast path) and where the RTP leg's went.
func TestCallEndLogsTransport(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, ph, oc, _ := browserCallsPhone(t, h)
	deadline := time.Now().Add(waitLimit)
	var info CallInfo
	for {
		info = h.b2b.Calls()[0]
		if info.Media.Web.Transport != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no transport facts for the web leg")
		}
		time.Sleep(5 * time.Millisecond) // polling, with a deadline
	}
	tr := info.Media.Web.Transport
	if tr.Local.Type != "host" || tr.Local.Protocol != "udp" || tr.DTLSRole != "client" || tr.SRTPProfile == "" {
		t.Errorf("CallInfo transport %+v", tr)
	}
	if want := ph.Conn.LocalAddr().String(); info.Media.RTP.Remote != want {
		t.Errorf("rtp remote %q, want the phone's SDP address %s", info.Media.RTP.Remote, want)
	}
	if res := h.browser.request(oc.dlg, sip.MethodBye, nil, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	h.phone.expect(sip.MethodBye).respond(200, nil)
	select {
	case r := <-h.logs.ended:
		got := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "web_transport" {
				for _, g := range a.Value.Resolve().Group() {
					got[g.Key] = g.Value.String()
				}
			}
			if a.Key == "rtp_remote" || a.Key == "web_fast_path" {
				got[a.Key] = a.Value.String()
			}
			return true
		})
		if got["local"] != "host/udp" || got["dtls_role"] != "client" || got["srtp_profile"] == "" || got["rtp_remote"] == "" ||
			got["pairs_checked"] == "" || got["pairs_checked"] == "0" || got["selected_checks"] == "" ||
			got["web_fast_path"] != "true" {
			// The harness's engine keeps the fast path on, and its browser
			// connects over UDP to the engine's ICE port.
			t.Errorf("call ended line: %v", got)
		}
	case <-timeAfter():
		t.Fatal("no call ended line")
	}
}
