package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// maxSDPSize bounds the SDP bodies the package accepts. A real offer with
// every candidate of a multi-homed browser is a few kilobytes.
const maxSDPSize = 64 << 10

// maxMediaLines bounds the m= lines of an SDP: a call has an audio and a
// video stream, a browser with a data channel and a screen share a few
// more. Each line costs a slot in every answer the gateway writes.
const maxMediaLines = 16

// maxFormats bounds the payload types of one m= line (128 are possible).
const maxFormats = 64

// direction is a media direction attribute (RFC 3264 §5.1), always from the
// point of view of the party whose SDP it is.
type direction uint8

const (
	dirInactive direction = 0
	dirSendOnly direction = 1
	dirRecvOnly direction = 2
	dirSendRecv direction = dirSendOnly | dirRecvOnly
)

func (d direction) sends() bool { return d&dirSendOnly != 0 }
func (d direction) recvs() bool { return d&dirRecvOnly != 0 }

// reverse is d seen from the other end: sendonly becomes recvonly.
func (d direction) reverse() direction {
	var r direction
	if d.sends() {
		r |= dirRecvOnly
	}
	if d.recvs() {
		r |= dirSendOnly
	}
	return r
}

func (d direction) String() string {
	switch d {
	case dirSendOnly:
		return "sendonly"
	case dirRecvOnly:
		return "recvonly"
	case dirInactive:
		return "inactive"
	default:
		return "sendrecv"
	}
}

func parseDirection(s string) (direction, bool) {
	switch s {
	case "sendrecv":
		return dirSendRecv, true
	case "sendonly":
		return dirSendOnly, true
	case "recvonly":
		return dirRecvOnly, true
	case "inactive":
		return dirInactive, true
	}
	return 0, false
}

// mediaLine is an m= line as offered, kept so that an answer can reject
// the streams the gateway does not relay with port 0, in the same order
// (RFC 3264 §6).
type mediaLine struct {
	media   string
	proto   string
	formats []string
}

// session is what the package needs from a peer's SDP.
type session struct {
	desc  *sdp.SessionDescription
	lines []mediaLine
	audio int // index of the audio m= line used, in lines

	// addr is the connection address of the audio stream; invalid when the
	// SDP says 0.0.0.0 (RFC 2543 hold) or gives none.
	addr     netip.Addr
	port     int
	rtcp     netip.AddrPort // from a=rtcp (RFC 3605), else addr:port+1
	rtcpMux  bool
	codecs   []Codec
	dir      direction
	ptime    int
	maxptime int

	// WebRTC leg only.
	iceUfrag string

	// video is the first video stream with the leg's transport, nil when
	// there is none or it was rejected (port 0).
	video *videoSession
}

// videoSession is what the package needs of a video m= line.
type videoSession struct {
	index   int // in session.lines
	port    int
	addr    netip.Addr // invalid on hold (0.0.0.0)
	rtcp    netip.AddrPort
	rtcpMux bool
	codecs  []Codec
	dir     direction
	// pli and fir tell whether the peer takes keyframe requests as RTCP
	// feedback (a=rtcp-fb nack pli, ccm fir; RFC 4585, RFC 5104) for
	// every one of its codecs ("*" or each payload type).
	pli, fir bool
	// bitrate is the peer's b=TIAS, else its b=AS (kbit/s) as bit/s: the
	// most it wants to receive; 0 when it says nothing.
	bitrate uint64
}

// proto classes of an m= line.
func isPlainRTP(proto string) bool {
	return strings.EqualFold(proto, "RTP/AVP") || strings.EqualFold(proto, "RTP/AVPF")
}

func isDTLSRTP(proto string) bool {
	p := strings.ToUpper(proto)
	return strings.Contains(p, "TLS") && strings.Contains(p, "RTP/SAVP")
}

