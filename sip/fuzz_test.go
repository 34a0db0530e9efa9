package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// seedCorpus adds every torture message and the benchmark messages.
func seedCorpus(f *testing.F, add func(b []byte)) {
	files, _ := filepath.Glob(filepath.Join(tortureDir, "*.dat"))
	bench, _ := filepath.Glob("testdata/bench/*.sip")
	for _, name := range append(files, bench...) {
		b, err := os.ReadFile(name)
		if err == nil {
			add(b)
		}
	}
	add([]byte(simpleInvite))
}

// FuzzParseMessage checks that no input panics, and that whatever parses
// serialises to something that parses to the same bytes again.
func FuzzParseMessage(f *testing.F) {
	seedCorpus(f, func(b []byte) { f.Add(b) })
	p := Parser{Limits: Limits{MaxMessageSize: 16 << 10}}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFields(t, data)
		for _, datagram := range []bool{true, false} {
			var m Message
			var err error
			if datagram {
				m, err = p.ParseDatagram(data)
			} else {
				m, err = p.ParseMessage(data)
			}
			if err != nil {
				if pe, ok := err.(*ParseError); !ok || pe.Status < 400 || pe.Reason == "" {
					t.Fatalf("error without status and reason: %#v", err)
				}
				if out, ok := RejectBytes(data, err.(*ParseError)); ok {
					if _, err := p.ParseMessage(out); err != nil && !errors.Is(err, ErrMissingHeader) {
						t.Fatalf("stateless answer does not parse: %v\n%q", err, out)
					}
				}
				continue
			}
			if req, ok := m.(*Request); ok {
				checkToTag(t, &p, req, "fz1")
				checkLineKept(t, req)
				checkCopiedHeaders(t, &p, req)
				checkNewResponse(t, req)
			}
			out := m.AppendTo(nil)
			m2, err := p.ParseMessage(out)
			if err != nil {
				t.Fatalf("re-parse failed: %v\nin:  %q\nout: %q", err, data, out)
			}
			if out2 := m2.AppendTo(nil); !bytes.Equal(out, out2) {
				t.Fatalf("unstable round trip:\n%q\n%q", out, out2)
			}
			// Typed accessors must not panic on anything that parsed.
			h := m.Header()
			h.Routes()
			h.RecordRoutes()
			h.Paths()
			h.Event()
			h.Replaces()
			h.RAck()
			h.SessionExpires()
			h.Date()
			// HasToken reads the lines in place; Tokens builds the list.
			for _, name := range []string{"Supported", "Require"} {
				toks := h.Tokens(name)
				for _, tok := range append(toks, "path", "OUTBOUND", "", "a b") {
					want := slices.ContainsFunc(toks, func(t string) bool { return strings.EqualFold(t, tok) })
					if got := h.HasToken(name, tok); got != want {
						t.Fatalf("HasToken(%q, %q) = %v, Tokens %q", name, tok, got, toks)
					}
				}
			}
			checkSetTopVia(t, &p, m)
			// Nor must changing the message.
			h.PopVia()
			h.SetTopVia(Via{Transport: "UDP", Host: "h", Params: ";branch=z9hG4bKx"})
			h.Set("Max-Forwards", "1")
			_ = m.AppendTo(nil)
		}
	})
}

// FuzzFrame feeds random stream bytes through Frame and ParseMessage, as a
// stream transport does.
func FuzzFrame(f *testing.F) {
	seedCorpus(f, func(b []byte) { f.Add(append([]byte("\r\n\r\n"), b...)) })
	p := Parser{Limits: Limits{MaxMessageSize: 8 << 10}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for len(data) > 0 {
			n, msg, err := p.Frame(data)
			if err != nil || n == 0 {
				return
			}
			if n > len(data) {
				t.Fatalf("frame of %d bytes in a buffer of %d", n, len(data))
			}
			if msg {
				p.ParseMessage(data[:n])
			}
			data = data[n:]
		}
	})
}

