package location

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/internal/waitfor"
	"github.com/switchboard/switchboard/sip"
)

var (
	ctx   = context.Background()
	start = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
)

const aor = "sip:alice@example.com"

func addr(t testing.TB, s string) sip.Address {
	t.Helper()
	a, err := sip.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func wsFlow(n uint64) sip.Addr {
	return sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:40000"), Flow: n}
}

func udpFrom(s string) sip.Addr {
	return sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort(s)}
}

// binding returns a binding of aor to contact, registered at c's time for d.
func binding(t testing.TB, c *clock.Fake, contact string, d time.Duration) Binding {
	now := c.Now()
	return Binding{
		AOR: aor, Contact: addr(t, contact), Expires: now.Add(d), Q: 1000,
		CallID: "call-1", CSeq: 1, Source: udpFrom("192.0.2.10:5060"), Received: now,
	}
}

func openMem(t *testing.T, opts Options) (*Memory, *clock.Fake) {
	t.Helper()
	c, ok := opts.Clock.(*clock.Fake)
	if !ok {
		c = clock.NewFake(start)
		opts.Clock = c
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		checkNoCompactor(t, m)
	})
	return m, c
}

// checkNoCompactor fails if the compactor of m, the store's one
// goroutine, outlives it. Close waits until it has said it is done; the
// goroutine may still be returning then, so give it until a deadline to
// be gone. It is told apart from other stores' by its receiver.
func checkNoCompactor(t *testing.T, m *Memory) {
	t.Helper()
	if m.disk == nil {
		return
	}
	compactor := fmt.Sprintf("location.(*disk).compactLoop(%p", m.disk)
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, compactor) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("compactor still running after Close:\n%s", stacks)
		}
		runtime.Gosched()
	}
}

// waitFor waits until cond holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.Until(t, what, 10*time.Second, cond)
}

// receive returns the next value of ch, failing the test after a deadline.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

func contacts(bs []Binding) string {
	var s []string
	for _, b := range bs {
		s = append(s, b.Contact.URI.String())
	}
	return strings.Join(s, " ")
}

