package proxy

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// TestReplacesLocalOnly: with LocalOnly, a user of ours who knows the
// Call-ID and tags of a dialog reaches its party by an INVITE with
// Replaces only when it could dial it: a trusted trunk, yes; a stranger
// of another domain, no (403 saying why, counted as local_only).
func TestReplacesLocalOnly(t *testing.T) {
	trunkAddr := mustAddr(sip.UDP, "203.0.113.5:5060")
	f := newFixture(t, func(o *Options) {
		o.LocalOnly = true
		o.Trusted = trustedFunc(func(src sip.Addr) (string, bool) { return "carrier", src.AddrPort == trunkAddr.AddrPort })
	})
	trunk := f.newUA("trunk", testDomain, trunkAddr, respond(200))
	stranger := f.newUA("mallory", otherDomain, mustAddr(sip.UDP, "198.51.100.7:5060"), respond(200))
	alice := f.newUA("alice", testDomain, mustAddr(sip.UDP, "192.0.2.21:5060"), respond(200))
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
	bob.register(1000)

	// replacing returns alice's INVITE with Replaces for caller's call
	// to bob, sent to the caller.
	replacing := func(caller *ua) *sip.Request {
		t.Helper()
		inv := caller.request(sip.MethodInvite, "sip:bob@"+testDomain)
		if res, _ := caller.final(caller.send(inv)); res.StatusCode != 200 {
			t.Fatalf("%s calls bob: %d", caller.name, res.StatusCode)
		}
		bob.waitRequest(sip.MethodInvite)
		r := alice.request(sip.MethodInvite, caller.contact())
		r.Set("Replaces", inv.CallID()+";to-tag="+inv.From().Tag()+";from-tag="+bob.tag)
		r.Set("Require", "replaces")
		return r
	}

	_, res := alice.do(replacing(stranger))
	if res.StatusCode != 403 || !strings.Contains(res.Reason, "outside our domains") {
		t.Errorf("INVITE with Replaces toward a stranger: %d %s, want 403 (outside our domains)", res.StatusCode, res.Reason)
	}
	if f.sent("proxy", "mallory", func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Has("Replaces") }) {
		t.Error("the INVITE with Replaces reached the stranger")
	}
	if _, res := alice.do(replacing(trunk)); res.StatusCode != 200 {
		t.Errorf("INVITE with Replaces toward a trusted trunk: %d %s, want 200", res.StatusCode, res.Reason)
	}
	if st := f.proxy.transfer.Stats(); st.Refused["local_only"] != 1 || st.Replaced != 1 {
		t.Errorf("transfer stats %+v, want 1 local_only refusal, 1 replaced", st)
	}
}
