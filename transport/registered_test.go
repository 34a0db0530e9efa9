package transport

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/sip"
)

func TestPeerGroup(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1::1", "2001:db8:1::/64"},
		{"2001:db8:1:0:ffff:ffff:ffff:ffff", "2001:db8:1::/64"},
		{"2001:db8:1:1::1", "2001:db8:1:1::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := PeerGroup(netip.MustParseAddr(tc.ip)); got.String() != tc.want {
			t.Errorf("PeerGroup(%s) = %s, want %s", tc.ip, got, tc.want)
		}
	}
}

// marks records what a FlowHolds tells its marker.
type marks struct {
	mu  sync.Mutex
	reg map[uint64]bool
	log []string
}

func (m *marks) MarkRegistered(f sip.Addr, registered bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reg == nil {
		m.reg = make(map[uint64]bool)
	}
	if m.reg[f.Flow] == registered {
		m.log = append(m.log, "repeated mark") // a FlowHolds marks on change only
	}
	m.reg[f.Flow] = registered
}

func (m *marks) registered(flow uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reg[flow]
}

func (m *marks) check(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.log) > 0 {
		t.Errorf("marker: %v", m.log)
	}
}

func flowAddr(id uint64) sip.Addr {
	return sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("192.0.2.1:40000"), Flow: id}
}

func TestFlowHolds(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	m := &marks{}
	h := NewFlowHolds(m, clk)
	defer m.check(t)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	expect := func(what string, want map[uint64]bool) {
		t.Helper()
		for flow, w := range want {
			if got := m.registered(flow); got != w {
				t.Errorf("%s: flow %d registered = %v, want %v", what, flow, got, w)
			}
		}
	}

	// alice registers over flow 1, bob over flows 1 and 2.
	h.Set("alice", map[sip.Addr]time.Time{flowAddr(1): at(time.Hour)})
	h.Set("bob", map[sip.Addr]time.Time{flowAddr(1): at(10 * time.Minute), flowAddr(2): at(10 * time.Minute)})
	expect("registered", map[uint64]bool{1: true, 2: true})
	if h.Len() != 2 {
		t.Errorf("Len = %d, want 2", h.Len())
	}

	// bob moves his binding of flow 2 to flow 3 (a re-REGISTER over a new
	// connection): flow 2 is let go.
	h.Set("bob", map[sip.Addr]time.Time{flowAddr(1): at(10 * time.Minute), flowAddr(3): at(10 * time.Minute)})
	expect("moved", map[uint64]bool{1: true, 2: false, 3: true})

	// bob's bindings lapse: flow 3 is let go, flow 1 is still alice's.
	clk.Advance(10 * time.Minute)
	expect("bob lapsed", map[uint64]bool{1: true, 3: false})

	// alice unregisters: nothing holds flow 1.
	h.Set("alice", nil)
	expect("unregistered", map[uint64]bool{1: false})
	if h.Len() != 0 {
		t.Errorf("Len = %d, want 0", h.Len())
	}

	// A refresh with a shorter expiry shortens the hold.
	h.Set("carol", map[sip.Addr]time.Time{flowAddr(4): clk.Now().Add(time.Hour)})
	h.Set("carol", map[sip.Addr]time.Time{flowAddr(4): clk.Now().Add(time.Minute)})
	clk.Advance(time.Minute)
	expect("shortened", map[uint64]bool{4: false})

	// A closed flow is dropped without a mark; its owners hold nothing.
	h.Set("dave", map[sip.Addr]time.Time{flowAddr(5): clk.Now().Add(time.Hour), flowAddr(6): clk.Now().Add(time.Hour)})
	h.Drop(flowAddr(5))
	expect("dropped", map[uint64]bool{5: true, 6: true})
	h.Set("dave", map[sip.Addr]time.Time{flowAddr(6): clk.Now().Add(time.Hour)})
	expect("after drop", map[uint64]bool{5: true, 6: true})
	h.Set("dave", nil)
	expect("dave gone", map[uint64]bool{6: false})

	// Datagram sources and past times hold nothing.
	udp := sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.1:5060")}
	h.Set("erin", map[sip.Addr]time.Time{udp: clk.Now().Add(time.Hour), flowAddr(7): clk.Now()})
	if h.Len() != 0 {
		t.Errorf("Len = %d after a datagram source and a lapsed binding, want 0", h.Len())
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left", n)
	}
}
