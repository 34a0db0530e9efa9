package e2e

import (
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// TestTransferTollFraud is issue 12 point 4, played by attackers: a trunk
// and a stranger in calls with our users, trying to make the gateway dial
// out through the trunk with a REFER, and our own users' REFERs carrying
// headers for the transferee to put in its request. Every refusal is a
// 403 that the other party never sees, logged and counted in /metrics.
// The transferee always calls the target with its own rights: a trunk
// transferred to a number the dial plan sends out is refused when it
// dials it.
func TestTransferTollFraud(t *testing.T) {
	requireProviderAddr(t)
	providerPort := freePort(t, "udp", providerIP)
	g := startGateway(t, gatewayOptions{config: trunkConfig(providerPort)})
	provider := newPartyOn(t, g, "provider", "provider", false,
		newSigPeer(t, g, sip.UDP, "provider", domain, net.JoinHostPort(providerIP, strconv.Itoa(providerPort))), false)
	bob := newParty(t, g, "bob", "bob", true)       // the DID rings bob, a browser
	alice := newParty(t, g, "alice", "alice", true) // a browser
	carol := newParty(t, g, "carol", "carol", false)
	phone := newParty(t, g, "1000", "1000", false)
	mallory := newPartyOn(t, g, "mallory", "mallory", false, newSigPeer(t, g, sip.UDP, "mallory", "evil.example", ""), false)

	refused := func(t *testing.T, c *pcall, referTo string) {
		t.Helper()
		res := c.request(sip.MethodRefer, func(r *sip.Request) { r.Set("Refer-To", referTo) })
		if res.StatusCode != 403 {
			t.Errorf("REFER to %s: %d %s, want 403", referTo, res.StatusCode, res.Reason)
		}
	}

	// The trunk calls the DID (bridged to bob's browser) and asks bob to
	// call a number the dial plan sends out through the trunk, or a
	// foreign domain: refused. A user of ours is fine.
	t.Run("trunk", func(t *testing.T) {
		pb, res := provider.dial("sip:+15551230001@" + domain)
		if pb == nil {
			t.Fatalf("the trunk's call to the DID: %v", res)
		}
		bp := bob.expectCall()
		for _, to := range []string{"<sip:915550001@" + domain + ">", "<tel:+15550001>", "<sip:bob@evil.example>", "<sip:915550001@" + domain + ";user=phone>"} {
			refused(t, pb, to)
		}
		bob.noRefer()
		if res := pb.refer("sip:carol@"+domain, nil, nil); res.StatusCode != 202 {
			t.Fatalf("the trunk transfers bob to carol: %d", res.StatusCode)
		}
		bob.expectRefer() // the one let through
		r := bob.expectFollowed()
		if r.call == nil {
			t.Fatalf("bob's call to carol: %v", r.res)
		}
		cb := carol.expectCall()
		audioBothWays(t, r.call, cb)
		r.call.bye()
		cb.expectEnded()
		bp.expectEnded()
	})

	// A stranger (another domain, no credentials) calls alice's phone
	// (proxied) and bob's browser (bridged), and sends a REFER out of any
	// dialog: it may transfer to our users only.
	t.Run("stranger", func(t *testing.T) {
		mp, res := mallory.dial("sip:1000@" + domain)
		if mp == nil {
			t.Fatalf("the stranger's call to the phone: %v", res)
		}
		pm := phone.expectCall()
		refused(t, mp, "<sip:915550001@"+domain+">")
		refused(t, mp, "<sip:bob@evil.example>")
		phone.noRefer()
		mp.bye()
		pm.expectEnded()

		mb, res := mallory.dial("sip:bob@" + domain)
		if mb == nil {
			t.Fatalf("the stranger's call to the browser: %v", res)
		}
		bm := bob.expectCall()
		refused(t, mb, "<sip:915550001@"+domain+">")
		bob.noRefer()
		mb.bye()
		bm.expectEnded()

		out := mallory.sig.request(sip.MethodRefer, "sip:1000@"+domain)
		out.Set("Refer-To", "<sip:915550001@"+domain+">")
		if res := mallory.transact(out); res == nil || res.StatusCode != 403 {
			t.Errorf("a stranger's REFER out of any dialog: %v, want 403", res)
		}
		phone.noRefer()
	})

	// Our own user's REFER may not carry headers for the transferee to
	// put in its INVITE (a Route past the gateway, credentials), nor ask
	// for another method: proxied and bridged alike.
	t.Run("embedded-headers", func(t *testing.T) {
		for _, callee := range []*party{phone, bob} {
			ac := alice.call(callee)
			ca := callee.expectCall()
			for _, to := range []string{
				"<sip:carol@" + domain + "?Route=%3Csip%3Aevil.example%3Blr%3E>",
				"<sip:carol@" + domain + "?Proxy-Authorization=Digest%20username%3D%22alice%22>",
				"<sip:carol@" + domain + "?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db&Route=%3Csip%3Aevil.example%3Blr%3E>",
				"<sip:carol@" + domain + ";method=BYE>",
			} {
				refused(t, ac, to)
			}
			callee.noRefer()
			ac.bye()
			ca.expectEnded()
		}
	})

	// The referred party dials with its own rights: alice, who may dial
	// out, transfers a trunk call to a number the dial plan sends out.
	// The REFER goes to the trunk; the trunk's INVITE for that number is
	// refused, not routed back out to it.
	t.Run("transferee-rights", func(t *testing.T) {
		ap, res := alice.dial("sip:915550002@" + domain)
		if ap == nil {
			t.Fatalf("alice's call out through the trunk: %v", res)
		}
		pa := provider.expectCall()
		if res := ap.refer("sip:915550003@"+domain, nil, nil); res.StatusCode != 202 {
			t.Fatalf("alice's REFER: %d", res.StatusCode)
		}
		provider.expectRefer()
		r := provider.expectFollowed()
		if r.call != nil || r.res == nil || r.res.StatusCode < 400 {
			t.Fatalf("the trunk's INVITE for a number routed out: %+v, want it refused", r.res)
		}
		if code, _ := alice.expectNotify(true); code < 400 {
			t.Errorf("alice's final NOTIFY: %d, want the failure", code)
		}
		// A party records a call before it answers it, and the trunk
		// has the gateway's refusal: had the INVITE been sent back out,
		// the trunk would have it now.
		select {
		case c := <-provider.incoming:
			t.Errorf("the gateway sent the trunk's transfer back out to the trunk: %s", c.dlg.ID())
		default:
		}
		ap.bye()
		pa.expectEnded()
	})

	// Knowing a dialog's Call-ID and tags does not let a stranger reach
	// a trunk: its INVITE with Replaces naming alice's leg of her call
	// out through the trunk would reach the trunk; it is refused.
	t.Run("replaces", func(t *testing.T) {
		ap, res := alice.dial("sip:915550004@" + domain)
		if ap == nil {
			t.Fatalf("alice's call out through the trunk: %v", res)
		}
		pa := provider.expectCall()
		id := ap.dlg.ID()
		mc, res := mallory.dial("sip:915550004@"+domain,
			"Replaces", id.CallID+";to-tag="+id.RemoteTag+";from-tag="+id.LocalTag, "Require", "replaces")
		if mc != nil || res == nil || res.StatusCode != 403 {
			t.Fatalf("a stranger's INVITE with Replaces for a trunk's leg: %v, want 403", res)
		}
		select {
		case c := <-provider.incoming:
			t.Errorf("the gateway sent the stranger's INVITE with Replaces to the trunk: %s", c.dlg.ID())
		default:
		}
		ap.bye()
		pa.expectEnded()
	})

	// Each refusal is logged and counted.
	_, body := g.httpGet(t, "/metrics", http.Header{})
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`switchboard_transfer_refused_total\{reason="(\w+)"\} (\d+)`).FindAllStringSubmatch(string(body), -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	want := map[string]int{"target": 9, "header": 6, "method": 2}
	for reason, n := range want {
		if counts[reason] != n {
			t.Errorf("switchboard_transfer_refused_total{reason=%q} = %d, want %d\n%s", reason, counts[reason], n, body)
		}
	}
	if n := strings.Count(readFile(g.logPath), `msg="transfer refused"`); n != 17 {
		t.Errorf("%d refusals logged, want 17", n)
	}
}
