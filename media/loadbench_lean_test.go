package media

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/internal/mediapeer"
)

// TestLoadBenchLeanBrowser: the load bench's lean browser makes a call
// through the gateway like a PeerConnection does, against a full ICE
// agent (which checks back and nominates only then) and an ICE lite one:
// PCMU reaches the phone intact from the browser's SSRC, and the phone's
// reaches the browser.
func TestLoadBenchLeanBrowser(t *testing.T) {
	lbICEModes(t, func(t *testing.T, e *Engine, lite bool) {
		b := newTestBridge(t, e)
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		l, err := mediapeer.NewLeanBrowser(conn, nil)
		if err != nil {
			_ = conn.Close()
			t.Fatal(err)
		}
		got := mediapeer.ServeLean(t, l)
		phone := mediapeer.NewPhone(t)
		rtpOffer, err := b.WebOffer([]byte(l.Offer()))
		if err != nil {
			t.Fatal(err)
		}
		if err := phone.Learn(rtpOffer); err != nil {
			t.Fatal(err)
		}
		answer, err := b.RTPAnswer(phone.SDP(1, "0 101"))
		if err != nil {
			t.Fatal(err)
		}
		if lite != strings.Contains(string(answer), "a=ice-lite") {
			t.Fatalf("answer (lite %v):\n%s", lite, answer)
		}
		if err := l.SetAnswer(string(answer)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Connect(ctx); err != nil {
			t.Fatal(err)
		}

		deadline := time.After(10 * time.Second)
		h := rtp.Header{PayloadType: 0}
		for done := false; !done; {
			h.SequenceNumber++
			h.Timestamp += 160
			if err := l.WriteRTP(&h, []byte("browser to phone")); err != nil {
				t.Fatal(err)
			}
			if p := phone.Recv(20 * time.Millisecond); p != nil {
				if string(p.Payload) != "browser to phone" {
					t.Fatalf("the phone got %q", p.Payload)
				}
				done = true
			}
			select {
			case <-deadline:
				t.Fatal("nothing from the lean browser reached the phone")
			default:
			}
		}
		mediapeer.AudioToLean(t, func() { phone.SendPCMU([]byte("phone to browser")) }, got, "phone to browser")
		if s := l.Stats(); s.Undecryptable != 0 {
			t.Errorf("lean browser: %d SRTP packets did not decrypt", s.Undecryptable)
		}
	})
}

// lbICEModes runs f, with an engine of its own, against a full ICE agent
// and an ICE lite one.
func lbICEModes(t *testing.T, f func(t *testing.T, e *Engine, lite bool)) {
	for _, lite := range []bool{false, true} {
		name := "full-ice"
		if lite {
			name = "ice-lite"
		}
		t.Run(name, func(t *testing.T) {
			checkGoroutines(t)
			f(t, newTestEngine(t, Options{ICELite: lite}), lite)
		})
	}
}
