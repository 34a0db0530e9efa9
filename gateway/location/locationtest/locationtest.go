// Package locationtest is the contract of location.Store as tests: Run
// checks an implementation against what the registrar and the proxy rely
// on, so that the embedded store and a shared one behave alike.
package locationtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/sip"
)

// Start is the time the suite's clocks start at.
var Start = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// Factory opens a fresh, empty store for one test, whose expiries run on
// c, holding at most max bindings per AOR; it closes the store when t
// ends (Close must then do nothing more if the test closed it already).
// node is the Node of the bindings whose connections the store's gateway
// holds, which DeleteFlow removes; "" when the store ignores Node.
type Factory func(t *testing.T, c *clock.Fake, max int) (s location.Store, node string)

// AOR is the address of record of the suite's bindings.
const AOR = "sip:alice@example.com"

var ctx = context.Background()

// Run runs the contract on the stores open makes.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		f    func(t *testing.T, s *suite)
	}{
		{"GetOrder", testGetOrder},
		{"PutReplacesEqualURI", testPutReplacesEqualURI},
		{"OutboundMatchesByInstanceAndRegID", testOutbound},
		{"Delete", testDelete},
		{"DeleteFlow", testDeleteFlow},
		{"Limits", testLimits},
		{"Invalid", testInvalid},
		{"Copies", testCopies},
		{"RoundTrip", testRoundTrip},
		{"Expiry", testExpiry},
		{"All", testAll},
		{"UpdateOrder", testUpdateOrder},
		{"UpdateAllOrNothing", testUpdateAllOrNothing},
		{"UpdateRemoveAll", testUpdateRemoveAll},
		{"UpdateQuery", testUpdateQuery},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &suite{t: t, c: clock.NewFake(Start)}
			s.open = func(max int) {
				s.s, s.node = open(t, s.c, max)
			}
			s.open(20)
			tt.f(t, s)
		})
	}
}

// suite is one test's store and clock.
type suite struct {
	t    *testing.T
	c    *clock.Fake
	s    location.Store
	node string
	open func(max int)
}

func (s *suite) binding(contact string, d time.Duration) location.Binding {
	s.t.Helper()
	a, err := sip.ParseAddress(contact)
	if err != nil {
		s.t.Fatal(err)
	}
	now := s.c.Now()
	return location.Binding{
		AOR: AOR, Contact: a, Expires: now.Add(d), Q: 1000,
		CallID: "call-1", CSeq: 1, Received: now, Node: s.node,
		Source: sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5060")},
	}
}

func (s *suite) put(b location.Binding) {
	s.t.Helper()
	if err := s.s.Put(ctx, b); err != nil {
		s.t.Fatalf("Put %s: %v", b.Contact.URI.String(), err)
	}
}

func (s *suite) get(aor string) []location.Binding {
	s.t.Helper()
	bs, err := s.s.Get(ctx, aor)
	if err != nil {
		s.t.Fatalf("Get %s: %v", aor, err)
	}
	return bs
}

// contacts lists the Contact URIs of bs, space-separated.
func contacts(bs []location.Binding) string {
	var out []string
	for i := range bs {
		out = append(out, bs[i].Contact.URI.String())
	}
	return strings.Join(out, " ")
}