// parseSession parses a peer's SDP and picks its first audio stream with a
// transport the leg speaks (web: DTLS-SRTP; otherwise plain RTP/AVP). An
// SDP whose audio streams are all rejected or of another transport gives
// ErrNoCommonCodec; one that does not parse gives ErrInvalidSDP.
func parseSession(body []byte, web bool) (s *session, err error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("media: empty sdp: %w", ErrInvalidSDP)
	}
	if len(body) > maxSDPSize {
		return nil, fmt.Errorf("media: sdp of %d bytes: %w", len(body), ErrInvalidSDP)
	}
	// Bytes from the network are hostile: a panic in the SDP parser must
	// not take the gateway down.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("media: sdp parser: %v: %w", r, ErrInvalidSDP)
		}
	}()
	desc := &sdp.SessionDescription{}
	if err := desc.Unmarshal(normalizeEOL(body)); err != nil {
		return nil, fmt.Errorf("media: %w: %w", err, ErrInvalidSDP)
	}
	if n := len(desc.MediaDescriptions); n > maxMediaLines {
		return nil, fmt.Errorf("media: %d m= lines, at most %d: %w", n, maxMediaLines, ErrInvalidSDP)
	}
	s = &session{desc: desc, audio: -1, dir: dirSendRecv}
	video := -1
	for i, m := range desc.MediaDescriptions {
		if len(m.MediaName.Formats) > maxFormats {
			return nil, fmt.Errorf("media: %d payload types on one m= line, at most %d: %w", len(m.MediaName.Formats), maxFormats, ErrInvalidSDP)
		}
		s.lines = append(s.lines, mediaLine{
			media:   m.MediaName.Media,
			proto:   strings.Join(m.MediaName.Protos, "/"),
			formats: m.MediaName.Formats,
		})
		proto := s.lines[i].proto
		if m.MediaName.Port.Value == 0 || web && !isDTLSRTP(proto) || !web && !isPlainRTP(proto) {
			continue
		}
		switch {
		case s.audio < 0 && strings.EqualFold(m.MediaName.Media, "audio"):
			s.audio = i
		case video < 0 && strings.EqualFold(m.MediaName.Media, "video"):
			video = i
		}
	}
	if s.audio < 0 {
		kind := "rtp/avp"
		if web {
			kind = "dtls-srtp"
		}
		return nil, fmt.Errorf("media: no %s audio stream: %w", kind, ErrNoCommonCodec)
	}
	m := desc.MediaDescriptions[s.audio]
	s.port = m.MediaName.Port.Value
	if s.port < 0 || s.port > 65535 {
		return nil, fmt.Errorf("media: port %d: %w", s.port, ErrInvalidSDP)
	}
	if s.codecs, err = parseCodecs(m); err != nil {
		return nil, err
	}
	s.dir = dirSendRecv
	if d, ok := directionOf(desc.Attributes); ok {
		s.dir = d
	}
	if d, ok := directionOf(m.Attributes); ok {
		s.dir = d
	}
	s.ptime = intAttr(desc.Attributes, m.Attributes, "ptime")
	s.maxptime = intAttr(desc.Attributes, m.Attributes, "maxptime")
	_, s.rtcpMux = m.Attribute("rtcp-mux")

	ci := m.ConnectionInformation
	if ci == nil {
		ci = desc.ConnectionInformation
	}
	if video >= 0 {
		if s.video, err = parseVideo(desc, video, web); err != nil {
			return nil, err
		}
	}
	if web {
		s.iceUfrag = attr(desc.Attributes, m.Attributes, "ice-ufrag")
		if s.iceUfrag == "" || attr(desc.Attributes, m.Attributes, "ice-pwd") == "" {
			return nil, fmt.Errorf("media: webrtc sdp without ice credentials: %w", ErrInvalidSDP)
		}
		if attr(desc.Attributes, m.Attributes, "fingerprint") == "" {
			return nil, fmt.Errorf("media: webrtc sdp without dtls fingerprint: %w", ErrInvalidSDP)
		}
		return s, nil
	}
	if s.addr, s.rtcp, err = rtpAddrs(ci, m, s.port, "audio"); err != nil {
		return nil, err
	}
	return s, nil
}

