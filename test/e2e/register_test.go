package e2e

import "testing"

// TestRegister runs test/sipp/register.xml: REGISTER answered 401, again
// with digest credentials (200 listing the binding with expires=300), a
// refresh and a de-registration (Expires: 0), over UDP and over TCP.
func TestRegister(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	for _, tc := range []struct {
		name string
		tcp  bool
	}{
		{"udp", false},
		{"tcp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSipp(t, g, "register-"+tc.name, "register.xml", sippOptions{
				tcp:     tc.tcp,
				inf:     domain,
				service: "alice", user: "alice", password: users["alice"],
			})
			s.expectSuccess()
		})
	}
	// register.xml ends with a de-registration: alice has no binding
	// left, and a request for her gets 480 (the account exists).
	p := newUDPPeer(t, g)
	res := p.exchange(p.request("OPTIONS", "sip:alice@"+domain, "70", "To: <sip:alice@"+domain+">\r\n"))
	if res.status != 480 {
		t.Errorf("OPTIONS to alice after her de-registration: %d %s, want 480\n%s", res.status, res.reason, res.raw)
	}
}

// TestRegisterWrongPassword checks that a wrong password is refused: the
// scenario cannot get its 200, and sipp reports the call failed.
func TestRegisterWrongPassword(t *testing.T) {
	requireSipp(t)
	g := startGateway(t, gatewayOptions{})
	s := startSipp(t, g, "register-bad-password", "register-only.xml", sippOptions{
		inf:     domain,
		service: "alice", user: "alice", password: "not-the-password",
	})
	if code := s.wait(); code == 0 {
		t.Errorf("sipp registered alice with a wrong password (exit 0); want a failed call")
	}
}