func mustPut(t *testing.T, m *Memory, b Binding) {
	t.Helper()
	if err := m.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, m *Memory, aor string) []Binding {
	t.Helper()
	bs, err := m.Get(ctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func TestPutGetOrder(t *testing.T) {
	m, c := openMem(t, Options{})
	low := binding(t, c, "<sip:low@192.0.2.10>;q=0.1", time.Hour)
	low.Q = 100
	mustPut(t, m, low)
	c.Advance(time.Second)
	mustPut(t, m, binding(t, c, "<sip:old@192.0.2.10>", time.Hour))
	c.Advance(time.Second)
	mustPut(t, m, binding(t, c, "<sip:new@192.0.2.10>", time.Hour))
	if got, want := contacts(mustGet(t, m, aor)), "sip:new@192.0.2.10 sip:old@192.0.2.10 sip:low@192.0.2.10"; got != want {
		t.Errorf("Get order:\n got %s\nwant %s", got, want)
	}
	if bs := mustGet(t, m, "sip:bob@example.com"); len(bs) != 0 {
		t.Errorf("unknown AOR: %v", bs)
	}
}

func TestPutReplaces(t *testing.T) {
	m, c := openMem(t, Options{})
	// Equal URIs by RFC 3261 §19.1.4: escapes, host case, and a parameter
	// only one side has.
	mustPut(t, m, binding(t, c, "<sip:%61lice@Host.example.com;foo=1>", time.Hour))
	b := binding(t, c, "<sip:alice@host.example.com>", 2*time.Hour)
	b.CSeq = 2
	mustPut(t, m, b)
	bs := mustGet(t, m, aor)
	if len(bs) != 1 || bs[0].CSeq != 2 || !bs[0].Expires.Equal(start.Add(2*time.Hour)) {
		t.Fatalf("equal URI did not replace: %+v", bs)
	}
	// A transport parameter makes URIs differ.
	mustPut(t, m, binding(t, c, "<sip:alice@host.example.com;transport=tcp>", time.Hour))
	if n := len(mustGet(t, m, aor)); n != 2 {
		t.Errorf("%d bindings, want 2", n)
	}
}

func TestPutOutboundReplacesByInstanceAndRegID(t *testing.T) {
	m, c := openMem(t, Options{})
	inst := "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
	ob := func(contact string, regID int, flow uint64) Binding {
		b := binding(t, c, contact, time.Hour)
		b.Instance, b.RegID, b.Source = inst, regID, wsFlow(flow)
		return b
	}
	mustPut(t, m, ob("<sip:a@x1.invalid;transport=ws>", 1, 1))
	mustPut(t, m, ob("<sip:a@x1.invalid;transport=ws>", 2, 2)) // a second flow, same URI
	if n := len(mustGet(t, m, aor)); n != 2 {
		t.Fatalf("two reg-ids: %d bindings, want 2", n)
	}
	// Reconnected: new connection, new .invalid host, same instance and
	// reg-id → replaces the first flow's binding.
	mustPut(t, m, ob("<sip:a@x2.invalid;transport=ws>", 1, 3))
	bs := mustGet(t, m, aor)
	if len(bs) != 2 {
		t.Fatalf("after reconnect: %d bindings, want 2", len(bs))
	}
	for _, b := range bs {
		if b.RegID == 1 && (b.Source.Flow != 3 || b.Contact.URI.Host != "x2.invalid") {
			t.Errorf("reg-id 1 not replaced: %+v", b)
		}
	}
	// The old flow closing removes nothing now; the new one removes its own.
	if removed, _ := m.DeleteFlow(ctx, wsFlow(1)); len(removed) != 0 {
		t.Errorf("closing the replaced flow removed %d", len(removed))
	}
	removed, _ := m.DeleteFlow(ctx, wsFlow(3))
	if len(removed) != 1 || removed[0].RegID != 1 {
		t.Errorf("DeleteFlow(3) removed %+v", removed)
	}
	if err := m.Delete(ctx, ob("<sip:whatever@x9.invalid>", 2, 9)); err != nil {
		t.Fatal(err)
	}
	if n := len(mustGet(t, m, aor)); n != 0 {
		t.Errorf("Delete by instance and reg-id left %d", n)
	}
}

func TestDelete(t *testing.T) {
	m, c := openMem(t, Options{})
	mustPut(t, m, binding(t, c, "<sip:a@192.0.2.10>", time.Hour))
	mustPut(t, m, binding(t, c, "<sip:b@192.0.2.10>", time.Hour))
	if err := m.Delete(ctx, binding(t, c, "<sip:A@192.0.2.10>", 0)); err != nil {
		t.Fatal(err)
	}
	if n := len(mustGet(t, m, aor)); n != 2 {
		t.Errorf("Delete of another URI (user parts are case-sensitive) removed a binding")
	}
	m.Delete(ctx, binding(t, c, "<sip:a@192.0.2.10>", 0))
	if got := contacts(mustGet(t, m, aor)); got != "sip:b@192.0.2.10" {
		t.Errorf("after Delete: %s", got)
	}
	if err := m.DeleteAOR(ctx, aor); err != nil {
		t.Fatal(err)
	}
	if n := len(mustGet(t, m, aor)); n != 0 || m.Len() != 0 {
		t.Errorf("DeleteAOR left %d", n)
	}
}

func TestDeleteFlowKeepsReachableBindings(t *testing.T) {
	m, c := openMem(t, Options{})
	tcp := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("203.0.113.5:41000"), Flow: 12}
	public := binding(t, c, "<sip:desk@203.0.113.5:5060;transport=tcp>", time.Hour)
	public.Source = tcp
	natted := binding(t, c, "<sip:phone@10.0.0.5:5060;transport=tcp>", time.Hour)
	natted.Source = tcp
	mustPut(t, m, public)
	mustPut(t, m, natted)
	removed, err := m.DeleteFlow(ctx, tcp)
	if err != nil {
		t.Fatal(err)
	}
	if contacts(removed) != "sip:phone@10.0.0.5:5060;transport=tcp" {
		t.Errorf("removed %s, want the NATed binding only", contacts(removed))
	}
	if got := contacts(mustGet(t, m, aor)); got != "sip:desk@203.0.113.5:5060;transport=tcp" {
		t.Errorf("left %s", got)
	}
}

func TestNeedsFlow(t *testing.T) {
	src := udpFrom("203.0.113.9:5060")
	tests := []struct {
		contact string
		regID   int
		source  sip.Addr
		want    bool
	}{
		{"<sip:a@df7jal23ls0d.invalid;transport=ws>", 0, wsFlow(1), true},
		{"<sip:a@HOST.INVALID>", 0, src, true},
		{"<sip:a@203.0.113.9:5060>", 0, src, false},
		{"<sip:a@phone.example.com>", 0, src, false},
		{"<sip:a@phone.example.com>", 1, src, true}, // outbound
		{"<sip:a@192.168.1.20:5060>", 0, src, true}, // NAT
		{"<sip:a@10.1.2.3>", 0, src, true},
		{"<sip:a@100.64.3.4>", 0, src, true}, // carrier-grade NAT
		{"<sip:a@127.0.0.1>", 0, src, true},
		{"<sip:a@[fd00::1]>", 0, src, true},
		{"<sip:a@[fe80::1]>", 0, src, true},
		{"<sip:a@192.168.1.20:5060>", 0, udpFrom("192.168.1.20:5060"), false}, // same LAN
		{"<sip:a@192.168.1.20:5060>", 0, udpFrom("[::ffff:192.168.1.20]:5060"), false},
		{"<sip:a@192.168.1.20>", 0, sip.Addr{}, false}, // source unknown
	}
	for _, tt := range tests {
		b := Binding{Contact: addr(t, tt.contact), RegID: tt.regID, Source: tt.source}
		if tt.regID > 0 {
			b.Instance = "<urn:uuid:1>"
		}
		if got := b.NeedsFlow(); got != tt.want {
			t.Errorf("%s reg-id %d from %v: NeedsFlow = %v, want %v", tt.contact, tt.regID, tt.source, got, tt.want)
		}
	}
}

func TestPutLimitsAndValidation(t *testing.T) {
	m, c := openMem(t, Options{MaxBindingsPerAOR: 3})
	for i := range 3 {
		mustPut(t, m, binding(t, c, fmt.Sprintf("<sip:a%d@192.0.2.10>", i), time.Hour))
	}
	err := m.Put(ctx, binding(t, c, "<sip:a3@192.0.2.10>", time.Hour))
	if !errors.Is(err, ErrTooManyBindings) {
		t.Errorf("fourth binding: %v, want ErrTooManyBindings", err)
	}
	// Refreshing one of the three is not one too many.
	mustPut(t, m, binding(t, c, "<sip:a1@192.0.2.10>", 2*time.Hour))
	// An expired binding frees its place.
	c.Advance(time.Hour)
	mustPut(t, m, binding(t, c, "<sip:a3@192.0.2.10>", time.Hour))

	for name, b := range map[string]Binding{
		"no AOR":   {Contact: addr(t, "<sip:x@y>"), Expires: c.Now().Add(time.Hour)},
		"wildcard": {AOR: aor, Contact: sip.Address{Wildcard: true}, Expires: c.Now().Add(time.Hour)},
		"expired":  {AOR: aor, Contact: addr(t, "<sip:x@y>"), Expires: c.Now()},
	} {
		if err := m.Put(ctx, b); !errors.Is(err, ErrInvalidBinding) {
			t.Errorf("%s: %v, want ErrInvalidBinding", name, err)
		}
	}
}

func TestPutCopies(t *testing.T) {
	m, c := openMem(t, Options{})
	b := binding(t, c, "<sip:a@192.0.2.10>", time.Hour)
	b.Path = []string{"<sip:edge.example.com;lr>"}
	mustPut(t, m, b)
	b.Path[0] = "changed"
	got := mustGet(t, m, aor)
	if got[0].Path[0] != "<sip:edge.example.com;lr>" {
		t.Error("Put kept the caller's Path slice")
	}
	got[0].Path[0] = "changed"
	if mustGet(t, m, aor)[0].Path[0] != "<sip:edge.example.com;lr>" {
		t.Error("Get returned the store's own Path slice")
	}
}

func TestExpiryAndSweep(t *testing.T) {
	m, c := openMem(t, Options{SweepInterval: 45 * time.Second}) // sweeps at 45 s, 90 s...
	mustPut(t, m, binding(t, c, "<sip:short@192.0.2.10>", 60*time.Second))
	mustPut(t, m, binding(t, c, "<sip:long@192.0.2.10>", time.Hour))
	c.Advance(59 * time.Second)
	if n := len(mustGet(t, m, aor)); n != 2 {
		t.Fatalf("%d bindings before expiry", n)
	}
	c.Advance(time.Second) // expires exactly now: gone from Get at once
	if got := contacts(mustGet(t, m, aor)); got != "sip:long@192.0.2.10" {
		t.Errorf("Get returned an expired binding: %s", got)
	}
	all, _ := m.All(ctx)
	if len(all) != 1 {
		t.Errorf("All returned %d", len(all))
	}
	if m.Len() != 2 {
		t.Fatalf("swept before the sweep interval: Len %d", m.Len())
	}
	// The sweep runs synchronously inside Advance with a fake clock.
	c.Advance(30 * time.Second)
	if m.Len() != 1 {
		t.Errorf("Len %d after the sweep, want 1", m.Len())
	}
	c.Advance(time.Hour)
	if m.Len() != 0 || c.Pending() == 0 {
		t.Errorf("Len %d after everything expired; sweeper pending %d", m.Len(), c.Pending())
	}
}

func TestAll(t *testing.T) {
	m, c := openMem(t, Options{})
	b := binding(t, c, "<sip:b@192.0.2.10>", time.Hour)
	b.AOR = "sip:bob@example.com"
	mustPut(t, m, b)
	mustPut(t, m, binding(t, c, "<sip:a@192.0.2.10>", time.Hour))
	all, err := m.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].AOR != aor || all[1].AOR != "sip:bob@example.com" {
		t.Errorf("All = %+v", all)
	}
}

