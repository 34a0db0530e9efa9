package e2e

import (
	"encoding/binary"
	"math"
)

// pcmuTone returns a pcap file (Ethernet, IPv4, UDP) of seconds of a
// 440 Hz tone as RTP PCMU (payload type 0), one packet per 20 ms: what
// sipp's play_pcap_audio sends as a phone's microphone, with its own
// addresses and ports in place of those written here. Debian's
// sip-tester ships only an A-law capture.
func pcmuTone(seconds int) []byte {
	const (
		samples = 160 // 20 ms at 8 kHz
		rtpLen  = 12 + samples
		udpLen  = 8 + rtpLen
		ipLen   = 20 + udpLen
		frame   = 14 + ipLen
	)
	packets := seconds * 50
	b := make([]byte, 0, 24+packets*(16+frame))
	le, be := binary.LittleEndian, binary.BigEndian
	// Global header: magic, version 2.4, no zone, no accuracy, snaplen,
	// link type Ethernet.
	b = le.AppendUint32(b, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 1)
	const t0 = 1_700_000_000
	for i := range packets {
		usec := i * 20_000
		b = le.AppendUint32(b, uint32(t0+usec/1_000_000))
		b = le.AppendUint32(b, uint32(usec%1_000_000))
		b = le.AppendUint32(b, frame)
		b = le.AppendUint32(b, frame)
		// Ethernet: two made-up addresses, IPv4.
		b = append(b, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00)
		ip := len(b)
		b = append(b, 0x45, 0)
		b = be.AppendUint16(b, ipLen)
		b = be.AppendUint16(b, uint16(i))
		b = be.AppendUint16(b, 0x4000) // don't fragment
		b = append(b, 64, 17, 0, 0)    // TTL, UDP, checksum below
		b = append(b, 127, 0, 0, 1, 127, 0, 0, 1)
		var sum uint32
		for k := ip; k < ip+20; k += 2 {
			sum += uint32(be.Uint16(b[k:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		be.PutUint16(b[ip+10:], ^uint16(sum))
		// UDP, without a checksum.
		b = be.AppendUint16(b, 40000)
		b = be.AppendUint16(b, 40002)
		b = be.AppendUint16(b, udpLen)
		b = be.AppendUint16(b, 0)
		// RTP: version 2, marker on the first packet, PCMU.
		b = append(b, 0x80, 0)
		if i == 0 {
			b[len(b)-1] = 0x80
		}
		b = be.AppendUint16(b, uint16(i))
		b = be.AppendUint32(b, uint32(i*samples))
		b = be.AppendUint32(b, 0x5eed1000)
		for n := range samples {
			s := 8000 * math.Sin(2*math.Pi*440*float64(i*samples+n)/8000)
			b = append(b, ulaw(int(math.Round(s))))
		}
	}
	return b
}

// ulaw encodes a 16-bit linear sample as G.711 µ-law.
func ulaw(sample int) byte {
	const bias, clip = 0x84, 32635
	sign := 0
	if sample < 0 {
		sample, sign = -sample, 0x80
	}
	sample = min(sample, clip) + bias
	exponent := 7
	for mask := 0x4000; sample&mask == 0 && exponent > 0; mask >>= 1 {
		exponent--
	}
	mantissa := (sample >> (exponent + 3)) & 0x0f
	return ^byte(sign | exponent<<4 | mantissa)
}
