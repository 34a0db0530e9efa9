package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

const (
	frameW, frameH = 64, 48 // the phone's picture
	fps            = 15
	offerVideoPT   = 96
	audioSSRC      = 0xa0d10
	videoSSRC      = 0x51de0
)

// media is the RTP side: PCMU audio and one video codec, each on an
// even/odd port pair (RTP, RTCP) of 127.0.0.1.
type media struct {
	o                   options
	audio, audioRTCP    *net.UDPConn
	video, videoRTCP    *net.UDPConn
	keyReq              chan string
	gap                 atomic.Int32 // video frames still to lose
	firstAudio, firstRx atomic.Bool

	mu       sync.Mutex
	farAudio netip.AddrPort
	farVideo netip.AddrPort // invalid while video is off
	sendPT   uint8
	stopCall chan struct{} // closed when the call ends
	callWG   sync.WaitGroup

	// receiving video
	keyframes int
	lastKeyTS uint32
	anyKey    bool
}

// bindPair binds an even port for RTP and the next one for RTCP.
func bindPair() (rtpConn, rtcpConn *net.UDPConn, err error) {
	for range 100 {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, nil, err
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port%2 == 0 {
			b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
			if err == nil {
				return a, b, nil
			}
		}
		_ = a.Close()
	}
	return nil, nil, errors.New("videophone: no free RTP port pair")
}

func newMedia(o options) (*media, error) {
	m := &media{o: o, keyReq: make(chan string, 1)}
	var err error
	if m.audio, m.audioRTCP, err = bindPair(); err != nil {
		return nil, err
	}
	if m.video, m.videoRTCP, err = bindPair(); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

func (m *media) close() {
	m.stop()
	for _, c := range []*net.UDPConn{m.audio, m.audioRTCP, m.video, m.videoRTCP} {
		if c != nil {
			_ = c.Close()
		}
	}
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

func (m *media) rtpmap() string {
	if m.o.video == "h264" {
		return "H264/90000"
	}
	return "VP8/90000"
}

// sdp writes the phone's SDP: audio, then video unless video is false
// (videoPT 0 and video true: refused, port 0).
func (m *media) sdp(version int, video bool, videoPT int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=videophone 1 %d IN IP4 127.0.0.1\r\ns=videophone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n", version)
	fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", port(m.audio))
	if !video {
		return []byte(b.String())
	}
	if videoPT <= 0 {
		b.WriteString("m=video 0 RTP/AVP 96\r\n")
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "m=video %d RTP/AVP %d\r\na=rtpmap:%d %s\r\n", port(m.video), videoPT, videoPT, m.rtpmap())
	if m.o.video == "h264" {
		fmt.Fprintf(&b, "a=fmtp:%d profile-level-id=42e01f;packetization-mode=1\r\n", videoPT)
	}
	if m.o.rtcpFB {
		b.WriteString("a=rtcp-fb:* nack pli\r\na=rtcp-fb:* ccm fir\r\n")
	}
	b.WriteString("a=sendrecv\r\n")
	return []byte(b.String())
}

func (m *media) offer(version int, video bool) []byte { return m.sdp(version, video, offerVideoPT) }

// section is one m= section of an SDP.
type section struct {
	kind  string
	port  int
	addr  netip.Addr
	fmts  []string
	attrs []string
}

func parseSDP(body []byte) ([]section, error) {
	var out []section
	var session netip.Addr
	for line := range strings.SplitSeq(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line[2:])
			if len(f) < 4 {
				return nil, fmt.Errorf("videophone: sdp: bad %q", line)
			}
			p, err := strconv.Atoi(f[1])
			if err != nil || p < 0 || p > 65535 {
				return nil, fmt.Errorf("videophone: sdp: bad port in %q", line)
			}
			out = append(out, section{kind: f[0], port: p, addr: session, fmts: f[3:]})
		case strings.HasPrefix(line, "c=IN IP4 "):
			a, err := netip.ParseAddr(strings.TrimSpace(line[len("c=IN IP4 "):]))
			if err != nil {
				return nil, fmt.Errorf("videophone: sdp: %w", err)
			}
			if len(out) == 0 {
				session = a
			} else {
				out[len(out)-1].addr = a
			}
		case strings.HasPrefix(line, "a=") && len(out) > 0:
			out[len(out)-1].attrs = append(out[len(out)-1].attrs, line[2:])
		}
	}
	return out, nil
}

