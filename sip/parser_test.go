package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

const simpleInvite = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: Bob <sip:bob@biloxi.example.com>\r\n" +
	"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@pc33.atlanta.example.com>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n" +
	"\r\n" +
	"v=0\n"

func mustParse(t testing.TB, s string) Message {
	t.Helper()
	m, err := ParseDatagram([]byte(s))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

func parseErr(t *testing.T, p *Parser, s string, datagram bool) *ParseError {
	t.Helper()
	var err error
	if datagram {
		_, err = p.ParseDatagram([]byte(s))
	} else {
		_, err = p.ParseMessage([]byte(s))
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *ParseError", err)
	}
	return pe
}

func TestParseRequest(t *testing.T) {
	r := mustParse(t, "\r\n\r\n"+simpleInvite).(*Request)
	if r.Method != MethodInvite || r.URI.User != "bob" || string(r.Body) != "v=0\n" {
		t.Fatalf("got %s %s %q", r.Method, r.URI.String(), r.Body)
	}
	if got := r.String(); got != simpleInvite {
		t.Errorf("round trip:\n%q\nwant\n%q", got, simpleInvite)
	}
	if r.CallID() != "a84b4c76e66710@pc33.atlanta.example.com" || r.CSeq().Seq != 314159 {
		t.Errorf("Call-ID %q CSeq %v", r.CallID(), r.CSeq())
	}
	if v, _ := r.TopVia(); v.Branch() != "z9hG4bK776asdhds" {
		t.Errorf("branch %q", v.Branch())
	}
	if r.Get("v") == "" || r.Get("VIA") == "" || r.Get("i") == "" {
		t.Error("compact or case-folded lookups fail")
	}
}

func TestParseCompactAndFolded(t *testing.T) {
	msg := "OPTIONS sip:a@b SIP/2.0\r\n" +
		"v: SIP/2.0/TCP h;branch=z9hG4bK1\r\n" +
		"f: <sip:x@y>;tag=1\r\n" +
		"t: <sip:a@b>\r\n" +
		"i: abc\r\n" +
		"CSeq: 1\r\n OPTIONS\r\n" +
		"k: path,\r\n\toutbound\r\n" +
		"m: <sip:x@y>\r\n" +
		"l: 0\r\n\r\n"
	r := mustParse(t, msg).(*Request)
	if r.CSeq() != (CSeq{1, "OPTIONS"}) {
		t.Errorf("CSeq = %v", r.CSeq())
	}
	if got := r.Tokens("Supported"); len(got) != 2 || got[1] != "outbound" {
		t.Errorf("Supported = %q", got)
	}
	if r.String() != msg {
		t.Errorf("folded message does not round-trip")
	}
}

func TestParseResponse(t *testing.T) {
	msg := "SIP/2.0 180 Ringing\r\n" +
		"Via: SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1\r\n" +
		"To: <sip:b@c>;tag=2\r\nFrom: <sip:a@c>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" +
		"Content-Length: 0\r\n\r\n"
	r := mustParse(t, msg).(*Response)
	if r.StatusCode != 180 || r.Reason != "Ringing" || !r.IsProvisional() || r.IsSuccess() {
		t.Errorf("got %d %q", r.StatusCode, r.Reason)
	}
	r.Reason = "Ringing Loudly"
	if !strings.HasPrefix(r.String(), "SIP/2.0 180 Ringing Loudly\r\n") {
		t.Errorf("changed reason not written: %q", r.String())
	}
}

func TestParseErrors(t *testing.T) {
	base := func(repl ...string) string { return strings.NewReplacer(repl...).Replace(simpleInvite) }
	tests := []struct {
		name   string
		msg    string
		status int
		reason string
	}{
		{"empty", "\r\n\r\n", 400, "Empty Message"},
		{"no via", base("Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n", ""), 400, "Missing Via Header"},
		{"no cseq", base("CSeq: 314159 INVITE\r\n", ""), 400, "Missing CSeq Header"},
		{"bad max-forwards", base("Max-Forwards: 70", "Max-Forwards: 256"), 400, "Malformed Max-Forwards"},
		{"bad call-id", base("Call-ID: a84b", "Call-ID: a 84b"), 400, "Malformed Call-ID"},
		{"header without colon", base("Max-Forwards: 70", "Max-Forwards 70"), 400, "Malformed Header Line"},
		{"bad header name", base("Max-Forwards:", "Max Forwards:"), 400, "Malformed Header Name"},
		{"colon without name", base("Max-Forwards: 70", ": 70"), 400, "Malformed Header Name"},
		{"junk after name", base("Max-Forwards: 70", "Max-Forwards; x:70"), 400, "Malformed Header Name"},
		{"junk line", base("Max-Forwards: 70", "(70)"), 400, "Malformed Header Line"},
		{"name only", base("Max-Forwards: 70", "Max-Forwards"), 400, "Malformed Header Line"},
		{"bad method", base("INVITE sip", "IN(VITE sip"), 400, "Malformed Method"},
		{"version", base("SIP/2.0\r\nVia", "SIP/2.1\r\nVia"), 505, "Version Not Supported"},
		{"garbage version", base("SIP/2.0\r\nVia", "HTTP/1.1\r\nVia"), 400, "Malformed SIP-Version"},
		{"body too short", base("Content-Length: 4", "Content-Length: 40"), 400, "Content-Length Exceeds Message"},
		{"bad contact", base("Contact: <sip:alice@pc33.atlanta.example.com>", "Contact: <sip:alice@>"), 400, "Malformed Contact"},
		{"status line", "SIP/2.0 99 Odd\r\n\r\n", 400, "Malformed Status-Code"},
		{"status 700", "SIP/2.0 700 Odd\r\n\r\n", 400, "Malformed Status-Code"},
	}
	var p Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := parseErr(t, &p, tt.msg, true)
			if pe.Status != tt.status || pe.Reason != tt.reason {
				t.Errorf("got %d %q, want %d %q (%v)", pe.Status, pe.Reason, tt.status, tt.reason, pe)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	p := Parser{Limits: Limits{MaxMessageSize: 600, MaxHeaders: 12, MaxLineLength: 100, MaxURILength: 30}}
	if pe := parseErr(t, &p, simpleInvite+strings.Repeat("x", 600), true); pe.Status != 513 || !errors.Is(pe, ErrTooLarge) {
		t.Errorf("oversized message: %v", pe)
	}
	if pe := parseErr(t, &p, strings.Replace(simpleInvite, "Max-Forwards: 70\r\n", strings.Repeat("X-A: 1\r\n", 5), 1), true); pe.Reason != "Too Many Headers" {
		t.Errorf("too many headers: %v", pe)
	}
	if pe := parseErr(t, &p, strings.Replace(simpleInvite, "Max-Forwards: 70", "X-Long: "+strings.Repeat("a", 100), 1), true); pe.Reason != "Header Line Too Long" {
		t.Errorf("long line: %v", pe)
	}
	if pe := parseErr(t, &p, strings.Replace(simpleInvite, "sip:bob@", "sip:bobbobbobbobbobbobbobbobbobbob@", 1), true); pe.Status != 414 {
		t.Errorf("long URI: %v", pe)
	}
}

func TestParseFraming(t *testing.T) {
	var p Parser
	// Datagram: octets past Content-Length are dropped (§18.3).
	m, err := p.ParseDatagram([]byte(simpleInvite + "garbage"))
	if err != nil || string(m.Payload()) != "v=0\n" {
		t.Fatalf("datagram with trailing octets: %v %q", err, m.Payload())
	}
	// A whole message (WebSocket frame, stream frame) may not carry more.
	if pe := parseErr(t, &p, simpleInvite+"garbage", false); pe.Reason != "Octets After Body" {
		t.Errorf("whole message with trailing octets: %v", pe)
	}
	// Without Content-Length, the datagram or frame ends the body.
	noCL := strings.Replace(simpleInvite, "Content-Length: 4\r\n", "", 1)
	m, err = p.ParseMessage([]byte(noCL))
	if err != nil || string(m.Payload()) != "v=0\n" {
		t.Fatalf("frame without Content-Length: %v", err)
	}
	// Missing empty line: incomplete on a stream.
	if pe := parseErr(t, &p, "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", false); !errors.Is(pe, ErrIncomplete) {
		t.Errorf("incomplete: %v", pe)
	}
	// Bare LF line ends are tolerated.
	lf := strings.ReplaceAll(simpleInvite, "\r\n", "\n")
	if _, err := p.ParseDatagram([]byte(lf)); err != nil {
		t.Errorf("LF-only message: %v", err)
	}
}

func TestFrame(t *testing.T) {
	var p Parser
	stream := []byte("\r\n\r\n" + simpleInvite + simpleInvite[:50])
	n, msg, err := p.Frame(stream)
	if n != 4 || msg || err != nil {
		t.Fatalf("keepalive: %d %v %v", n, msg, err)
	}
	stream = stream[n:]
	n, msg, err = p.Frame(stream)
	if n != len(simpleInvite) || !msg || err != nil {
		t.Fatalf("message: %d %v %v", n, msg, err)
	}
	if _, err := p.ParseMessage(stream[:n]); err != nil {
		t.Fatal(err)
	}
	if n, _, err := p.Frame(stream[n:]); n != 0 || err != nil {
		t.Fatalf("partial: %d %v", n, err)
	}
	// Every prefix of a message is "need more", never an error.
	for i := 1; i < len(simpleInvite); i++ {
		if n, _, err := p.Frame([]byte(simpleInvite[:i])); n != 0 || err != nil {
			t.Fatalf("prefix %d: %d %v", i, n, err)
		}
	}
	noCL := strings.Replace(simpleInvite, "Content-Length: 4\r\n", "", 1)
	if _, _, err := p.Frame([]byte(noCL)); !errors.Is(err, ErrMissingHeader) {
		t.Errorf("missing Content-Length: %v", err)
	}
	conflict := strings.Replace(simpleInvite, "Content-Length: 4\r\n", "Content-Length: 4\r\nl: 5\r\n", 1)
	if _, _, err := p.Frame([]byte(conflict)); err == nil {
		t.Error("conflicting Content-Length accepted")
	}
	small := Parser{Limits: Limits{MaxMessageSize: 100}}
	if _, _, err := small.Frame([]byte(simpleInvite)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized frame: %v", err)
	}
	if _, _, err := small.Frame(bytes.Repeat([]byte("a"), 101)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless header section: %v", err)
	}
}

func TestHeaderMutation(t *testing.T) {
	r := mustParse(t, simpleInvite).(*Request)
	r.PrependVia(Via{Transport: "TCP", Host: "proxy.example.com", Params: Params(";branch=z9hG4bKp1")})
	if vs := r.Via(); len(vs) != 2 || vs[0].Host != "proxy.example.com" {
		t.Fatalf("after PrependVia: %+v", vs)
	}
	top, _ := r.TopVia()
	top.Params = top.Params.Set("received", "192.0.2.7")
	r.SetTopVia(top)
	if v, _ := r.TopVia(); v.Received() != "192.0.2.7" || len(r.Via()) != 2 {
		t.Errorf("SetTopVia: %+v", r.Via())
	}
	r.PopVia()
	if vs := r.Via(); len(vs) != 1 || vs[0].Branch() != "z9hG4bK776asdhds" {
		t.Errorf("PopVia: %+v", vs)
	}
	r.Set("Max-Forwards", "69")
	if mf, _ := r.MaxForwards(); mf != 69 {
		t.Errorf("Max-Forwards = %d", mf)
	}
	r.Add("X-Custom", "1")
	r.Add("x-custom", "2")
	if got := r.Values("X-CUSTOM"); len(got) != 2 {
		t.Errorf("Values = %q", got)
	}
	r.Del("X-Custom")
	if r.Has("x-custom") {
		t.Error("Del left a header")
	}
	r.SetBody([]byte("hello"), "text/plain")
	if cl, _ := r.ContentLength(); cl != 5 || r.ContentType() != "text/plain" {
		t.Errorf("SetBody: %d %q", cl, r.ContentType())
	}
	again := mustParse(t, r.String()).(*Request)
	if string(again.Body) != "hello" || again.Get("Max-Forwards") != "69" {
		t.Errorf("re-parse after changes: %q", again.String())
	}

	// A Via line holding two values: the top value is replaced or popped
	// alone.
	m := mustParse(t, strings.Replace(simpleInvite, "branch=z9hG4bK776asdhds", "branch=z9hG4bKa, SIP/2.0/UDP second;branch=z9hG4bKb", 1)).(*Request)
	m.PopVia()
	if vs := m.Via(); len(vs) != 1 || vs[0].Host != "second" {
		t.Errorf("PopVia on a list: %+v", vs)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	r := mustParse(t, simpleInvite).(*Request)
	c := r.Clone()
	c.PrependVia(Via{Transport: "UDP", Host: "p", Params: ";branch=z9hG4bKx"})
	c.Set("Max-Forwards", "1")
	if len(r.Via()) != 1 || r.Get("Max-Forwards") != "70" {
		t.Error("changing the clone changed the original")
	}
	if len(c.Via()) != 2 || c.CallID() != r.CallID() {
		t.Error("clone lost headers")
	}
}

func TestNewResponse(t *testing.T) {
	r := mustParse(t, simpleInvite).(*Request)
	res := NewResponse(r, 486, "")
	res.SetToTag("abc")
	if res.Reason != "Busy Here" || res.To().Tag() != "abc" || res.CSeq() != r.CSeq() {
		t.Fatalf("response: %s", res.String())
	}
	again := mustParse(t, res.String()).(*Response)
	if again.StatusCode != 486 || again.CallID() != r.CallID() || len(again.Via()) != 1 {
		t.Errorf("re-parsed response: %s", again.String())
	}
	if !strings.Contains(res.String(), "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n") {
		t.Error("Via not copied verbatim")
	}
}

func TestRejectBytes(t *testing.T) {
	bad := strings.Replace(simpleInvite, "Max-Forwards: 70", "Max-Forwards: 7x", 1)
	_, err := ParseDatagram([]byte(bad))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatal(err)
	}
	out, ok := RejectBytes([]byte(bad), pe)
	if !ok {
		t.Fatal("no answer built")
	}
	res := mustParse(t, string(out)).(*Response)
	if res.StatusCode != 400 || res.Reason != "Malformed Max-Forwards" || res.CallID() == "" || res.To().Tag() == "" {
		t.Errorf("answer: %s", out)
	}
	if _, ok := RejectBytes([]byte("SIP/2.0 200 OK\r\n\r\n"), pe); ok {
		t.Error("answered a response")
	}
	if _, ok := RejectBytes([]byte("INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n"), pe); ok {
		t.Error("answered without a Via")
	}
	if _, ok := RejectBytes([]byte("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP ;;\r\nTo: <sip:a@b>\r\n\r\n"), pe); ok {
		t.Error("answered without a sent-by")
	}

	// RFC 4475 badinv01: the only Via is malformed. The answer keeps its
	// protocol and sent-by, for the transport to send to the source.
	badinv01, err := os.ReadFile(filepath.Join(tortureDir, "badinv01.dat"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseDatagram(badinv01)
	if !errors.As(err, &pe) {
		t.Fatalf("badinv01 parsed: %v", err)
	}
	out, ok = RejectBytes(badinv01, pe)
	if !ok {
		t.Fatal("badinv01: no answer built")
	}
	res = mustParse(t, string(out)).(*Response)
	if v, _ := res.TopVia(); res.StatusCode != 400 || v.String() != "SIP/2.0/UDP 192.0.2.15" || res.CallID() == "" {
		t.Errorf("badinv01 answer:\n%s", out)
	}
}

func TestTypedHeaders(t *testing.T) {
	msg := strings.Replace(simpleInvite, "Content-Type", "Expires: 300\r\n"+
		"Session-Expires: 1800;refresher=uac\r\n"+
		"RAck: 776656 1 INVITE\r\n"+
		"RSeq: 988789\r\n"+
		"Event: presence;id=7\r\n"+
		"Subscription-State: active;expires=600\r\n"+
		"Refer-To: <sip:carol@example.com?Replaces=abc>\r\n"+
		"Replaces: 98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only\r\n"+
		"Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n"+
		"Route: <sip:r1;lr>\r\n"+
		"Path: <sip:path1;lr;ob>\r\n"+
		"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"+
		"Content-Type", 1)
	h := mustParse(t, msg).Header()
	if n, ok, err := h.Expires(); n != 300 || !ok || err != nil {
		t.Errorf("Expires %d %v %v", n, ok, err)
	}
	if n, ref, ok, err := h.SessionExpires(); n != 1800 || ref != "uac" || !ok || err != nil {
		t.Errorf("Session-Expires %d %q", n, ref)
	}
	if ra, _, err := h.RAck(); ra != (RAck{776656, 1, "INVITE"}) || err != nil {
		t.Errorf("RAck %+v %v", ra, err)
	}
	if n, _, _ := h.RSeq(); n != 988789 {
		t.Errorf("RSeq %d", n)
	}
	if ev, _, _ := h.Event(); ev.Value != "presence" || !ev.Params.Has("id") {
		t.Errorf("Event %+v", ev)
	}
	if ss, _, _ := h.SubscriptionState(); ss.Value != "active" {
		t.Errorf("Subscription-State %+v", ss)
	}
	if rt, ok, err := h.ReferTo(); !ok || err != nil || rt.URI.Headers != "Replaces=abc" {
		t.Errorf("Refer-To %+v %v", rt, err)
	}
	if rp, _, err := h.Replaces(); err != nil || rp.ToTag != "ff87ff" || rp.FromTag != "r33th4x0r" || !rp.EarlyOnly {
		t.Errorf("Replaces %+v %v", rp, err)
	}
	if rr, err := h.RecordRoutes(); err != nil || len(rr) != 2 || rr[1].URI.Host != "p2" {
		t.Errorf("Record-Route %v %v", rr, err)
	}
	if rs, err := h.Routes(); err != nil || len(rs) != 1 {
		t.Errorf("Route %v %v", rs, err)
	}
	if ps, err := h.Paths(); err != nil || len(ps) != 1 || !ps[0].URI.Params.Has("ob") {
		t.Errorf("Path %v %v", ps, err)
	}
	if d, ok, err := h.Date(); !ok || err != nil || d.Year() != 2010 {
		t.Errorf("Date %v %v", d, err)
	}
	h.Set("Record-Route", "<sip:bad")
	if _, err := h.RecordRoutes(); err == nil {
		t.Error("malformed Record-Route accepted")
	}
}

func TestHeaderValuesCannotInject(t *testing.T) {
	m := mustParse(t, simpleInvite)
	m.Header().Set("Subject", "hi\r\nX-Injected: 1")
	m.Header().Add("X-A", "a\nX-Injected: 2")
	m.Header().Prepend("X-B", "b\rX-Injected: 3")
	again := mustParse(t, m.String())
	if again.Header().Has("X-Injected") {
		t.Errorf("header injected:\n%s", m.String())
	}
}

func TestCloneKeepsTypedCache(t *testing.T) {
	r := mustParse(t, strings.Replace(simpleInvite, "Max-Forwards", "Record-Route: <sip:p1;lr>\r\nMax-Forwards", 1)).(*Request)
	c := r.Clone()
	if &c.Via()[0] == &r.Via()[0] {
		t.Fatal("clone's Via list aliases the original's")
	}
	c.PopVia()
	c.Set("Record-Route", "<sip:p2;lr>")
	if rr, _ := r.RecordRoutes(); len(r.Via()) != 1 || rr[0].URI.Host != "p1" {
		t.Error("changing the clone changed the original's typed headers")
	}
	if rr, _ := c.RecordRoutes(); rr[0].URI.Host != "p2" {
		t.Errorf("clone Record-Route = %v", rr)
	}
}

func TestMethodCannotBreakRequestLine(t *testing.T) {
	r := NewRequest("INVITE\r\nX-Injected: 1\r\n", URI{Scheme: "sip", Host: "h"})
	if strings.Contains(r.String(), "\r\nX-Injected") {
		t.Errorf("method injected a header: %q", r.String())
	}
}

func TestConcurrentReadsOfParsedMessage(t *testing.T) {
	r := mustParse(t, strings.Replace(simpleInvite, "Max-Forwards", "Record-Route: <sip:p1;lr>\r\nRoute: <sip:r;lr>\r\nMax-Forwards", 1)).(*Request)
	done := make(chan struct{})
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				r.Via()
				r.RecordRoutes()
				r.Routes()
				r.Contacts()
				r.From()
				_ = r.String()
			}
		}()
	}
	<-done
	<-done
}

func TestIndexAfterChanges(t *testing.T) {
	r := mustParse(t, simpleInvite).(*Request)
	r.Set("From", "<sip:new@example.org>;tag=9")
	r.Set("Max-Forwards", "7")
	if err := r.Index(); err != nil {
		t.Fatal(err)
	}
	if f := r.From(); f.Display != "" || f.URI.User != "new" || f.Tag() != "9" {
		t.Errorf("From after Index = %+v", f)
	}
	if mf, _ := r.MaxForwards(); mf != 7 {
		t.Errorf("Max-Forwards = %d", mf)
	}
	r.Set("Via", "SIP/2.0/UDP bad host")
	if err := r.Index(); err == nil {
		t.Error("Index accepted a malformed Via")
	}
}

// TestLookupHeader compares the hashed lookup of header names with a plain
// search of headerNames: every name in several cases, compact forms, and
// near misses.
func TestLookupHeader(t *testing.T) {
	want := func(name string) headerID {
		if len(name) == 1 {
			for c, id := range compactForms {
				if id != hOther && strings.EqualFold(name, string(rune('a'+c))) {
					return id
				}
			}
			return hOther
		}
		for id := hVia; id < hCount; id++ {
			if len(name) == len(headerNames[id]) && strings.EqualFold(name, headerNames[id]) {
				return id
			}
		}
		return hOther
	}
	var names []string
	for id := hVia; id < hCount; id++ {
		n := headerNames[id]
		names = append(names, n, strings.ToLower(n), strings.ToUpper(n), n[:len(n)-1], n+"x", "X-"+n)
		for i := range len(n) {
			b := []byte(n)
			b[i] ^= 0x01
			names = append(names, string(b))
			b[i] ^= 0x01 | 0x80
			names = append(names, string(b))
		}
	}
	for c := 0; c < 256; c++ {
		names = append(names, string([]byte{byte(c)}), string([]byte{'v', byte(c)}))
	}
	names = append(names, "", "\u212aontact", "Contac\u212a", "\u017fubject", "Via ", " Via")
	for _, n := range names {
		if got, w := lookupHeader(n), want(n); got != w {
			t.Errorf("lookupHeader(%q) = %q, want %q", n, headerNames[got], headerNames[w])
		}
	}
}

// TestSetToTagForms: SetToTag appends the tag to the To as received, and
// the result is the address that setting the tag on the parsed To gives,
// whatever form the To takes (every request of the torture corpus, and a
// few forms written here).
func TestSetToTagForms(t *testing.T) {
	var p Parser
	tos := []string{
		"<sip:alice@example.com>",
		"sip:alice@example.com",
		"sip:alice@example.com;user=phone;x=\"a b\"",
		"\"Alice \\\"A\\\"\" <sip:alice@example.com;transport=tcp>;foo;bar=1",
		"Alice <sip:alice@example.com>",
		"<sip:alice@example.com>;foo=1;lr",
		"<sip:alice@example.com>;" + strings.Repeat("p", 300), // past the stack buffer
		"<sip:alice@example.com>;tag=kept",
		"<tel:+15551234567>",
	}
	n := 0
	for _, to := range tos {
		req := mustParse(t, strings.Replace(simpleInvite, "To: Bob <sip:bob@biloxi.example.com>", "To: "+to, 1)).(*Request)
		checkToTag(t, &p, req, "t1")
		for _, tag := range []string{"t1", "x.y-z_9!"} {
			res := NewResponse(req, 200, "")
			res.SetToTag(tag)
			again := mustParse(t, res.String()).(*Response)
			if want := req.To().Tag(); want != "" {
				tag = want
			}
			if got := again.To().Tag(); got != tag {
				t.Errorf("To %q with tag %q: reads back %q (%q)", to, tag, got, res.Get("To"))
			}
		}
		n++
	}
	for _, c := range loadTorture(t) {
		m, err := p.ParseMessage(c.data)
		if req, ok := m.(*Request); err == nil && ok {
			checkToTag(t, &p, req, "t1")
			n++
		}
	}
	if n < 20 {
		t.Fatalf("only %d requests checked", n)
	}
}

// TestStartLineKept: a parsed message is written with its start line as
// received, byte for byte, until the fields the line holds change.
func TestStartLineKept(t *testing.T) {
	req := mustParse(t, "REGISTER sip:Example.COM;Transport=udp SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n"+
		"To: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n").(*Request)
	first := func(m Message) string {
		s := m.String()
		return s[:strings.Index(s, "\r\n")]
	}
	if got := first(req); got != "REGISTER sip:Example.COM;Transport=udp SIP/2.0" {
		t.Errorf("unchanged request line written as %q", got)
	}
	c := req.Clone()
	c.URI.Host = "example.net"
	if got := first(c); got != "REGISTER sip:example.net;Transport=udp SIP/2.0" {
		t.Errorf("after a new host: %q", got)
	}
	c = req.Clone()
	c.URI.Params = c.URI.Params.Set("lr", "")
	if got := first(c); strings.Contains(got, "udp SIP") {
		t.Errorf("after a new URI parameter the old line was kept: %q", got)
	}
	c = req.Clone()
	c.Method = "REGISTERX"
	if got := first(c); !strings.HasPrefix(got, "REGISTERX sip:") {
		t.Errorf("after a new method: %q", got)
	}
	c = req.Clone()
	c.Method = "REG"
	if got := first(c); !strings.HasPrefix(got, "REG sip:") {
		t.Errorf("after a method that starts the old one: %q", got)
	}

	// Each part of the URI, placed in the line (lineURI) or, where the
	// parser could not place it, compared by parsing the line again.
	for _, tt := range []struct {
		line   string
		placed bool
		change func(*URI)
		want   string
	}{
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(*URI) {}, "INVITE sip:bob@Example.COM:5060;lr SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.Host = "Example." + strings.ToUpper("com") }, "INVITE sip:bob@Example.COM:5060;lr SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.User = "alice" }, "INVITE sip:alice@Example.COM:5060;lr SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.Port = 5061 }, "INVITE sip:bob@Example.COM:5061;lr SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.Scheme = "sips" }, "INVITE sips:bob@Example.COM:5060;lr SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.Params = "" }, "INVITE sip:bob@Example.COM:5060 SIP/2.0"},
		{"INVITE sip:bob@Example.COM:5060;lr SIP/2.0", true, func(u *URI) { u.Password = "pw" }, "INVITE sip:bob:pw@Example.COM:5060;lr SIP/2.0"},
		{"INVITE SIP:bob@[2001:db8::1] SIP/2.0", true, func(*URI) {}, "INVITE SIP:bob@[2001:db8::1] SIP/2.0"},
		{"INVITE SIP:bob@[2001:db8::1] SIP/2.0", true, func(u *URI) { u.Host = "2001:db8::2" }, "INVITE sip:bob@[2001:db8::2] SIP/2.0"},
		{"INVITE tel:+1-555-0100;phone-context=x SIP/2.0", true, func(*URI) {}, "INVITE tel:+1-555-0100;phone-context=x SIP/2.0"},
		{"INVITE sip:b%6Fb@example.com SIP/2.0", false, func(*URI) {}, "INVITE sip:b%6Fb@example.com SIP/2.0"},
		{"INVITE sip:b%6Fb@example.com SIP/2.0", false, func(u *URI) { u.User = "bo" }, "INVITE sip:bo@example.com SIP/2.0"},
		{"INVITE sip:bob:pw@example.com SIP/2.0", false, func(*URI) {}, "INVITE sip:bob:pw@example.com SIP/2.0"},
		{"INVITE urn:service:sos SIP/2.0", false, func(*URI) {}, "INVITE urn:service:sos SIP/2.0"},
		{"INVITE urn:service:sos SIP/2.0", false, func(u *URI) { u.Opaque = "service:police" }, "INVITE urn:service:police SIP/2.0"},
	} {
		req := mustParse(t, tt.line+"\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n"+
			"To: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").(*Request)
		if placed := req.lineURI.scheme != 0; placed != tt.placed {
			t.Errorf("%q: URI placed in the line %v, want %v", tt.line, placed, tt.placed)
		}
		tt.change(&req.URI)
		if got := first(req); got != tt.want {
			t.Errorf("%q changed: written as %q, want %q", tt.line, got, tt.want)
		}
	}

	for _, tt := range []struct {
		line   string
		change func(*Response)
		want   string
	}{
		{"sip/2.0 200 Fine  thanks", func(*Response) {}, "sip/2.0 200 Fine  thanks"},
		{"SIP/2.0 200", func(*Response) {}, "SIP/2.0 200"},
		{"SIP/2.0 200 ", func(*Response) {}, "SIP/2.0 200 "},
		{"SIP/2.0 200 OK", func(r *Response) { r.Reason = "Fine" }, "SIP/2.0 200 Fine"},
		{"SIP/2.0 200 OK", func(r *Response) { r.StatusCode = 202 }, "SIP/2.0 202 OK"},
		{"SIP/2.0 200 OK", func(r *Response) { r.StatusCode = 1200 }, "SIP/2.0 1200 OK"},
		{"SIP/2.0 200", func(r *Response) { r.Reason = "OK" }, "SIP/2.0 200 OK"},
	} {
		res := mustParse(t, tt.line+"\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"+
			"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n").(*Response)
		tt.change(res)
		if got := first(res); got != tt.want {
			t.Errorf("%q changed: written as %q, want %q", tt.line, got, tt.want)
		}
	}
}

