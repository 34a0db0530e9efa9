package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// kinds names the combinations of browsers and phones among the parties
// of a transfer: A transfers B to C.
type kinds struct{ a, b, c bool } // true: a browser

func (k kinds) String() string {
	s := ""
	for _, web := range []bool{k.a, k.b, k.c} {
		if web {
			s += "W"
		} else {
			s += "P"
		}
	}
	return s
}

// allKinds are the eight combinations.
func allKinds() []kinds {
	var out []kinds
	for i := range 8 {
		out = append(out, kinds{a: i&4 != 0, b: i&2 != 0, c: i&1 != 0})
	}
	return out
}

// how says whether a call between two parties is bridged or proxied.
func how(x, y bool) string {
	if x == y {
		return "proxied"
	}
	return "bridged"
}

// transferParties starts a gateway and registers alice (A), bob (B) and
// carol (C) as k says.
func transferParties(t *testing.T, k kinds) (g *gateway, a, b, c *party) {
	t.Helper()
	g = startGateway(t, gatewayOptions{})
	a = newParty(t, g, "A", "alice", k.a)
	b = newParty(t, g, "B", "bob", k.b)
	c = newParty(t, g, "C", "carol", k.c)
	return g, a, b, c
}

// TestAttendedTransfer is issue 12 point 2 for every combination of
// browsers and phones: A talks to B, consults C, and transfers B to C with
// a REFER whose Refer-To embeds the Replaces of the A-C call. B calls C
// with that Replaces; C takes the new call in place of A's and ends A's
// with BYE; A ends its call with B once a NOTIFY says C answered. B and C
// then talk, with audio both ways, whether their call is proxied or
// bridged — also where the A-B and A-C calls were not.
func TestAttendedTransfer(t *testing.T) {
	for _, k := range allKinds() {
		t.Run(k.String(), func(t *testing.T) { attendedTransfer(t, k) })
	}
}

// attendedTransfer runs one attended transfer between parties of kinds k.
func attendedTransfer(t *testing.T, k kinds) {
	t.Helper()
	t.Logf("A-B %s, A-C %s, B-C %s", how(k.a, k.b), how(k.a, k.c), how(k.b, k.c))
	_, a, b, c := transferParties(t, k)
	ab := a.call(b)
	ba := b.expectCall()
	audioBothWays(t, ab, ba)
	ac := a.call(c)
	ca := c.expectCall()
	audioBothWays(t, ac, ca)

	bc, cb := transferTo(t, a, b, c, ab, ac)
	ca.expectEnded()
	ac.expectEnded()
	ab.expectEnded()
	ba.expectEnded()
	audioBothWays(t, bc, cb)
	bc.bye()
	cb.expectEnded()
}

// transferTo has A REFER B, over A's call ab, to carol (C), with the
// Replaces of A's call with C when replacing is that call; B follows and
// C answers, and A's last NOTIFY says 200. It returns B's and C's legs of
// the new call.
func transferTo(t *testing.T, a, b, c *party, ab, replacing *pcall) (bc, cb *pcall) {
	t.Helper()
	if res := ab.refer("sip:carol@"+domain, replacing, nil); res.StatusCode != 202 {
		t.Fatalf("REFER: %d %s", res.StatusCode, res.Reason)
	}
	r := b.expectFollowed()
	if r.call == nil {
		t.Fatalf("B's INVITE to C: %v", r.res)
	}
	cb = c.expectCall()
	if code, _ := a.expectNotify(true); code != 200 {
		t.Errorf("A's final NOTIFY: %d, want 200", code)
	}
	return r.call, cb
}

// TestBlindTransfer is issue 12 point 1 (and 3 for the proxied calls):
// A talks to B and transfers B to C with a REFER; B calls C, and A's call
// with B ends once C answers. Every combination of browsers and phones.
func TestBlindTransfer(t *testing.T) {
	for _, k := range allKinds() {
		t.Run(k.String(), func(t *testing.T) {
			t.Logf("A-B %s, B-C %s", how(k.a, k.b), how(k.b, k.c))
			_, a, b, c := transferParties(t, k)
			ab := a.call(b)
			ba := b.expectCall()
			audioBothWays(t, ab, ba)

			bc, cb := transferTo(t, a, b, c, ab, nil)
			ab.expectEnded()
			ba.expectEnded()
			audioBothWays(t, bc, cb)
			bc.bye()
			cb.expectEnded()
		})
	}
}

