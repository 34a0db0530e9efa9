package location

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/sip"
)

// benchBinding is a desk phone's refresh as the registrar stores it: a UDP
// contact at its source address, so that it is kept across a restart.
func benchBinding(b *testing.B, user int, cseq uint32) Binding {
	now := time.Now()
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(user % 250)}), uint16(5060+user%1000))
	return Binding{
		AOR:       fmt.Sprintf("sip:u%d@example.com", user),
		Contact:   addr(b, fmt.Sprintf("<sip:u%d@%s;transport=udp>;+sip.instance=\"<urn:uuid:5c3f1d4e-7f1a-4e1b-9b9a-%012d>\"", user, src, user)),
		Expires:   now.Add(time.Hour),
		Q:         1000,
		CallID:    fmt.Sprintf("%d-4rq3ft9oi0p2b9fsk7ib3n", user),
		CSeq:      cseq,
		Instance:  fmt.Sprintf("<urn:uuid:5c3f1d4e-7f1a-4e1b-9b9a-%012d>", user),
		Source:    sip.Addr{Transport: sip.UDP, AddrPort: src},
		Received:  now,
		UserAgent: "Yealink SIP-T46U 108.86.0.20",
	}
}

// BenchmarkPut measures Put of a refresh into a store with a data
// directory: "serial" is one REGISTER at a time, "parallel" 64 at once
// (b.SetParallelism on GOMAXPROCS), as the transaction layer runs them.
// The parallel figure is what group commit is for: concurrent Puts share
// one fsync.
func BenchmarkPut(b *testing.B) {
	for _, tc := range []struct {
		name string
		par  int
	}{{"serial", 0}, {"parallel", 32}} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			b.ReportAllocs()
			if tc.par == 0 {
				bs := make([]Binding, 1000)
				for i := range bs {
					bs[i] = benchBinding(b, i, 1)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					x := bs[i%len(bs)]
					x.CSeq = uint32(i + 1)
					if err := m.Put(ctx, x); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			var next atomic.Int64
			b.SetParallelism(tc.par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				user := int(next.Add(1))
				x := benchBinding(b, user, 1)
				for pb.Next() {
					x.CSeq++
					if err := m.Put(ctx, x); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkUpdateTwoBindings is the registrar's Update of an AOR that
// holds two bindings, a refresh of one of them, as sipp's ladder makes
// (every run registers each user again from a new port) and a user with
// a desk phone and a softphone does; the store keeps no journal, so that
// what is measured is the list work: the new list and the copy returned.
func BenchmarkUpdateTwoBindings(b *testing.B) {
	m, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const users = 1000
	bs := make([]Binding, users)
	for i := range bs {
		other := benchBinding(b, i+users, 1)
		other.AOR = benchBinding(b, i, 1).AOR
		other.CallID += "-other"
		if err := m.Put(ctx, other); err != nil {
			b.Fatal(err)
		}
		bs[i] = benchBinding(b, i, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x := bs[i%users]
		x.CSeq = uint32(i + 1)
		out, err := m.Update(ctx, Update{AOR: x.AOR, Changes: []Change{{Binding: x}}, CallID: x.CallID, CSeq: x.CSeq})
		if err != nil {
			b.Fatal(err)
		}
		if len(out) != 2 {
			b.Fatalf("%d bindings after the refresh, want 2", len(out))
		}
	}
}