// rtpAddrs reads where a plain RTP stream goes: the c= address (invalid
// for 0.0.0.0, RFC 2543 hold) and the RTCP address, from a=rtcp (RFC
// 3605) or else the next port.
func rtpAddrs(ci *sdp.ConnectionInformation, m *sdp.MediaDescription, port int, kind string) (netip.Addr, netip.AddrPort, error) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, netip.AddrPort{}, fmt.Errorf("media: no c= line for the %s stream: %w", kind, ErrInvalidSDP)
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.Addr{}, netip.AddrPort{}, fmt.Errorf("media: %s connection address %q: %w", kind, ci.Address.Address, ErrInvalidSDP)
	}
	var addr netip.Addr
	if a = a.Unmap(); !a.IsUnspecified() {
		addr = a
	}
	rtcp := netip.AddrPortFrom(addr, uint16(port+1))
	if v, ok := m.Attribute("rtcp"); ok {
		if p, err := parseRTCPAttr(v, addr); err == nil {
			rtcp = p
		}
	}
	return addr, rtcp, nil
}

// parseVideo reads the video m= line i. A line whose codecs are all of
// unknown formats is kept: the negotiation finds nothing in common and
// answers it with port 0.
func parseVideo(desc *sdp.SessionDescription, i int, web bool) (*videoSession, error) {
	m := desc.MediaDescriptions[i]
	v := &videoSession{index: i, port: m.MediaName.Port.Value, dir: dirSendRecv}
	if v.port < 0 || v.port > 65535 {
		return nil, fmt.Errorf("media: video port %d: %w", v.port, ErrInvalidSDP)
	}
	var err error
	if v.codecs, err = parseCodecs(m); err != nil {
		return nil, err
	}
	for _, c := range v.codecs {
		if c.isH264() {
			if _, ok := parseH264(c.Fmtp); !ok {
				return nil, fmt.Errorf("media: h264 fmtp %q of payload type %d: %w", c.Fmtp, c.PayloadType, ErrInvalidSDP)
			}
		}
	}
	if d, ok := directionOf(desc.Attributes); ok {
		v.dir = d
	}
	if d, ok := directionOf(m.Attributes); ok {
		v.dir = d
	}
	_, v.rtcpMux = m.Attribute("rtcp-mux")
	v.pli, v.fir = feedbackOf(m, v.codecs)
	for _, bw := range m.Bandwidth {
		switch strings.ToUpper(bw.Type) {
		case "TIAS":
			v.bitrate = bw.Bandwidth
		case "AS":
			if v.bitrate == 0 && bw.Bandwidth < 1<<40 {
				v.bitrate = bw.Bandwidth * 1000
			}
		}
	}
	if web {
		return v, nil
	}
	ci := m.ConnectionInformation
	if ci == nil {
		ci = desc.ConnectionInformation
	}
	if v.addr, v.rtcp, err = rtpAddrs(ci, m, v.port, "video"); err != nil {
		return nil, err
	}
	return v, nil
}

// feedbackOf reports whether every video codec of m takes PLI and FIR as
// RTCP feedback (a=rtcp-fb, RFC 4585 §4.2).
func feedbackOf(m *sdp.MediaDescription, codecs []Codec) (pli, fir bool) {
	pliPT, firPT := map[string]bool{}, map[string]bool{}
	for _, a := range m.Attributes {
		if a.Key != "rtcp-fb" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) < 3 {
			continue
		}
		switch strings.ToLower(f[1] + " " + f[2]) {
		case "nack pli":
			pliPT[f[0]] = true
		case "ccm fir":
			firPT[f[0]] = true
		}
	}
	all := func(set map[string]bool) bool {
		if set["*"] {
			return true
		}
		n := 0
		for _, c := range codecs {
			if !c.isVideo() {
				continue
			}
			if !set[strconv.Itoa(int(c.PayloadType))] {
				return false
			}
			n++
		}
		return n > 0
	}
	return all(pliPT), all(firPT)
}

// normalizeEOL turns bare LF line ends, which some phones send, into CRLF;
// pion/sdp accepts both, but a stray CR at the end of the body is dropped.
func normalizeEOL(b []byte) []byte {
	if !bytes.Contains(b, []byte("\r\n")) && bytes.Contains(b, []byte("\n")) {
		b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	return b
}

func parseCodecs(m *sdp.MediaDescription) ([]Codec, error) {
	var out []Codec
	for _, f := range m.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			return nil, fmt.Errorf("media: payload type %q: %w", f, ErrInvalidSDP)
		}
		pt := uint8(n)
		c, ok := rtpmapOf(m, pt)
		if !ok {
			if c, ok = staticCodec(pt); !ok {
				// A dynamic type without rtpmap: an answer may rely on
				// the offer's rtpmap (see answered); nothing else can
				// match it, as its Name is empty.
				c = Codec{PayloadType: pt}
			}
		}
		c.Fmtp = fmtpOf(m, pt)
		out = append(out, c)
	}
	return out, nil
}