// TestTransferFailureResumes: when the target is busy, A hears so in the
// final NOTIFY, and the call of A and B goes on, with audio both ways.
func TestTransferFailureResumes(t *testing.T) {
	for _, k := range []kinds{{a: true, b: false, c: false}, {a: false, b: true, c: false}, {a: true, b: true, c: true}} {
		t.Run(k.String(), func(t *testing.T) {
			_, a, b, c := transferParties(t, k)
			c.answer = 486
			ab := a.call(b)
			ba := b.expectCall()
			audioBothWays(t, ab, ba)
			if res := ab.refer("sip:carol@"+domain, nil, nil); res.StatusCode != 202 {
				t.Fatalf("REFER: %d %s", res.StatusCode, res.Reason)
			}
			if r := b.expectFollowed(); r.call != nil || r.res == nil || r.res.StatusCode != 486 {
				t.Fatalf("B's call to a busy C: %+v", r)
			}
			if code, _ := a.expectNotify(true); code != 486 {
				t.Errorf("A's final NOTIFY: %d, want 486", code)
			}
			if ab.isEnded() || ba.isEnded() {
				t.Fatal("the call ended after a failed transfer")
			}
			audioBothWays(t, ab, ba)
			ab.bye()
			ba.expectEnded()
		})
	}
}

// TestTransferNoReferSub: a REFER with Refer-Sub: false (RFC 4488) gets a
// 202 with Refer-Sub: false and no NOTIFY, across a bridged call even when
// the transferee ignores it, and through the proxy when it honours it.
func TestTransferNoReferSub(t *testing.T) {
	for _, tc := range []struct {
		k      kinds
		honour bool
	}{{kinds{a: true, b: false, c: false}, false}, {kinds{a: false, b: true, c: true}, false}, {kinds{a: false, b: false, c: true}, true}} {
		t.Run(fmt.Sprintf("%s-honoured-%v", tc.k, tc.honour), func(t *testing.T) { noReferSub(t, tc.k, tc.honour) })
	}
}

// noReferSub runs one blind transfer with Refer-Sub: false between
// parties of kinds k, whose transferee honours it or not.
func noReferSub(t *testing.T, k kinds, honour bool) {
	t.Helper()
	_, a, b, c := transferParties(t, k)
	b.honourNoSub = honour
	ab := a.call(b)
	ba := b.expectCall()
	res := ab.refer("sip:carol@"+domain, nil, func(r *sip.Request) {
		r.Set("Refer-Sub", "false")
		r.Set("Supported", "norefersub")
	})
	if res.StatusCode != 202 || !strings.EqualFold(res.Get("Refer-Sub"), "false") {
		t.Fatalf("REFER with Refer-Sub: false: %d, Refer-Sub %q", res.StatusCode, res.Get("Refer-Sub"))
	}
	r := b.expectFollowed()
	if r.call == nil {
		t.Fatalf("B's call to C: %v", r.res)
	}
	cb := c.expectCall()
	audioBothWays(t, r.call, cb)
	r.call.bye()
	cb.expectEnded()
	// With no subscription A learns nothing and hangs up itself.
	ab.bye()
	ba.expectEnded()
	select {
	case n := <-a.notifies:
		t.Errorf("A got a NOTIFY though it asked for none:\n%s", n)
	default:
	}
}

