package proxy

import (
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard/switchboard/sip"
)

// TestDialogsKeepNoMessageText: what the dialog table keeps, for hours or
// for the seconds after a BYE, are copies, not slices of the messages it
// was read from, which would otherwise stay alive with it (a kilobyte or
// two per message with its SDP; under call overload most of the heap).
// The strings here are views of byte slices that the test then
// overwrites: a table that kept them would see them change.
func TestDialogsKeepNoMessageText(t *testing.T) {
	var texts [][]byte
	view := func(s string) string {
		if s == "" {
			return ""
		}
		b := []byte(s)
		texts = append(texts, b)
		return unsafe.String(&b[0], len(b))
	}
	uri := func(user, host string) sip.URI {
		return sip.URI{Scheme: view("sip"), User: view(user), Host: view(host), Port: 5060, Params: sip.Params(view(";transport=udp"))}
	}
	d := newDialogs(10, time.Hour)
	now := time.Unix(0, 0)
	key := dialogKey{callID: view("call-1@example.com"), callerTag: view("caller-tag")}
	if err := d.open(key, side{target: uri("alice", "192.0.2.1"), user: view("alice")}, now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	d.answered(key, view("callee-tag"), side{target: uri("bob", "192.0.2.2"), route: uri("", "proxy.example.com")}, true, now, now.Add(time.Minute))
	d.refreshed(key, "callee-tag", true, uri("alice", "192.0.2.9"))
	for _, b := range texts {
		for i := range b {
			b[i] = '#'
		}
	}
	want := dialogKey{"call-1@example.com", "caller-tag"}
	dl, ok := d.m[want]
	if !ok || len(d.m) != 1 {
		t.Fatalf("the dialog's key changed with the text it came from: %+v", d.m)
	}
	if dl.key != want {
		t.Fatalf("key %+v", dl.key)
	}
	if got := dl.caller.target.String(); got != "sip:alice@192.0.2.9:5060;transport=udp" || dl.caller.user != "alice" {
		t.Fatalf("caller %q, user %q", got, dl.caller.user)
	}
	c := dl.callee("callee-tag")
	if c == nil {
		t.Fatalf("no callee: %+v", dl)
	}
	if got := c.target.String(); got != "sip:bob@192.0.2.2:5060;transport=udp" {
		t.Fatalf("callee target %q", got)
	}
	if got := c.route.String(); got != "sip:proxy.example.com:5060;transport=udp" {
		t.Fatalf("callee route %q", got)
	}
}