// TestMessageSize: a Request and a Response each fit the allocator's size
// class they were cut to (1,536 and 1,408 bytes on 64-bit, with the 8-byte
// header the allocator puts before an object of over 512 bytes that holds
// pointers): the next field added to them costs every message 128 or 256
// bytes, so it should be a choice (docs/performance.md).
func TestMessageSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the size classes are those of 64-bit platforms")
	}
	if n := unsafe.Sizeof(Request{}) + 8; n > 1536 {
		t.Errorf("Request and its allocation header are %d bytes, over its 1,536-byte size class", n)
	}
	if n := unsafe.Sizeof(Response{}) + 8; n > 1408 {
		t.Errorf("Response and its allocation header are %d bytes, over its 1,408-byte size class", n)
	}
}

// TestCallIDOfBuiltMessage: CallID reads the Call-ID line of a built
// message as it read its cached copy: the first line when it is valid,
// even beside a bad second one, and "" for a bad or missing one.
func TestCallIDOfBuiltMessage(t *testing.T) {
	for _, tt := range []struct {
		lines []string
		want  string
	}{
		{nil, ""},
		{[]string{"abc@host"}, "abc@host"},
		{[]string{"abc@host", "second"}, "abc@host"},
		{[]string{"abc@host", "bad value"}, "abc@host"},
		{[]string{"bad value"}, ""},
	} {
		req := NewRequest(MethodRegister, URI{Scheme: "sip", Host: "example.com"})
		for _, l := range tt.lines {
			req.Add("Call-ID", l)
		}
		if got := req.CallID(); got != tt.want {
			t.Errorf("Call-ID lines %q: CallID() = %q, want %q", tt.lines, got, tt.want)
		}
	}
	req := NewRequest(MethodRegister, URI{Scheme: "sip", Host: "example.com"})
	req.Add("i", "compact@host")
	if got := req.CallID(); got != "compact@host" {
		t.Errorf("compact form: CallID() = %q", got)
	}
	req.Set("Call-ID", "new@host")
	if got := req.CallID(); got != "new@host" {
		t.Errorf("after Set: CallID() = %q", got)
	}
}