// FuzzParseURI: parse → String → parse is stable and Equal to itself.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"sip:alice@example.com", "sips:a:b@[2001:db8::1]:5061;transport=tcp;lr?x=y&z=w",
		"tel:+1-201-555-0123;phone-context=example.com", "sip:%61lice@h;n%61me=v%25",
		"sip:user;par=u%40example.net@example.com", "urn:uuid:1234", "sip:[2001:db8:::192.0.2.1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkPlainURI(t, s)
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		out := u.String()
		u2, err := ParseURI(out)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, s, err)
		}
		if u2 != u && u2.String() != out {
			t.Fatalf("unstable: %q -> %q -> %q", s, out, u2.String())
		}
		if !u.Equal(&u2) || !u.Equal(&u) {
			t.Fatalf("%q not equal to its own round trip %q", s, out)
		}
	})
}

// checkPlainURI checks that the one-pass parser of common sip URIs agrees
// with the full one on the text after "sip:" in s.
func checkPlainURI(t *testing.T, s string) {
	t.Helper()
	s = strings.TrimPrefix(s, "sip:")
	var plain, full URI
	if !plain.parseSIPPlain(s) {
		if plain != (URI{}) {
			t.Fatalf("parseSIPPlain(%q) gave up but set %+v", s, plain)
		}
		return
	}
	if err := full.parseSIPFull(s); err != nil {
		t.Fatalf("parseSIPPlain accepts %q, parseSIPFull rejects it: %v", s, err)
	}
	if plain != full {
		t.Fatalf("%q: parseSIPPlain gave %+v, parseSIPFull %+v", s, plain, full)
	}
}

// checkFields checks that the header lines of a message, split by the
// parser's quick path where it applies, are what the general line parser
// makes of each of them.
func checkFields(t *testing.T, data []byte) {
	t.Helper()
	s := strings.TrimLeft(string(data), "\r\n")
	_, s, found := strings.Cut(s, "\n")
	if !found {
		return
	}
	lim := Limits{}.WithDefaults()
	var quick Headers
	if _, _, err := quick.parseFields(s, &lim); err != nil {
		return
	}
	var slow Headers
	k := 0
	for i := 0; i < len(s) && s[i] != '\n' && !strings.HasPrefix(s[i:], "\r\n"); k++ {
		j := i
		for j < len(s) && is(s[j], cToken) {
			j++
		}
		f, next, err := slow.parseLine(s, i, j, k, &lim)
		if err != nil {
			t.Fatalf("line %d: quick path accepts, parseLine rejects: %v", k, err)
		}
		if k >= len(quick.fields) {
			t.Fatalf("quick path has %d lines, parseLine more", len(quick.fields))
		}
		q := quick.fields[k]
		if q.Name != f.Name || q.Value != f.Value {
			t.Fatalf("line %d: quick path %q %q, parseLine %q %q", k, q.Name, q.Value, f.Name, f.Value)
		}
		if a, b := q.appendTo(nil, quick.raws()), f.appendTo(nil, slow.raws()); !bytes.Equal(a, b) {
			t.Fatalf("line %d written back as %q, not %q", k, a, b)
		}
		i = next
	}
	if k != len(quick.fields) {
		t.Fatalf("quick path has %d lines, parseLine %d", len(quick.fields), k)
	}
}