func rtpmapOf(m *sdp.MediaDescription, pt uint8) (Codec, bool) {
	prefix := strconv.Itoa(int(pt)) + " "
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" || !strings.HasPrefix(a.Value, prefix) {
			continue
		}
		parts := strings.Split(strings.TrimSpace(a.Value[len(prefix):]), "/")
		if len(parts) < 2 || parts[0] == "" {
			return Codec{}, false
		}
		rate, err := strconv.ParseUint(parts[1], 10, 32)
		if err != nil || rate == 0 {
			return Codec{}, false
		}
		c := Codec{Name: parts[0], ClockRate: uint32(rate), PayloadType: pt}
		if len(parts) > 2 {
			ch, err := strconv.ParseUint(parts[2], 10, 16)
			if err != nil {
				return Codec{}, false
			}
			c.Channels = uint16(ch)
		}
		return c, true
	}
	return Codec{}, false
}

func fmtpOf(m *sdp.MediaDescription, pt uint8) string {
	prefix := strconv.Itoa(int(pt)) + " "
	for _, a := range m.Attributes {
		if a.Key == "fmtp" && strings.HasPrefix(a.Value, prefix) {
			return strings.TrimSpace(a.Value[len(prefix):])
		}
	}
	return ""
}

func directionOf(attrs []sdp.Attribute) (direction, bool) {
	for _, a := range attrs {
		if d, ok := parseDirection(a.Key); ok {
			return d, true
		}
	}
	return 0, false
}

