package mediapeer

import (
	"github.com/pion/rtp"
)

// Synthesised video: valid enough for every parser on the path (RTP,
// the VP8 payload descriptor, H.264 NAL headers), not for a decoder. The
// gateway never decodes; tests see keyframes by their headers.

// VP8Keyframe is the payload of one RTP packet holding a whole VP8
// keyframe of 16×16 pixels: payload descriptor with S set, then the frame
// tag (key frame, shown) and the start code with the size (RFC 6386
// §9.1).
func VP8Keyframe() []byte {
	return []byte{0x10, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00}
}

// IsVP8Keyframe reports whether payload starts a VP8 keyframe.
func IsVP8Keyframe(payload []byte) bool {
	if len(payload) < 2 || payload[0]&0x10 == 0 {
		return false
	}
	i := 1
	if payload[0]&0x80 != 0 { // X: extensions follow
		return false // not what VP8Keyframe writes
	}
	return payload[i]&0x01 == 0
}

// H264IDR is an H.264 access unit that starts a stream, one NAL unit per
// RTP payload (packetization mode 1, single NAL unit packets): SPS, PPS,
// and an IDR slice.
func H264IDR() [][]byte {
	return [][]byte{
		{0x67, 0x42, 0xe0, 0x1e, 0x8d, 0x68, 0x50},
		{0x68, 0xce, 0x3c, 0x80},
		{0x65, 0x88, 0x84, 0x00, 0x33, 0xff},
	}
}

// IsH264IDR reports whether payload is (or starts a fragmented, or
// aggregates) an IDR slice.
func IsH264IDR(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	switch t := payload[0] & 0x1f; t {
	case 5:
		return true
	case 28: // FU-A
		return len(payload) > 1 && payload[1]&0x1f == 5
	case 24: // STAP-A
		for i := 1; i+2 < len(payload); {
			n := int(payload[i])<<8 | int(payload[i+1])
			if i+2 < len(payload) && payload[i+2]&0x1f == 5 {
				return true
			}
			i += 2 + n
		}
	}
	return false
}

// H264Packets packetises an access unit for payload type pt from seq on,
// the marker on its last packet.
func H264Packets(au [][]byte, pt uint8, ssrc uint32, seq uint16, ts uint32) []*rtp.Packet {
	out := make([]*rtp.Packet, 0, len(au))
	for i, nal := range au {
		out = append(out, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq + uint16(i), Timestamp: ts, SSRC: ssrc, Marker: i == len(au)-1}, Payload: nal})
	}
	return out
}
