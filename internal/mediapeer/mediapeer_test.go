package mediapeer

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard/switchboard/internal/leakcheck"
)

// TestBrowsersExchangeAudio: one browser offers, the other answers, ICE
// and DTLS come up on loopback, and PCMU flows both ways.
func TestBrowsersExchangeAudio(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	a := NewBrowser(t, BrowserOptions{})
	signal := make(chan struct{}, 1)
	b := NewBrowser(t, BrowserOptions{Signal: signal})
	offer := a.Offer()
	for _, want := range []string{"a=candidate:", "127.0.0.1", "PCMU/8000", "telephone-event/8000"} {
		if !strings.Contains(string(offer), want) {
			t.Errorf("offer lacks %q:\n%s", want, offer)
		}
	}
	if strings.Contains(string(offer), "typ srflx") || strings.Contains(string(offer), "typ relay") {
		t.Errorf("offer has a candidate off loopback:\n%s", offer)
	}
	a.SetAnswer(b.Answer(offer))
	a.WaitConnected()
	b.WaitConnected()

	// a → b: b has Signal, so it signals and counts, parsing nothing.
	deadline := time.After(DefaultWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for got := false; !got; {
		a.SendPCMU([]byte("to b"))
		select {
		case <-signal:
			got = true
		case <-tick.C:
		case <-deadline:
			t.Fatal("no audio from a reached b")
		}
	}
	if b.Received() == 0 {
		t.Error("b signalled a packet it did not count")
	}
	select {
	case p := <-b.Packets():
		t.Errorf("b, with Signal, parsed %v", p)
	default:
	}

	// b → a, parsed.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); b.SendAudio(stop) }()
	defer func() { close(stop); <-done }()
	select {
	case p := <-a.Packets():
		if p.PayloadType != 0 || !bytes.Equal(p.Payload, bytes.Repeat([]byte{0x7f}, 160)) {
			t.Errorf("a got PT %d %x", p.PayloadType, p.Payload)
		}
	case <-time.After(DefaultWait):
		t.Fatal("no audio from b reached a")
	}
}

// TestPhonesExchangeAudio: two phones learn each other from their SDP and
// send PCMU and RFC 4733 events.
func TestPhonesExchangeAudio(t *testing.T) {
	leakcheck.Count(t, DefaultWait)
	a, b := NewPhone(t), NewPhone(t)
	if err := a.Learn(b.SDP(1, "0 101")); err != nil {
		t.Fatal(err)
	}
	if err := b.Learn(a.SDP(1, "0 101", "a=ptime:20")); err != nil {
		t.Fatal(err)
	}
	if a.Far != b.Addr() || b.Far != a.Addr() {
		t.Fatalf("learned %s and %s, want %s and %s", a.Far, b.Far, b.Addr(), a.Addr())
	}
	a.SendPCMU([]byte("one"))
	a.SendPCMU([]byte("two"))
	for _, want := range []string{"one", "two"} {
		p := b.Recv(DefaultWait)
		if p == nil || string(p.Payload) != want || p.PayloadType != 0 || p.SSRC != PhoneSSRC {
			t.Fatalf("b got %v, want PCMU %q", p, want)
		}
	}
	if p := b.Recv(10 * time.Millisecond); p != nil {
		t.Errorf("b got %v, nothing more was sent", p)
	}

	a.Watch()
	b.SendPacket(b.Far, rtp.Packet{Header: rtp.Header{PayloadType: 101, SequenceNumber: 1, SSRC: 7}, Payload: []byte{5, 0x8a, 0, 160}})
	select {
	case ev := <-a.Events():
		if ev != 5 {
			t.Errorf("event %d, want 5", ev)
		}
	case <-time.After(DefaultWait):
		t.Fatal("no event reached a")
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); b.SendAudio(stop) }()
	defer func() { close(stop); <-done }()
	deadline := time.After(DefaultWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.Audio() < 3 { // a counter: nothing to wait on but time
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("a counted %d packets of b's audio, want 3", a.Audio())
		}
	}
}

func TestPhoneSDP(t *testing.T) {
	p := NewPhone(t)
	got := string(p.SDP(3, "8 0 9 18 101", "a=sendonly"))
	for _, want := range []string{
		"o=phone 4242 3 IN IP4 127.0.0.1\r\n",
		"m=audio " + strconv.Itoa(p.Port()) + " RTP/AVP 8 0 9 18 101\r\n",
		"a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n" +
			"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendonly\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("sdp lacks %q:\n%s", want, got)
		}
	}
}

func TestPhoneLearnRefuses(t *testing.T) {
	p := NewPhone(t)
	for name, sdp := range map[string]string{
		"no m line":   "v=0\r\nc=IN IP4 127.0.0.1\r\n",
		"no c line":   "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
		"webrtc":      "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n",
		"bad port":    "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n",
		"bad address": "v=0\r\nc=IN IP4 host.example\r\nm=audio 4000 RTP/AVP 0\r\n",
	} {
		if err := p.Learn([]byte(sdp)); !errors.Is(err, ErrNotRTP) {
			t.Errorf("%s: %v, want ErrNotRTP", name, err)
		}
	}
	if p.Far.IsValid() {
		t.Errorf("learned %s from SDPs it refused", p.Far)
	}
}
