package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// TestReplacesLocalOnly: with SWITCHBOARD_LOCAL_ONLY our users may not
// reach other domains, and knowing a dialog's Call-ID and tags must not
// let them either. Mallory, from another domain, calls 1000 (a phone: the
// proxy's dialog) and bob (a browser: a bridged call); carol, one of our
// users, sends INVITEs with Replaces naming those dialogs so that they
// reach mallory: each is refused with a 403 that says why, logged and
// counted, and mallory receives nothing. The same Replaces toward 1000,
// our user, still works.
func TestReplacesLocalOnly(t *testing.T) {
	g := startGateway(t, gatewayOptions{env: map[string]string{"SWITCHBOARD_LOCAL_ONLY": "true"}})
	bob := newParty(t, g, "bob", "bob", true)
	carol := newParty(t, g, "carol", "carol", false)
	phone := newParty(t, g, "1000", "1000", false)
	mallory := newPartyOn(t, g, "mallory", "mallory", false, newSigPeer(t, g, sip.UDP, "mallory", "evil.example", ""), false)

	refused := func(t *testing.T, what, ruri, replaces string) {
		t.Helper()
		c, res := carol.dial(ruri, "Replaces", replaces, "Require", "replaces")
		if c != nil || res == nil || res.StatusCode != 403 || !strings.Contains(res.Reason, "outside our domains") {
			t.Errorf("carol's INVITE with Replaces for %s: %v, want 403 (outside our domains)", what, res)
		}
		select {
		case c := <-mallory.incoming:
			t.Errorf("the gateway sent carol's INVITE with Replaces for %s to mallory: %s", what, c.dlg.ID())
		default:
		}
	}

	mp, res := mallory.dial("sip:1000@" + domain)
	if mp == nil {
		t.Fatalf("mallory's call to 1000: %v", res)
	}
	pm := phone.expectCall()
	id := mp.dlg.ID() // as mallory knows it: its tag is the local one
	refused(t, "mallory's proxied dialog", mallory.sig.contact(),
		id.CallID+";to-tag="+id.LocalTag+";from-tag="+id.RemoteTag)

	mb, res := mallory.dial("sip:bob@" + domain)
	if mb == nil {
		t.Fatalf("mallory's call to bob: %v", res)
	}
	bm := bob.expectCall()
	bid := bm.dlg.ID() // bob's leg, as bob knows it
	refused(t, "bob's leg of mallory's bridged call", "sip:mallory@evil.example",
		bid.CallID+";to-tag="+bid.RemoteTag+";from-tag="+bid.LocalTag)

	// The legitimate case: the same proxied dialog, toward our user.
	cp, res := carol.dial("sip:1000@"+domain, "Replaces", id.CallID+";to-tag="+id.RemoteTag+";from-tag="+id.LocalTag, "Require", "replaces")
	if cp == nil {
		t.Fatalf("carol's INVITE with Replaces toward 1000: %v, want it answered", res)
	}
	phone.expectCall()
	cp.bye()
	mb.bye()
	bm.expectEnded()
	_ = pm

	_, body := g.httpGet(t, "/metrics", http.Header{})
	m := regexp.MustCompile(`switchboard_transfer_refused_total\{reason="local_only"\} (\d+)`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no local_only refusals in /metrics:\n%s", body)
	}
	if n, _ := strconv.Atoi(m[1]); n != 2 {
		t.Errorf("switchboard_transfer_refused_total{reason=\"local_only\"} = %d, want 2", n)
	}
	if n := strings.Count(readFile(g.logPath), `msg="transfer refused"`); n != 2 {
		t.Errorf("%d refusals logged, want 2", n)
	}
}
