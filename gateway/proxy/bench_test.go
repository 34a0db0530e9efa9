package proxy

import (
	"testing"

	"github.com/switchboard/switchboard/sip"
)

// BenchmarkProxyMessage measures one MESSAGE proxied end to end on the
// in-memory network: the caller's client transaction, the proxy (server
// transaction, location lookup, Record-Route, Via, client transaction,
// response context) and the callee's server transaction, with every
// message serialised and parsed again on the way, four times in all. TCP
// keeps the transactions from lingering (Timers J and K are zero).
func BenchmarkProxyMessage(b *testing.B) {
	f := newFixture(b, func(o *Options) { o.Logger = nil })
	f.net.SetLog(false)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.TCP, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.TCP, "192.0.2.22:5060"), respond(200))
	dave.quiet, bob.quiet = true, true
	bob.register(1000)
	body := []byte("benchmark message body")
	b.ReportAllocs()
	for b.Loop() {
		req := dave.request(sip.MethodMessage, "sip:bob@"+testDomain)
		req.SetBody(body, "text/plain")
		if res, _ := dave.final(dave.send(req)); res.StatusCode != 200 {
			b.Fatalf("got %d", res.StatusCode)
		}
	}
}
