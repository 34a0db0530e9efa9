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
	s = &session{desc: desc, audio: -1, dir: dirSendRecv}
	for i, m := range desc.MediaDescriptions {
		s.lines = append(s.lines, mediaLine{
			media:   m.MediaName.Media,
			proto:   strings.Join(m.MediaName.Protos, "/"),
			formats: m.MediaName.Formats,
		})
		if s.audio >= 0 || !strings.EqualFold(m.MediaName.Media, "audio") || m.MediaName.Port.Value == 0 {
			continue
		}
		proto := s.lines[i].proto
		if web && !isDTLSRTP(proto) || !web && !isPlainRTP(proto) {
			continue
		}
		s.audio = i
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
	if ci == nil || ci.Address == nil {
		return nil, fmt.Errorf("media: no c= line for the audio stream: %w", ErrInvalidSDP)
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return nil, fmt.Errorf("media: connection address %q: %w", ci.Address.Address, ErrInvalidSDP)
	}
	a = a.Unmap()
	if !a.IsUnspecified() {
		s.addr = a
	}
	s.rtcp = netip.AddrPortFrom(s.addr, uint16(s.port+1))
	if v, ok := m.Attribute("rtcp"); ok {
		if p, err := parseRTCPAttr(v, s.addr); err == nil {
			s.rtcp = p
		}
	}
	return s, nil
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
		return b.Bytes()
	}
	for i, l := range d.lines {
		if i == d.audio {
			d.writeAudio(&b)
			continue
		}
		formats := l.formats
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", l.media, l.proto, strings.Join(formats, " "))
	}
	return b.Bytes()
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

// rewriteWebSDP sets the direction (and a=ptime, when ptime > 0) of the
// audio stream in an SDP that pion wrote. The relay, not pion, enforces
// direction, so the transceiver stays sendrecv and only the SDP the browser
// sees says what the other leg allows.
func rewriteWebSDP(body string, dir direction, ptime int) ([]byte, error) {
	desc := &sdp.SessionDescription{}
	if err := desc.Unmarshal([]byte(body)); err != nil {
		return nil, fmt.Errorf("media: sdp from pion: %w", err)
	}
	for _, m := range desc.MediaDescriptions {
		if !strings.EqualFold(m.MediaName.Media, "audio") || m.MediaName.Port.Value == 0 {
			continue
		}
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
		break
	}
	return desc.Marshal()
}
