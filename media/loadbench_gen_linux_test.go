//go:build linux

package media

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/mediapeer"
)

// TestLoadBenchGenerator: the load bench's generator (mediapeer.LoadGen)
// makes calls through the gateway like the bench does, its browsers on
// one shared socket (each on its own 127.1.x.y) and its phones on
// another, against a full ICE agent and an ICE lite one: every packet it
// sent in the measured window reaches the far end of its own call, every
// send planned is made or counted as skipped, nothing is stray or
// misrouted, and every SRTP packet decrypts.
func TestLoadBenchGenerator(t *testing.T) {
	lbICEModes(t, func(t *testing.T, e *Engine, _ bool) {
		g, err := mediapeer.NewLoadGen(context.Background(), mediapeer.LoadGenOptions{Loops: 2, MaxCalls: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		const calls = 5
		for i := range calls {
			offer, phone, err := g.AddCall()
			if err != nil {
				t.Fatal(err)
			}
			b := newTestBridge(t, e)
			if _, err := b.WebOffer([]byte(offer)); err != nil {
				t.Fatal(err)
			}
			answer, err := b.RTPAnswer(lbPhoneSDP(int(phone.Port()), 0))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = g.Connect(ctx, i, string(answer), netip.MustParseAddrPort(b.RTPAddr().String()))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		g.SetMeasuring(true)
		waitFor(t, "measured packets both ways on every call", func() bool {
			s := g.Stats()
			return s.GotWeb >= 5*calls && s.GotPhone >= 5*calls
		})
		g.SetMeasuring(false)
		g.Stop()
		s := g.Stats()
		waitFor(t, "the packets in flight", func() bool {
			s = g.Stats()
			return s.GotWeb >= s.SentPhone && s.GotPhone >= s.SentWeb
		})
		if s.GotWeb != s.SentPhone || s.GotPhone != s.SentWeb {
			t.Errorf("browsers got %d of the phones' %d, phones %d of the browsers' %d", s.GotWeb, s.SentPhone, s.GotPhone, s.SentWeb)
		}
		if s.SentWeb+s.Skipped != s.Planned || s.SentPhone+s.Skipped != s.Planned {
			t.Errorf("planned %d each way: sent %d and %d, skipped %d", s.Planned, s.SentWeb, s.SentPhone, s.Skipped)
		}
		if s.Stray != 0 || s.Misrouted != 0 || s.SendErrors != 0 || s.Lean.Undecryptable != 0 {
			t.Errorf("%d stray, %d misrouted, %d refused, %d undecryptable", s.Stray, s.Misrouted, s.SendErrors, s.Lean.Undecryptable)
		}
		if int64(len(s.ToWeb)) != s.GotWeb || int64(len(s.ToPhone)) != s.GotPhone {
			t.Errorf("%d and %d latencies for %d and %d packets", len(s.ToWeb), len(s.ToPhone), s.GotWeb, s.GotPhone)
		}
		if s.SendCalls == 0 || s.RecvCalls == 0 {
			t.Errorf("%d sendmmsg, %d recvmmsg counted", s.SendCalls, s.RecvCalls)
		}
	})
}
