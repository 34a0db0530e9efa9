package proxy

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
	"github.com/switchboard/switchboard/sip/dialog"
	"github.com/switchboard/switchboard/sip/transaction"
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

// BenchmarkProxyInvite measures one proxied call end to end on the
// in-memory network, as a stranger places it to a registered user over
// TCP: INVITE, 180, 200, ACK (by the route set), BYE and its 200 — the
// proxy's server and client transactions, its Record-Route stamps and
// dialog table, and the callee's answers, every message serialised and
// parsed again on the way.
func BenchmarkProxyInvite(b *testing.B) {
	f, dave := callFixture(b, sip.TCP)
	b.ReportAllocs()
	for b.Loop() {
		benchCall(b, dave)
		// The INVITE transactions wait Timer L (RFC 6026) even over TCP:
		// let it pass, or a thousand calls fill the source's places.
		f.clk.Advance(64 * transaction.DefaultT1)
	}
}

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
	f, dave := callFixture(b, sip.UDP)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		benchCall(b, dave)
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

// callFixture is the proxy with two user agents on transport tr: dave, a
// stranger, calls bob, registered, who answers 180 then 200.
func callFixture(b *testing.B, tr string) (*fixture, *ua) {
	f := newFixture(b, func(o *Options) { o.Logger = nil })
	f.net.SetLog(false)
	dave := f.newUA("dave", otherDomain, mustAddr(tr, "192.0.2.31:5060"), nil)
	bob := f.newUA("bob", testDomain, mustAddr(tr, "192.0.2.22:5060"), respond(180, 200))
	dave.quiet, bob.quiet = true, true
	bob.register(1000)
	return f, dave
}

// benchCall places one call from dave to bob and ends it: INVITE, 200,
// ACK by the route set, BYE and its 200.
func benchCall(b *testing.B, dave *ua) {
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
}

// BenchmarkDialogHeld measures the live heap per dialog in the proxy's
// table (key, both sides with their Contacts, map and list places), as a
// call through the proxy leaves it once its BYE passed.
func BenchmarkDialogHeld(b *testing.B) {
	d := newDialogs(1<<30, time.Hour)
	now := time.Unix(0, 0)
	caller := side{target: sip.URI{Scheme: "sip", User: "u0", Host: "127.0.0.2", Port: 5060, Params: ";transport=UDP"}, user: "u0"}
	callee := side{target: sip.URI{Scheme: "sip", Host: "127.0.0.1", Port: 53105, Params: ";transport=UDP"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		key := dialogKey{callID: strconv.Itoa(n) + "-17811@127.0.0.2", callerTag: "17811SIPpTag00" + strconv.Itoa(n)}
		if err := d.open(key, caller, now, now.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
		d.answered(key, "16783SIPpTag01"+strconv.Itoa(n), callee, true, now, now.Add(time.Minute))
		d.ending(key, now.Add(32*time.Second))
		n++
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "B/dialog")
	runtime.KeepAlive(d)
}
