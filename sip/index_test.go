package sip

import (
	"strings"
	"testing"
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
