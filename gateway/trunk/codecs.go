package trunk

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/media"
)

// ErrUnknownCodec is returned by ParseCodecs for a name the gateway cannot
// relay: it does not transcode, so only the formats browsers speak pass.
var ErrUnknownCodec = errors.New("unknown codec")

// MaxCodecs bounds a trunk's codecs list: there are not that many formats
// to name, and a list is read from a file an operator may get wrong.
const MaxCodecs = 32

// catalogue is every format a trunk's policy may name, in the gateway's
// order: the audio codecs and DTMF events of media's default policy, then
// its video codecs. Browsers speak all of these; nothing else can cross
// the gateway, which relays packets as they are.
func catalogue() []media.Codec {
	return append(media.DefaultCodecs(), media.DefaultVideoCodecs()...)
}

func isDTMF(c media.Codec) bool { return strings.EqualFold(c.Name, "telephone-event") }

func isVideo(c media.Codec) bool { return c.ClockRate == 90000 }

// knownNames lists the names ParseCodecs takes, for error messages.
func knownNames() string {
	var names []string
	seen := map[string]bool{}
	for _, c := range catalogue() {
		if isDTMF(c) || seen[strings.ToLower(c.Name)] {
			continue
		}
		seen[strings.ToLower(c.Name)] = true
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// ParseCodecs turns a trunk's codecs list into its codec policy: names
// such as "PCMU", "opus", "G722", "VP8", "H264", in any case, optionally
// with the clock rate ("opus/48000") and, for opus, the channels
// ("opus/48000/2"). The policy keeps the list's order (the trunk is
// offered its codecs in that order) and adds telephone-event at the clock
// rate of each audio codec listed, so that DTMF (RFC 4733) still passes;
// "H264" stands for every H.264 profile the gateway relays. It needs at
// least one audio codec: a call has sound before it has pictures.
func ParseCodecs(names []string) ([]media.Codec, error) {
	if len(names) == 0 {
		return nil, errors.New("the list is empty: leave codecs out for the gateway's codecs, or name at least one audio codec")
	}
	if len(names) > MaxCodecs {
		return nil, fmt.Errorf("%d codecs named, at most %d", len(names), MaxCodecs)
	}
	all := catalogue()
	var out []media.Codec
	listed := map[string]string{} // lower-case name and rate → as written
	audio := map[uint32]bool{}
	dtmf := map[uint32]bool{}
	for _, raw := range names {
		found, err := parseCodec(raw, all)
		if err != nil {
			return nil, err
		}
		k := strings.ToLower(found[0].Name) + "/" + strconv.FormatUint(uint64(found[0].ClockRate), 10)
		if prev, dup := listed[k]; dup {
			return nil, fmt.Errorf("codec %q is listed twice (as %q before)", raw, prev)
		}
		listed[k] = raw
		for _, c := range found {
			switch {
			case isDTMF(c):
				dtmf[c.ClockRate] = true
			case !isVideo(c):
				audio[c.ClockRate] = true
			}
		}
		out = append(out, found...)
	}
	if len(audio) == 0 {
		return nil, fmt.Errorf("no audio codec among %s: name at least one of the audio codecs (a call without sound cannot be bridged)", strings.Join(names, ", "))
	}
	for _, c := range all {
		if isDTMF(c) && audio[c.ClockRate] && !dtmf[c.ClockRate] {
			out = append(out, c)
		}
	}
	return out, nil
}

// parseCodec finds the formats of the catalogue a name stands for.
func parseCodec(raw string, all []media.Codec) ([]media.Codec, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, errors.New("an empty codec name")
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return nil, fmt.Errorf("codec %q: write a name, optionally with its clock rate, such as \"opus/48000\"", raw)
	}
	name := parts[0]
	var rate uint64
	var channels uint64
	var err error
	if len(parts) > 1 {
		if rate, err = strconv.ParseUint(parts[1], 10, 32); err != nil || rate == 0 {
			return nil, fmt.Errorf("codec %q: clock rate %q is not a number of Hz", raw, parts[1])
		}
	}
	if len(parts) > 2 {
		if channels, err = strconv.ParseUint(parts[2], 10, 16); err != nil || channels == 0 {
			return nil, fmt.Errorf("codec %q: channels %q is not a count", raw, parts[2])
		}
	}
	var named, out []media.Codec
	for _, c := range all {
		if strings.EqualFold(c.Name, name) {
			named = append(named, c)
		}
	}
	if len(named) == 0 {
		return nil, fmt.Errorf("codec %q: %w: the gateway relays, never transcodes, so only formats browsers speak can pass: %s (and telephone-event)", raw, ErrUnknownCodec, knownNames())
	}
	for _, c := range named {
		if rate != 0 && uint64(c.ClockRate) != rate {
			continue
		}
		if channels != 0 && uint64(max(c.Channels, 1)) != channels {
			continue
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		var have []string
		for _, c := range named {
			have = append(have, codecString(c))
		}
		return nil, fmt.Errorf("codec %q: %w at that rate: the gateway relays %s", raw, ErrUnknownCodec, strings.Join(have, ", "))
	}
	return out, nil
}

// codecString writes a format as SDP's rtpmap does: name/rate[/channels].
func codecString(c media.Codec) string {
	s := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	if c.Channels > 1 {
		s += "/" + strconv.FormatUint(uint64(c.Channels), 10)
	}
	return s
}

// CodecNames writes a policy as a list of names, for logs and errors.
func CodecNames(cs []media.Codec) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cs {
		s := codecString(c)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