// attr returns a media-level attribute, or else the session-level one.
func attr(session, media []sdp.Attribute, key string) string {
	for _, a := range media {
		if a.Key == key {
			return a.Value
		}
	}
	for _, a := range session {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func intAttr(session, media []sdp.Attribute, key string) int {
	n, err := strconv.Atoi(strings.TrimSpace(attr(session, media, key)))
	if err != nil || n < 0 || n > 1000 {
		return 0
	}
	return n
}

// parseRTCPAttr parses "port [IN IP4 addr]" (RFC 3605).
func parseRTCPAttr(v string, def netip.Addr) (netip.AddrPort, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}, ErrInvalidSDP
	}
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a := def
	if len(f) == 4 {
		if x, err := netip.ParseAddr(f[3]); err == nil && !x.IsUnspecified() {
			a = x.Unmap()
		}
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// rtpDesc is an SDP the gateway writes for the RTP leg.
type rtpDesc struct {
	addr     netip.Addr
	port     int
	codecs   []Codec
	dir      direction
	ptime    int
	maxptime int
	rtcpMux  bool
	// lines and audio, when set, make an answer: every offered m= line is
	// answered in order, the ones not relayed with port 0.
	lines []mediaLine
	audio int

	// video, when set, adds the video stream: in the slot videoIdx of
	// lines, or after every line when videoIdx is negative or lines is
	// nil.
	video    *videoDesc
	videoIdx int
}

// videoDesc is the video stream of an rtpDesc.
type videoDesc struct {
	on      bool // false: the stream is rejected or removed (port 0)
	port    int  // the gateway's video port, set by writeRTPDesc
	codecs  []Codec
	dir     direction
	rtcpMux bool
	// bitrate, when positive, is written as b=AS (kbit/s) and b=TIAS.
	bitrate uint64
}

// origin keeps the o= line of one leg: the session id is fixed and the
// version grows only when the SDP changes (RFC 3264 §8).
type origin struct {
	id, version uint64
	last        []byte
}

// next returns the SDP that gen writes, with the version of the previous
// one when nothing else changed.
func (o *origin) next(gen func(version uint64) []byte) []byte {
	if o.last != nil {
		if b := gen(o.version); bytes.Equal(b, o.last) {
			return o.last
		}
		o.version++
	}
	o.last = gen(o.version)
	return o.last
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

// write renders d as an RTP/AVP SDP body.
func (d *rtpDesc) write(id, version uint64) []byte {
	var b bytes.Buffer
	b.Grow(512)
	at := addrType(d.addr)
	fmt.Fprintf(&b, "v=0\r\no=- %d %d IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\n",
		id, version, at, d.addr, at, d.addr)
	if d.lines == nil {
		d.writeAudio(&b)
		if d.video != nil {
			d.writeVideo(&b, "RTP/AVP")
		}
		return b.Bytes()
	}
	for i, l := range d.lines {
		if i == d.audio {
			d.writeAudio(&b)
			continue
		}
		if i == d.videoIdx && d.video != nil {
			d.writeVideo(&b, l.proto)
			continue
		}
		formats := l.formats
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", l.media, l.proto, strings.Join(formats, " "))
	}
	if d.video != nil && (d.videoIdx < 0 || d.videoIdx >= len(d.lines)) {
		d.writeVideo(&b, "RTP/AVP")
	}
	return b.Bytes()
}

// writeVideo writes the video stream with proto, the offer's in an answer
// (a video phone may offer RTP/AVPF). The gateway asks for keyframes with
// RTCP feedback and takes them that way (it translates them to and from
// the browser), so it always says PLI and FIR.
func (d *rtpDesc) writeVideo(b *bytes.Buffer, proto string) {
	v := d.video
	if !v.on || len(v.codecs) == 0 {
		pts := "0"
		if len(v.codecs) > 0 {
			pts = strconv.Itoa(int(v.codecs[0].PayloadType))
		}
		b.WriteString("m=video 0 " + proto + " " + pts + "\r\n")
		return
	}
	b.WriteString("m=video ")
	b.WriteString(strconv.Itoa(v.port))
	b.WriteString(" " + proto)
	for _, c := range v.codecs {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(int(c.PayloadType)))
	}
	b.WriteString("\r\n")
	if v.bitrate > 0 {
		fmt.Fprintf(b, "b=AS:%d\r\nb=TIAS:%d\r\n", (v.bitrate+999)/1000, v.bitrate)
	}
	for _, c := range v.codecs {
		fmt.Fprintf(b, "a=rtpmap:%d %s\r\n", c.PayloadType, c.rtpmap())
		if c.Fmtp != "" {
			fmt.Fprintf(b, "a=fmtp:%d %s\r\n", c.PayloadType, c.Fmtp)
		}
	}
	b.WriteString("a=rtcp-fb:* nack pli\r\na=rtcp-fb:* ccm fir\r\n")
	if v.rtcpMux {
		b.WriteString("a=rtcp-mux\r\n")
	}
	b.WriteString("a=")
	b.WriteString(v.dir.String())
	b.WriteString("\r\n")
}

func (d *rtpDesc) writeAudio(b *bytes.Buffer) {
	b.WriteString("m=audio ")
	b.WriteString(strconv.Itoa(d.port))
	b.WriteString(" RTP/AVP")
	for _, c := range d.codecs {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(int(c.PayloadType)))
	}
	b.WriteString("\r\n")
	for _, c := range d.codecs {
		fmt.Fprintf(b, "a=rtpmap:%d %s\r\n", c.PayloadType, c.rtpmap())
		if c.Fmtp != "" {
			fmt.Fprintf(b, "a=fmtp:%d %s\r\n", c.PayloadType, c.Fmtp)
		}
	}
	if d.ptime > 0 {
		fmt.Fprintf(b, "a=ptime:%d\r\n", d.ptime)
	}
	if d.maxptime > 0 {
		fmt.Fprintf(b, "a=maxptime:%d\r\n", d.maxptime)
	}
	if d.rtcpMux {
		b.WriteString("a=rtcp-mux\r\n")
	}
	b.WriteString("a=")
	b.WriteString(d.dir.String())
	b.WriteString("\r\n")
}

// webVideo says what the SDP for the browser carries of video: the
// stream is rejected (port 0) unless on, else restricted to codecs (the
// web leg's numbering, with the fmtp to write), with its direction and
// the bitrate the browser may send at most (b=AS, b=TIAS; 0 none).
type webVideo struct {
	on      bool
	codecs  []Codec
	dir     direction
	bitrate uint64
}

// rewriteWebSDP sets the direction (and a=ptime, when ptime > 0) of the
// audio stream in an SDP that pion wrote, and what v says of the video
// stream. The relay, not pion, enforces direction, so the transceivers
// stay sendrecv and only the SDP the browser sees says what the other leg
// allows; likewise pion knows every video codec of the policy, and the
// SDP the browser sees has those the phone took.
func rewriteWebSDP(body string, dir direction, ptime int, v webVideo) ([]byte, error) {
	desc := &sdp.SessionDescription{}
	if err := desc.Unmarshal([]byte(body)); err != nil {
		return nil, fmt.Errorf("media: sdp from pion: %w", err)
	}
	audioDone, videoDone := false, false
	var rejectedMid string
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Port.Value == 0 {
			continue
		}
		switch {
		case !audioDone && strings.EqualFold(m.MediaName.Media, "audio"):
			audioDone = true
			attrs := m.Attributes[:0:0]
			hasPtime := false
			for _, a := range m.Attributes {
				if _, ok := parseDirection(a.Key); ok {
					a = sdp.NewPropertyAttribute(dir.String())
				}
				hasPtime = hasPtime || a.Key == "ptime"
				attrs = append(attrs, a)
			}
			if ptime > 0 && !hasPtime {
				attrs = append(attrs, sdp.NewAttribute("ptime", strconv.Itoa(ptime)))
			}
			m.Attributes = attrs
		case !videoDone && strings.EqualFold(m.MediaName.Media, "video"):
			videoDone = true
			if !v.on || len(v.codecs) == 0 {
				rejectedMid, _ = m.Attribute("mid")
				rejectWebMedia(m)
				continue
			}
			restrictWebVideo(m, v)
		}
	}
	if rejectedMid != "" {
		// A rejected stream leaves the BUNDLE group (RFC 8843 §7.3.3).
		for i, a := range desc.Attributes {
			if a.Key != "group" || !strings.HasPrefix(a.Value, "BUNDLE") {
				continue
			}
			f := strings.Fields(a.Value)
			kept := f[:1]
			for _, mid := range f[1:] {
				if mid != rejectedMid {
					kept = append(kept, mid)
				}
			}
			desc.Attributes[i].Value = strings.Join(kept, " ")
		}
	}
	return desc.Marshal()
}

