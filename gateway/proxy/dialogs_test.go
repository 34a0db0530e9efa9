package proxy

import (
	"fmt"
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
	d.answered(key, view("callee-tag"), side{target: uri("bob", "192.0.2.2"), route: hop(uri("", "proxy.example.com"))}, true, now, now.Add(time.Minute))
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

// TestDialogsDropEndedInTime: a dialog whose BYE passed is forgotten as
// soon as its CancelTimeout is up, not at the next sweep (every 30 s) nor
// only when the table is full: under load the table held the ended
// dialogs of the sweep's interval too, tens of thousands, and forgot
// dialogs still in use to make room for them.
func TestDialogsDropEndedInTime(t *testing.T) {
	const hold = 32 * time.Second
	d := newDialogs(1000, time.Hour)
	now := time.Unix(1000, 0)
	d.sweep(now) // the sweep's clock starts here
	call := func(i int) dialogKey {
		key := dialogKey{callID: fmt.Sprintf("call-%d", i), callerTag: "a"}
		if err := d.open(key, side{target: sip.URI{Scheme: "sip", Host: "192.0.2.1"}}, now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		d.answered(key, "b", side{target: sip.URI{Scheme: "sip", Host: "192.0.2.2"}}, true, now, now.Add(time.Minute))
		return key
	}
	// 100 calls, one a second, each ended by its BYE at once.
	for i := range 100 {
		d.ending(call(i), now.Add(hold))
		now = now.Add(time.Second)
	}
	// Some 32 ended dialogs are within their hold (the last opened one's
	// own is counted once its open ran).
	if n := d.stats().Dialogs; n > 33 {
		t.Errorf("%d dialogs known, want at most 33: those whose BYE passed less than %v ago", n, hold)
	}
	if _, ok := d.m[dialogKey{callID: "call-99", callerTag: "a"}]; !ok {
		t.Error("the last ended dialog was forgotten within its hold")
	}
	// A dialog under way stays, however long.
	live := call(100)
	now = now.Add(10 * time.Minute)
	call(101)
	if _, ok := d.m[live]; !ok {
		t.Error("a confirmed dialog under way was forgotten")
	}
	if n := d.stats().Dialogs; n != 2 {
		t.Errorf("%d dialogs known, want the 2 under way", n)
	}
}

// TestDialogRecordSmall guards the size of what the table keeps per
// dialog: at its bound of 50,000 under call overload each 256 bytes more
// is 13 MB more live heap, five times that in RSS at the gateway's GOGC.
func TestDialogRecordSmall(t *testing.T) {
	if n := unsafe.Sizeof(dialogState{}); n > 512 {
		t.Errorf("a dialog's record takes %d bytes, want at most 512", n)
	}
}
