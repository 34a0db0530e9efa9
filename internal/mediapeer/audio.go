package mediapeer

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// AudioToPhone sends PCMU from the browser until the phone gets a packet
// with the marker payload (the first may be dropped while a relay between
// them starts), and returns it; it fails t after DefaultWait.
func AudioToPhone(t testing.TB, br *Browser, ph *Phone) *rtp.Packet {
	t.Helper()
	marker := []byte("browser-to-phone-audio-0123456789")
	deadline := time.Now().Add(DefaultWait)
	for time.Now().Before(deadline) {
		br.SendPCMU(marker)
		for {
			p := ph.Recv(20 * time.Millisecond)
			if p == nil {
				break
			}
			if bytes.Equal(p.Payload, marker) {
				return p
			}
		}
	}
	t.Fatal("no audio from the browser reached the phone")
	return nil
}

// AudioToBrowser sends PCMU from the phone, every 20 ms, until the
// browser gets a packet with the marker payload, and returns it; it fails
// t after DefaultWait.
func AudioToBrowser(t testing.TB, ph *Phone, br *Browser) *rtp.Packet {
	t.Helper()
	marker := []byte("phone-to-browser-audio-9876543210")
	deadline := time.After(DefaultWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	ph.SendPCMU(marker)
	for {
		select {
		case p := <-br.Packets():
			if bytes.Equal(p.Payload, marker) {
				return p
			}
		case <-tick.C:
			ph.SendPCMU(marker)
		case <-deadline:
			t.Fatal("no audio from the phone reached the browser")
			return nil
		}
	}
}
