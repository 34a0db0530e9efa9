package e2e

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/sip"
)

// TestPolicySettings: SWITCHBOARD_AUTHENTICATE_ALL makes a stranger's
// request to a registered user a 407, and SWITCHBOARD_LOCAL_ONLY refuses
// an authenticated user's request to another domain; without them both
// pass. In a namespace with only loopback: the other domain is an address
// the test watches.
func TestPolicySettings(t *testing.T) {
	isolated(t, netns.Options{Addrs: []string{foreignIP + "/32"}}, func(t *testing.T) {
		foreign := listen(t, "foreign host", foreignIP)
		for _, strict := range []bool{false, true} {
			name := map[bool]string{false: "defaults", true: "strict"}[strict]
			t.Run(name, func(t *testing.T) {
				env := map[string]string{}
				if strict {
					env["SWITCHBOARD_AUTHENTICATE_ALL"] = "true"
					env["SWITCHBOARD_LOCAL_ONLY"] = "true"
				}
				g := startGateway(t, gatewayOptions{env: env})
				alice := newSigPeer(t, g, sip.UDP, "alice", domain, "")
				alice.register()

				stranger := newSigPeer(t, g, sip.UDP, "mallory", "evil.example", "")
				res := stranger.transact(stranger.request(sip.MethodMessage, "sip:alice@"+domain))
				if want := map[bool]int{false: 200, true: 407}[strict]; res.StatusCode != want {
					t.Errorf("a stranger's MESSAGE to alice: %d, want %d", res.StatusCode, want)
				}

				before := foreign.got.Load()
				msg := alice.request(sip.MethodMessage, "sip:bob@"+foreignIP)
				res = alice.transact(msg)
				if res.StatusCode != 407 {
					t.Fatalf("alice's MESSAGE to another domain without credentials: %d, want 407", res.StatusCode)
				}
				if strict {
					if res := alice.transact(alice.authorize(msg, res)); res.StatusCode != 403 {
						t.Errorf("alice's MESSAGE to another domain with LOCAL_ONLY: %d, want 403", res.StatusCode)
					}
					if foreign.got.Load() != before {
						t.Error("with LOCAL_ONLY, alice's MESSAGE reached the other domain")
					}
					return
				}
				// The other domain does not answer: what counts is that the
				// MESSAGE reaches it.
				alice.send(alice.authorize(msg, res))
				select {
				case <-foreign.arrived:
				case <-time.After(peerWait):
					t.Fatal("alice's MESSAGE to another domain did not reach it by default")
				}
			})
		}
	})
}
