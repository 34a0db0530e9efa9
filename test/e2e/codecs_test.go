package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// codecTrunkConfig is trunkConfig's trunk with a codec policy: calls
// bridged to and from it may use only these codecs, in this order.
func codecTrunkConfig(providerPort int, codecs string) string {
	return strings.Replace(trunkConfig(providerPort), "transport = \"udp\"\n",
		"transport = \"udp\"\ncodecs = "+codecs+"\n", 1)
}

// TestTrunkCodecs: a trunk's codecs key, through the real binary. The
// trunk (sipp on providerIP) calls its DID, which rings bob's browser (a
// WebSocket registration), so the call crosses and is bridged under the
// trunk's policy.
func TestTrunkCodecs(t *testing.T) {
	requireSipp(t)
	requireProviderAddr(t)

	// The trunk takes PCMA only, and offers PCMU only: 488, with a
	// Warning that names what each side offered, and bob never rings.
	t.Run("no-common-codec", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{config: codecTrunkConfig(freePort(t, "udp", providerIP), `["PCMA"]`)})
		bob := newSigPeer(t, g, sip.WS, "bob", domain, "")
		bob.register()
		provider := startSipp(t, g, "provider-pcmu", "trunk-offer.xml", sippOptions{
			ip:      providerIP,
			inf:     g.sipAddr() + ";+15557654321;" + providerIP,
			service: "+15551230001",
			args:    []string{"-key", "pts", "0"},
		})
		provider.expectSuccess()
		res := lastResponse(provider.messageLog(), 488)
		if res == "" {
			t.Fatalf("the provider got no 488:\n%s", provider.messageLog())
		}
		warning := headerValue(res, "Warning")
		want := regexp.MustCompile(`^399 \S+ "no common codec: offered PCMU/8000; allowed PCMA/8000( telephone-event/8000)?"$`)
		if !want.MatchString(warning) {
			t.Errorf("Warning %q, want one matching %s", warning, want)
		}
		select {
		case req := <-bob.requests:
			t.Errorf("bob's browser got a %s for a call that cannot be bridged", req.Method)
		default:
		}
	})

	// The trunk offers PCMU, PCMA and G722, its policy is PCMA then PCMU:
	// bob's browser is offered those two, in the policy's order, with
	// DTMF, and no G.722. Bob is busy (486), which the trunk hears.
	t.Run("filtered-and-ordered", func(t *testing.T) {
		g := startGateway(t, gatewayOptions{config: codecTrunkConfig(freePort(t, "udp", providerIP), `["PCMA", "PCMU"]`)})
		bob := newSigPeer(t, g, sip.WS, "bob", domain, "")
		bob.register()
		invites := make(chan *sip.Request, 4)
		f := func(m sip.Message) {
			req, ok := m.(*sip.Request)
			if !ok || req.Method != sip.MethodInvite {
				return
			}
			invites <- req
			res := sip.NewResponse(req, 486, "")
			res.SetToTag(sip.NewTag())
			_ = bob.write(res.AppendTo(nil))
		}
		bob.intercept.Store(&f)
		provider := startSipp(t, g, "provider-three", "trunk-offer.xml", sippOptions{
			ip:      providerIP,
			inf:     g.sipAddr() + ";+15557654321;" + providerIP,
			service: "+15551230001",
			args:    []string{"-key", "pts", "0 8 9 101"},
		})
		var invite *sip.Request
		select {
		case invite = <-invites:
		case <-time.After(peerWait):
			t.Fatal("bob's browser got no INVITE")
		}
		provider.expectSuccess()
		got := audioFormats(string(invite.Body))
		want := []string{"PCMA/8000", "PCMU/8000", "telephone-event/8000"}
		if !slices.Equal(got, want) {
			t.Errorf("bob's browser was offered %q, want %q\n%s", got, want, invite.Body)
		}
		if res := lastResponse(provider.messageLog(), 486); res == "" {
			t.Errorf("the provider did not hear bob's 486:\n%s", provider.messageLog())
		}
	})
}

// lastResponse is the last response with status code among sipp's traced
// messages (its -message_file), or "".
func lastResponse(log string, code int) string {
	var out string
	for _, m := range strings.Split(log, "\n\n") {
		if i := strings.Index(m, fmt.Sprintf("SIP/2.0 %d ", code)); i >= 0 {
			out = m[i:]
		}
	}
	return out
}

// headerValue is the value of a message's first header called name.
func headerValue(msg, name string) string {
	for _, line := range strings.Split(msg, "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// audioFormats lists the formats of an SDP's first audio section, in its
// m= line's order, as rtpmap names them (name/rate[/channels]).
func audioFormats(sdp string) []string {
	lines := strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n")
	var pts []string
	rtpmap := map[string]string{}
	in := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "m="):
			if in {
				return names(pts, rtpmap)
			}
			if f := strings.Fields(l); len(f) > 3 && f[0] == "m=audio" {
				in, pts = true, f[3:]
			}
		case in && strings.HasPrefix(l, "a=rtpmap:"):
			pt, name, _ := strings.Cut(strings.TrimPrefix(l, "a=rtpmap:"), " ")
			rtpmap[pt] = name
		}
	}
	return names(pts, rtpmap)
}

func names(pts []string, rtpmap map[string]string) []string {
	var out []string
	for _, pt := range pts {
		out = append(out, rtpmap[pt])
	}
	return out
}