// FuzzParseAddress: name-addr parsing is stable through String.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		`"Alice" <sip:alice@example.com>;tag=1`, `Bob <sip:bob@b>`, `sip:c@d;tag=2`,
		`"a \"q\" \\" <tel:+1>;expires=60;+sip.instance="<urn:uuid:1>"`, `caller<sip:x@y>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		out := a.String()
		a2, err := ParseAddress(out)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, s, err)
		}
		if a2.String() != out {
			t.Fatalf("unstable: %q -> %q -> %q", s, out, a2.String())
		}
	})
}

// FuzzParseVia: Via parsing is stable through String.
func FuzzParseVia(f *testing.F) {
	for _, s := range []string{
		"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
		"SIP / 2.0 / TCP [2001:db8::1] ; received=192.0.2.9, SIP/2.0/WSS x.invalid;branch=z9hG4bK2",
		"SIP/2.0/UDP [2001:db8::9:1]:6050;received=2001:db8::9:255;branch=z9hG4bK3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vs, err := ParseVia(s)
		if err != nil {
			return
		}
		for _, v := range vs {
			out := v.String()
			v2, err := ParseVia(out)
			if err != nil || len(v2) != 1 {
				t.Fatalf("re-parse of %q (from %q): %v", out, s, err)
			}
			if v2[0].String() != out {
				t.Fatalf("unstable: %q -> %q", out, v2[0].String())
			}
		}
	})
}

// checkToTag checks Response.SetToTag on the response to req against the
// To written again from its parsed form with the tag set, as SetToTag
// wrote it before it appended the tag to the To as received: both must
// parse to the same address.
func checkToTag(t *testing.T, p *Parser, req *Request, tag string) {
	t.Helper()
	in := req.To()
	res := NewResponse(req, 200, "")
	res.SetToTag(tag)
	old := NewResponse(req, 200, "")
	if in.Tag() == "" && in.URI.Scheme != "" {
		in.Params = in.Params.Set("tag", tag)
		old.Set("To", in.String())
	}
	wantMsg, err := p.ParseMessage([]byte(old.String()))
	if err != nil {
		return // the response does not parse either way
	}
	gotMsg, err := p.ParseMessage([]byte(res.String()))
	if err != nil {
		t.Fatalf("response with To tag does not parse: %v\nTo: %q\nSetToTag: %q", err, req.Get("To"), res.Get("To"))
	}
	// The To that SetToTag leaves typed is the one its line parses to.
	var line Address
	if err := parseAddressInto(&line, res.Get("To")); err == nil {
		if kept := res.To(); !reflect.DeepEqual(kept, line) {
			t.Fatalf("To %q: after SetToTag reads %+v, its line %q parses to %+v", req.Get("To"), kept, res.Get("To"), line)
		}
	}
	got, want := gotMsg.(*Response).To(), wantMsg.(*Response).To()
	if !got.URI.Equal(&want.URI) || got.Display != want.Display || got.Params.Len() != want.Params.Len() {
		t.Fatalf("To %q: SetToTag wrote %q, want the same address as %q", req.Get("To"), res.Get("To"), old.Get("To"))
	}
	want.Params.Range(func(name, value string) bool {
		if v, ok := got.Params.Get(name); !ok || v != value {
			t.Fatalf("To %q: parameter %s=%q is %q in %q", req.Get("To"), name, value, v, res.Get("To"))
		}
		return true
	})
}

// checkLineKept: an unchanged request keeps its line, and the placed parts
// (lineURI) say what parsing the line again says, for the request as
// parsed and after each part of its URI changes.
func checkLineKept(t *testing.T, req *Request) {
	t.Helper()
	if !req.lineKept() {
		t.Fatalf("unchanged request line not kept: %q", req.line)
	}
	changes := []func(*URI){
		func(*URI) {},
		func(u *URI) { u.Scheme = "sips" },
		func(u *URI) { u.User += "x" },
		func(u *URI) { u.Host = "other.example" },
		func(u *URI) { u.Port++ },
		func(u *URI) { u.Params += ";lr" },
		func(u *URI) { u.Password = "p" },
		func(u *URI) { u.Headers = "a=b" },
		func(u *URI) { u.Opaque = "o" },
		func(u *URI) { u.Host = strings.Clone(u.Host) }, // the same value, other bytes
	}
	for i, change := range changes {
		c := *req
		change(&c.URI)
		parsed := c
		parsed.lineURI = lineURI{}
		if got, want := c.lineKept(), parsed.lineKept(); got != want {
			t.Fatalf("change %d of %q: kept %v from the placed parts, %v from parsing the line", i, req.line, got, want)
		}
	}
}

// checkCopiedHeaders: the typed headers a response copies from its
// request with the lines (CopyFrom) read as parsing the response's lines
// reads them.
func checkCopiedHeaders(t *testing.T, p *Parser, req *Request) {
	t.Helper()
	res := NewResponse(req, 200, "")
	m, err := p.ParseMessage(res.AppendTo(nil))
	if err != nil {
		return // a request without the headers a response needs
	}
	parsed := m.(*Response)
	if got, want := res.Via(), parsed.Via(); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
		t.Fatalf("copied Via %+v, parsed %+v", got, want)
	}
	if got, want := res.From(), parsed.From(); !reflect.DeepEqual(got, want) {
		t.Fatalf("copied From %+v, parsed %+v", got, want)
	}
	if got, want := res.To(), parsed.To(); !reflect.DeepEqual(got, want) {
		t.Fatalf("copied To %+v, parsed %+v", got, want)
	}
	if got, want := res.CSeq(), parsed.CSeq(); got != want {
		t.Fatalf("copied CSeq %+v, parsed %+v", got, want)
	}
	if got, want := res.CallID(), parsed.CallID(); got != want {
		t.Fatalf("copied Call-ID %q, parsed %q", got, want)
	}
}

// checkNewResponse: NewResponse builds what copying each header with
// CopyFrom builds, as it did before it copied them itself: the same bytes
// and the same typed values, for a 100 (which copies Timestamp) and a 200.
func checkNewResponse(t *testing.T, req *Request) {
	t.Helper()
	for _, code := range []int{100, 200} {
		got := NewResponse(req, code, "")
		want := &Response{StatusCode: code, Reason: StatusText(code)}
		want.fields = want.fieldArr[:0]
		names := []string{"Via", "From", "To", "Call-ID", "CSeq"}
		if code == 100 {
			names = append(names, "Timestamp")
		}
		for _, name := range names {
			want.CopyFrom(&req.Headers, name)
		}
		want.Add("Content-Length", "0")
		if g, w := got.String(), want.String(); g != w {
			t.Fatalf("NewResponse(%d) wrote\n%q\nCopyFrom wrote\n%q", code, g, w)
		}
		if got.cached != want.cached || !reflect.DeepEqual(got.Via(), want.Via()) ||
			!reflect.DeepEqual(got.From(), want.From()) || !reflect.DeepEqual(got.To(), want.To()) || got.CSeq() != want.CSeq() {
			t.Fatalf("NewResponse(%d): typed values differ from CopyFrom's (cached %b, %b)", code, got.cached, want.cached)
		}
	}
}

// FuzzParamsGet checks that Get, whichever path it takes, finds what the
// general parameter walk finds.
func FuzzParamsGet(f *testing.F) {
	f.Add(";branch=z9hG4bK1;rport;received=10.0.0.1", "rport")
	f.Add(";tag=abc ; lr;q = 0.5;x=\"a;b\"", "q")
	f.Add(";;a=1;", "")
	f.Fuzz(func(t *testing.T, list, name string) {
		v, ok := Params(list).Get(name)
		wv, wok := Params(list).get(name)
		if v != wv || ok != wok {
			t.Errorf("Get(%q) of %q = %q, %v; the general path says %q, %v", name, list, v, ok, wv, wok)
		}
	})
}

// checkSetTopVia stamps the top Via of a clone of m as the transport
// does (received, rport): the clone's typed Vias are then those its lines
// parse to, and m's are untouched.
func checkSetTopVia(t *testing.T, p *Parser, m Message) {
	req, ok := m.(*Request)
	if !ok {
		return
	}
	before := slices.Clone(req.Via())
	c := req.Clone()
	top, ok := c.TopVia()
	if !ok {
		return
	}
	top.Params = top.Params.Set("received", "192.0.2.7").Set("rport", "5060")
	c.SetTopVia(top)
	kept := c.Via()
	again, err := p.ParseMessage([]byte(c.String()))
	if err != nil {
		return
	}
	if want := again.Header().Via(); !reflect.DeepEqual(kept, want) {
		t.Fatalf("after SetTopVia the typed Vias are %+v, the lines %q parse to %+v", kept, c.Values("Via"), want)
	}
	if !reflect.DeepEqual(req.Via(), before) {
		t.Fatalf("SetTopVia on a clone changed the original's Vias: %+v, were %+v", req.Via(), before)
	}
}