func TestClosed(t *testing.T) {
	m, c := openMem(t, Options{Dir: t.TempDir()})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c.Pending() != 0 {
		t.Errorf("%d timers left after Close", c.Pending())
	}
	checkNoCompactor(t, m)
	if _, err := m.Get(ctx, aor); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := m.Put(ctx, binding(t, c, "<sip:a@b>", time.Hour)); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := m.Compact(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Compact after Close: %v", err)
	}
	for name, f := range map[string]func() error{
		"Delete":     func() error { return m.Delete(ctx, Binding{AOR: aor}) },
		"DeleteAOR":  func() error { return m.DeleteAOR(ctx, aor) },
		"DeleteFlow": func() error { _, err := m.DeleteFlow(ctx, wsFlow(1)); return err },
		"All":        func() error { _, err := m.All(ctx); return err },
	} {
		if err := f(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	c := clock.NewFake(start)
	m, err := Open(Options{Dir: dir, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	keep := binding(t, c, `"Alice" <sip:alice@198.51.100.20:5060;transport=tcp>;+sip.instance="<urn:uuid:1>";q=0.5`, time.Hour)
	keep.Q, keep.Instance, keep.CSeq, keep.UserAgent = 500, "<urn:uuid:1>", 7, "Desk/1.0"
	keep.Path = []string{"<sip:edge.example.com;lr>"}
	keep.Source = sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("198.51.100.20:5060"), Flow: 4}
	short := binding(t, c, "<sip:short@192.0.2.10>", 2*time.Minute)
	browser := binding(t, c, "<sip:x@abc.invalid;transport=ws>", time.Hour)
	browser.Source = wsFlow(9)
	natUDP := binding(t, c, "<sip:nat@192.168.0.9:5060>", time.Hour) // UDP: the source address outlives us
	for _, b := range []Binding{keep, short, browser, natUDP} {
		mustPut(t, m, b)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	c.Advance(5 * time.Minute) // the gateway was down for five minutes
	m2, _ := openMem(t, Options{Dir: dir, Clock: c})
	bs := mustGet(t, m2, aor)
	if got, want := contacts(bs), "sip:nat@192.168.0.9:5060 sip:alice@198.51.100.20:5060;transport=tcp"; got != want {
		t.Fatalf("after restart:\n got %s\nwant %s", got, want)
	}
	got := bs[1]
	keep.Received, keep.Expires = keep.Received.UTC(), keep.Expires.UTC()
	if got.Contact.String() != keep.Contact.String() || got.Contact.Display != "Alice" ||
		!got.Expires.Equal(keep.Expires) || got.Q != 500 || got.CallID != keep.CallID ||
		got.CSeq != 7 || got.Instance != keep.Instance || got.Path[0] != keep.Path[0] ||
		got.Source != keep.Source || !got.Received.Equal(keep.Received) || got.UserAgent != "Desk/1.0" {
		t.Errorf("restored binding differs:\n got %+v\nwant %+v", got, keep)
	}
}

func TestLoadDropsAndRecovers(t *testing.T) {
	t.Run("legacy corrupt", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, legacyFile)
		os.WriteFile(path, []byte("{not json"), 0o600)
		os.WriteFile(filepath.Join(dir, SnapshotName+".tmp-123"), []byte("half"), 0o600)
		m, _ := openMem(t, Options{Dir: dir})
		if m.Len() != 0 {
			t.Error("loaded bindings from a corrupt file")
		}
		if _, err := os.Stat(path + ".corrupt"); err != nil {
			t.Errorf("corrupt file not set aside: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, SnapshotName+".tmp-123")); !errors.Is(err, os.ErrNotExist) {
			t.Error("stale temporary file not removed")
		}
	})
	// An earlier version's JSON snapshot is read once, filtered as a
	// snapshot is, and replaced by the new files.
	t.Run("legacy records", func(t *testing.T) {
		dir := t.TempDir()
		exp := start.Add(time.Hour)
		s := legacySnapshot{Version: 1, Bindings: []record{
			{AOR: aor, Contact: "<sip:ok@192.0.2.1>", Expires: exp, Q: 1000},
			{AOR: aor, Contact: "<sip:gone@192.0.2.1>", Expires: start.Add(-time.Second)},
			{AOR: aor, Contact: "not an address", Expires: exp},
			{AOR: aor, Contact: "<sip:bad-source@192.0.2.1>", Expires: exp, Transport: "UDP", Addr: "nonsense"},
			{AOR: aor, Contact: "<sip:x@y.invalid>", Expires: exp, Transport: "WSS", Addr: "192.0.2.1:443", Flow: 3},
			{AOR: "", Contact: "<sip:no-aor@192.0.2.1>", Expires: exp},
		}}
		data, _ := json.Marshal(s)
		if err := os.WriteFile(filepath.Join(dir, legacyFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		m, _ := openMem(t, Options{Dir: dir})
		if got := contacts(mustGet(t, m, aor)); got != "sip:ok@192.0.2.1" || m.Len() != 1 {
			t.Errorf("loaded %s (Len %d), want only sip:ok@192.0.2.1", got, m.Len())
		}
		if _, err := os.Stat(filepath.Join(dir, legacyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("legacy snapshot not removed: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, SnapshotName)); err != nil {
			t.Errorf("no snapshot written: %v", err)
		}
	})
	t.Run("unwritable dir", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		if _, err := Open(Options{Dir: filepath.Join(file, "sub")}); err == nil {
			t.Error("Open under a regular file succeeded")
		}
	})
}

// TestConcurrent runs every method at once (for -race), with the writer and
// the sweeper on a fake clock advanced meanwhile.
func TestConcurrent(t *testing.T) {
	m, c := openMem(t, Options{Dir: t.TempDir(), JournalLimit: 4 << 10, SweepInterval: time.Second})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				b := binding(t, c, fmt.Sprintf("<sip:g%d-%d@x%d.invalid>", g, i%7, g), time.Duration(1+i%5)*time.Second)
				b.AOR = fmt.Sprintf("sip:u%d@example.com", i%3)
				b.Source = wsFlow(uint64(g))
				if g%2 == 0 { // a phone over UDP: journaled
					b.Contact = addr(t, fmt.Sprintf("<sip:g%d-%d@192.0.2.%d:5060>", g, i%7, g))
					b.Source = udpFrom(fmt.Sprintf("192.0.2.%d:5060", g))
				}
				if err := m.Put(ctx, b); err != nil && !errors.Is(err, ErrTooManyBindings) && !errors.Is(err, ErrInvalidBinding) {
					t.Error(err)
					return
				}
				m.Get(ctx, b.AOR)
				if i%50 == 0 {
					m.DeleteFlow(ctx, b.Source)
					m.All(ctx)
					m.Delete(ctx, b)
				}
			}
		}()
	}
	for range 50 {
		c.Advance(500 * time.Millisecond)
	}
	wg.Wait()
	if err := m.Compact(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSortBindings: short lists (sorted by insertion) and long ones come
// out in Get's order, equal bindings in the order they were in.
func TestSortBindings(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 3 * smallSort {
		list := make([]Binding, n)
		for i := range list {
			list[i] = Binding{CallID: fmt.Sprint(i), Q: 500 * rng.IntN(3), Received: start.Add(time.Duration(rng.IntN(4)) * time.Second)}
		}
		want := slices.Clone(list)
		slices.SortStableFunc(want, func(a, b Binding) int {
			if c := cmp.Compare(b.Q, a.Q); c != 0 {
				return c
			}
			return b.Received.Compare(a.Received)
		})
		sortBindings(list)
		for i := range list {
			if list[i].CallID != want[i].CallID {
				t.Fatalf("%d bindings: at %d got %s (q %d, %v), want %s", n, i, list[i].CallID, list[i].Q, list[i].Received, want[i].CallID)
			}
		}
	}
}
