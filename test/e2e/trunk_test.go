package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// providerIP is the loopback address of the sipp "provider" of the trunk
// tests. Every other sipp runs on 127.0.0.1, and the trunk's
// trusted_sources must not cover them: a call from alice must still be
// authenticated, and must not pass as the trunk's.
const providerIP = "127.0.0.2"

// trunkConfig is the gateway's config file for the trunk tests: one trunk
// at the provider, trusted by its address, with a DID that rings bob and a
// route that sends 9-prefixed numbers out on it without the 9.
func trunkConfig(providerPort int) string {
	return fmt.Sprintf(`
[[trunk]]
name = "provider"
host = %q
port = %d
transport = "udp"
trusted_sources = ["%s/32"]

[trunk.did]
"+15551230001" = "bob"

[[route]]
pattern = '9(\d+)'
strip = 1
trunk = "provider"
`, providerIP, providerPort, providerIP)
}

// requireProviderAddr fails when providerIP cannot be bound (a loopback
// interface without 127.0.0.0/8).
func requireProviderAddr(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(providerIP, "0"))
	if err != nil {
		t.Fatalf("cannot bind %s for the provider (127.0.0.0/8 must be on lo): %v", providerIP, err)
	}
	c.Close()
}

// TestTrunk runs an inbound and an outbound call over a trunk whose
// provider is sipp on 127.0.0.2.
func TestTrunk(t *testing.T) {
	requireSipp(t)
	requireProviderAddr(t)
	providerPort := freePort(t, "udp", providerIP)
	g := startGateway(t, gatewayOptions{config: trunkConfig(providerPort)})

	// Inbound: the provider sends an INVITE for the DID to the gateway's
	// address, unauthenticated (it is trusted by address); the DID rings
	// bob's phone.
	t.Run("inbound", func(t *testing.T) {
		bob := registerPhone(t, g, "bob", "bob", false)
		uas := bob.answer(t, g, "bob-uas", "uas-answer.xml")
		provider := startSipp(t, g, "provider-uac", "uac-call.xml", sippOptions{
			ip:      providerIP,
			inf:     g.sipAddr() + ";+15557654321;" + providerIP,
			service: "+15551230001",
		})
		expectCall(t, provider, uas)
		if t.Failed() {
			return
		}
		if log := provider.messageLog(); strings.Contains(log, "SIP/2.0 407") {
			t.Errorf("the trusted provider was challenged")
		}
		if log := uas.messageLog(); !strings.Contains(log, "INVITE sip:bob@127.0.0.1:") {
			t.Errorf("bob's phone did not get the INVITE at its registered Contact")
		}
	})

	// Outbound: alice dials 915551234567; the route strips the 9 and the
	// provider gets INVITE sip:15551234567@127.0.0.2.
	t.Run("outbound", func(t *testing.T) {
		provider := startSipp(t, g, "provider-uas", "uas-answer.xml", sippOptions{ip: providerIP, port: providerPort})
		provider.waitBound(false, providerIP, providerPort)
		uac := callAs(t, g, "alice-uac", "uac-call.xml", "alice", "915551234567", false)
		expectCall(t, uac, provider)
		if t.Failed() {
			return
		}
		if log := provider.messageLog(); !strings.Contains(log, "INVITE sip:15551234567@") {
			t.Errorf("the provider did not get the dialed number without its 9 (INVITE sip:15551234567@...)")
		}
	})

	// Callers on 127.0.0.1 are no trunk: an INVITE for a trunk route
	// must not leave without credentials, whether its From claims our
	// domain (challenged) or another one (anonymous: refused, or the
	// gateway would be a toll-fraud relay).
	t.Run("untrusted-caller-to-route", func(t *testing.T) {
		for _, from := range []string{"sip:mallory@" + domain, "sip:mallory@example.invalid"} {
			p := newUDPPeer(t, g)
			req := p.request("INVITE", "sip:915551234567@"+domain, "70",
				"To: <sip:915551234567@"+domain+">\r\n")
			req = strings.Replace(req, "<sip:caller@example.invalid>", "<"+from+">", 1)
			res := p.exchange(req)
			switch res.status {
			case 403, 404, 407, 480: // 480: a stranger's answer for any absent address
			default:
				t.Errorf("INVITE to a trunk route from %s without credentials: %d %s, want 407, 403, 404 or 480\n%s",
					from, res.status, res.reason, res.raw)
			}
			p.ack(req, res)
		}
	})
}
