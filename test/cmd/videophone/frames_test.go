package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestExpGolomb(t *testing.T) {
	for v, want := range map[uint]string{0: "1", 1: "010", 2: "011", 25: "000011010"} {
		var w bitWriter
		w.ue(v)
		var got strings.Builder
		for i := range len(want) {
			got.WriteByte('0' + w.b[i/8]>>(7-i%8)&1)
		}
		if got.String() != want {
			t.Errorf("ue(%d) = %s, want %s", v, got.String(), want)
		}
	}
}

func TestEmulationPrevention(t *testing.T) {
	got := nal(0x65, []byte{0, 0, 1, 0, 0, 0, 0, 0, 4})
	want := []byte{0x65, 0, 0, 3, 1, 0, 0, 3, 0, 0, 3, 0, 4}
	if !bytes.Equal(got, want) {
		t.Fatalf("nal = % x, want % x", got, want)
	}
}

func TestH264Stream(t *testing.T) {
	s := &h264Stream{wMB: 4, hMB: 3}
	au := s.idr(0x40)
	if len(au) != 3 || au[0][0] != 0x67 || au[1][0] != 0x68 || !h264IDR(au[2]) {
		t.Fatalf("idr: SPS, PPS, IDR expected, got headers %x %x %x", au[0][0], au[1][0], au[2][0])
	}
	// 12 I_PCM macroblocks of 384 samples, plus headers.
	if n := len(au[2]); n < 12*384 || n > 12*400 {
		t.Errorf("idr slice of %d bytes", n)
	}
	p := s.skipped()
	if len(p) != 1 || p[0][0] != 0x41 || h264IDR(p[0]) {
		t.Fatalf("skipped: one non-IDR slice expected, got % x", p)
	}
	// STAP-A holding an IDR, FU-A starting one, FU-A continuing one.
	if !h264IDR([]byte{24, 0, 2, 0x67, 0x42, 0, 2, 0x65, 0x88}) || !h264IDR([]byte{28, 0x85, 1}) || h264IDR([]byte{28, 0x05, 1}) {
		t.Error("h264IDR misses aggregated or fragmented IDR")
	}
}

func TestVP8Frames(t *testing.T) {
	key := append([]byte{0x90, 0x80, 0x12}, vp8Frame(true, 640, 480)...) // X, I, 7-bit picture ID
	if ok, w, h := vp8Keyframe(key); !ok || w != 640 || h != 480 {
		t.Fatalf("key frame: %v %dx%d", ok, w, h)
	}
	inter := append([]byte{0x10}, vp8Frame(false, 64, 48)...)
	if ok, _, _ := vp8Keyframe(inter); ok {
		t.Fatal("inter frame taken for a key frame")
	}
	// A later partition of a key frame is no key frame start.
	if ok, _, _ := vp8Keyframe(append([]byte{0x11}, vp8Frame(true, 64, 48)...)); ok {
		t.Fatal("partition 1 taken for a key frame start")
	}
}

func TestAnswer(t *testing.T) {
	m, err := newMedia(options{video: "h264"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	offer := "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 97 98\r\n" +
		"a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=0\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42e01f;packetization-mode=1\r\n"
	ans, err := m.answer([]byte(offer), 2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ans), " RTP/AVP 98\r\na=rtpmap:98 H264/90000") {
		t.Errorf("answer does not take mode 1:\n%s", ans)
	}
	vp8 := "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
	ans, err = m.answer([]byte(vp8), 3)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ans), "m=video 0 ") {
		t.Errorf("answer does not refuse VP8 with port 0:\n%s", ans)
	}
	if _, err := parseSDP([]byte("m=video 99999 RTP/AVP 96\r\n")); err == nil {
		t.Error("port 99999 taken")
	}
}