// rejectWebMedia turns m into a rejected stream: port 0, its mid and
// nothing else.
func rejectWebMedia(m *sdp.MediaDescription) {
	m.MediaName.Port = sdp.RangedPort{Value: 0}
	if len(m.MediaName.Formats) > 1 {
		m.MediaName.Formats = m.MediaName.Formats[:1]
	}
	attrs := m.Attributes[:0:0]
	for _, a := range m.Attributes {
		pt, _, _ := strings.Cut(a.Value, " ")
		if a.Key == "mid" || a.Key == "rtpmap" && len(m.MediaName.Formats) > 0 && pt == m.MediaName.Formats[0] {
			attrs = append(attrs, a)
		}
	}
	m.Attributes = append(attrs, sdp.NewPropertyAttribute("inactive"))
	m.Bandwidth = nil
}

// restrictWebVideo keeps the payload types of v.codecs on m, with their
// fmtp, and sets the direction and bandwidth.
func restrictWebVideo(m *sdp.MediaDescription, v webVideo) {
	keep := map[string]Codec{}
	var formats []string
	for _, f := range m.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			continue
		}
		if c, ok := byPT(v.codecs, uint8(n)); ok {
			keep[f] = c
			formats = append(formats, f)
		}
	}
	m.MediaName.Formats = formats
	attrs := m.Attributes[:0:0]
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap", "rtcp-fb", "fmtp":
			pt, _, _ := strings.Cut(a.Value, " ")
			c, ok := keep[pt]
			if pt != "*" && !ok {
				continue
			}
			if a.Key == "fmtp" {
				if c.Fmtp == "" {
					continue
				}
				a = sdp.NewAttribute("fmtp", pt+" "+c.Fmtp)
			}
		}
		if _, ok := parseDirection(a.Key); ok {
			a = sdp.NewPropertyAttribute(v.dir.String())
		}
		attrs = append(attrs, a)
	}
	m.Attributes = attrs
	m.Bandwidth = nil
	if v.bitrate > 0 {
		m.Bandwidth = []sdp.Bandwidth{
			{Type: "AS", Bandwidth: (v.bitrate + 999) / 1000},
			{Type: "TIAS", Bandwidth: v.bitrate},
		}
	}
}