// videoPT is the payload type of the phone's codec in s, or -1.
func (m *media) videoPT(s section) int {
	want := strings.ToLower(m.rtpmap())
	for _, f := range s.fmts {
		mode1 := m.o.video != "h264"
		found := false
		for _, a := range s.attrs {
			if strings.HasPrefix(a, "rtpmap:"+f+" ") && strings.ToLower(strings.TrimPrefix(a, "rtpmap:"+f+" ")) == want {
				found = true
			}
			if strings.HasPrefix(a, "fmtp:"+f+" ") && strings.Contains(a, "packetization-mode=1") {
				mode1 = true
			}
		}
		if found && mode1 {
			pt, _ := strconv.Atoi(f)
			return pt
		}
	}
	return -1
}

// answer answers an offer of the far end.
func (m *media) answer(offer []byte, version int) ([]byte, error) {
	ss, err := parseSDP(offer)
	if err != nil {
		return nil, err
	}
	video, pt := false, 0
	for _, s := range ss {
		if s.kind == "video" {
			video = true
			if s.port > 0 {
				pt = m.videoPT(s)
			}
		}
	}
	return m.sdp(version, video, pt), nil
}

// start (re)starts the call's media from the far end's SDP (offer or
// answer) and reports whether video flows.
func (m *media) start(body []byte) (bool, error) {
	ss, err := parseSDP(body)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.farVideo = netip.AddrPort{}
	for _, s := range ss {
		switch {
		case s.kind == "audio" && s.port > 0:
			m.farAudio = netip.AddrPortFrom(s.addr, uint16(s.port))
		case s.kind == "video" && s.port > 0:
			if pt := m.videoPT(s); pt > 0 {
				m.sendPT = uint8(pt)
				m.farVideo = netip.AddrPortFrom(s.addr, uint16(s.port))
			}
		}
	}
	if m.stopCall == nil {
		stop := make(chan struct{})
		m.stopCall = stop
		m.callWG.Go(func() { m.sendAudio(stop) })
		m.callWG.Go(func() { m.sendVideo(stop) })
	}
	return m.farVideo.IsValid(), nil
}

// stop ends the call's media.
func (m *media) stop() {
	m.mu.Lock()
	stop := m.stopCall
	m.stopCall = nil
	m.mu.Unlock()
	if stop != nil {
		close(stop)
		m.callWG.Wait()
	}
}

// keyframe asks the video sender for a key frame.
func (m *media) keyframe(reason string) {
	select {
	case m.keyReq <- reason:
	default:
	}
}

func (m *media) sendAudio(stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	silence := make([]byte, 160)
	for i := range silence {
		silence[i] = 0xff
	}
	var seq uint16
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		far := m.farAudio
		m.mu.Unlock()
		seq++
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: audioSSRC}, Payload: silence}
		raw, _ := pkt.Marshal()
		_, _ = m.audio.WriteToUDPAddrPort(raw, far)
	}
}

