package media

import (
	"fmt"
	"strconv"
	"strings"
)

// Codec is an RTP payload format as SDP describes it with a=rtpmap and
// a=fmtp. Two codecs are the same format when Name (without case),
// ClockRate and Channels agree; Fmtp and PayloadType do not take part.
type Codec struct {
	// Name is the encoding name: "opus", "G722", "PCMU", "PCMA",
	// "telephone-event".
	Name string `json:"name"`
	// ClockRate is the RTP clock rate in Hz. G722 is 8000, as RFC 3551
	// says, although it samples at 16 kHz.
	ClockRate uint32 `json:"clock_rate"`
	// Channels is the channel count; 0 means 1, except for opus, which is
	// always 2 in SDP (RFC 7587).
	Channels uint16 `json:"channels,omitempty"`
	// Fmtp is the a=fmtp parameter string written when the gateway makes an
	// offer of its own. Offers from peers keep their own.
	Fmtp string `json:"fmtp,omitempty"`
	// PayloadType is the number written when the gateway makes an offer of
	// its own (Bridge.LateOffer). Offers from peers keep the numbering of
	// the offerer, and each leg keeps its own numbering: the relay rewrites
	// the payload type of every packet.
	PayloadType uint8 `json:"payload_type"`
}

// DefaultCodecs returns the default codec policy, in the order the gateway
// prefers them: Opus, G.722, G.711 µ-law and A-law, and telephone-event
// (RFC 4733) at 48 kHz (beside Opus) and 8 kHz (beside the others).
func DefaultCodecs() []Codec {
	return []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1", PayloadType: 111},
		{Name: "G722", ClockRate: 8000, PayloadType: 9},
		{Name: "PCMU", ClockRate: 8000, PayloadType: 0},
		{Name: "PCMA", ClockRate: 8000, PayloadType: 8},
		{Name: "telephone-event", ClockRate: 48000, Fmtp: "0-16", PayloadType: 110},
		{Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16", PayloadType: 101},
	}
}