// TestTransferToTrunkNumber: a browser transfers the desk phone it talks
// to to a number the dial plan sends out through a trunk; the phone, one
// of our users, calls it as it would dial it (the provider, sipp, echoes
// its audio).
func TestTransferToTrunkNumber(t *testing.T) {
	requireSipp(t)
	requireProviderAddr(t)
	providerPort := freePort(t, "udp", providerIP)
	g := startGateway(t, gatewayOptions{config: trunkConfig(providerPort)})
	mediaPort := freePort(t, "udp", providerIP)
	provider := startSipp(t, g, "provider-uas", "uas-echo.xml", sippOptions{ip: providerIP, port: providerPort,
		args: []string{"-mi", providerIP, "-mp", fmt.Sprint(mediaPort), "-rtp_echo"}})
	provider.waitBound(false, providerIP, providerPort)
	a := newParty(t, g, "A", "alice", true)
	b := newParty(t, g, "B", "1000", false)
	ab := a.call(b)
	ba := b.expectCall()
	audioBothWays(t, ab, ba)
	if res := ab.refer("sip:915551234567@"+domain, nil, nil); res.StatusCode != 202 {
		t.Fatalf("REFER: %d %s", res.StatusCode, res.Reason)
	}
	r := b.expectFollowed()
	if r.call == nil {
		t.Fatalf("B's call to the trunk number: %v", r.res)
	}
	if code, _ := a.expectNotify(true); code != 200 {
		t.Errorf("A's final NOTIFY: %d, want 200", code)
	}
	ab.expectEnded()
	if !strings.Contains(provider.messageLog(), "INVITE sip:15551234567@") {
		t.Errorf("the provider did not get the dialed number")
	}
	audioEchoed(t, r.call)
	r.call.bye()
	provider.expectSuccess()
}

// TestPhoneTransfersBrowser is issue 12 point 1 with a real desk phone:
// sipp (test/sipp/uas-transfer.xml), registered as 1000, answers alice's
// browser, echoes her audio, and transfers her to carol with a REFER. The
// browser calls carol and reports it in NOTIFYs, which sipp checks (the
// final one must say 200); the gateway ends the transferred call with BYE
// on both sides; alice and carol, a phone or a browser, then talk.
func TestPhoneTransfersBrowser(t *testing.T) {
	for _, carolWeb := range []bool{false, true} {
		t.Run(map[bool]string{false: "to-phone", true: "to-browser"}[carolWeb], func(t *testing.T) {
			g := startGateway(t, gatewayOptions{})
			desk := registerPhone(t, g, "1000", "1000", false)
			mediaPort := freePort(t, "udp", desk.ip)
			s := startSipp(t, g, "1000-uas", "uas-transfer.xml", sippOptions{ip: desk.ip, port: desk.port,
				inf: domain + ";carol", service: "1000",
				args: []string{"-mi", desk.ip, "-mp", fmt.Sprint(mediaPort), "-rtp_echo"}})
			s.waitBound(false, desk.ip, desk.port)
			a := newParty(t, g, "A", "alice", true)
			c := newParty(t, g, "C", "carol", carolWeb)

			ab, res := a.dial("sip:1000@" + domain)
			if ab == nil {
				t.Fatalf("alice calls the desk phone: %v", res)
			}
			audioEchoed(t, ab)
			// The desk phone's signal to transfer.
			if res := ab.request(sip.MethodInfo, nil); res.StatusCode != 200 {
				t.Fatalf("INFO: %d", res.StatusCode)
			}
			if ref := a.expectRefer(); ref.Get("Refer-To") != "<sip:carol@"+domain+">" {
				t.Errorf("the REFER alice got has Refer-To %q", ref.Get("Refer-To"))
			}
			r := a.expectFollowed()
			if r.call == nil {
				t.Fatalf("alice's call to carol: %v", r.res)
			}
			cb := c.expectCall()
			ab.expectEnded()
			audioBothWays(t, r.call, cb)
			r.call.bye()
			cb.expectEnded()
			s.expectSuccess()
			// The desk phone heard the outcome: its last NOTIFY says 200.
			var last string
			for m := range strings.SplitSeq(s.messageLog(), "\n-----") {
				if strings.Contains(m, "\nNOTIFY ") || strings.HasPrefix(strings.TrimSpace(m), "NOTIFY ") {
					last = m
				}
			}
			if !strings.Contains(last, "\nSIP/2.0 200 ") {
				t.Errorf("the desk phone's last NOTIFY does not say 200:\n%s", last)
			}
		})
	}
}