func (s *suite) wantContacts(what, aor, want string) {
	s.t.Helper()
	if got := contacts(s.get(aor)); got != want {
		s.t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func wsFlow(n uint64) sip.Addr {
	return sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:40000"), Flow: n}
}

func testGetOrder(t *testing.T, s *suite) {
	low := s.binding("<sip:low@192.0.2.10>;q=0.1", time.Hour)
	low.Q = 100
	s.put(low)
	s.c.Advance(time.Second)
	s.put(s.binding("<sip:old@192.0.2.10>", time.Hour))
	s.c.Advance(time.Second)
	s.put(s.binding("<sip:new@192.0.2.10>", time.Hour))
	s.wantContacts("q descending, then most recent first", AOR, "sip:new@192.0.2.10 sip:old@192.0.2.10 sip:low@192.0.2.10")
	if bs := s.get("sip:bob@example.com"); len(bs) != 0 {
		t.Errorf("an unknown AOR has %d bindings", len(bs))
	}
}

func testPutReplacesEqualURI(t *testing.T, s *suite) {
	// Equal URIs by RFC 3261 §19.1.4: escapes, host case, parameter
	// order and case, and a parameter only one side has.
	s.put(s.binding("<sip:%61lice@Host.example.com;foo=1;Bar=X>", time.Hour))
	for i, c := range []string{
		"<sip:alice@host.example.com;bar=x;foo=1>",
		"<sip:alice@HOST.example.com>",
		"<sip:alice@host.example.com;other=2>",
	} {
		b := s.binding(c, time.Duration(i+2)*time.Hour)
		b.CSeq = uint32(i + 2)
		s.put(b)
		bs := s.get(AOR)
		if len(bs) != 1 || bs[0].CSeq != uint32(i+2) || !bs[0].Expires.Equal(Start.Add(time.Duration(i+2)*time.Hour)) {
			t.Fatalf("%s did not replace the binding: %s", c, contacts(bs))
		}
	}
	// Parameters on both sides with other values, a significant
	// parameter on one side, a port, a user's case: other URIs.
	if err := s.s.DeleteAOR(ctx, AOR); err != nil {
		t.Fatal(err)
	}
	s.put(s.binding("<sip:alice@host.example.com;foo=1>", time.Hour))
	for _, c := range []string{
		"<sip:alice@host.example.com;foo=2>",
		"<sip:alice@host.example.com;transport=tcp>",
		"<sip:alice@host.example.com:5060>",
		"<sip:Alice@host.example.com>",
	} {
		s.put(s.binding(c, time.Hour))
	}
	if n := len(s.get(AOR)); n != 5 {
		t.Errorf("%d bindings, want 5: %s", n, contacts(s.get(AOR)))
	}
}

func testOutbound(t *testing.T, s *suite) {
	inst := "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
	ob := func(contact string, regID int, flow uint64) location.Binding {
		b := s.binding(contact, time.Hour)
		b.Instance, b.RegID, b.Source = inst, regID, wsFlow(flow)
		return b
	}
	s.put(ob("<sip:a@x1.invalid;transport=ws>", 1, 1))
	s.put(ob("<sip:a@x1.invalid;transport=ws>", 2, 2)) // a second flow, same URI
	if n := len(s.get(AOR)); n != 2 {
		t.Fatalf("two reg-ids: %d bindings, want 2", n)
	}
	// Reconnected: a new connection and .invalid host, the same instance
	// and reg-id: replaces the first flow's binding.
	s.put(ob("<sip:a@x2.invalid;transport=ws>", 1, 3))
	bs := s.get(AOR)
	if len(bs) != 2 {
		t.Fatalf("after reconnecting: %d bindings, want 2", len(bs))
	}
	for _, b := range bs {
		if b.RegID == 1 && (b.Source.Flow != 3 || b.Contact.URI.Host != "x2.invalid") {
			t.Errorf("reg-id 1 not replaced: %+v", b)
		}
	}
	// A binding without outbound whose URI equals an outbound one's
	// replaces it (Matches compares URIs when the new one has no reg-id).
	plain := s.binding("<sip:a@x2.invalid;transport=ws>", time.Hour)
	plain.CSeq = 9
	s.put(plain)
	if n := len(s.get(AOR)); n != 2 {
		t.Errorf("a plain binding of an outbound one's URI: %d bindings, want 2", n)
	}
	if err := s.s.Delete(ctx, ob("<sip:whatever@x9.invalid>", 2, 9)); err != nil {
		t.Fatal(err)
	}
	s.wantContacts("Delete by instance and reg-id", AOR, "sip:a@x2.invalid;transport=ws")
}

func testDelete(t *testing.T, s *suite) {
	s.put(s.binding("<sip:a@192.0.2.10>", time.Hour))
	s.put(s.binding("<sip:b@192.0.2.10>", time.Hour))
	if err := s.s.Delete(ctx, s.binding("<sip:A@192.0.2.10>", 0)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.get(AOR)); n != 2 {
		t.Error("Delete of another URI (user parts are case-sensitive) removed a binding")
	}
	if err := s.s.Delete(ctx, s.binding("<sip:a@192.0.2.10>", 0)); err != nil {
		t.Fatal(err)
	}
	s.wantContacts("after Delete", AOR, "sip:b@192.0.2.10")
	if err := s.s.Delete(ctx, location.Binding{AOR: "sip:nobody@example.com", Contact: s.binding("<sip:a@192.0.2.10>", 0).Contact}); err != nil {
		t.Errorf("Delete of an unknown AOR: %v", err)
	}
	if err := s.s.DeleteAOR(ctx, AOR); err != nil {
		t.Fatal(err)
	}
	if n := len(s.get(AOR)); n != 0 {
		t.Errorf("DeleteAOR left %d", n)
	}
	if err := s.s.DeleteAOR(ctx, AOR); err != nil {
		t.Errorf("DeleteAOR of an empty AOR: %v", err)
	}
}

func testDeleteFlow(t *testing.T, s *suite) {
	tcp := sip.Addr{Transport: sip.TCP, AddrPort: netip.MustParseAddrPort("203.0.113.5:41000"), Flow: 12}
	public := s.binding("<sip:desk@203.0.113.5:5060;transport=tcp>", time.Hour)
	public.Source = tcp
	natted := s.binding("<sip:phone@10.0.0.5:5060;transport=tcp>", time.Hour)
	natted.Source = tcp
	browser := s.binding("<sip:b@x.invalid;transport=ws>", time.Hour)
	browser.AOR, browser.Source = "sip:bob@example.com", tcp
	other := s.binding("<sip:c@y.invalid;transport=ws>", time.Hour)
	other.Source = wsFlow(13)
	for _, b := range []location.Binding{public, natted, browser, other} {
		s.put(b)
	}
	removed, err := s.s.DeleteFlow(ctx, tcp)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(removed, func(a, b location.Binding) int { return strings.Compare(a.AOR, b.AOR) })
	if got := contacts(removed); got != "sip:phone@10.0.0.5:5060;transport=tcp sip:b@x.invalid;transport=ws" {
		t.Errorf("removed %q, want the bindings reachable over the flow only", got)
	}
	s.wantContacts("left", AOR, "sip:desk@203.0.113.5:5060;transport=tcp sip:c@y.invalid;transport=ws")
	if n := len(s.get("sip:bob@example.com")); n != 0 {
		t.Errorf("bob kept %d bindings", n)
	}
	if removed, err := s.s.DeleteFlow(ctx, tcp); err != nil || len(removed) != 0 {
		t.Errorf("DeleteFlow again: %v, %v", removed, err)
	}
}

func testLimits(t *testing.T, s *suite) {
	s.open(3)
	for i := range 3 {
		s.put(s.binding(fmt.Sprintf("<sip:a%d@192.0.2.10>", i), time.Hour))
	}
	if err := s.s.Put(ctx, s.binding("<sip:a3@192.0.2.10>", time.Hour)); !errors.Is(err, location.ErrTooManyBindings) {
		t.Errorf("a fourth binding: %v, want ErrTooManyBindings", err)
	}
	// Refreshing one of the three is not one too many.
	s.put(s.binding("<sip:a1@192.0.2.10>", 2*time.Hour))
	// An expired binding frees its place.
	s.c.Advance(time.Hour)
	s.put(s.binding("<sip:a3@192.0.2.10>", time.Hour))
	if n := len(s.get(AOR)); n != 2 {
		t.Errorf("%d bindings, want 2", n)
	}
}

func testInvalid(t *testing.T, s *suite) {
	now := s.c.Now()
	contact := s.binding("<sip:x@192.0.2.1>", time.Hour).Contact
	for name, b := range map[string]location.Binding{
		"no AOR":   {Contact: contact, Expires: now.Add(time.Hour)},
		"wildcard": {AOR: AOR, Contact: sip.Address{Wildcard: true}, Expires: now.Add(time.Hour)},
		"expired":  {AOR: AOR, Contact: contact, Expires: now},
	} {
		if err := s.s.Put(ctx, b); !errors.Is(err, location.ErrInvalidBinding) {
			t.Errorf("Put %s: %v, want ErrInvalidBinding", name, err)
		}
		if _, err := s.s.Update(ctx, location.Update{AOR: AOR, Changes: []location.Change{{Binding: b}}}); !errors.Is(err, location.ErrInvalidBinding) {
			t.Errorf("Update %s: %v, want ErrInvalidBinding", name, err)
		}
	}
	other := s.binding("<sip:x@192.0.2.1>", time.Hour)
	other.AOR = "sip:bob@example.com"
	if _, err := s.s.Update(ctx, location.Update{AOR: AOR, Changes: []location.Change{{Binding: other}}}); !errors.Is(err, location.ErrInvalidBinding) {
		t.Errorf("Update with another AOR's binding: %v, want ErrInvalidBinding", err)
	}
	if n := len(s.get(AOR)) + len(s.get("sip:bob@example.com")); n != 0 {
		t.Errorf("invalid changes left %d bindings", n)
	}
}

func testCopies(t *testing.T, s *suite) {
	b := s.binding("<sip:a@192.0.2.10>", time.Hour)
	b.Path = []string{"<sip:edge.example.com;lr>"}
	s.put(b)
	b.Path[0] = "changed"
	got := s.get(AOR)
	if got[0].Path[0] != "<sip:edge.example.com;lr>" {
		t.Fatalf("the stored Path changed with the caller's: %v", got[0].Path)
	}
	got[0].Path[0] = "changed"
	if again := s.get(AOR); again[0].Path[0] != "<sip:edge.example.com;lr>" {
		t.Errorf("the stored Path changed with a returned one: %v", again[0].Path)
	}
}

func testRoundTrip(t *testing.T, s *suite) {
	b := s.binding(`"Alice Smith" <sip:alice@x7.invalid;transport=ws;ob>;+sip.instance="<urn:uuid:1>";reg-id=1;q=0.5;x-custom=y`, 30*time.Minute)
	b.Q, b.Instance, b.RegID = 500, "<urn:uuid:1>", 1
	b.CallID, b.CSeq = "a84b4c76e66710@pc33", 314159
	b.Path = []string{"<sip:p1.example.com;lr>", "<sip:tok@p2.example.com;lr;ob>"}
	b.Source = sip.Addr{Transport: sip.WSS, AddrPort: netip.MustParseAddrPort("[2001:db8::7]:41234"), Flow: 1 << 40}
	b.UserAgent = "JsSIP 3.10.1"
	s.put(b)
	got := s.get(AOR)
	if len(got) != 1 {
		t.Fatalf("%d bindings", len(got))
	}
	g := got[0]
	if g.Contact.String() != b.Contact.String() || !g.Expires.Equal(b.Expires) || !g.Received.Equal(b.Received) ||
		g.Q != b.Q || g.CallID != b.CallID || g.CSeq != b.CSeq || g.Instance != b.Instance || g.RegID != b.RegID ||
		!slices.Equal(g.Path, b.Path) || g.Source != b.Source || g.UserAgent != b.UserAgent || g.Node != b.Node || g.AOR != b.AOR {
		t.Errorf("stored\n %+v\nread back\n %+v", b, g)
	}
}

func testExpiry(t *testing.T, s *suite) {
	s.put(s.binding("<sip:short@192.0.2.10>", time.Minute))
	s.put(s.binding("<sip:long@192.0.2.10>", time.Hour))
	s.c.Advance(time.Minute)
	s.wantContacts("a minute on", AOR, "sip:long@192.0.2.10")
	s.c.Advance(time.Hour)
	if n := len(s.get(AOR)); n != 0 {
		t.Errorf("%d bindings after every expiry", n)
	}
	all, err := s.s.All(ctx)
	if err != nil || len(all) != 0 {
		t.Errorf("All after every expiry: %d bindings, %v", len(all), err)
	}
}

func testAll(t *testing.T, s *suite) {
	for _, user := range []string{"carol", "alice", "bob"} {
		b := s.binding("<sip:"+user+"@192.0.2.10>", time.Hour)
		b.AOR = "sip:" + user + "@example.com"
		s.put(b)
	}
	b := s.binding("<sip:alice2@192.0.2.10>;q=0.5", time.Hour)
	b.Q = 500
	s.put(b)
	all, err := s.s.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := contacts(all), "sip:alice@192.0.2.10 sip:alice2@192.0.2.10 sip:bob@192.0.2.10 sip:carol@192.0.2.10"; got != want {
		t.Errorf("All:\n got %s\nwant %s", got, want)
	}
}

// update applies a REGISTER of Call-ID "call-1" with cseq.
func (s *suite) update(cseq uint32, changes ...location.Change) ([]location.Binding, error) {
	for i := range changes {
		changes[i].Binding.CSeq = cseq
	}
	return s.s.Update(ctx, location.Update{AOR: AOR, Changes: changes, CallID: "call-1", CSeq: cseq})
}

func testUpdateOrder(t *testing.T, s *suite) {
	a := s.binding("<sip:a@192.0.2.10>", time.Hour)
	got, err := s.update(5, location.Change{Binding: a})
	if err != nil || contacts(got) != "sip:a@192.0.2.10" {
		t.Fatalf("first REGISTER: %s, %v", contacts(got), err)
	}
	b := s.binding("<sip:b@192.0.2.10>", 2*time.Hour)
	// The same CSeq again, or a lower one, under the same Call-ID:
	// nothing changes, b is not added either.
	for _, cseq := range []uint32{5, 4} {
		a2 := s.binding("<sip:a@192.0.2.10>", 3*time.Hour)
		if _, err := s.update(cseq, location.Change{Binding: b}, location.Change{Binding: a2}); !errors.Is(err, location.ErrOutOfOrder) {
			t.Errorf("CSeq %d after 5: %v, want ErrOutOfOrder", cseq, err)
		}
		if _, err := s.update(cseq, location.Change{Binding: a2, Remove: true}); !errors.Is(err, location.ErrOutOfOrder) {
			t.Errorf("removal with CSeq %d after 5: %v, want ErrOutOfOrder", cseq, err)
		}
	}
	s.wantContacts("after refused REGISTERs", AOR, "sip:a@192.0.2.10")
	// Another Call-ID may change it whatever its CSeq.
	other := s.binding("<sip:a@192.0.2.10>", 3*time.Hour)
	other.CallID, other.CSeq = "call-2", 1
	if _, err := s.s.Update(ctx, location.Update{AOR: AOR, Changes: []location.Change{{Binding: other}}, CallID: "call-2", CSeq: 1}); err != nil {
		t.Fatal(err)
	}
	// A higher CSeq, removal and addition at once.
	got, err = s.s.Update(ctx, location.Update{AOR: AOR, CallID: "call-2", CSeq: 2, Changes: []location.Change{
		{Binding: s.binding("<sip:a@192.0.2.10>", 0), Remove: true},
		{Binding: b},
	}})
	if err != nil || contacts(got) != "sip:b@192.0.2.10" {
		t.Errorf("remove a, add b: %s, %v", contacts(got), err)
	}
}

func testUpdateAllOrNothing(t *testing.T, s *suite) {
	s.open(2)
	if _, err := s.update(1, location.Change{Binding: s.binding("<sip:a@192.0.2.10>", time.Hour)},
		location.Change{Binding: s.binding("<sip:b@192.0.2.10>", 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A refresh, a removal and two new bindings: one too many. Nothing
	// is applied, and the bindings as they stay come back.
	s.c.Advance(time.Minute)
	kept, err := s.update(2,
		location.Change{Binding: s.binding("<sip:b@192.0.2.10>", 0), Remove: true},
		location.Change{Binding: s.binding("<sip:a@192.0.2.10>", 5*time.Hour)},
		location.Change{Binding: s.binding("<sip:c@192.0.2.10>", time.Hour)},
		location.Change{Binding: s.binding("<sip:d@192.0.2.10>", time.Hour)})
	if !errors.Is(err, location.ErrTooManyBindings) {
		t.Fatalf("one too many: %v", err)
	}
	if contacts(kept) != "sip:a@192.0.2.10 sip:b@192.0.2.10" || !kept[0].Expires.Equal(Start.Add(time.Hour)) {
		t.Errorf("returned %s (first expires %v), want the bindings as they were", contacts(kept), kept[0].Expires)
	}
	got := s.get(AOR)
	if contacts(got) != "sip:a@192.0.2.10 sip:b@192.0.2.10" || !got[0].Expires.Equal(Start.Add(time.Hour)) || got[0].CSeq != 1 {
		t.Errorf("a refused update changed the bindings: %s", contacts(got))
	}
	// The removal makes room for one.
	got, err = s.update(3,
		location.Change{Binding: s.binding("<sip:b@192.0.2.10>", 0), Remove: true},
		location.Change{Binding: s.binding("<sip:c@192.0.2.10>", time.Hour)})
	if err != nil || contacts(got) != "sip:c@192.0.2.10 sip:a@192.0.2.10" {
		t.Errorf("swap b for c: %s, %v", contacts(got), err)
	}
}

func testUpdateRemoveAll(t *testing.T, s *suite) {
	if _, err := s.update(7, location.Change{Binding: s.binding("<sip:a@192.0.2.10>", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	other := s.binding("<sip:b@192.0.2.10>", time.Hour)
	other.CallID = "call-9"
	s.put(other)
	if _, err := s.s.Update(ctx, location.Update{AOR: AOR, RemoveAll: true, CallID: "call-1", CSeq: 7}); !errors.Is(err, location.ErrOutOfOrder) {
		t.Errorf("Contact: * with an old CSeq: %v, want ErrOutOfOrder", err)
	}
	if n := len(s.get(AOR)); n != 2 {
		t.Errorf("a refused Contact: * left %d bindings, want 2", n)
	}
	got, err := s.s.Update(ctx, location.Update{AOR: AOR, RemoveAll: true, CallID: "call-1", CSeq: 8})
	if err != nil || len(got) != 0 {
		t.Errorf("Contact: *: %s, %v", contacts(got), err)
	}
	if n := len(s.get(AOR)); n != 0 {
		t.Errorf("Contact: * left %d bindings", n)
	}
}

func testUpdateQuery(t *testing.T, s *suite) {
	got, err := s.s.Update(ctx, location.Update{AOR: AOR, CallID: "q", CSeq: 1})
	if err != nil || len(got) != 0 {
		t.Fatalf("query of an empty AOR: %v, %v", got, err)
	}
	s.put(s.binding("<sip:a@192.0.2.10>", time.Hour))
	got, err = s.s.Update(ctx, location.Update{AOR: AOR, CallID: "call-1", CSeq: 1})
	if err != nil || contacts(got) != "sip:a@192.0.2.10" {
		t.Errorf("query: %s, %v (a query changes nothing, so its CSeq is in no order)", contacts(got), err)
	}
}

// testConcurrentUpdates: devices of one AOR refresh at once, each its own
// binding, through Update as the registrar does: none is lost.
func testConcurrentUpdates(t *testing.T, s *suite) {
	const devices, refreshes = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		wg.Go(func() {
			for r := range refreshes {
				b := s.binding(fmt.Sprintf("<sip:dev%d@192.0.2.10>", d), time.Hour)
				b.CallID, b.CSeq = fmt.Sprintf("dev-%d", d), uint32(r+1)
				u := location.Update{AOR: AOR, Changes: []location.Change{{Binding: b}}, CallID: b.CallID, CSeq: b.CSeq}
				got, err := s.s.Update(ctx, u)
				if err != nil {
					errs <- fmt.Errorf("device %d refresh %d: %w", d, r, err)
					return
				}
				if !slices.ContainsFunc(got, func(g location.Binding) bool { return g.CallID == b.CallID && g.CSeq == b.CSeq }) {
					errs <- fmt.Errorf("device %d refresh %d: not in the result %s", d, r, contacts(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := s.get(AOR)
	if len(got) != devices {
		t.Fatalf("%d bindings, want %d: %s", len(got), devices, contacts(got))
	}
	for _, b := range got {
		if b.CSeq != refreshes {
			t.Errorf("%s has CSeq %d, want %d", b.Contact.URI.String(), b.CSeq, refreshes)
		}
	}
}

func testClosed(t *testing.T, s *suite) {
	s.put(s.binding("<sip:a@192.0.2.10>", time.Hour))
	if err := s.s.Close(); err != nil {
		t.Fatal(err)
	}
	b := s.binding("<sip:b@192.0.2.10>", time.Hour)
	checks := map[string]error{}
	_, checks["Get"] = s.s.Get(ctx, AOR)
	checks["Put"] = s.s.Put(ctx, b)
	checks["Delete"] = s.s.Delete(ctx, b)
	checks["DeleteAOR"] = s.s.DeleteAOR(ctx, AOR)
	_, checks["DeleteFlow"] = s.s.DeleteFlow(ctx, wsFlow(1))
	_, checks["All"] = s.s.All(ctx)
	_, checks["Update"] = s.s.Update(ctx, location.Update{AOR: AOR, Changes: []location.Change{{Binding: b}}})
	for name, err := range checks {
		if !errors.Is(err, location.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
