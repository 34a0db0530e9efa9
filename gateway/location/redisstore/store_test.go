package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/clock"
	"github.com/switchboard/switchboard/gateway/location"
	"github.com/switchboard/switchboard/gateway/location/locationtest"
	"github.com/switchboard/switchboard/gateway/location/redisstore"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/sip"
)

var ctx = context.Background()

const aor = locationtest.AOR

// prefixes makes each store of a test run its own key space.
var prefixes atomic.Int64

func newStore(t *testing.T, client redis.UniversalClient, prefix, node string, c clock.Clock, max int) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(redisstore.Options{Client: client, Prefix: prefix, Node: node, Clock: c, MaxBindingsPerAOR: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	locationtest.Run(t, func(t *testing.T, c *clock.Fake, max int) (location.Store, string) {
		prefix := fmt.Sprintf("t%d:", prefixes.Add(1))
		return newStore(t, client, prefix, "sip:10.0.0.1:5060;transport=tcp", c, max), "sip:10.0.0.1:5060;transport=tcp"
	})
}

func binding(t *testing.T, c clock.Clock, contact string, d time.Duration) location.Binding {
	t.Helper()
	a, err := sip.ParseAddress(contact)
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	return location.Binding{
		AOR: aor, Contact: a, Expires: now.Add(d), Q: 1000, CallID: "c", CSeq: 1, Received: now,
		Source: sip.Addr{Transport: sip.UDP, AddrPort: netip.MustParseAddrPort("192.0.2.10:5060")},
	}
}

// TestURIComparison: the script compares Contact URIs as sip.URI.Equal
// does, so that a refresh replaces its binding on Redis exactly when it
// would in the embedded store.
func TestURIComparison(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	c := clock.NewFake(locationtest.Start)
	pairs := [][2]string{
		{"sip:alice@host.example.com", "sip:alice@HOST.EXAMPLE.COM"},
		{"sip:%61lice@host.example.com", "sip:alice@host.example.com"},
		{"sip:alice@host.example.com;transport=TCP", "sip:alice@host.example.com;Transport=tcp"},
		{"sip:alice@host.example.com;transport=tcp", "sip:alice@host.example.com"},
		{"sip:alice@host.example.com;ob", "sip:alice@host.example.com"},
		{"sip:alice@host.example.com;x=%41", "sip:alice@host.example.com;x=a"},
		{"sip:alice@host.example.com;x=1", "sip:alice@host.example.com;x=2"},
		{"sip:alice@host.example.com;maddr=239.255.255.1", "sip:alice@host.example.com"},
		{"sip:alice@host.example.com:5060", "sip:alice@host.example.com"},
		{"sip:alice:pw@host.example.com", "sip:alice@host.example.com"},
		{"sip:Alice@host.example.com", "sip:alice@host.example.com"},
		{"sips:alice@host.example.com", "sip:alice@host.example.com"},
		{"sip:alice@host.example.com?Subject=hi&Priority=urgent", "sip:alice@host.example.com?priority=urgent&subject=hi"},
		{"sip:alice@host.example.com?subject=hi", "sip:alice@host.example.com?subject=HI"},
		{"sip:alice@host.example.com?subject=hi", "sip:alice@host.example.com"},
		{"sip:alice@[2001:DB8::1]", "sip:alice@[2001:db8::1]"},
	}
	for i, p := range pairs {
		a, err := sip.ParseURI(p[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err := sip.ParseURI(p[1])
		if err != nil {
			t.Fatal(err)
		}
		want := a.Equal(&b)
		s := newStore(t, client, fmt.Sprintf("uri%d:", i), "", c, 20)
		if err := s.Put(ctx, binding(t, c, "<"+p[0]+">", time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, binding(t, c, "<"+p[1]+">", time.Hour)); err != nil {
			t.Fatal(err)
		}
		bs, err := s.Get(ctx, aor)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(bs) == 1; got != want {
			t.Errorf("%s and %s: replaced %v, sip.URI.Equal %v", p[0], p[1], got, want)
		}
	}
}

// TestTwoInstancesRefreshOneUser: two gateways on one Redis refresh the
// same user's devices at once, and one device alternately through both:
// no binding is lost, none is doubled.
func TestTwoInstancesRefreshOneUser(t *testing.T) {
	srv := redistest.Start(t)
	c := clock.NewFake(locationtest.Start)
	stores := []*redisstore.Store{
		newStore(t, srv.Client(t), "two:", "node-a", c, 20),
		newStore(t, srv.Client(t), "two:", "node-b", c, 20),
	}
	const devices, refreshes = 6, 30
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		wg.Go(func() {
			for r := range refreshes {
				b := binding(t, c, fmt.Sprintf("<sip:dev%d@192.0.2.10>", d), time.Hour)
				b.CallID, b.CSeq = fmt.Sprintf("dev-%d", d), uint32(r+1)
				// Device 0 moves between the instances at each refresh;
				// the others stay on one each.
				s := stores[d%2]
				if d == 0 {
					s = stores[r%2]
				}
				b.Node = []string{"node-a", "node-b"}[r%2]
				if d != 0 {
					b.Node = []string{"node-a", "node-b"}[d%2]
				}
				u := location.Update{AOR: aor, Changes: []location.Change{{Binding: b}}, CallID: b.CallID, CSeq: b.CSeq}
				if _, err := s.Update(ctx, u); err != nil {
					errs <- fmt.Errorf("device %d refresh %d: %w", d, r, err)
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
	for _, s := range stores {
		bs, err := s.Get(ctx, aor)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != devices {
			t.Fatalf("%d bindings, want %d", len(bs), devices)
		}
		for _, b := range bs {
			if b.CSeq != refreshes {
				t.Errorf("%s: CSeq %d, want %d (a refresh was lost)", b.Contact.URI.String(), b.CSeq, refreshes)
			}
		}
	}
	// A retransmission of an old REGISTER through the other instance is
	// out of order there too.
	b := binding(t, c, "<sip:dev1@192.0.2.10>", time.Hour)
	b.CallID, b.CSeq = "dev-1", 3
	if _, err := stores[0].Update(ctx, location.Update{AOR: aor, Changes: []location.Change{{Binding: b}}, CallID: "dev-1", CSeq: 3}); !errors.Is(err, location.ErrOutOfOrder) {
		t.Errorf("an old CSeq through the other instance: %v, want ErrOutOfOrder", err)
	}
}

// TestKeysExpireInRedis: an AOR's key carries the time left to its last
// binding, and Redis drops it by itself when that has passed.
func TestKeysExpireInRedis(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	c := clock.Real{}
	s := newStore(t, client, "exp:", "", c, 20)
	if err := s.Put(ctx, binding(t, c, "<sip:a@192.0.2.10>", 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, binding(t, c, "<sip:b@192.0.2.10>", time.Hour)); err != nil {
		t.Fatal(err)
	}
	ttl, err := client.PTTL(ctx, "exp:aor:"+aor).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %v, want the last binding's hour", ttl)
	}
	// Watch Redis expire a key: its keyspace event, not a guess of when.
	if err := client.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatal(err)
	}
	sub := client.Subscribe(ctx, "__keyevent@0__:expired")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	short := binding(t, c, "<sip:c@192.0.2.10>", 300*time.Millisecond)
	short.AOR = "sip:bob@example.com"
	if err := s.Put(ctx, short); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.Channel():
		if m.Payload != "exp:aor:sip:bob@example.com" {
			t.Errorf("expired %q", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Redis did not expire the key")
	}
	if n, _ := client.Exists(ctx, "exp:aor:sip:bob@example.com").Result(); n != 0 {
		t.Error("the key is still there")
	}
}

// TestDeleteFlowOfThisNodeOnly: connections of two processes may share a
// source and a flow id; closing one removes its own instance's bindings
// only.
func TestDeleteFlowOfThisNodeOnly(t *testing.T) {
	srv := redistest.Start(t)
	c := clock.NewFake(locationtest.Start)
	a := newStore(t, srv.Client(t), "flow:", "node-a", c, 20)
	b := newStore(t, srv.Client(t), "flow:", "node-b", c, 20)
	flow := sip.Addr{Transport: sip.WS, AddrPort: netip.MustParseAddrPort("198.51.100.7:40000"), Flow: 1}
	for i, s := range []*redisstore.Store{a, b} {
		x := binding(t, c, fmt.Sprintf("<sip:x%d@h%d.invalid;transport=ws>", i, i), time.Hour)
		x.Source, x.Node = flow, []string{"node-a", "node-b"}[i]
		if err := s.Put(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := a.DeleteFlow(ctx, flow)
	if err != nil || len(removed) != 1 || removed[0].Node != "node-a" {
		t.Fatalf("DeleteFlow on node-a: %+v, %v", removed, err)
	}
	bs, _ := b.Get(ctx, aor)
	if len(bs) != 1 || bs[0].Node != "node-b" {
		t.Errorf("left %+v, want node-b's binding", bs)
	}
}

// TestOutage: with Redis gone, registrations fail with ErrUnavailable,
// lookups answer from this instance's own bindings, and the store
// reconnects by itself; after Redis restarted empty, Republish brings
// this instance's bindings back.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	c := clock.NewFake(locationtest.Start)
	a := newStore(t, srv.Client(t), "out:", "node-a", c, 20)
	b := newStore(t, srv.Client(t), "out:", "node-b", c, 20)
	mine := binding(t, c, "<sip:mine@x.invalid;transport=ws>", time.Hour)
	mine.Node = "node-a"
	theirs := binding(t, c, "<sip:theirs@y.invalid;transport=ws>", time.Hour)
	theirs.Node = "node-b"
	if err := a.Put(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, theirs); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	err := a.Put(ctx, binding(t, c, "<sip:new@192.0.2.1>", time.Hour))
	if !errors.Is(err, location.ErrUnavailable) {
		t.Fatalf("Put without Redis: %v, want ErrUnavailable", err)
	}
	if !a.Stats().Down {
		t.Error("Stats().Down not set")
	}
	bs, err := a.Get(ctx, aor)
	if err != nil || len(bs) != 1 || bs[0].Contact.URI.User != "mine" {
		t.Fatalf("Get without Redis: %+v, %v; want this node's binding", bs, err)
	}
	if a.Stats().Fallbacks == 0 {
		t.Error("Fallbacks not counted")
	}

	srv.Restart() // empty
	bs, err = a.Get(ctx, aor)
	if err != nil || len(bs) != 0 {
		t.Fatalf("Get after the restart: %+v, %v; want nothing (Redis lost it)", bs, err)
	}
	if a.Stats().Down {
		t.Error("still Down after Redis answered")
	}
	if n, err := a.Republish(ctx); err != nil || n != 1 {
		t.Fatalf("Republish: %d, %v", n, err)
	}
	bs, err = b.Get(ctx, aor)
	if err != nil || len(bs) != 1 || bs[0].Contact.URI.User != "mine" {
		t.Errorf("another instance after Republish: %+v, %v", bs, err)
	}
	// Republishing again, or over a newer refresh, changes nothing.
	c.Advance(time.Minute)
	newer := mine
	newer.Received, newer.Expires, newer.CSeq = c.Now(), c.Now().Add(2*time.Hour), 9
	if err := b.Put(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Republish(ctx); err != nil {
		t.Fatal(err)
	}
	bs, _ = b.Get(ctx, aor)
	if len(bs) != 1 || bs[0].CSeq != 9 {
		t.Errorf("Republish overwrote a newer refresh: %+v", bs)
	}
}

// TestOneRoundTripPerUpdate counts the commands a REGISTER's Update and a
// lookup send: one each.
func TestOneRoundTripPerUpdate(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	var cmds atomic.Int64
	client.AddHook(countHook{&cmds})
	c := clock.NewFake(locationtest.Start)
	s := newStore(t, client, "rt:", "node-a", c, 20)
	b := binding(t, c, "<sip:a@192.0.2.10>", time.Hour)
	u := location.Update{AOR: aor, Changes: []location.Change{{Binding: b}}, CallID: "c", CSeq: 1}
	if _, err := s.Update(ctx, u); err != nil { // loads the script
		t.Fatal(err)
	}
	for i := range 3 {
		cmds.Store(0)
		b.CSeq = uint32(i + 2)
		u := location.Update{AOR: aor, Changes: []location.Change{{Binding: b}}, CallID: "c", CSeq: b.CSeq}
		if _, err := s.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
		if n := cmds.Load(); n != 1 {
			t.Errorf("Update sent %d commands, want 1", n)
		}
	}
	cmds.Store(0)
	if _, err := s.Get(ctx, aor); err != nil {
		t.Fatal(err)
	}
	if n := cmds.Load(); n != 1 {
		t.Errorf("Get sent %d commands, want 1", n)
	}
}

// countHook counts the commands a client sends.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !strings.EqualFold(cmd.Name(), "hello") && !strings.EqualFold(cmd.Name(), "client") {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