// TestNewResponseCopies compares NewResponse with the CopyFrom of each
// header it copies (checkNewResponse) on requests with folded lines,
// several Vias, compact forms and a Timestamp.
func TestNewResponseCopies(t *testing.T) {
	for _, s := range []string{
		simpleInvite,
		"OPTIONS sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nVia:  SIP/2.0/TCP\r\n b.example.com;branch=z9hG4bK2, SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n" +
			"t: <sip:b@example.com>\r\nf: <sip:a@example.com>;tag=1\r\ni: abc@x\r\nTimestamp: 54\r\nCSeq:  7 OPTIONS\r\nl: 0\r\n\r\n",
	} {
		checkNewResponse(t, mustParse(t, s).(*Request))
	}
}

// TestContinuesWork: a To tag or credentials of either kind make a
// request carry on work begun; neither makes it new work.
func TestContinuesWork(t *testing.T) {
	for extra, want := range map[string]bool{
		"To: <sip:b@example.com>\r\n":                                    false,
		"To: <sip:b@example.com>;tag=x\r\n":                              true,
		"To: <sip:b@example.com>\r\nAuthorization: Digest a=b\r\n":       true,
		"To: <sip:b@example.com>\r\nProxy-Authorization: Digest a=b\r\n": true,
	} {
		req := mustParse(t, "INVITE sip:b@example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"+
			"From: <sip:a@example.com>;tag=1\r\n"+extra+
			"Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").(*Request)
		if got := req.ContinuesWork(); got != want {
			t.Errorf("%q: ContinuesWork = %v, want %v", extra, got, want)
		}
	}
}

// TestNewResponseOrder: NewResponse writes Via, From, To, Call-ID, CSeq
// (and Timestamp, to a 100) in that order, as CopyFrom would, whatever
// their order in the request, and whether a header's lines follow one
// another there (copied as found) or not (a pass of their own).
func TestNewResponseOrder(t *testing.T) {
	for _, text := range []string{
		"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP c.example.com;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nTimestamp: 54\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS sip:b@example.com SIP/2.0\r\nTimestamp: 54\r\nCSeq: 1 OPTIONS\r\nTo: <sip:b@example.com>\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: x\r\nVia: SIP/2.0/UDP c.example.com;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n",
	} {
		m, err := ParseMessage([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*Request)
		checkNewResponse(t, req)
		var names []string
		for _, f := range NewResponse(req, 100, "").Fields() {
			names = append(names, f.Name)
		}
		if got := strings.Join(names, " "); got != "Via Via From To Call-ID CSeq Timestamp Content-Length" {
			t.Errorf("100 has %s", got)
		}
	}
}
