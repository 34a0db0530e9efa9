package sip

import (
	"os"
	"testing"
)

func benchMessage(b *testing.B, name string) {
	data, err := os.ReadFile("testdata/bench/" + name)
	if err != nil {
		b.Fatal(err)
	}
	var p Parser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseDatagram(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRegister parses a JsSIP-style REGISTER (~430 bytes).
func BenchmarkParseRegister(b *testing.B) { benchMessage(b, "register.sip") }

// BenchmarkParseInvite parses an INVITE with a WebRTC SDP (~900 bytes).
func BenchmarkParseInvite(b *testing.B) { benchMessage(b, "invite.sip") }

func BenchmarkSerializeInvite(b *testing.B) {
	data, _ := os.ReadFile("testdata/bench/invite.sip")
	m, err := ParseDatagram(data)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendTo(buf[:0])
	}
}

func BenchmarkParseURI(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseURI("sip:alice@example.com:5060;transport=tcp;lr"); err != nil {
			b.Fatal(err)
		}
	}
}
