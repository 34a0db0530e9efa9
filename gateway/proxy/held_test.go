package proxy

import (
	"runtime"
	"testing"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
)

// BenchmarkProxyCallHeld measures the memory that a finished call leaves
// alive for the 64*T1 that its transactions and dialog linger, the memory
// that call overload piles up: calls as in BenchmarkProxyInvite but over
// UDP (where Timers J and K wait), the clock never advanced, then the live
// heap after a collection, per call (B/held-call). It counts the proxy's
// layer and dialog table and both user agents' layers. Run it with a fixed
// count under the server transaction bound (2 places a call at the proxy):
//
//	go test -run '^$' -bench ProxyCallHeld -benchtime 2000x ./gateway/proxy/
func BenchmarkProxyCallHeld(b *testing.B) {
	f := newFixture(b, func(o *Options) { o.Logger = nil })
	f.net.SetLog(false)
	dave := f.newUA("dave", otherDomain, mustAddr(sip.UDP, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(sip.UDP, "192.0.2.22:5060"), respond(180, 200))
	dave.quiet, bob.quiet = true, true
	bob.register(1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		inv := dave.request(sip.MethodInvite, "sip:bob@"+testDomain)
		res, _ := dave.final(dave.send(inv))
		if res.StatusCode != 200 {
			b.Fatalf("INVITE: got %d", res.StatusCode)
		}
		d, err := dialog.NewUAC(inv, res)
		if err != nil {
			b.Fatal(err)
		}
		ack, err := d.NewAck(inv.CSeq().Seq)
		if err != nil {
			b.Fatal(err)
		}
		dave.sendStateless(ack)
		bye, err := d.NewRequest(sip.MethodBye)
		if err != nil {
			b.Fatal(err)
		}
		if res, _ := dave.final(dave.send(bye)); res.StatusCode != 200 {
			b.Fatalf("BYE: got %d", res.StatusCode)
		}
		n++
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "B/held-call")
	st := f.layer.Stats()
	b.ReportMetric(float64(st.ServerTransactions)/float64(n), "server-tx/call")
	b.ReportMetric(float64(st.Evicted), "evicted")
}