// DefaultVideoCodecs returns the default video policy, in the order the
// gateway prefers them: VP8, then H.264 in packetization mode 1 with the
// constrained baseline and the baseline profile, at level 3.1, then the
// same in mode 0 (single NAL units: what many desk phones offer alone, and
// browsers take too). Video is relayed, never transcoded:
// the two ends must share one of these.
func DefaultVideoCodecs() []Codec {
	return []Codec{
		{Name: "VP8", ClockRate: 90000, PayloadType: 96},
		{Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", PayloadType: 97},
		{Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", PayloadType: 98},
		{Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", PayloadType: 99},
		{Name: "H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f", PayloadType: 100},
	}
}

// codecKey identifies a payload format independently of its number. For
// H.264 the packetization mode and the profile (h264Profile: profile_idc
// read with its constraint flags, RFC 6184 §8.1) take part: streams of
// another mode or profile cannot be relayed to a peer that did not ask for
// them. The level does not: it is negotiated (see answerFmtp).
type codecKey struct {
	name     string // lower case
	rate     uint32
	channels uint16 // normalised: never 0
	variant  string // H.264: "<packetization-mode>/<h264Profile>"
}

func (c Codec) key() codecKey {
	k := codecKey{name: strings.ToLower(c.Name), rate: c.ClockRate, channels: c.channels()}
	if c.isH264() {
		p, _ := parseH264(c.Fmtp)
		k.variant = strconv.Itoa(p.mode) + "/" + h264Profile(p.profile)
	}
	return k
}

// h264Profile names the profile that a profile_idc and its profile-iop
// byte (4 hex digits, as parseH264 keeps them) describe, so that two ways
// of writing one profile match: phones write constrained baseline as
// 42e0, 42c0 or 4d80 (main with constraint_set0: a stream both profiles
// decode, H.264 §A.2.1.1), browsers as 42e0, and plain baseline as 4200
// or 4280 (constraint_set0 only restates it). The low bits of the iop
// byte (reserved) keep a profile apart, and so does any profile_idc not
// named here.
func h264Profile(hex4 string) string {
	x, err := strconv.ParseUint(hex4, 16, 16)
	if err != nil || len(hex4) != 4 {
		return hex4
	}
	idc, iop := byte(x>>8), byte(x)
	set0, set1 := iop&0x80 != 0, iop&0x40 != 0
	set45 := iop & 0x0c // constraint_set4 and 5: progressive, constrained high
	switch {
	case iop&0x03 != 0:
		return hex4
	case idc == 0x42 && set1, idc == 0x4d && set0, idc == 0x58 && set0 && set1:
		return "constrained-baseline"
	case idc == 0x42, idc == 0x58 && set0:
		return "baseline"
	case idc == 0x4d:
		return "main"
	case idc == 0x64 && set45 == 0x0c:
		return "constrained-high"
	case idc == 0x64 && set45 == 0:
		return "high"
	}
	return hex4
}

// isVideo reports whether c is a video format the gateway knows. Every
// other format is taken for audio.
func (c Codec) isVideo() bool {
	switch strings.ToLower(c.Name) {
	case "vp8", "vp9", "h264", "h265", "av1", "h263", "h263-1998", "h263-2000":
		return c.ClockRate == 90000
	}
	return false
}

func (c Codec) isH264() bool { return strings.EqualFold(c.Name, "H264") }

// h264Params is what the gateway reads of an H.264 a=fmtp (RFC 6184 §8.1).
type h264Params struct {
	mode    int    // packetization-mode, 0 when absent
	profile string // profile_idc and profile-iop, 4 lower-case hex digits; "4200" (baseline) when absent
	level   uint8  // level_idc; 0x0a (level 1.0, the lowest) when absent
	set     bool   // profile-level-id was present
}

// parseH264 reads an H.264 fmtp; ok is false when profile-level-id is not
// six hex digits or packetization-mode is not 0, 1 or 2.
func parseH264(fmtp string) (p h264Params, ok bool) {
	p = h264Params{profile: "4200", level: 0x0a}
	ok = true
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "packetization-mode":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 2 {
				ok = false
				continue
			}
			p.mode = n
		case "profile-level-id":
			v = strings.ToLower(strings.TrimSpace(v))
			x, err := strconv.ParseUint(v, 16, 32)
			if err != nil || len(v) != 6 {
				ok = false
				continue
			}
			p.profile, p.level, p.set = v[:4], uint8(x), true
		}
	}
	return p, ok
}

// answerFmtp is the fmtp an answer carries for an offered format: the
// offer's parameters, and for H.264 the offer's profile with a level not
// above the offer's, nor above what the other leg takes (other, an fmtp
// of the same format on the other leg): RFC 6184 §8.2.2 lets the answerer
// lower the level, never raise it, and the gateway can take no more than
// the far end does.
func answerFmtp(c Codec, other string) string {
	if !c.isH264() {
		return c.Fmtp
	}
	mine, _ := parseH264(c.Fmtp)
	theirs, _ := parseH264(other)
	if !theirs.set || !mine.set || theirs.level >= mine.level {
		return c.Fmtp
	}
	parts := strings.Split(c.Fmtp, ";")
	for i, kv := range parts {
		k, _, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(strings.TrimSpace(k), "profile-level-id") {
			parts[i] = fmt.Sprintf("profile-level-id=%s%02x", mine.profile, theirs.level)
		}
	}
	return strings.Join(parts, ";")
}

// splitMedia separates the audio and the video formats of list.
func splitMedia(list []Codec) (audio, video []Codec) {
	for _, c := range list {
		if c.isVideo() {
			video = append(video, c)
		} else {
			audio = append(audio, c)
		}
	}
	return audio, video
}

// intersectVideo returns the video codecs of offer that allowed has, in the
// order and with the numbers of offer (in the order of allowed when
// ordered), fmtp levels lowered as answerFmtp says when the offer is the
// other leg's answer. nil when none is left.
func intersectVideo(offer, allowed []Codec, ordered bool) []Codec {
	var out []Codec
	seen := map[codecKey]bool{}
	pick := func(c Codec) {
		if !c.isVideo() || seen[c.key()] {
			return
		}
		if _, ok := find(allowed, c); ok {
			seen[c.key()] = true
			out = append(out, c)
		}
	}
	if ordered {
		for _, a := range allowed {
			if c, ok := find(offer, a); ok {
				pick(c)
			}
		}
		return out
	}
	for _, c := range offer {
		pick(c)
	}
	return out
}

// names lists the formats of list as "name/rate", once each, for errors
// and Warning headers.
func names(list []Codec) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range list {
		if c.Name == "" {
			continue
		}
		n := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
		if !seen[strings.ToLower(n)] {
			seen[strings.ToLower(n)] = true
			out = append(out, n)
		}
	}
	return out
}

