package sip

import "testing"

func mustURI(t testing.TB, s string) URI {
	t.Helper()
	u, err := ParseURI(s)
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", s, err)
	}
	return u
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want URI
	}{
		{"sip:alice@example.com", URI{Scheme: "sip", User: "alice", Host: "example.com"}},
		{"SIPS:Alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&x=y",
			URI{Scheme: "sips", User: "Alice", Password: "secret", Host: "Example.COM", Port: 5061,
				Params: ";transport=tcp;lr", Headers: "subject=hi&x=y"}},
		{"sip:[2001:db8::1]:5070;maddr=[2001:db8::2]", URI{Scheme: "sip", Host: "2001:db8::1", Port: 5070, Params: ";maddr=[2001:db8::2]"}},
		{"sip:192.0.2.1", URI{Scheme: "sip", Host: "192.0.2.1"}},
		{"sip:%61lice@h", URI{Scheme: "sip", User: "alice", Host: "h"}},
		{"sip:+1-212-555-0101@gw.example.com;user=phone", URI{Scheme: "sip", User: "+1-212-555-0101", Host: "gw.example.com", Params: ";user=phone"}},
		{"tel:+1-201-555-0123", URI{Scheme: "tel", User: "+1-201-555-0123"}},
		{"tel:7042;phone-context=example.com", URI{Scheme: "tel", User: "7042", Params: ";phone-context=example.com"}},
		{"urn:uuid:0f6e3c2a-5b1d", URI{Scheme: "urn", Opaque: "uuid:0f6e3c2a-5b1d"}},
		{"sip:alice@df7jal23ls0d.invalid;transport=ws", URI{Scheme: "sip", User: "alice", Host: "df7jal23ls0d.invalid", Params: ";transport=ws"}},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseURI(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseURIErrors(t *testing.T) {
	for _, in := range []string{
		"", "alice@example.com", ":x", "1sip:x", "sip:", "sip:alice@", "sip:@host",
		"sip:host:99999", "sip:host:5x", "sip:[2001:db8::1", "sip:[zz::1]", "sip:2001:db8::10",
		"sip:a b@host", "sip:host;;lr", "sip:host;=x", "sip:host;a=", "sip:host?", "sip:host?a",
		"sip:%4@host", "sip:%zz@host", "sip:host>", "tel:", "tel:12a3x", "http:", "x:a b",
	} {
		if u, err := ParseURI(in); err == nil {
			t.Errorf("ParseURI(%q) = %+v, want error", in, u)
		}
	}
}

// TestURIEqual runs the examples of RFC 3261 §19.1.4.
func TestURIEqual(t *testing.T) {
	equal := [][2]string{
		{"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;security=on"},
		{"sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"},
		{"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
			"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"},
		{"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
			"sip:alice@atlanta.com?priority=urgent&subject=project%20x"},
		{"tel:+1-201-555-0123", "tel:+1.201.555.0123"},
	}
	notEqual := [][2]string{
		{"SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"},
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"},
		{"sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"},
		{"sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"},
		{"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"},
		{"sip:alice@example.com", "sips:alice@example.com"},
		{"sip:alice:a@example.com", "sip:alice:b@example.com"},
		{"tel:+1-201-555-0123", "tel:+1-201-555-0123;ext=1"},
	}
	for _, p := range equal {
		a, b := mustURI(t, p[0]), mustURI(t, p[1])
		if !a.Equal(&b) || !b.Equal(&a) {
			t.Errorf("%s and %s should be equal", p[0], p[1])
		}
	}
	for _, p := range notEqual {
		a, b := mustURI(t, p[0]), mustURI(t, p[1])
		if a.Equal(&b) || b.Equal(&a) {
			t.Errorf("%s and %s should differ", p[0], p[1])
		}
	}
}

func TestURIString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sip:alice@example.com:5060;lr", "sip:alice@example.com:5060;lr"},
		{"SIP:%61lice@h", "sip:alice@h"},
		{"sip:I%20have%20spaces@h", "sip:I%20have%20spaces@h"},
		{"sip:user;par=u%40example.net@example.com", "sip:user;par=u%40example.net@example.com"},
		{"sip:[2001:db8::1]:5070", "sip:[2001:db8::1]:5070"},
		{"tel:+1-201-555-0123;phone-context=x", "tel:+1-201-555-0123;phone-context=x"},
		{"sip:h?a=b", "sip:h?a=b"},
		{"mailto:a@b", "mailto:a@b"},
	}
	for _, tt := range tests {
		u := mustURI(t, tt.in)
		if got := u.String(); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	u := URI{Scheme: "sip", User: "a@b c", Host: "2001:db8::1", Port: 5060}
	if got, want := u.String(), "sip:a%40b%20c@[2001:db8::1]:5060"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestParams(t *testing.T) {
	p := Params(";tag=abc ; lr;q = 0.5;x=\"a;b\"")
	if v, ok := p.Get("TAG"); !ok || v != "abc" {
		t.Errorf("Get(TAG) = %q, %v", v, ok)
	}
	if v, ok := p.Get("lr"); !ok || v != "" {
		t.Errorf("Get(lr) = %q, %v", v, ok)
	}
	if v, _ := p.Get("q"); v != "0.5" {
		t.Errorf("Get(q) = %q", v)
	}
	if v, _ := p.Get("x"); v != `"a;b"` || Unquote(v) != "a;b" {
		t.Errorf("Get(x) = %q", v)
	}
	if p.Len() != 4 {
		t.Errorf("Len = %d", p.Len())
	}
	if _, ok := p.Get("missing"); ok {
		t.Error("Get(missing) found")
	}
	if got := Params(";a=1;b").Set("a", "2").Set("c", "3").Del("b"); got != ";a=2;c=3" {
		t.Errorf("Set/Del = %q", got)
	}
	if Quote(`a"b\c`) != `"a\"b\\c"` || Unquote(`"a\"b\\c"`) != `a"b\c` {
		t.Error("Quote/Unquote do not round-trip")
	}
	var zero Params
	if zero.Has("x") || zero.Len() != 0 || zero.Set("lr", "") != ";lr" {
		t.Error("zero Params misbehaves")
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in                         string
		display, uri, tag, wantStr string
	}{
		{`"Alice" <sip:alice@example.com>;tag=1`, "Alice", "sip:alice@example.com", "1", `"Alice" <sip:alice@example.com>;tag=1`},
		{`Bob Smith <sip:bob@example.com>`, "Bob Smith", "sip:bob@example.com", "", `"Bob Smith" <sip:bob@example.com>`},
		{`sip:carol@example.com;tag=9`, "", "sip:carol@example.com", "9", `<sip:carol@example.com>;tag=9`},
		{`<sip:dave@example.com;lr>`, "", "sip:dave@example.com;lr", "", `<sip:dave@example.com;lr>`},
		{`"a \"q\"" <tel:+123>`, `a "q"`, "tel:+123", "", `"a \"q\"" <tel:+123>`},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tt.in, err)
			continue
		}
		if a.Display != tt.display || a.URI.String() != tt.uri || a.Tag() != tt.tag || a.String() != tt.wantStr {
			t.Errorf("ParseAddress(%q) = %q %q %q %q", tt.in, a.Display, a.URI.String(), a.Tag(), a.String())
		}
	}
	for _, in := range []string{``, `"unterminated <sip:a@b>`, `<sip:a@b`, `Bell, Alexander <sip:a@b>`,
		`< sip:a@b >`, `sip:a@b?x=y`, `<sip:a@b>;;`, `<sip:a@b> junk`, `<sip:a@b>;tag=`} {
		if _, err := ParseAddress(in); err == nil {
			t.Errorf("ParseAddress(%q) succeeded", in)
		}
	}
}

