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

// BenchmarkRespond builds the answer to a parsed REGISTER as a registrar
// does (NewResponse), has it indexed as the transaction layer does before
// sending it (Index), and writes it.
func BenchmarkRespond(b *testing.B) {
	data, _ := os.ReadFile("testdata/bench/register.sip")
	m, err := ParseDatagram(data)
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*Request)
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		res := NewResponse(req, 401, "")
		if err := res.Index(); err != nil {
			b.Fatal(err)
		}
		buf = res.AppendTo(buf[:0])
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

// BenchmarkValueString formats the values a proxy and a registrar write
// into the headers they build: a Via with a long branch, a To with its
// tag, a Contact URI.
func BenchmarkValueString(b *testing.B) {
	vias, err := ParseVia("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-sb-6f2c1a9e0d7b4c3f8a5e2d1c0b9a8f7e;rport")
	if err != nil {
		b.Fatal(err)
	}
	via := vias[0]
	to, err := ParseAddress(`"Alice Example" <sip:alice@example.com>;tag=8f3a2c1d9e7b6a5f4e3d`)
	if err != nil {
		b.Fatal(err)
	}
	uri, err := ParseURI("sip:alice@198.51.100.23:50612;transport=udp;ob")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(via.String()) + len(to.String()) + len(uri.String())
	}
	if n == 0 {
		b.Fatal("empty")
	}
}

// BenchmarkParamsGet looks up the parameters that the transport and the
// transaction layer read from every request's top Via, as received from
// a phone behind rport.
func BenchmarkParamsGet(b *testing.B) {
	p := Params(";branch=z9hG4bK-4242-17-1;rport=5060;received=127.0.0.2")
	b.ReportAllocs()
	for b.Loop() {
		_, ok1 := p.Get("rport")
		_, ok2 := p.Get("received")
		_, ok3 := p.Get("branch")
		if !ok1 || !ok2 || !ok3 {
			b.Fatal("parameter missing")
		}
	}
}