func (c Codec) channels() uint16 {
	switch {
	case c.Channels != 0:
		return c.Channels
	case strings.EqualFold(c.Name, "opus"):
		return 2
	default:
		return 1
	}
}

// isDTMF reports whether c is RFC 4733 telephone-event.
func (c Codec) isDTMF() bool { return strings.EqualFold(c.Name, "telephone-event") }

// rtpmap is the value of the a=rtpmap attribute, without the payload type.
func (c Codec) rtpmap() string {
	s := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	if ch := c.channels(); ch > 1 {
		s += "/" + strconv.FormatUint(uint64(ch), 10)
	}
	return s
}

// staticCodec returns the codec a static payload type stands for when an
// SDP lists it without a=rtpmap (RFC 3551 table 4).
func staticCodec(pt uint8) (Codec, bool) {
	switch pt {
	case 0:
		return Codec{Name: "PCMU", ClockRate: 8000, PayloadType: 0}, true
	case 3:
		return Codec{Name: "GSM", ClockRate: 8000, PayloadType: 3}, true
	case 4:
		return Codec{Name: "G723", ClockRate: 8000, PayloadType: 4}, true
	case 8:
		return Codec{Name: "PCMA", ClockRate: 8000, PayloadType: 8}, true
	case 9:
		return Codec{Name: "G722", ClockRate: 8000, PayloadType: 9}, true
	case 13:
		return Codec{Name: "CN", ClockRate: 8000, PayloadType: 13}, true
	case 18:
		return Codec{Name: "G729", ClockRate: 8000, PayloadType: 18}, true
	}
	return Codec{}, false
}

// find returns the codec of list with the same format as c.
func find(list []Codec, c Codec) (Codec, bool) {
	k := c.key()
	for _, x := range list {
		if x.key() == k {
			return x, true
		}
	}
	return Codec{}, false
}

// byPT returns the codec of list numbered pt.
func byPT(list []Codec, pt uint8) (Codec, bool) {
	for _, x := range list {
		if x.PayloadType == pt {
			return x, true
		}
	}
	return Codec{}, false
}

// intersect returns the codecs of offer that are also in allowed, in the
// order and with the numbers of offer. telephone-event is kept only at the
// clock rates of the audio codecs kept, since its timestamps run at the
// rate of the audio it rides with. It returns nil when no audio codec is
// left.
func intersect(offer, allowed []Codec) []Codec {
	var out []Codec
	rates := map[uint32]bool{}
	seen := map[codecKey]bool{}
	for _, c := range offer {
		if c.isDTMF() || c.isVideo() || seen[c.key()] {
			continue
		}
		if _, ok := find(allowed, c); ok {
			seen[c.key()] = true
			out = append(out, c)
			rates[c.ClockRate] = true
		}
	}
	if len(out) == 0 {
		return nil
	}
	for _, c := range offer {
		if !c.isDTMF() || !rates[c.ClockRate] || seen[c.key()] {
			continue
		}
		if _, ok := find(allowed, c); ok {
			seen[c.key()] = true
			out = append(out, c)
		}
	}
	return out
}

// dtmfFor returns the telephone-event codec of list at rate.
func dtmfFor(list []Codec, rate uint32) (Codec, bool) {
	for _, c := range list {
		if c.isDTMF() && c.ClockRate == rate {
			return c, true
		}
	}
	return Codec{}, false
}

// answered returns the codecs of an answer that were offered, with the
// answerer's numbering (RFC 3264 §6.1 lets an answerer renumber dynamic
// types; each party receives with the numbers of its own SDP). A payload
// type that the answer lists without a=rtpmap takes the offer's. As in
// intersect, telephone-event is kept only at the rates of the audio kept.
func answered(answer, offered []Codec) []Codec {
	return intersect(named(answer, offered), offered)
}

// named gives the payload types of an answer listed without a=rtpmap the
// format the offer gave them.
func named(answer, offered []Codec) []Codec {
	var in []Codec
	for _, c := range answer {
		if c.Name == "" {
			o, ok := byPT(offered, c.PayloadType)
			if !ok {
				continue
			}
			o.Fmtp = c.Fmtp
			c = o
		}
		in = append(in, c)
	}
	return in
}
