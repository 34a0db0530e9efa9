package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// tortureDir is the RFC 4475 corpus, kept with the sip package.
const tortureDir = "../../sip/testdata/torture"

// The RFC 4475 messages that say what a proxy must do with them, sent by a
// trusted trunk (so that the policy does not decide first) toward a
// domain of the proxy where every AOR is bob.
func TestTorture(t *testing.T) {
	tests := []struct {
		name  string
		code  int    // the proxy's answer; 0: forwarded to bob, who answers 200
		extra string // a header the answer must carry
	}{
		{"zeromf", 483, ""},
		{"bext01", 420, "Unsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis"},
		{"unkscm", 416, ""},
		{"novelsc", 416, ""},
		{"intmeth", 0, ""},
		{"esc02", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(tortureDir, tt.name+".dat"))
			if err != nil {
				t.Fatalf("torture corpus: %v", err)
			}
			msg, err := sip.ParseMessage(data)
			if err != nil {
				t.Fatalf("%s does not parse: %v", tt.name, err)
			}
			req := msg.(*sip.Request)
			trunkAddr := mustAddr(sip.UDP, "203.0.113.5:5060")
			f := newFixture(t, func(o *Options) {
				o.Identity = testIdentity(testDomain, "example.com", "registrar.example.com")
				o.Trusted = trustedFunc(func(src sip.Addr) (string, bool) { return "carrier", src.AddrPort == trunkAddr.AddrPort })
			})
			trunk := f.newUA("trunk", otherDomain, trunkAddr, nil)
			bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(200))
			f.loc.mu.Lock()
			f.loc.any = &Target{URI: mustURI(bob.contact()), Q: 1000}
			f.loc.mu.Unlock()

			if err := trunk.node.Send(context.Background(), req, proxyUDP); err != nil {
				t.Fatal(err)
			}
			code := tt.code
			if code == 0 {
				got := bob.waitRequest(req.Method)
				if got.CallID() != req.CallID() {
					t.Errorf("bob got another request:\n%s", got)
				}
				code = 200
			}
			res := trunk.strays.wait(t, "the answer", func(r *sip.Response) bool { return r.StatusCode >= 200 })
			if res.StatusCode != code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, code)
			}
			if tt.extra != "" {
				name, value, _ := strings.Cut(tt.extra, ": ")
				if got := res.Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
		})
	}
}
