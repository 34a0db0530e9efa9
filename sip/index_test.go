package sip

import (
	"strings"
	"testing"
	"unsafe"
)

// Index leaves a message whose typed headers are current as it is: the
// transaction layer indexes every message it handles, most of them fresh
// from the parser or a clone with a Via popped, and parsing them all again
// cost a second parse and new Route and Record-Route lists each time.
// Only what changed is parsed again; shared lists stay the same slices, so
// a concurrent reader of a parsed message sees no write.
func TestIndexOfCurrentHeadersIsFree(t *testing.T) {
	r := mustParse(t, strings.Replace(simpleInvite, "Max-Forwards",
		"Record-Route: <sip:p1;lr>\r\nRoute: <sip:r1;lr>, <sip:r2;lr>\r\nMax-Forwards", 1)).(*Request)
	routes, _ := r.Routes()
	if n := testing.AllocsPerRun(100, func() {
		if err := r.Index(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Index of a parsed message: %v allocations, want 0", n)
	}
	if again, _ := r.Routes(); &again[0] != &routes[0] {
		t.Error("Index replaced the Route list of a parsed message")
	}
	c := r.Clone()
	c.PopVia()
	if err := c.Index(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Routes(); &got[0] != &routes[0] {
		t.Error("Index after a popped Via parsed the clone's Routes again")
	}
	if v := c.Via(); len(v) != 0 {
		t.Errorf("clone's Vias after PopVia and Index = %v", v)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.Index() }); n != 0 {
		t.Errorf("Index of an indexed clone: %v allocations, want 0", n)
	}
	c.Set("Route", "<sip:r3;lr>")
	if err := c.Index(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Routes(); len(got) != 1 || got[0].URI.Host != "r3" {
		t.Errorf("Routes after a change and Index = %v", got)
	}
}

// TestResponseCopiesTypedHeaders: a response built from a parsed request
// has the typed values of the headers it copied current (Index parses
// nothing of them), its own Via list (three Vias: past the inline two),
// and a Via popped from it leaves the request's as they were.
func TestResponseCopiesTypedHeaders(t *testing.T) {
	req := mustParse(t, strings.Replace(simpleInvite, "Max-Forwards",
		"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-b, SIP/2.0/TCP 192.0.2.8;branch=z9hG4bK-c\r\nMax-Forwards", 1)).(*Request)
	res := NewResponse(req, 200, "")
	const copied = 1<<hVia | 1<<hFrom | 1<<hTo | 1<<hCallID | 1<<hCSeq
	if got := res.cached & copied; got != copied {
		t.Errorf("typed headers current after NewResponse: %b, want %b", got, uint64(copied))
	}
	if got, want := res.Via(), req.Via(); len(got) != 3 || len(want) != 3 || got[2] != want[2] || &got[0] == &want[0] {
		t.Errorf("response Vias %v, request Vias %v: want equal values in a list of its own", got, want)
	}
	if res.From() != req.From() || res.CSeq() != req.CSeq() || res.CallID() != req.CallID() {
		t.Errorf("response From %v CSeq %v Call-ID %q, request %v %v %q", res.From(), res.CSeq(), res.CallID(), req.From(), req.CSeq(), req.CallID())
	}
	res.PopVia()
	if got := res.Via(); len(got) != 2 {
		t.Errorf("response Vias after PopVia: %v", got)
	}
	if got := req.Via(); len(got) != 3 {
		t.Errorf("request Vias after the response's PopVia: %v", got)
	}
	// Copied onto a header already there, the value is parsed again.
	res.CopyFrom(&req.Headers, "From")
	if res.cached&(1<<hFrom) != 0 {
		t.Error("From typed value kept current after a second From was copied in")
	}
}

// TestKnownMethod: a known method comes back as the package's constant,
// holding nothing of the text it was read from; an unknown one as it is.
func TestKnownMethod(t *testing.T) {
	read := string([]byte("INVITE")) // as the parser slices a message
	k, ok := KnownMethod(read)
	if !ok || k != MethodInvite || unsafe.StringData(k) != unsafe.StringData(MethodInvite) {
		t.Errorf("KnownMethod(%q) = %q, %v: want the constant MethodInvite", read, k, ok)
	}
	if k, ok := KnownMethod("FOO"); ok || k != "FOO" || IsKnownMethod("FOO") || !IsKnownMethod(MethodUpdate) {
		t.Errorf("KnownMethod(FOO) = %q, %v", k, ok)
	}
}