// sendVideo sends fps frames a second while the call has video: a key
// frame first (and after video was off), when asked, and inter frames
// between.
func (m *media) sendVideo(stop <-chan struct{}) {
	t := time.NewTicker(time.Second / fps)
	defer t.Stop()
	var pay rtp.Payloader = &codecs.VP8Payloader{EnablePictureID: true}
	if m.o.video == "h264" {
		pay = &codecs.H264Payloader{}
	}
	var pz rtp.Packetizer
	var pt uint8
	h264 := &h264Stream{wMB: frameW / 16, hMB: frameH / 16}
	needKey, reason, sent := true, "start", 0
	for {
		select {
		case <-stop:
			return
		case r := <-m.keyReq:
			needKey, reason = true, r
			continue
		case <-t.C:
		}
		m.mu.Lock()
		far, sendPT := m.farVideo, m.sendPT
		m.mu.Unlock()
		if !far.IsValid() {
			needKey, reason = true, "start"
			continue
		}
		if pz == nil || pt != sendPT {
			pz, pt = rtp.NewPacketizer(1200, sendPT, videoSSRC, pay, rtp.NewRandomSequencer(), 90000), sendPT
		}
		var frame []byte
		switch {
		case m.o.video == "h264" && needKey:
			frame = annexB(h264.idr(byte(0x40 + sent%128)))
		case m.o.video == "h264":
			frame = annexB(h264.skipped())
		default:
			frame = vp8Frame(needKey, frameW, frameH)
		}
		pkts := pz.Packetize(frame, 90000/fps)
		if m.gap.Load() > 0 && !needKey {
			m.gap.Add(-1)
			continue // lost
		}
		if needKey {
			sent++
			emit("keyframe_sent", map[string]any{"reason": reason, "n": sent, "ssrc": videoSSRC})
			needKey = false
		}
		for _, p := range pkts {
			raw, err := p.Marshal()
			if err == nil {
				_, _ = m.video.WriteToUDPAddrPort(raw, far)
			}
		}
	}
}

// receive reads the phone's sockets until they close.
func (m *media) receive() {
	var wg sync.WaitGroup
	wg.Go(m.readAudio)
	wg.Go(m.readVideo)
	wg.Go(m.readRTCP)
	wg.Go(func() { drain(m.audioRTCP) })
	wg.Wait()
}

func drain(c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func (m *media) readAudio() {
	buf := make([]byte, 1500)
	for {
		n, err := m.audio.Read(buf)
		if err != nil {
			return
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) == nil && !m.firstAudio.Swap(true) {
			emit("audio_first_packet", map[string]any{"pt": p.PayloadType})
		}
	}
}

func (m *media) readVideo() {
	buf := make([]byte, 1500)
	for {
		n, err := m.video.Read(buf)
		if err != nil {
			return
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		if !m.firstRx.Swap(true) {
			emit("video_first_packet", map[string]any{"pt": p.PayloadType, "ssrc": p.SSRC})
		}
		var key bool
		var w, h int
		if m.o.video == "h264" {
			key = h264IDR(p.Payload)
		} else {
			key, w, h = vp8Keyframe(p.Payload)
		}
		if !key {
			continue
		}
		m.mu.Lock()
		fresh := !m.anyKey || p.Timestamp != m.lastKeyTS
		m.anyKey, m.lastKeyTS = true, p.Timestamp
		if fresh {
			m.keyframes++
		}
		n = m.keyframes
		m.mu.Unlock()
		if fresh {
			f := map[string]any{"n": n, "codec": m.o.video, "pt": p.PayloadType}
			if w > 0 {
				f["width"], f["height"] = w, h
			}
			emit("keyframe", f)
		}
	}
}

// readRTCP reads the video RTCP: a PLI or FIR asks for a key frame.
func (m *media) readRTCP() {
	buf := make([]byte, 1500)
	for {
		n, err := m.videoRTCP.Read(buf)
		if err != nil {
			return
		}
		for b := buf[:n]; len(b) >= 4 && b[0]>>6 == 2; {
			size := (int(b[2])<<8 | int(b[3]) + 1) * 4
			if size > len(b) {
				break
			}
			switch fmtType := b[0] & 0x1f; {
			case b[1] == 206 && fmtType == 1:
				emit("pli", map[string]any{"media_ssrc": mediaSSRC(b[:size])})
				m.keyframe("pli")
			case b[1] == 206 && fmtType == 4:
				emit("fir", map[string]any{"media_ssrc": mediaSSRC(b[:size])})
				m.keyframe("fir")
			case b[1] == 205 && fmtType == 1:
				emit("nack", nil)
			}
			b = b[size:]
		}
	}
}

// mediaSSRC is the SSRC a PLI names, or for FIR the first FCI entry's.
func mediaSSRC(b []byte) uint32 {
	i := 8
	if b[0]&0x1f == 4 {
		i = 12
	}
	if len(b) < i+4 {
		return 0
	}
	return uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
}
