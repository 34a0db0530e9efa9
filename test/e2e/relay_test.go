package e2e

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/switchboard/switchboard/internal/netns"
	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// Hosts of the relay test, on the loopback of its namespace: a host that
// is nothing of the gateway's, and the trunk's provider, which would
// place any call the gateway sends it.
const (
	foreignIP = "192.0.2.60"
	trunkIP   = "192.0.2.50"
)

// listener counts whatever reaches a host on UDP and TCP port 5060, and
// signals each arrival on arrived (without blocking: a burst may signal
// once).
type listener struct {
	name    string
	got     atomic.Int64
	arrived chan struct{}
}

func (l *listener) hit() {
	l.got.Add(1)
	select {
	case l.arrived <- struct{}{}:
	default:
	}
}

func listen(t *testing.T, name, ip string) *listener {
	t.Helper()
	l := &listener{name: name, arrived: make(chan struct{}, 1)}
	u, err := net.ListenPacket("udp", net.JoinHostPort(ip, "5060"))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", net.JoinHostPort(ip, "5060"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65536)
		for {
			if _, _, err := u.ReadFrom(buf); err != nil {
				return
			}
			l.hit()
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			l.hit()
			c.Close()
		}
	}()
	t.Cleanup(func() {
		u.Close()
		tl.Close()
		<-done
		<-done
	})
	return l
}

// TestOpenRelay plays the attacker of the open-relay report against the
// real binary, over UDP, TCP and WebSocket: a stranger with no
// credentials calls a local user, then replays the Record-Route entry it
// got with the same Call-ID to make the gateway send requests to a
// foreign host or to its trunk. Every variant is refused, nothing reaches
// either host, and the dialog itself still works both ways. It runs in a
// namespace with only loopback, where the foreign host and the trunk are
// addresses the test put there.
func TestOpenRelay(t *testing.T) {
	isolated(t, netns.Options{Addrs: []string{foreignIP + "/32", trunkIP + "/32"}}, func(t *testing.T) {
		foreign := listen(t, "foreign host", foreignIP)
		trunk := listen(t, "trunk", trunkIP)
		g := startGateway(t, gatewayOptions{config: fmt.Sprintf(`
[[trunk]]
name = "provider"
host = %q
port = 5060
transport = "udp"
trusted_sources = ["%s/32"]

[[route]]
pattern = '9(\d+)'
strip = 1
trunk = "provider"
`, trunkIP, trunkIP)})
		// A phone for the attackers over UDP and TCP; a browser for the one
		// over WebSocket: calls between two of a kind are proxied, and
		// the proxy is what writes Record-Route stamps.
		phone := newSigPeer(t, g, sip.UDP, "1000", domain, "")
		phone.register()
		browser := newSigPeer(t, g, sip.WS, "1001", domain, "")
		browser.register()

		variants := []struct {
			name   string
			method string
			edit   func(r *sip.Request, other *dialog.Dialog)
		}{
			{"made-up to tag", sip.MethodMessage, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:victim@"+foreignIP)
				to := r.To()
				to.Params = ";tag=madeup"
				r.Set("To", to.String())
			}},
			{"changed request-uri", sip.MethodMessage, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:victim@"+foreignIP)
			}},
			{"changed request-uri, invite", sip.MethodInvite, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:victim@"+foreignIP)
			}},
			{"a number", sip.MethodInvite, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:919005551234@"+domain)
			}},
			{"a number at the trunk", sip.MethodInvite, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:+19005551234@"+trunkIP)
			}},
			{"a foreign domain", sip.MethodMessage, func(r *sip.Request, _ *dialog.Dialog) {
				r.URI = mustURI(t, "sip:victim@"+foreignIP+":5060;transport=tcp")
			}},
			{"a stamp from another call", sip.MethodMessage, func(r *sip.Request, other *dialog.Dialog) {
				r.URI = mustURI(t, "sip:victim@"+foreignIP)
				r.Del("Route")
				for _, a := range other.RouteSet() {
					r.Add("Route", a.String())
				}
			}},
		}
		for _, tr := range []string{sip.UDP, sip.TCP, sip.WS} {
			t.Run(tr, func(t *testing.T) {
				attacker := newSigPeer(t, g, tr, "mallory", "evil.example", "")
				callee := phone
				if tr == sip.WS {
					callee = browser
				}
				d := strangerCalls(t, attacker, callee)
				other := strangerCalls(t, attacker, callee)
				for _, v := range variants {
					req, err := d.NewRequest(v.method)
					if err != nil {
						t.Fatal(err)
					}
					if len(req.Values("Route")) == 0 {
						t.Fatalf("%s: the dialog has no route through the gateway", v.name)
					}
					v.edit(req, other)
					if res := attacker.transact(req); res.StatusCode < 400 {
						t.Errorf("%s: got %d %s, want a refusal", v.name, res.StatusCode, res.Reason)
					}
				}
				// The dialog still works, both ways.
				msg, _ := d.NewRequest(sip.MethodMessage)
				if res := attacker.transact(msg); res.StatusCode != 200 {
					t.Errorf("in-dialog MESSAGE to the callee: got %d", res.StatusCode)
				}
				callee.expectRequest(sip.MethodMessage)
				bye, _ := other.NewRequest(sip.MethodBye)
				if res := attacker.transact(bye); res.StatusCode != 200 {
					t.Errorf("BYE to the callee: got %d", res.StatusCode)
				}
				callee.expectRequest(sip.MethodBye)
			})
		}
		// Every refusal above came from the gateway before it sent
		// anything on, so this count is final.
		for _, l := range []*listener{foreign, trunk} {
			if n := l.got.Load(); n != 0 {
				t.Errorf("the gateway sent %d messages or connections to the %s", n, l.name)
			}
		}
	})
}

// strangerCalls has caller, an anonymous stranger, call callee, and
// returns the caller's dialog.
func strangerCalls(t *testing.T, caller, callee *sigPeer) *dialog.Dialog {
	t.Helper()
	inv := caller.request(sip.MethodInvite, "sip:"+callee.user+"@"+domain)
	res := caller.transact(inv)
	if res.StatusCode != 200 {
		t.Fatalf("stranger's INVITE: got %d %s", res.StatusCode, res.Reason)
	}
	callee.expectRequest(sip.MethodInvite)
	d, err := dialog.NewUAC(inv, res)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := d.NewAck(inv.CSeq().Seq)
	if err != nil {
		t.Fatal(err)
	}
	caller.send(ack)
	callee.expectRequest(sip.MethodAck)
	return d
}

func mustURI(t *testing.T, s string) sip.URI {
	t.Helper()
	u, err := sip.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
