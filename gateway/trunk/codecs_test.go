package trunk

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/media"
)

// A trunk's codecs keep the list's order, add DTMF beside each audio
// clock rate, and stand for every variant of a name (H.264's profiles).
func TestParseCodecs(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{[]string{"PCMA"}, []string{"PCMA/8000", "telephone-event/8000"}},
		{[]string{"pcmu", "Opus"}, []string{"PCMU/8000", "opus/48000/2", "telephone-event/48000", "telephone-event/8000"}},
		{[]string{"opus/48000/2"}, []string{"opus/48000/2", "telephone-event/48000"}},
		{[]string{" G722/8000 ", "VP8", "H264"}, []string{"G722/8000", "VP8/90000", "H264/90000", "telephone-event/8000"}},
		{[]string{"PCMU", "telephone-event"}, []string{"PCMU/8000", "telephone-event/48000", "telephone-event/8000"}},
	} {
		got, err := ParseCodecs(tc.names)
		if err != nil {
			t.Errorf("ParseCodecs(%q): %v", tc.names, err)
			continue
		}
		if names := CodecNames(got); !reflect.DeepEqual(names, tc.want) {
			t.Errorf("ParseCodecs(%q) = %q, want %q", tc.names, names, tc.want)
		}
	}
	// Both H.264 profiles of the gateway's policy, in its order.
	got, err := ParseCodecs([]string{"PCMU", "H264"})
	if err != nil {
		t.Fatal(err)
	}
	var h264 []media.Codec
	for _, c := range media.DefaultVideoCodecs() {
		if c.Name == "H264" {
			h264 = append(h264, c)
		}
	}
	if len(h264) == 0 || !reflect.DeepEqual(got[1:1+len(h264)], h264) {
		t.Errorf("H264 stands for %+v, want %+v", got[1:], h264)
	}
}

func TestParseCodecsRefuses(t *testing.T) {
	long := make([]string, MaxCodecs+1)
	for i := range long {
		long[i] = "PCMU"
	}
	for _, tc := range []struct {
		names   []string
		want    string
		unknown bool
	}{
		{[]string{}, "the list is empty", false},
		{[]string{"G729"}, `codec "G729": unknown codec`, true},
		{[]string{"PCMU", "AMR-WB"}, `codec "AMR-WB": unknown codec`, true},
		{[]string{"opus/8000"}, "at that rate: the gateway relays opus/48000/2", true},
		{[]string{"opus/48000/1"}, "at that rate", true},
		{[]string{"PCMU/x"}, `clock rate "x" is not a number of Hz`, false},
		{[]string{"PCMU/0"}, "is not a number of Hz", false},
		{[]string{"PCMU/8000/0"}, "is not a count", false},
		{[]string{"PCMU/8000/1/2"}, "write a name, optionally with its clock rate", false},
		{[]string{""}, "an empty codec name", false},
		{[]string{"VP8", "H264"}, "no audio codec among VP8, H264", false},
		{[]string{"telephone-event"}, "no audio codec", false},
		{[]string{"PCMA", "pcma/8000"}, `codec "pcma/8000" is listed twice (as "PCMA" before)`, false},
		{long, "33 codecs named, at most 32", false},
	} {
		got, err := ParseCodecs(tc.names)
		if err == nil {
			t.Errorf("ParseCodecs(%q) = %v, want an error", tc.names, CodecNames(got))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCodecs(%q): %v, want %q in it", tc.names, err, tc.want)
		}
		if errors.Is(err, ErrUnknownCodec) != tc.unknown {
			t.Errorf("ParseCodecs(%q): errors.Is(ErrUnknownCodec) = %v", tc.names, !tc.unknown)
		}
	}
}