func TestParseVia(t *testing.T) {
	vs, err := ParseVia("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP / 2.0 / TCP [2001:db8::1] ; received=192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("got %d vias", len(vs))
	}
	if vs[0].Transport != "UDP" || vs[0].Host != "192.0.2.1" || vs[0].Port != 5060 || vs[0].Branch() != "z9hG4bK1" {
		t.Errorf("via 0 = %+v", vs[0])
	}
	if p, ok := vs[0].RPort(); !ok || p != 0 {
		t.Errorf("rport = %d, %v", p, ok)
	}
	if vs[1].Transport != "TCP" || vs[1].Host != "2001:db8::1" || vs[1].Received() != "192.0.2.9" {
		t.Errorf("via 1 = %+v", vs[1])
	}
	if got := vs[1].String(); got != "SIP/2.0/TCP [2001:db8::1]; received=192.0.2.9" {
		t.Errorf("String = %q", got)
	}
	for _, in := range []string{"", "SIP/2.0/UDP", "SIP/3.0/UDP h", "XIP/2.0/UDP h", "SIP/2.0/UDP h;;", "SIP/2.0/UDP h:x", "SIP/2.0/UDP h,"} {
		if _, err := ParseVia(in); err == nil {
			t.Errorf("ParseVia(%q) succeeded", in)
		}
	}
}

// TestParamsGetPlain checks Get's loop for lists without whitespace or
// quotes against the general walk, on the edge cases of the list syntax.
func TestParamsGetPlain(t *testing.T) {
	lists := []string{
		"", ";", ";;", ";a", "a", "a;", ";a=1;", ";;a=1", "a=b=c;d", ";branch=z9hG4bK1;rport;received=10.0.0.1",
		";RPORT=5060;Received=x", ";=1;a", ";a=;b=2", ";a;a=2", "x=1;;y", "a=;;b", ";x=a;a",
		"; a=1", ";a =1", ";a= 1", ";b=\"x;a=2\";a=3", ";a=\"q\"", ";aa=1;a", ";a\t;b",
	}
	names := []string{"a", "A", "b", "d", "y", "rport", "received", "branch", "missing"}
	for _, l := range lists {
		for _, n := range names {
			v, ok := Params(l).Get(n)
			wv, wok := Params(l).get(n)
			if v != wv || ok != wok {
				t.Errorf("Get(%q) of %q = %q, %v; the general path says %q, %v", n, l, v, ok, wv, wok)
			}
		}
	}
}
