package e2e

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/digest"
)

// TestTrunkRegistration: a trunk with register = true registers with its
// provider at start, answering the provider's digest challenge, and
// unregisters (Expires: 0) when the gateway stops.
func TestTrunkRegistration(t *testing.T) {
	requireProviderAddr(t)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(providerIP)})
	if err != nil {
		t.Fatalf("cannot bind the provider at %s: %v", providerIP, err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	g := startGateway(t, gatewayOptions{config: fmt.Sprintf(`
[[trunk]]
name = "provider"
host = %q
port = %d
transport = "udp"
username = "acct1"
password = "provider-secret"
register = true
register_expires = 120
from_user = "acct1"
from_domain = "provider.test"
`, providerIP, port)})

	srv := &digest.Server{Realm: "provider.test", Secret: []byte("0123456789abcdef0123456789abcdef")}
	ha1 := digest.HA1("MD5", "acct1", "provider.test", "provider-secret")
	// serve answers REGISTERs like a provider's registrar until it sees the
	// one with the expires it waits for.
	serve := func(wantExpires string) *sip.Request {
		t.Helper()
		buf := make([]byte, 64<<10)
		for {
			conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("provider: no REGISTER with Expires %s: %v", wantExpires, err)
			}
			m, err := sip.ParseDatagram(buf[:n])
			if err != nil {
				t.Fatalf("provider: bad message: %v", err)
			}
			req, ok := m.(*sip.Request)
			if !ok || req.Method != sip.MethodRegister {
				continue
			}
			var res *sip.Response
			creds, cerr := digest.ParseCredentials(req.Get("Authorization"))
			switch {
			case cerr != nil:
				res = sip.NewResponse(req, 401, "")
				ch, _ := srv.Challenge("MD5", false)
				res.Add("WWW-Authenticate", ch.String())
			case srv.Verify(creds, req.Method, func(string) (string, bool) { return ha1, true }) != nil:
				res = sip.NewResponse(req, 403, "")
			default:
				res = sip.NewResponse(req, 200, "")
				if cs, _ := req.Contacts(); len(cs) == 1 {
					c := cs[0]
					c.Params = c.Params.Set("expires", req.Get("Expires"))
					res.Add("Contact", c.String())
				}
			}
			res.SetToTag("prov1")
			if _, err := conn.WriteToUDP([]byte(res.String()), from); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode == 200 && req.Get("Expires") == wantExpires {
				return req
			}
		}
	}

	reg := serve("120")
	if f := reg.From(); f.URI.User != "acct1" || f.URI.Host != "provider.test" {
		t.Errorf("REGISTER From = %s", f.String())
	}
	if cs, _ := reg.Contacts(); len(cs) != 1 || cs[0].URI.Host != "127.0.0.1" {
		t.Errorf("REGISTER Contact = %v", cs)
	}

	// Stopping the gateway unregisters.
	stopped := make(chan struct{})
	go func() { g.stop(); close(stopped) }()
	unreg := serve("0")
	if unreg.CallID() != reg.CallID() || unreg.CSeq().Seq <= reg.CSeq().Seq {
		t.Errorf("unregister Call-ID/CSeq %s %d after %s %d", unreg.CallID(), unreg.CSeq().Seq, reg.CallID(), reg.CSeq().Seq)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal(errors.New("gateway did not stop"))
	}
}
