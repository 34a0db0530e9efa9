package media

import (
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

// codecKey identifies a payload format independently of its number.
type codecKey struct {
	name     string // lower case
	rate     uint32
	channels uint16 // normalised: never 0
}

func (c Codec) key() codecKey {
	return codecKey{name: strings.ToLower(c.Name), rate: c.ClockRate, channels: c.channels()}
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
		if c.isDTMF() || seen[c.key()] {
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
	return intersect(in, offered)
}
